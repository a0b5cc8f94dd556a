"""``certflow rollout``'s reads never write (``store.md``, "Reads never write"): ``status``,
``list``, ``history``, ``effects`` and ``forecast`` open the database read-only, work on
a read-only file or folder and leave no file behind; read past a due timer, ``status``
and ``list`` show what a tick would leave and say so, storing nothing. On both backends
where the database is named by ``--db``; SQLite's files as a user whose permissions bind.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import certflow.sim  # noqa: F401  (loaded before the unprivileged child, which may not read the interpreter's files)
from certflow import DeviceFailed, DistributeRoot
from certflow.cli import EXIT_PIPE_CLOSED, main
from certflow.store import SqliteStore
from tests.backends import Backend
from tests.cli.test_rollout import as_json, at, cli, history, new_args, status
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files
from tests.core.strategies import HOUR, T0, build
from tests.store.conftest import as_unprivileged, folder_bytes
from tests.store.conftest import shared_folder as shared_folder  # the fixture

# Every read, and an instant for it: past the first checkpoint (projected) where the read
# takes an instant; the forecast's while the rollout distributes, which it needs.
READS = [
    (["status", "r1"], at(days=7, hours=1)),
    (["status", "r1", "--state", "failed"], at(days=22)),
    (["status", "r1", "--summary"], at(days=7, hours=1)),
    (["status", "r1", "--csv", "--state", "reenroll_required"], at(days=22)),
    (["list"], at(days=30)),
    (["history", "r1"], at(days=30)),
    (["effects", "r1", "--all"], at(days=30)),
    (["forecast", "r1", "--runs", "5"], at(days=2)),
]


def distributing(db: str) -> None:
    """r1 distributing since t0 (a 6-hour acknowledgement wait: the default policy has
    none, so the timers due on day 6.5 are the notice and, for d2, nothing more), d1
    installed, d2 failed."""
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    cli("rollout", "report", "r1", "d2", "failed", "--db", db, "--now", at(hours=1))


def test_status_past_a_due_timer_shows_what_a_tick_would_leave_and_stores_nothing(
    db: str, backend: Backend
) -> None:
    distributing(db)
    before = backend.tables()
    seen = status(db, at(days=7, hours=1))  # the notice (day 6) and the checkpoint (day 7)
    assert (seen["projected"], seen["projected_from"]) == (True, at(days=6))
    assert seen["state"] == "extended"  # the checkpoint postponed the import
    text = cli("rollout", "status", "r1", "--db", db, "--now", at(days=7, hours=1)).stdout
    assert "Projected:" in text
    assert "no tick has stored them" in text
    assert backend.tables() == before  # nothing stored, not even the clock
    assert status(db, at(hours=2))["projected"] is False
    # What a tick then stores is what was shown.
    cli("rollout", "tick", "r1", "--db", db, "--now", at(days=7, hours=1))
    after = status(db, at(days=7, hours=1))
    assert after["projected"] is False
    for key in ("state", "counts", "percent_complete", "next_checkpoint", "deadline"):
        assert after[key] == seen[key], key


def test_the_device_page_is_projected_too(db: str, backend: Backend) -> None:
    """Past the deadline the import is forced: the devices that did not trust the root
    show as cut off, as a tick would leave them, though nothing was stored."""
    distributing(db)
    before = backend.tables()
    seen = status(db, at(days=22))
    assert seen["state"] == "forced"
    states = {d["device"]: d["state"] for d in seen["devices"]}
    assert states["d1"] == "installed"
    assert states["d2"] == "reenroll_required"
    cut = status(db, at(days=22), "--state", "reenroll_required")
    assert "d1" not in [d["device"] for d in cut["devices"]]
    assert backend.tables() == before


def test_list_marks_a_projected_rollout(db: str, backend: Backend) -> None:
    distributing(db)
    before = backend.tables()
    [line] = as_json(cli("rollout", "list", "--db", db, "--now", at(days=7, hours=1), "--json"))
    assert (line["state"], line["projected"]) == ("extended", True)
    text = cli("rollout", "list", "--db", db, "--now", at(days=7, hours=1)).stdout
    assert "extended*" in text
    assert "no tick has stored" in text
    [stored] = as_json(cli("rollout", "list", "--db", db, "--now", at(hours=2), "--json"))
    assert (stored["state"], stored["projected"]) == ("distributing", False)
    assert backend.tables() == before


def test_no_read_writes_anything(db: str, backend: Backend) -> None:
    distributing(db)
    before = backend.tables()
    for args, when in READS:
        cli("rollout", *args, "--db", db, "--now", when)
    assert backend.tables() == before


def _read_as_nobody(path: Path) -> str:
    """Every read, in-process, in this (unprivileged) process; the exit codes."""
    runner = CliRunner()
    codes = []
    for args, when in READS:
        done = runner.invoke(main, ["rollout", *args, "--db", str(path), "--now", when])
        codes.append(f"{args[0]}:{done.exit_code}")
        if done.exit_code != 0:
            return f"{args}: {done.output} {done.exception!r}"
    return " ".join(codes)


def test_every_read_works_on_a_read_only_file_in_a_read_only_folder(
    upload: Path, shared_folder: Path
) -> None:
    folder = shared_folder / "ro"
    folder.mkdir()
    path = folder / "certflow.db"
    cli(*new_args(upload, path))
    distributing(str(path))
    path.chmod(0o444)
    folder.chmod(0o555)
    before = folder_bytes(folder)
    outcome = as_unprivileged(lambda: _read_as_nobody(path))
    assert outcome == " ".join(f"{args[0]}:0" for args, _ in READS), outcome
    assert folder_bytes(folder) == before  # no -wal, no -shm, the same bytes


def test_a_read_leaves_an_older_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "certflow.db"
    shutil.copyfile(Path(__file__).parents[1] / "store" / "data" / "certflow-schema-3.db", path)
    before = folder_bytes(tmp_path)
    listed = as_json(cli("rollout", "list", "--db", path, "--json"))
    assert [line["rollout"] for line in listed]
    cli("rollout", "effects", listed[0]["rollout"], "--all", "--db", path)
    assert folder_bytes(tmp_path) == before


def test_a_read_on_the_real_clock_a_little_behind_the_rollout_s_reads_at_its_clock(
    db: str,
) -> None:
    """Another process just wrote the rollout at an instant a moment ahead of this
    process's clock: a read without --now (within the real clock's 5 s) reads at the
    rollout's clock; an explicit earlier --now is refused, as ever."""
    soon = datetime.now(UTC) + timedelta(seconds=2)
    cli("rollout", "enroll", "r1", "d9", "--db", db, "--now", soon.isoformat())
    seen = as_json(cli("rollout", "status", "r1", "--db", db, "--json"))
    assert datetime.fromisoformat(seen["now"]) >= soon
    early = cli("rollout", "status", "r1", "--db", db, "--now", at(), expect=2)
    assert "instants must never go backwards" in early.stderr
    far = datetime.now(UTC) + timedelta(minutes=5)
    cli("rollout", "enroll", "r1", "d10", "--db", db, "--now", far.isoformat())
    behind = cli("rollout", "status", "r1", "--db", db, expect=2)
    assert "instants must never go backwards" in behind.stderr


