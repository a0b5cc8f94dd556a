"""The files ``certflow rollout`` reads: the device list of ``new`` and the report file of
``report --file`` (a path, or ``-`` for standard input), each read once, bounded
(:data:`FILE_LIMIT`).

A file with a bad line is refused whole (bad input, exit 2), the bad lines named by
number: the first :data:`SHOWN`, then how many more (:func:`listed`).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from certflow.core import commands as c
from certflow.core.errors import InvalidInput, quoted

#: The most bytes read from a device list or a report file: about 5 million lines.
FILE_LIMIT = 256 * 1024 * 1024
#: The lines a message names; past them it counts (200,000 bad lines make 22 lines).
SHOWN = 20
#: What ``--file -`` reads.
STDIN = Path("-")


def source_name(path: Path) -> str:
    """The file as messages name it: its path, or "standard input" for ``-``."""
    return "standard input" if path == STDIN else str(path)


def _read(path: Path, what: str) -> bytes:
    hint = f" (the limit for {what})"
    if path != STDIN:
        from certflow import certs  # cryptography: `rollout report` starts without it

        return certs.read_bounded(path, limit=FILE_LIMIT, regular_only=False, hint=hint)
    data = sys.stdin.buffer.read(FILE_LIMIT + 1)
    if len(data) > FILE_LIMIT:
        raise InvalidInput(f"standard input: larger than {FILE_LIMIT:,} bytes{hint}")
    return data


def _lines(path: Path, what: str) -> list[str]:
    """The lines of a text file, read once and bounded."""
    data = _read(path, what)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInput(f"{source_name(path)}: line {line}: not UTF-8 text") from None
    return [line.removesuffix("\r") for line in text.split("\n")]


def listed(where: str, head: str, found: Sequence[tuple[int, str]], total: int = 0) -> str:
    """``head``, then the first :data:`SHOWN` of ``found`` (line number, problem; in line
    order) each as ``where: line N: problem``, then how many more of ``total`` (by
    default, of ``found``: a caller may pass only the lines it shows)."""
    shown = [f"  {where}: line {number}: {problem}" for number, problem in found[:SHOWN]]
    more = max(total, len(found)) - len(shown)
    return "\n".join([head, *shown, *([f"  and {more:,} more"] if more > 0 else [])])


def _problems(path: Path, found: Sequence[tuple[int, str]]) -> InvalidInput:
    count, where = len(found), source_name(path)
    head = f"{where}: {count:,} bad line{'s' * (count != 1)}, nothing was applied"
    return InvalidInput(listed(where, head, found))


# --- device lists ----------------------------------------------------------------------------


def _bad_id(device: str) -> str:
    """What is wrong with a file's device id (the core's rule: :data:`c.DEVICE_ID_RULE`),
    or ``""``; said on the id's line, the rule once in the refusal's head."""
    problem = c.device_id_problem(device)
    return f"device id {quoted(device)} is not valid: {problem}" if problem else ""


def _id_problems(path: Path, found: Sequence[tuple[int, str]]) -> InvalidInput:
    error = _problems(path, found)
    if any(" is not valid: " in problem for _, problem in found):
        head, _, rest = str(error).partition("\n")
        return InvalidInput(f"{head} (a device id is {c.DEVICE_ID_RULE})\n{rest}")
    return error


def read_device_ids(path: Path) -> list[str]:
    """Device ids, one per line (surrounding blanks and blank lines ignored); a duplicate,
    an id the core's rule refuses (:func:`certflow.core.commands.device_id_problem`) or
    an empty list is refused, naming every such line."""
    ids: list[str] = []
    first_line: dict[str, int] = {}
    duplicates: list[tuple[int, str]] = []
    for number, line in enumerate(_lines(path, "a device list"), start=1):
        device = line.strip()
        if not device:
            continue
        bad = _bad_id(device)
        if bad:
            duplicates.append((number, bad))
            continue
        if device in first_line:
            duplicates.append(
                (number, f"device {device!r} is already on line {first_line[device]}")
            )
            continue
        first_line[device] = number
        ids.append(device)
    if duplicates:
        raise _id_problems(path, duplicates)
    if not ids:
        raise InvalidInput(f"{source_name(path)}: no device ids (give one id per line)")
    return ids


# --- report files ----------------------------------------------------------------------------

_OUTCOMES = ("installed", "failed")
_Report = c.DeviceInstalled | c.DeviceFailed
# A first line of these columns is the header most exports have, not a report.
_HEADERS = (["device", "outcome"], ["device", "outcome", "reason"])


@attrs.frozen
class ReportFile:
    """The reports of a file, in order, and the line of each (``lines[i]`` is the line
    number of ``reports[i]``); ``name`` is the file as messages name it."""

    name: str
    reports: list[_Report]
    lines: list[int]


class _Malformed(Exception):
    """A line that is not one row of CSV (the message says why)."""


def _fields(line: str) -> list[str]:
    """One line's fields, read as the csv module reads a row. Each line is read alone,
    strictly, so a quote left open is named at its own line and cannot swallow the lines
    after it: a field may hold commas within quotes, never a line break."""
    if "\r" in line:
        raise _Malformed("a carriage return inside the line (a field holds no line break)")
    if '"' not in line:
        return line.split(",")  # what csv reads from such a line, at a fraction of the cost
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise _Malformed("a quote opens on this line and is not closed on it") from None
        raise _Malformed(f"not a CSV row ({error})") from None


def _report(number: int, line: str, line_of: dict[str, int]) -> _Report | str | None:
    """The report on line ``number``, what is wrong with it, or ``None`` for no report (a
    blank line, the header)."""
    try:
        fields = _fields(line)
    except _Malformed as error:
        return str(error)
    if not "".join(fields).strip():
        return None
    if number == 1 and [f.strip().lower() for f in fields] in _HEADERS:
        return None
    device = fields[0].strip()
    outcome = fields[1].strip().lower() if len(fields) > 1 else ""
    # A reason may hold commas without quotes: everything after the second comma.
    reason = ",".join(fields[2:]).strip()
    if not device:
        return "no device id"
    if "\x00" in line:  # no database stores it (certflow.store: storable)
        return "the line contains a NUL character"
    bad = _bad_id(device)
    if bad:
        return bad
    if outcome not in _OUTCOMES:
        got = f"got {fields[1].strip()!r}" if len(fields) > 1 else "it is missing"
        return f"the outcome must be 'installed' or 'failed', {got}"
    if outcome == "installed" and reason:  # an empty reason column is no reason
        return "a reason is only for 'failed'"
    if device in line_of:
        return f"device {device!r} is already reported on line {line_of[device]}"
    line_of[device] = number
    return c.DeviceInstalled(device) if outcome == "installed" else c.DeviceFailed(device, reason)


def read_reports(path: Path) -> ReportFile:
    """The reports of a CSV file (``device,installed`` or ``device,failed[,reason]``; a
    first line ``device,outcome[,reason]``, in any case, is a header), or ``-`` for
    standard input. One bad line refuses the whole file; every bad line is named
    (:func:`listed`)."""
    reports: list[_Report] = []
    lines: list[int] = []
    line_of: dict[str, int] = {}
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(_lines(path, "a report file"), start=1):
        found = _report(number, line, line_of)
        if isinstance(found, str):
            bad.append((number, found))
        elif found is not None:
            reports.append(found)
            lines.append(number)
    if bad:
        raise _id_problems(path, bad)
    if not reports:
        raise InvalidInput(
            f"{source_name(path)}: no reports (lines 'device,installed' or 'device,failed,reason')"
        )
    return ReportFile(source_name(path), reports, lines)
