"""``certflow rollout``'s device commands: ``report`` (one device's answer, or a CSV file of
them in one transaction), ``retry``, the fleet changes ``enroll``, ``unenroll`` and
``reenrolled``, and ``restarted``. They register on the rollout group when imported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from certflow.cli._app import parse_now
from certflow.cli._rollout import (
    PROGRESS_FROM,
    _common,
    _interactive,
    _name,
    _progress,
    _refusals,
    rollout_group,
)
from certflow.cli._rollout_input import _OUTCOMES, _problems, read_reports
from certflow.cli._rollout_store import execute, outcome, store_for
from certflow.core import commands as c
from certflow.core.errors import CommandRefused, UnknownDevice

# --- device reports --------------------------------------------------------------------------


@rollout_group.command("report")
@_name
@click.argument("device", required=False)
@click.argument("outcome", required=False, type=click.Choice(_OUTCOMES))
@click.option("--reason", help="Why the device failed (with 'failed').")
@click.option(
    "--file",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=False),
    help="Many reports from a CSV file: lines 'device,installed' or 'device,failed[,reason]'.",
)
@_common
@_refusals
def rollout_report(
    name: str,
    device: str | None,
    outcome: str | None,
    reason: str | None,
    report_file: Path | None,
    db: str,
    now: str | None,
    as_json: bool,
) -> int:
    """Report a device's answer (installed or failed), or a file of them with --file.

    A file is applied in one transaction: a file with a bad line, an unknown device or a
    report the rules refuse is refused whole, every bad line listed, and nothing applied.
    """
    if report_file is not None:
        if device is not None or reason is not None:
            raise click.UsageError("--file takes no DEVICE, OUTCOME or --reason")
        return _report_file(name, report_file, db, now, as_json)
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


def _report_file(name: str, path: Path, db: str, now: str | None, as_json: bool) -> int:
    at = parse_now(now)
    reports, line_of = read_reports(path)
    with store_for(db, real_clock=now is None) as store:
        unknown: list[str] = []
        with _progress("Checking devices", len(reports), _interactive(as_json)) as progress:
            for done, report in enumerate(reports, start=1):
                device = report.device_id
                try:
                    store.device(name, device)
                except UnknownDevice:
                    unknown.append(f"line {line_of[device]}: unknown device {device!r}")
                if done % 1000 == 0 or done == len(reports):
                    progress(done, len(reports))
        if unknown:
            raise _problems(path, unknown)
        if _interactive(as_json) and len(reports) >= PROGRESS_FROM:
            # One transaction: the store reports no progress inside it.
            click.echo(f"Applying {len(reports):,} reports in one transaction...", err=True)
        try:
            effects = store.apply_all(name, reports, at)
        except CommandRefused as error:
            where = f"line {line_of[error.device_id]}: " if error.device_id in line_of else ""
            raise CommandRefused(
                f"{path}: {where}{error}; nothing was applied",
                command=error.command,
                state=error.state,
                reason=error.reason,
                allowed_at=error.allowed_at,
                device_id=error.device_id,
                device_state=error.device_state,
            ) from None
        count = len(reports)
        return outcome(store, name, f"{count:,} report{'s' * (count != 1)}", effects, at, as_json)


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