def test_history_is_read_only_and_complete(db: str) -> None:
    distributing(db)
    entries: list[dict[str, Any]] = history(db)
    assert [e["kind"] for e in entries] == ["create", "command", "command", "command"]


# --- status --summary and status --csv (issue 18) -------------------------------------------


def _one_error_line(result: Result) -> str:
    """The one line a usage error prints on standard error."""
    [line] = result.stderr.splitlines()
    return line


def test_status_summary_is_the_head_without_the_device_page(db: str, backend: Backend) -> None:
    """--summary, and --limit 0 alike: the head of View Details (the projected line too),
    and no device table, no "More:", no "devices" or "next_after" under --json."""
    distributing(db)
    when = at(days=7, hours=1)  # past the notice and the first checkpoint: projected
    before = backend.tables()
    whole = status(db, when)
    for ask in (["--summary"], ["--limit", "0"]):
        head = status(db, when, *ask)
        assert head == {k: v for k, v in whole.items() if k not in ("devices", "next_after")}
        assert (head["state"], head["projected"], head["in_scope"]) == ("extended", True, 6)
        text = cli("rollout", "status", "r1", "--db", db, "--now", when, *ask).stdout
        assert text.startswith("Rollout:          r1: extended")
        assert "Projected:" in text.splitlines()[-1]
        assert "DEVICE" not in text
        assert not re.search(r"^d1 ", text, re.MULTILINE)
        assert "More:" not in text
    full = cli("rollout", "status", "r1", "--db", db, "--now", when, "--limit", "1").stdout
    assert full.startswith(text)  # the same head as the paged view's
    assert backend.tables() == before


SUMMARY_OR_CSV_MISUSED = [
    (["--csv", "--json"], "--csv and --json cannot be combined"),
    (["--csv", "--summary"], "--csv and --summary cannot be combined"),
    (["--csv", "--limit", "20"], "--csv has no page limit: drop --limit"),
    (["--csv", "--limit", "0"], "--csv has no page limit: drop --limit"),
    (["--summary", "--state", "failed"], "--summary shows no devices, so --state would"),
    (["--summary", "--after", "d1"], "--summary shows no devices, so --after would"),
    (["--summary", "--limit", "50"], "--summary shows no devices, so --limit would"),
    (["--limit", "0", "--after", "d1"], "--limit 0 shows no devices, so --after would"),
    (["--summary", "--limit", "0"], "--summary shows no devices, so --limit would"),
    (
        ["--summary", "--state", "failed", "--after", "d1"],
        "--summary shows no devices, so --state and",
    ),
]


