"""``certflow rollout``'s device commands: a report, an enrolment, a bulk retry or a
restart that changes nothing says "no change", exits 0 and records nothing; a busy
database exits 75 (try again), never 2; and four processes reporting on the real clock
(no ``--now``) at once all succeed. On both backends, named by ``--db``.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import certflow as cf
from certflow.cli import main
from tests.backends import Backend
from tests.cli.test_rollout import as_json, at, cli, history
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files


@pytest.mark.parametrize(
    ("first", "again"),
    [
        (["report", "r1", "d1", "installed"], ["report", "r1", "d1", "installed"]),
        (["enroll", "r1", "d7"], ["enroll", "r1", "d7"]),
        (["retry", "r1", "--all-failed"], ["retry", "r1", "--all-failed"]),
        (["report", "r1", "d1", "installed"], ["restarted", "r1"]),
    ],
    ids=["a duplicate report", "enrolling an enrolled device", "a bulk retry", "restarted"],
)
def test_a_command_that_changes_nothing_says_so_and_records_nothing(
    db: str, first: list[str], again: list[str]
) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "report", "r1", "d2", "failed", "--db", db, "--now", at(hours=1))
    cli("rollout", *first, "--db", db, "--now", at(hours=2))
    before = history(db)
    text = cli("rollout", *again, "--db", db, "--now", at(hours=3)).stdout
    assert text.endswith(": no change (rollout r1 is distributing); nothing was recorded\n"), text
    done = as_json(cli("rollout", *again, "--db", db, "--now", at(hours=3), "--json"))
    assert (done["changed"], done["effects"], done["state"]) == (False, [], "distributing")
    assert history(db) == before


def test_a_change_says_changed(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    done = as_json(
        cli(
            "rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1), "--json"
        )
    )
    assert (done["changed"], done["effects"]) == (True, [])


def test_a_report_file_of_duplicates_changes_nothing(db: str, tmp_path: Path) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    reports = tmp_path / "reports.csv"
    reports.write_text("d1,installed\n")
    before = history(db)
    text = cli(
        "rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=2)
    ).stdout
    assert text.startswith("1 report: no change")
    assert history(db) == before


def test_a_busy_database_exits_75_and_says_to_try_again(db: str, backend: Backend) -> None:
    """Another writer holds the database past the busy timeout (5 s): the report is not
    applied, and the exit code tells a script to retry (not 2: bad input)."""
    before = history(db)
    with backend.write_lock_held():
        done = cli(
            "rollout",
            "report",
            "r1",
            "d1",
            "installed",
            "--db",
            db,
            "--now",
            at(hours=1),
            expect=75,
        )
    assert done.stderr.startswith("certflow: error: ")
    assert "try again" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert history(db) == before
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))


# --- the real clock ---------------------------------------------------------------------------

WORKERS = 4
REPORTS = 50


def _reporter(target: str, worker: int, barrier: Any, errors: Path) -> None:
    """``certflow rollout report`` 50 times on the real clock (no --now), in this
    process; any exit but 0 is written to ``errors``."""
    try:
        barrier.wait(60)
        runner = CliRunner()
        for n in range(REPORTS):
            device = f"d{worker * REPORTS + n}"
            outcome = "failed" if n % 5 == 0 else "installed"
            done = runner.invoke(main, ["rollout", "report", "r1", device, outcome, "--db", target])
            if done.exit_code != 0:
                errors.write_text(f"{device}: exit {done.exit_code}: {done.output}")
                os._exit(1)
    except BaseException:
        errors.write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)


def test_four_processes_reporting_on_the_real_clock_all_succeed(
    backend: Backend, tmp_path: Path
) -> None:
    """4 processes x 50 reports without --now: each reads the clock, then waits its turn,
    so one may find the rollout's clock a few milliseconds ahead; within the real clock's
    skew (5 s) it is applied at the rollout's clock. None fails; each is journaled once."""
    now = datetime.now(UTC)
    ids = [f"d{n}" for n in range(WORKERS * REPORTS)]
    rollout = cf.new_rollout(
        ids,
        existing_not_after=now + timedelta(days=60),
        new_not_before=now - timedelta(days=1),
        new_not_after=now + timedelta(days=300),
        root_publicly_trusted=False,
        created_at=now,
    )
    with backend.open() as store:
        store.create("r1", rollout)
        store.apply("r1", cf.DistributeRoot(), now)
    backend.close()  # nothing of psycopg's may cross the fork
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(WORKERS)
    errors = [tmp_path / f"errors-{n}.txt" for n in range(WORKERS)]
    processes = [
        fork.Process(target=_reporter, args=(backend.target, n, barrier, errors[n]))
        for n in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
    found = [e.read_text() for e in errors if e.exists()]
    assert not found, found[0]
    assert [p.exitcode for p in processes] == [0] * WORKERS
    with backend.open(create=False) as store:
        journal = list(store.journal("r1"))
        reports = [
            c
            for e in journal
            for c in e.commands
            if isinstance(c, cf.DeviceInstalled | cf.DeviceFailed)
        ]
        assert sorted(c.device_id for c in reports) == sorted(ids)
        instants = [e.at for e in journal]
        assert instants == sorted(instants)  # the rollout's clock never went back
        counts = store.info("r1").counts
        assert counts[cf.DeviceState.PUSHED] == 0
        assert counts[cf.DeviceState.FAILED] == WORKERS * REPORTS // 5
    backend.check_consistent("r1")
