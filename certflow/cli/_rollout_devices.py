"""``certflow rollout``'s device commands: ``report`` (one device's answer, or a CSV file of
them in one transaction), ``retry``, the fleet changes ``enroll``, ``unenroll`` and
``reenrolled``, and ``restarted``. They register on the rollout group when imported.

A report file is applied in one transaction (``SqlStore.apply_all``), which also finds
every line the rules refuse (``refused="list"``, or ``"skip"`` with ``--rejects``): the
rules are asked, never worked out here, and the devices the file names are read through
the device-id index, so the cost does not grow with the fleet.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import click

from certflow.cli._app import applied, parse_now, refuse
from certflow.cli._rollout import (
    PROGRESS_FROM,
    _common,
    _interactive,
    _name,
    _refusals,
    refusal_data,
    rollout_group,
    words,
)
from certflow.cli._rollout_input import (
    _OUTCOMES,
    SHOWN,
    STDIN,
    ReportFile,
    listed,
    read_reports,
)
from certflow.cli._rollout_store import execute, outcome, store_for
from certflow.core import commands as c
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.store import Refused

# --- device reports --------------------------------------------------------------------------


@rollout_group.command("report")
@_name
@click.argument("device", required=False)
@click.argument("outcome", required=False, type=click.Choice(_OUTCOMES))
@click.option("--reason", help="Why the device failed (with 'failed').")
@click.option(
    "--file",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Many reports from a CSV file ('-': standard input): lines 'device,installed' or "
    "'device,failed[,reason]'; a first line 'device,outcome' is a header.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path),  # checked by _rejects_file, before anything is done
    help="With --file: apply the lines the rules accept and write the refused ones to this "
    "CSV file (line, device, outcome, reason), instead of refusing the whole file.",
)
@_common
@_refusals
def rollout_report(
    name: str,
    device: str | None,
    outcome: str | None,
    reason: str | None,
    report_file: Path | None,
    rejects: Path | None,
    db: str,
    now: str | None,
    as_json: bool,
) -> int:
    """Report a device's answer (installed or failed), or a file of them with --file.

    A file is applied in one transaction. A malformed line refuses the whole file (exit
    2); so does a line the rules refuse (exit 1; 2 if every such line names a device the
    rollout does not know), unless --rejects FILE is given: then the other lines are
    applied and the refused ones written to FILE (exit 0). Each bad or refused line is
    named with its number: the first 20, then how many more.
    """
    if report_file is not None:
        if device is not None or reason is not None:
            raise click.UsageError("--file takes no DEVICE, OUTCOME or --reason")
        return _report_file(name, report_file, rejects, db, now, as_json)
    if rejects is not None:
        raise click.UsageError("--rejects is only for --file")
    if device is None or outcome is None:
        raise click.UsageError("give DEVICE and installed|failed, or --file CSV")
    if reason is not None and outcome != "failed":
        raise click.UsageError("--reason is only for 'failed'")
    command: c.Command = (
        c.DeviceInstalled(device)
        if outcome == "installed"
        else c.DeviceFailed(device, reason or "")
    )
    return execute(db, now, as_json, name, command)


def _report_file(
    name: str, path: Path, rejects: Path | None, db: str, now: str | None, as_json: bool
) -> int:
    at = parse_now(now)
    # --rejects first: a folder that is missing or not writable refuses the command
    # before anything is read or applied.
    with _rejects_file(rejects, path, db) if rejects else contextlib.nullcontext() as out:
        parsed = read_reports(path)
        count = len(parsed.reports)
        with store_for(db, real_clock=now is None) as store:
            if _interactive(as_json) and count >= PROGRESS_FROM:
                # One transaction: the store reports no progress inside it.
                click.echo(f"Applying {count:,} reports in one transaction...", err=True)
            done = store.apply_all(
                name, parsed.reports, at, refused="list" if out is None else "skip"
            )
            if out is None:
                if done.refused:
                    return _refuse_whole(parsed, done.refused, name)
                return outcome(
                    store, name, f"{count:,} report{'s' * (count != 1)}", done, at, as_json
                )
            applied()  # committed: an interrupt from here on says "applied"
            out.write(parsed, done.refused, name)
            refused = len(done.refused)
            what = (
                f"{count - refused:,} of {count:,} report{'s' * (count != 1)} applied, "
                f"{refused:,} refused (listed in {rejects})"
            )
            return outcome(store, name, what, done, at, as_json)


def _why(refused: Refused, rollout: str) -> str:
    """Why a line was refused, in the command line's words (``words``: cheap enough for
    every line of a large file, since the core words a refusal from its data)."""
    return words(refused.error, rollout, getattr(refused.command, "device_id", None))


def _named(parsed: ReportFile, refused: tuple[Refused, ...], rollout: str) -> list[tuple[int, str]]:
    """The refused lines a message names (:func:`listed`): line numbers and why."""
    return [(parsed.lines[r.position], _why(r, rollout)) for r in refused[:SHOWN]]


def _refuse_whole(parsed: ReportFile, refused: tuple[Refused, ...], rollout: str) -> int:
    """Refuse a file some lines of which the rules refuse, every such line named
    (:func:`listed`): exit 1; a file whose only refused lines name devices the rollout
    does not know is bad input (exit 2), as one such report is. Said here, as
    ``_refusals`` says a refusal, but not put in words again: the lines are in the command
    line's words already, and an id holding a command's name ('Retry-2') is data."""
    count = len(refused)
    head = (
        f"{parsed.name}: {count:,} line{'s' * (count != 1)} refused, nothing was applied "
        "(--rejects FILE applies the other lines and writes these to FILE)"
    )
    text = listed(parsed.name, head, _named(parsed, refused, rollout), len(refused))
    first = next((r.error for r in refused if isinstance(r.error, CommandRefused)), None)
    if first is None:
        raise InvalidInput(text)
    # The first refusal's data (what a program may act on); the text names every line.
    return refuse(text, **refusal_data(first, rollout))


class _Rejects:
    """``--rejects FILE`` being written: a temporary file beside FILE, made before
    anything is read or applied, renamed over FILE once complete (FILE is never seen
    half written, and an older FILE stays until then)."""

    def __init__(self, path: Path, temp: Path, file: TextIO) -> None:
        self.path, self.temp, self.file = path, temp, file

    def write(self, parsed: ReportFile, refused: tuple[Refused, ...], rollout: str) -> None:
        """The refused lines, in file order, under a header; then FILE is replaced."""
        try:
            rows = csv.writer(self.file)
            rows.writerow(("line", "device", "outcome", "reason"))
            for found in refused:
                report = found.command
                kind = "installed" if isinstance(report, c.DeviceInstalled) else "failed"
                device = getattr(report, "device_id", "")
                rows.writerow((parsed.lines[found.position], device, kind, _why(found, rollout)))
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.path)
        except OSError as error:
            # After the commit: say that the other lines were applied, and name the
            # refused ones here, since the file does not.
            head = (
                f"--rejects {self.path}: could not be written ({error.strerror or error}); "
                f"the other lines were applied, and these {len(refused):,} were refused"
            )
            text = listed(parsed.name, head, _named(parsed, refused, rollout), len(refused))
            raise click.ClickException(text) from None


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.exists() and other.exists() and one.samefile(other)
    except OSError:
        return False


@contextlib.contextmanager
def _rejects_file(path: Path, source: Path, db: str) -> Iterator[_Rejects]:
    """``--rejects FILE`` checked and its temporary file made, before anything else; the
    temporary file is removed at the end unless it became FILE. FILE may replace any
    file but the report file and the SQLite database (a slip that would lose them)."""
    where, folder = f"--rejects {path}", path.parent
    if path.is_dir():
        raise InvalidInput(f"{where}: is a folder; give the name of a file to write")
    kept = {"the report file": None if source == STDIN else source}
    if "://" not in db or db.startswith("sqlite:///"):
        kept["the database"] = Path(db.removeprefix("sqlite:///"))
    for what, other in kept.items():
        if other is not None and _same_file(path, other):
            raise InvalidInput(f"{where}: is {what} itself; give another file")
    temp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # Opened here, closed by _Rejects.write or below ("x": never an existing file).
        file = open(temp, "x", encoding="utf-8", newline="")  # noqa: SIM115
    except FileNotFoundError:
        raise InvalidInput(f"{where}: the folder {folder} does not exist") from None
    except NotADirectoryError:
        raise InvalidInput(f"{where}: {folder} is not a folder") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise InvalidInput(f"{where}: cannot write in the folder {folder} ({reason})") from None
    try:
        yield _Rejects(path, temp, file)
    finally:
        file.close()
        temp.unlink(missing_ok=True)


# --- retries and fleet changes -----------------------------------------------------------------


@rollout_group.command("retry")
@_name
@click.argument("device", required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed device.")
@_common
@_refusals
def rollout_retry(
    name: str, device: str | None, all_failed: bool, db: str, now: str | None, as_json: bool
) -> int:
    """Push the root again to one failed DEVICE, or to every failed device (--all-failed)."""
    if (device is None) == (not all_failed):
        raise click.UsageError("give one DEVICE or --all-failed")
    command: c.Command = c.RetryAllFailed() if all_failed else c.Retry(device or "")
    return execute(db, now, as_json, name, command)


_device = click.argument("device")


def _fleet_command(spelling: str, make: Callable[[str], c.Command], doc: str) -> click.Command:
    @_name
    @_device
    @_common
    @_refusals
    def run(name: str, device: str, db: str, now: str | None, as_json: bool) -> int:
        return execute(db, now, as_json, name, make(device))

    run.__doc__ = doc
    return rollout_group.command(spelling)(run)


_fleet_command(
    "enroll", c.Enroll, "A device enrolled: it joins the rollout (pushed if it is distributing)."
)
_fleet_command("unenroll", c.Unenroll, "A device left: it goes out of the rollout's scope.")
_fleet_command("reenrolled", c.Reenrolled, "A device cut off by the import has re-enrolled.")


@rollout_group.command("restarted")
@_name
@_common
@_refusals
def rollout_restarted(name: str, db: str, now: str | None, as_json: bool) -> int:
    """The server was restarted (after the import, it loads the new certificate)."""
    return execute(db, now, as_json, name, c.ServerRestarted())