def test_summary_and_csv_refuse_the_options_they_contradict(db: str) -> None:
    for extra, words in SUMMARY_OR_CSV_MISUSED:
        refused = cli("rollout", "status", "r1", "--db", db, "--now", at(), *extra, expect=2)
        line = _one_error_line(refused)
        assert line.startswith(f"certflow: error: {words}"), (extra, line)
        assert "rollout status --help" in line
        assert "device,state" not in refused.stdout  # no CSV began


def _csv(db: str, when: str, *extra: str) -> list[dict[str, str]]:
    out = cli("rollout", "status", "r1", "--db", db, "--now", when, "--csv", *extra).stdout
    assert out.splitlines()[0] == "device,state,attempts,last_push,last_report,reason"
    return list(csv.DictReader(io.StringIO(out)))


def _as_cells(device: dict[str, Any]) -> dict[str, str]:
    """A device of ``status --json`` as the CSV spells it (nothing: an empty cell)."""
    return {k: "" if v is None else str(v) for k, v in device.items()}


def test_status_csv_lists_every_device_matching_state_streamed_with_a_header(
    db: str, backend: Backend
) -> None:
    distributing(db)
    cli("rollout", "report", "r1", "d3", "failed", "--reason", 'disk "C:", full\nreally',
        "--db", db, "--now", at(hours=2))  # fmt: skip
    cli("rollout", "unenroll", "r1", "d4", "--db", db, "--now", at(hours=2))
    before = backend.tables()
    for when in (at(hours=3), at(days=22)):  # as stored; projected past the forced import
        paged = status(db, when, "--limit", "100")["devices"]
        rows = _csv(db, when)
        assert rows == [_as_cells(d) for d in paged]
        for state in ("failed", "reenroll_required", "pushed"):
            assert _csv(db, when, "--state", state) == [
                _as_cells(d) for d in paged if d["state"] == state
            ]
        assert [r["device"] for r in _csv(db, when, "--after", "d2")] == [
            "d3", "d4", "d5", "d6",
        ]  # fmt: skip
        assert _csv(db, when, "--state", "pushed", "--state", "failed", "--after", "d3") == [
            _as_cells(d) for d in paged[3:] if d["state"] in ("pushed", "failed")
        ]
    projected = cli("rollout", "status", "r1", "--db", db, "--now", at(days=22), "--csv")
    assert "certflow: note: timers fell due from" in projected.stderr
    assert "nothing was stored" in projected.stderr
    rows = _csv(db, at(days=22))
    assert {r["device"]: r["state"] for r in rows} == {
        "d1": "installed", "d2": "reenroll_required", "d3": "reenroll_required",
        "d4": "removed", "d5": "reenroll_required", "d6": "reenroll_required",
    }  # fmt: skip
    assert rows[2]["reason"] == 'disk "C:", full\nreally'  # quoted, whole
    for row in rows:  # instants: ISO 8601 in UTC
        for column in ("last_push", "last_report"):
            if row[column]:
                instant = datetime.fromisoformat(row[column])
                assert instant.utcoffset() == timedelta(0), row
    assert rows[1]["last_push"] == at()
    assert backend.tables() == before  # read only, projected or not


def test_status_csv_of_no_device_is_its_header_and_errors_come_before_it(db: str) -> None:
    assert _csv(db, at(), "--state", "failed") == []
    unknown = cli("rollout", "status", "r1", "--db", db, "--csv", "--after", "nosuch", expect=2)
    assert unknown.stdout == ""
    assert "'nosuch'" in _one_error_line(unknown)
    missing = cli("rollout", "status", "r9", "--db", db, "--csv", expect=2)
    assert (missing.stdout, "no rollout named 'r9'" in missing.stderr) == ("", True)


FLEET = 30_000


