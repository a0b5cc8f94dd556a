"""The command group's shared parts: the one parser of --now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest

from certflow.cli._app import parse_now


def test_now_is_read_in_utc_whatever_its_offset() -> None:
    assert parse_now("2026-07-01T14:30:00+05:30") == datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert parse_now("2026-07-01T09:00:00Z").tzinfo is UTC


def test_no_value_is_the_current_time() -> None:
    assert abs(parse_now(None) - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_time_without_an_offset_is_refused_or_read_as_utc_where_asked() -> None:
    with pytest.raises(click.BadParameter, match="has no UTC offset; add one"):
        parse_now("2026-07-01T09:00:00")
    assert parse_now("2026-07-01T09:00:00", naive_is_utc=True) == datetime(
        2026, 7, 1, 9, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yesterday", "is not an ISO 8601 time"),
        ("0001-01-01T00:00:00+05:00", "is out of range"),
        ("9999-12-31T23:59:59-01:00", "is out of range"),
    ],
)
def test_a_bad_now_names_the_value_and_the_problem(value: str, message: str) -> None:
    for naive_is_utc in (False, True):
        with pytest.raises(click.BadParameter, match=message):
            parse_now(value, naive_is_utc=naive_is_utc)


@pytest.mark.parametrize("module", ["_app", "_certs", "_rollout", "_simulate"])
def test_every_option_a_message_names_exists(module: str) -> None:
    """A static net under the tests that run each error: no string in the command line's
    source names an option that no command has (`--password-file` for `--passphrase-file`)."""
    import ast
    import importlib
    import re
    from pathlib import Path

    from certflow.cli import main

    def every(command: click.Command) -> set[str]:
        found = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        if isinstance(command, click.Group):
            for sub in command.commands.values():
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
