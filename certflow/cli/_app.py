"""The ``certflow`` command group: exit codes, error handling and shared options.

Exit codes (scripts may rely on them; ``docs/scripting.md`` has the one table):

* 0 — done; for ``cert check`` and ``csr show``: no errors found. Also an interrupt or
  a closed pipe that came after the command's work was committed: it was applied
* 1 — refused: the rules refused a rollout command, an import was not confirmed, the
  new certificate failed its check; or ``cert check`` found an error, ``csr show`` an
  unusable CSR
* 2 — usage error or bad input (unknown option, unreadable file, wrong password...)
* 75 — a temporary failure: the database was busy or could not be reached; nothing was
  changed, so the same command can simply be run again (``EX_TEMPFAIL``)
* 130 — interrupted (Ctrl-C, or end of input at a prompt) before anything was applied
* 141 — the reader closed the pipe before the command was done (``| head``): what a
  shell reports for any program that SIGPIPE ends (128 + 13); nothing more is printed

Every error is one line on standard error, ``certflow: error: <message>`` (a refusal:
``certflow: refused: <message>``); never a traceback. Under ``--json`` it is also one
JSON object on standard output, ``{"error": KIND, "code": N, "message": TEXT}`` (a
refusal adds its ``hint`` and ``allowed_at``): see :func:`report_failure`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import click
from click.exceptions import NoArgsIsHelpError

from certflow.cli._lazy import LazyGroup

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 75
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141

F = TypeVar("F", bound=Callable[..., Any])


# --- one run of the command line -------------------------------------------------------------


class _Run:
    """What the error handling of one run of the command line needs to know."""

    def __init__(self, args: Sequence[str]) -> None:
        self.args = list(args)
        #: ``--json`` as click read it; ``None`` until it is read (a usage error may
        #: come first: then :func:`json_wanted` looks at the arguments).
        self.json: bool | None = None
        #: The command's work is committed (:func:`applied`).
        self.applied = False
        #: A JSON result is on standard output already.
        self.printed = False
        #: A write of several steps under way (:func:`writing`).
        self.partial: str | None = None


_run = _Run([])


def applied() -> None:
    """Note that the command's work is committed (a store transaction, files written).

    Nothing undoes it any more, so an interrupt or a closed pipe from here on exits 0
    and says "applied; interrupted afterwards" rather than "nothing was applied"."""
    _run.applied = True


@contextmanager
def writing(what: str) -> Iterator[None]:
    """A write of several steps, each atomic (files replaced one by one): an error or an
    interrupt inside says that it stopped ``what`` (``"writing files into out"``), so
    part of it may be done; its end is :func:`applied`."""
    _run.partial = what
    yield  # on an error, ``partial`` stays for the error to name
    _run.partial = None
    applied()


def json_wanted() -> bool:
    """Whether the command was given ``--json``: as click read it or, when click stopped
    before reading it (an unknown option, say), as it stands among the arguments."""
    if _run.json is not None:
        return _run.json
    args = _run.args[: _run.args.index("--")] if "--" in _run.args else _run.args
    return "--json" in args


def report_failure(
    kind: str, message: str, code: int, *, label: str = "error", **fields: Any
) -> int:
    """Say that the command failed or was refused, and return ``code``.

    One line on standard error, ``certflow: <label>: <message>``; under ``--json`` also
    one object on standard output: ``error`` (the ``kind``: ``usage``, ``bad_input``,
    ``refused``, ``declined``, ``temporary``, ``interrupted``), ``code``, ``message``,
    then ``fields``."""
    if _run.partial is not None:
        message += f" (it stopped while {_run.partial}: part of it may be done)"
    click.echo(f"certflow: {label}: {message}", err=True)
    if json_wanted():
        print_json({"error": kind, "code": code, "message": message, **fields})
    return code


def refuse(message: str, *, kind: str = "refused", label: str = "refused", **fields: Any) -> int:
    """A refused command (exit 1), as :func:`report_failure` says it."""
    return report_failure(kind, message, EXIT_FINDINGS, label=label, **fields)


def _interrupted() -> int:
    if _run.partial is not None:  # report_failure names what it stopped
        return report_failure("interrupted", "interrupted", EXIT_INTERRUPTED)
    if not _run.applied:
        return report_failure("interrupted", "interrupted; nothing was applied", EXIT_INTERRUPTED)
    message = "applied; interrupted afterwards (the command's work was committed)"
    click.echo(f"certflow: {message}", err=True)
    if json_wanted() and not _run.printed:  # a script reading stdout gets an object
        print_json(
            {"error": False, "code": EXIT_OK, "applied": True, "interrupted": True,
             "message": message}
        )  # fmt: skip
    return EXIT_OK


def _pipe_closed() -> int:
    """The reader went away (``| head -1``): end quietly. As Python's documentation of
    SIGPIPE advises, standard output and error go to devnull, so that the interpreter's
    last flush at exit does not fail again (and print "Exception ignored")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        # A stream that is no file (a test's) has no fileno: nothing flushes it at exit.
        with suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return EXIT_OK if _run.applied else EXIT_PIPE_CLOSED