def test_status_csv_has_no_page_limit_and_reads_the_store_a_page_at_a_time(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30,000 devices (three times the largest page): every one arrives, in order, read
    by keyset a page per statement (the store's memory test is in
    tests/store/test_reads_iter.py)."""
    with backend.open() as store:
        store.create("big", build(FLEET))
        store.apply("big", DistributeRoot(), T0)
        store.apply_all("big", [DeviceFailed(f"d{n}", "x") for n in range(0, FLEET, 3)], T0)
        kind = type(store)
    pages: list[Any] = []
    query = kind._q

    def counted(self: Any, sql: str, params: Any = ()) -> Any:
        if "ORDER BY idx LIMIT" in sql:
            pages.append(params[-1])
        return query(self, sql, params)

    monkeypatch.setattr(kind, "_q", counted)
    now = (T0 + HOUR).isoformat()
    out = cli("rollout", "status", "big", "--db", backend.target, "--now", now, "--csv").stdout
    lines = out.splitlines()
    assert len(lines) == FLEET + 1
    assert [line.split(",", 1)[0] for line in lines[1:]] == [f"d{n}" for n in range(FLEET)]
    assert lines[1] == f"d0,failed,1,{T0.isoformat()},{T0.isoformat()},x"
    assert lines[2] == f"d1,pushed,1,{T0.isoformat()},,"
    assert pages == [1_000] * (FLEET // 1_000 + 1)  # the last page finds nothing more
    pages.clear()
    failed = cli(
        "rollout", "status", "big", "--db", backend.target, "--now", now, "--csv",
        "--state", "failed",
    ).stdout.splitlines()  # fmt: skip
    assert len(failed) == len(range(0, FLEET, 3)) + 1
    assert len(pages) == len(range(0, FLEET, 3)) // 1_000 + 1


def test_status_csv_into_a_closed_pipe_ends_quietly_with_the_closed_pipe_code(
    tmp_path: Path,
) -> None:
    """`certflow rollout status NAME --csv | head -1`, in real processes: the reader
    leaves after one line; certflow ends with 141 (docs/scripting.md), never 1 ("refused"),
    and says nothing."""
    path = tmp_path / "certflow.db"
    with SqliteStore(path) as store:
        store.create("big", build(20_000))  # about 0.8 MB of CSV: far past a pipe's buffer
    command = [sys.executable, "-m", "certflow", "rollout", "status", "big", "--csv",
               "--db", str(path), "--now", T0.isoformat()]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stderr is not None
    assert child.stdout.readline() == b"device,state,attempts,last_push,last_report,reason\n"
    child.stdout.close()  # as head does once it has its line
    said = child.stderr.read()
    assert child.wait(timeout=60) == EXIT_PIPE_CLOSED, said
    assert said == b""


def test_list_and_status_count_the_same_devices_and_say_what_they_count(
    db: str,
) -> None:
    """An unenrolled device is no longer in the rollout's scope: list and status both
    count the 5 in scope, and say so; list's "devices" (under --json) counts every
    device the rollout knows, with "counts" per state as status gives them."""
    distributing(db)
    cli("rollout", "unenroll", "r1", "d3", "--db", db, "--now", at(hours=2))
    seen = status(db, at(hours=3))
    [line] = as_json(cli("rollout", "list", "--db", db, "--now", at(hours=3), "--json"))
    assert seen["in_scope"] == line["in_scope"] == 5
    assert line["devices"] == 6
    assert line["counts"] == seen["counts"]
    assert sum(line["counts"].values()) == line["devices"]
    listed = cli("rollout", "list", "--db", db, "--now", at(hours=3)).stdout.splitlines()
    assert re.match(r"ROLLOUT\s+STATE\s+IN SCOPE\s+DONE", listed[0])
    assert re.match(r"r1\s+distributing\s+5\s+20\.0%", listed[1]), listed[1]
    text = cli("rollout", "status", "r1", "--db", db, "--now", at(hours=3)).stdout
    assert (
        "Devices:          5 in scope: pending 0, pushed 3, installed 1, failed 1, "
        "reenroll_required 0; not in scope: removed 1\n"
    ) in text
    assert "(1 of 5 in-scope devices trust the root)" in text


# --- one formatter: instants at one precision, columns by terminal cells (issue 18) -----------


def test_a_status_page_shows_every_instant_at_one_precision(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())  # t0 on the minute
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    odd = (datetime.fromisoformat(at(hours=2)) + timedelta(seconds=1)).isoformat()
    page = cli("rollout", "status", "r1", "--db", db, "--now", odd).stdout
    shown = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)? UTC", page)
    assert len(shown) > 8
    assert all(re.fullmatch(r".* \d\d:\d\d:\d\d UTC", s) for s in shown), shown  # not 12:00
    whole = cli("rollout", "status", "r1", "--db", db, "--now", at(hours=2)).stdout
    assert not re.search(r"\d\d:\d\d:\d\d UTC", whole)  # nothing has seconds: none shown


def test_columns_stay_aligned_for_wide_characters(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    for device in ("端末-7", "📱-8"):
        cli("rollout", "enroll", "r1", device, "--db", db, "--now", at(hours=1))
    page = cli("rollout", "status", "r1", "--db", db, "--now", at(hours=1)).stdout
    table = page[page.index("DEVICE  ") :].splitlines()
    from wcwidth import wcswidth

    states = {
        wcswidth(line[: line.index(state)])
        for line in table
        for state in ("pushed", "STATE")
        if state in line
    }
    assert len(states) == 1, table  # the STATE column starts at one cell for every row
