"""The command group's shared parts: the one parser of --now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certflow.cli._app import parse_now
from tests.certs.factory import pem, pki


def test_now_is_read_in_utc_whatever_its_offset() -> None:
    assert parse_now("2026-07-01T14:30:00+05:30") == datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert parse_now("2026-07-01T09:00:00Z").tzinfo is UTC


def test_no_value_is_the_current_time() -> None:
    assert abs(parse_now(None) - datetime.now(UTC)) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("value", "suggested"),
    [
        ("2026-07-01T09:00:00", "2026-07-01T09:00:00Z or 2026-07-01T09:00:00+05:30"),
        ("2026-12-07", "2026-12-07T00:00:00Z or 2026-12-07T00:00:00+05:30"),
        ("2028-02-01T10:15", "2028-02-01T10:15:00Z or 2028-02-01T10:15:00+05:30"),
        ("0001-01-01", "0001-01-01T00:00:00Z or 0001-01-01T00:00:00-05:30"),
    ],
)
def test_a_time_without_an_offset_is_refused_with_spellings_that_work(
    value: str, suggested: str
) -> None:
    with pytest.raises(click.BadParameter) as caught:
        parse_now(value)
    assert caught.value.message == f"{value!r} has no UTC offset; add one, e.g. {suggested}"
    for spelling in suggested.split(" or "):
        assert parse_now(spelling).replace(tzinfo=None) - datetime.fromisoformat(value) in (
            timedelta(0),
            timedelta(hours=-5, minutes=-30),
            timedelta(hours=5, minutes=30),
        )


def _suggestions(message: str) -> list[str]:
    return message.split("e.g. ", 1)[1].split(" or ") if "e.g. " in message else []


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.datetimes().map(lambda t: t.isoformat()),
        st.dates().map(lambda d: d.isoformat()),
        st.text(max_size=30),
    )
)
def test_every_spelling_a_message_suggests_is_accepted(value: str) -> None:
    try:
        parse_now(value)
    except click.BadParameter as error:
        for spelling in _suggestions(error.message):
            parse_now(spelling)  # raises if the suggestion is itself refused


def test_one_parser_reads_every_time_on_the_command_line() -> None:
    """Every command reads --now through parse_now, and only it reads ISO 8601: so the rule
    (an offset is required) and its suggestions are the same everywhere."""
    import ast

    import certflow.cli

    folder = Path(certflow.cli.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("fromisoformat", "strptime"):
                assert path.name == "_app.py", f"{path.name} parses a time itself"
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "parse_now":
                assert not node.keywords, f"{path.name}:{node.lineno} bends the rule"


@pytest.mark.parametrize(
    "args",
    [
        ["cert", "check", "server.crt", "--host", "mdm.example.com"],
        ["rollout", "status", "r1", "--db", "certflow.db"],
        ["rollout", "tick", "--db", "certflow.db"],
    ],
    ids=" ".join,
)
def test_a_date_without_an_offset_is_refused_alike_by_every_command(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from certflow.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "server.crt").write_bytes(pem(pki().leaf))
    result = CliRunner().invoke(main, [*args, "--now", "2028-02-01"], prog_name="certflow")
    assert result.exit_code == 2, result.output
    assert (
        "'2028-02-01' has no UTC offset; add one, e.g. 2028-02-01T00:00:00Z or "
        "2028-02-01T00:00:00+05:30"
    ) in result.output
    assert not (tmp_path / "certflow.db").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not an ISO 8601 time"),
        ("0001-01-01T00:00:00+05:00", "is out of range"),
        ("9999-12-31T23:59:59-01:00", "is out of range"),
    ],
)
def test_a_bad_now_names_the_value_and_the_problem(value: str, message: str) -> None:
    with pytest.raises(click.BadParameter, match=message):
        parse_now(value)


@pytest.mark.parametrize(
    "module",
    [
        "_app", "_certs", "_csr", "_key", "_rollout", "_rollout_devices", "_rollout_export",
        "_rollout_input", "_rollout_outbox", "_rollout_read", "_rollout_render", "_rollout_store",
        "_simulate",
    ],
)  # fmt: skip
def test_every_option_a_message_names_exists(module: str) -> None:
    """A static net under the tests that run each error: no string in the command line's
    source names an option that no command has (`--password-file` for `--passphrase-file`)."""
    import ast
    import importlib
    import re
    from pathlib import Path

    from certflow.cli import main
    from certflow.cli._lazy import subcommands

    def every(command: click.Command) -> set[str]:
        found = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        if isinstance(command, click.Group):
            for sub in subcommands(command).values():
                found |= every(sub)
        return found

    source = Path(importlib.import_module(f"certflow.cli.{module}").__file__ or "").read_text()
    literals = [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    named = {o for text in literals for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)}
    help_option = {"--help"}  # click adds it to every command, outside `params`
    assert named - every(main) - help_option == set()


def test_an_error_while_several_files_are_written_says_part_may_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cert export replaces its files one by one: a full disk after the first leaves it
    written, and the one line says so (not "nothing was written")."""
    import errno

    from click.testing import CliRunner

    from certflow import certs
    from certflow.cli import main

    def first_then_full(material: object, folder: Path, **options: object) -> None:
        (folder / "server.crt").write_text("written")
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "chain.pem"))

    monkeypatch.setattr(certs, "export", first_then_full)
    (tmp_path / "in.crt").write_bytes(pem(pki().leaf))
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(
        main, ["cert", "export", str(tmp_path / "in.crt"), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"certflow: error: {out}/chain.pem: No space left on device (it stopped while writing "
        f"files into {out}: part of it may be done)\n"
    )