class _PipeClosed(Exception):
    """A BrokenPipeError on the way out of a command. Click takes that OSError for its
    own and exits 1 (which certflow defines as "refused"), so it is carried past click
    as this instead."""


# --- the group ---------------------------------------------------------------------------------


def _failure(error: BaseException) -> int:
    """Say an expected failure and return its exit code; anything else is raised again
    (a bug, whose traceback is wanted)."""
    # Here rather than at the top, so that `certflow --version` starts without the store
    # (issue 18, item 7); a failure can afford the import.
    from certflow.core.errors import CertflowError
    from certflow.store import StoreBusy

    if isinstance(error, click.Abort | KeyboardInterrupt):
        return _interrupted()
    if isinstance(error, NoArgsIsHelpError):  # `certflow rollout` alone: the help, then why
        click.echo(error.format_message(), err=True)
        path = error.ctx.command_path
        return report_failure("usage", f"give a command (see '{path} --help')", EXIT_BAD_INPUT)
    if isinstance(error, click.UsageError):
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
        return report_failure("usage", error.format_message() + hint, EXIT_BAD_INPUT)
    if isinstance(error, click.ClickException):
        return report_failure("bad_input", error.format_message(), EXIT_BAD_INPUT)
    if isinstance(error, StoreBusy):
        # Busy or unreachable: nothing changed, and trying again may well work. Not 2: a
        # script does not retry bad input.
        text = str(error)
        if "try again" not in text:
            text += "; nothing was changed, try again"
        return report_failure("temporary", text, EXIT_TEMPORARY)
    if isinstance(error, CertflowError):
        return report_failure("bad_input", str(error), EXIT_BAD_INPUT)
    if isinstance(error, OverflowError):  # an instant near year 1 or 9999, an absurd number
        text = f"a date or a number is out of range ({error})"
        return report_failure("bad_input", text, EXIT_BAD_INPUT)
    if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
        where = f"{error.filename}: " if error.filename else ""  # a read-only folder, say
        return report_failure("bad_input", f"{where}{error.strerror or error}", EXIT_BAD_INPUT)
    raise error


class CertflowGroup(LazyGroup):
    """A click group that turns every expected failure into one line and a stable exit
    code; its subcommands are imported on first use (:mod:`certflow.cli._lazy`)."""

    group_class = LazyGroup  # the command groups (`rollout`, `cert`...) load lazily too

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line and exit with the documented codes. Not
        ``standalone_mode``, a command's own exit code is returned; a failure still exits."""
        global _run
        _run = _Run(sys.argv[1:] if args is None else args)
        failed = True
        try:
            try:
                result = super().main(
                    args=args,
                    prog_name=prog_name or "certflow",
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
                code, failed = (result if isinstance(result, int) else EXIT_OK), False
            except (_PipeClosed, BrokenPipeError):
                raise
            except (Exception, KeyboardInterrupt) as error:
                code = _failure(error)
            # Written but not yet flushed output meets a closed pipe here at the latest.
            sys.stdout.flush()
            sys.stderr.flush()
        except (_PipeClosed, BrokenPipeError):
            code = _pipe_closed()
        if standalone_mode or failed:
            sys.exit(code)
        return code

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:  # `certflow --help | head -1`: the help meets the closed pipe here
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            raise _PipeClosed from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed from None


@click.group(cls=CertflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="certflow", prog_name="certflow")
def main() -> None:
    """Replace a server's TLS certificate safely: make CSRs and keys, check what the CA sent.

    Exit codes: 0 ok, 1 refused or a check found errors, 2 usage error or bad input, 75
    the database was busy or unreachable (nothing changed: try again), 130 interrupted
    before anything was applied, 141 the reader closed the pipe. Under --json an error is
    also a JSON object on standard output.
    """


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON (non-ASCII text as it is)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    _run.printed = True


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    _run.json = value
    return value


# Eager: read before the other options, so that an error in one of them is JSON too.
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    is_eager=True,
    callback=_note_json,
    help="Print JSON for programs; an error too (an object with error, code and message).",
)


def parse_now(value: str | None) -> datetime:
    """``--now`` of every command: ISO 8601 with a UTC offset; without a value, the current
    time (the command line is where the clock is read).

    A time without an offset is refused, never guessed: an instant moves deadlines, and a
    zone guessed wrong moves them by hours. Every spelling a message suggests is accepted.
    """
    if value is None:
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-07-01T09:00:00Z", param_hint="--now"
        ) from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        shown = instant.isoformat()
        # An offset east of UTC would move the first day of year 1 out of range.
        offset = "+05:30" if instant.date() > date.min else "-05:30"
        raise click.BadParameter(
            f"{value!r} has no UTC offset; add one, e.g. {shown}Z or {shown}{offset}",
            param_hint="--now",
        )
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        raise click.BadParameter(f"{value!r} is out of range", param_hint="--now") from None
