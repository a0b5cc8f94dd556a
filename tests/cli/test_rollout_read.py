"""``certflow rollout``'s reads never write (``store.md``, "Reads never write"): ``status``,
``list``, ``history``, ``effects`` and ``forecast`` open the database read-only, work on
a read-only file or folder and leave no file behind; read past a due timer, ``status``
and ``list`` show what a tick would leave and say so, storing nothing. On both backends
where the database is named by ``--db``; SQLite's files as a user whose permissions bind.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import certflow.sim  # noqa: F401  (loaded before the unprivileged child, which may not read the interpreter's files)
from certflow.cli import main
from tests.backends import Backend
from tests.cli.test_rollout import as_json, at, cli, history, new_args, status
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files
from tests.store.conftest import as_unprivileged, folder_bytes
from tests.store.conftest import shared_folder as shared_folder  # the fixture

# Every read, and an instant for it: past the first checkpoint (projected) where the read
# takes an instant; the forecast's while the rollout distributes, which it needs.
READS = [
    (["status", "r1"], at(days=7, hours=1)),
    (["status", "r1", "--state", "failed"], at(days=22)),
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
