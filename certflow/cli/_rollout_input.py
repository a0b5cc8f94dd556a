"""The files ``certflow rollout`` reads: the device list of ``new`` and the report file of
``report --file``, each read once through certflow's bounded reader.

A file with a bad line is refused whole (bad input, exit 2), every bad line listed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from certflow import certs
from certflow.core import commands as c
from certflow.core.errors import InvalidInput

#: The most bytes read from a device list or a report file: about 5 million lines.
FILE_LIMIT = 256 * 1024 * 1024


def _lines(path: Path, what: str) -> list[str]:
    """The lines of a text file, read once through certflow's bounded reader."""
    data = certs.read_bounded(
        path, limit=FILE_LIMIT, regular_only=False, hint=f" (the limit for {what})"
    )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInput(f"{path}: line {line}: not UTF-8 text") from None
    return [line.removesuffix("\r") for line in text.split("\n")]


def _problems(path: Path, found: Sequence[str]) -> InvalidInput:
    count = len(found)
    head = f"{path}: {count} bad line{'s' * (count != 1)}, nothing was applied"
    return InvalidInput("\n".join([head, *(f"  {line}" for line in found)]))


# --- device lists ----------------------------------------------------------------------------


def read_device_ids(path: Path) -> list[str]:
    """Device ids, one per line (surrounding blanks and blank lines ignored); a duplicate
    or an empty list is refused, naming every duplicate's lines."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    duplicates: list[str] = []
    for number, line in enumerate(_lines(path, "a device list"), start=1):
        device = line.strip()
        if not device:
            continue
        if device in first_line:
            duplicates.append(
                f"line {number}: device {device!r} is already on line {first_line[device]}"
            )
            continue
        first_line[device] = number
        ids.append(device)
    if duplicates:
        raise _problems(path, duplicates)
    if not ids:
        raise InvalidInput(f"{path}: no device ids (give one id per line)")
    return ids


# --- report files ----------------------------------------------------------------------------

_OUTCOMES = ("installed", "failed")
_Report = c.DeviceInstalled | c.DeviceFailed


def read_reports(path: Path) -> tuple[list[_Report], dict[str, int]]:
    """The reports of a CSV file (``device,installed`` or ``device,failed[,reason]``) and
    each device's line. Every bad line is listed; one bad line refuses the whole file."""
    reports: list[_Report] = []
    line_of: dict[str, int] = {}
    bad: list[str] = []
    lines = _lines(path, "a report file")
    for number, fields in enumerate(csv.reader(lines), start=1):
        if not fields or not "".join(fields).strip():
            continue
        device = fields[0].strip()
        outcome = fields[1].strip().lower() if len(fields) > 1 else ""
        # A reason may hold commas without quotes: everything after the second comma.
        reason = ",".join(fields[2:]).strip()
        if not device:
            bad.append(f"line {number}: no device id")
        elif outcome not in _OUTCOMES:
            got = f"got {fields[1].strip()!r}" if len(fields) > 1 else "it is missing"
            bad.append(f"line {number}: the outcome must be 'installed' or 'failed', {got}")
        elif outcome == "installed" and reason:  # an empty reason column is no reason
            bad.append(f"line {number}: a reason is only for 'failed'")
        elif device in line_of:
            bad.append(
                f"line {number}: device {device!r} is already reported on line {line_of[device]}"
            )
        else:
            line_of[device] = number
            reports.append(
                c.DeviceInstalled(device)
                if outcome == "installed"
                else c.DeviceFailed(device, reason)
            )
    if bad:
        raise _problems(path, bad)
    if not reports:
        raise InvalidInput(
            f"{path}: no reports (lines 'device,installed' or 'device,failed,reason')"
        )
    return reports, line_of
