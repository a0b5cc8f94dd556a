"""The ``certflow`` command group: exit codes, error handling and shared options.

Exit codes (scripts may rely on them):

* 0 — done; for ``cert check`` and ``csr show``: no errors found
* 1 — ``cert check`` found at least one error / ``csr show`` found the CSR unusable
* 2 — usage error or bad input (unknown option, unreadable file, wrong password...)
* 75 — a temporary failure: the database was busy or could not be reached; nothing was
  changed, so the same command can simply be run again (``EX_TEMPFAIL``)
* 130 — interrupted (Ctrl-C, or end of input at a prompt)

Every error is one line on standard error, ``certflow: error: <message>``; never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, NoReturn, TypeVar

import click

from certflow.core.errors import CertflowError
from certflow.store import StoreBusy

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 75
EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> NoReturn:
    """Print ``message`` as certflow's one-line error and exit with ``code``."""
    click.echo(f"certflow: error: {message}", err=True)
    sys.exit(code)


class CertflowGroup(click.Group):
    """A click group that turns every expected failure into one line and a stable exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exits with the documented codes unless not standalone."""
        try:
            result = super().main(
                args=args,
                prog_name=prog_name or "certflow",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click.Abort:
            fail("interrupted", EXIT_INTERRUPTED)
        except click.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            fail(error.format_message() + hint, EXIT_BAD_INPUT)
        except click.ClickException as error:
            fail(error.format_message(), EXIT_BAD_INPUT)
        except StoreBusy as error:
            # Busy or unreachable: nothing changed, and trying again may well work. Not 2:
            # a script does not retry bad input.
            text = str(error)
            if "try again" not in text:
                text += "; nothing was changed, try again"
            fail(text, EXIT_TEMPORARY)
        except CertflowError as error:
            fail(str(error), EXIT_BAD_INPUT)
        except OverflowError as error:  # an instant near year 1 or 9999, an absurd number
            fail(f"a date or a number is out of range ({error})", EXIT_BAD_INPUT)
        except OSError as error:  # e.g. writing into a read-only folder
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}", EXIT_BAD_INPUT)
        code = result if isinstance(result, int) else EXIT_OK
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=CertflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="certflow", prog_name="certflow")
def main() -> None:
    """Replace a server's TLS certificate safely: make CSRs and keys, check what the CA sent.

    Exit codes: 0 ok, 1 a check found errors, 2 usage error or bad input, 75 the database
    was busy or unreachable (nothing changed: try again), 130 interrupted.
    """


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON (non-ASCII text as it is)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


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
