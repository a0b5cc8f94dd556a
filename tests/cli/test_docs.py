"""The command-line pages of docs/cli/ are the output of real runs, and up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.cli_docs import DEFAULT_FOLDER, PAGES, render


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Every page, generated now from real runs of the installed command line."""
    return render()


def test_every_page_of_docs_cli_is_generated() -> None:
    assert sorted(p.name for p in DEFAULT_FOLDER.glob("*.md")) == sorted(PAGES)


def test_no_page_is_stale(rendered: dict[str, str]) -> None:
    stale = [name for name, text in rendered.items() if (DEFAULT_FOLDER / name).read_text() != text]
    assert stale == [], f"docs/cli pages out of date: {stale}; run `make docs`"


def test_every_command_has_its_page(rendered: dict[str, str]) -> None:
    import click

    from certflow.cli import main
    from certflow.cli._lazy import subcommands

    def paths(command: click.Command, prefix: str) -> list[str]:
        if isinstance(command, click.Group):
            return [
                p
                for name, sub in subcommands(command).items()
                for p in paths(sub, f"{prefix} {name}")
            ]
        return [prefix]

    for path in paths(main, "certflow"):
        assert any(f"$ {path} --help\n" in text for text in rendered.values()), path
    assert "$ certflow --help\n" in rendered["certflow.md"]


def test_the_pages_show_no_temporary_path(rendered: dict[str, str]) -> None:
    for name, text in rendered.items():
        assert "/tmp" not in text, name
        assert "certflow-docs-" not in text, name


def test_make_docs_writes_what_is_rendered(
    rendered: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools import cli_docs

    monkeypatch.setattr(cli_docs, "render", lambda: rendered)  # rendering is tested above
    assert cli_docs.main(["cli_docs.py", str(tmp_path)]) == 0
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == rendered
