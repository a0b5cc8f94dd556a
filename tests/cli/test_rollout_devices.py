"""``certflow rollout``'s device commands: a report, an enrolment, a bulk retry or a
restart that changes nothing says "no change", exits 0 and records nothing; a busy
database exits 75 (try again), never 2; and four processes reporting on the real clock
(no ``--now``) at once all succeed. On both backends, named by ``--db``.
"""

from __future__ import annotations

import csv
import errno
import multiprocessing
import os
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import certflow as cf
from certflow.cli import main
from certflow.cli._rollout_devices import _why
from certflow.core.letters import CLI_COMMANDS, CLI_NAMES
from certflow.core.wording import describe_refusal
from certflow.store import Refused
from tests.backends import Backend
from tests.cli.test_rollout import as_json, at, cli, history, new_args, status
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files
from tests.core.strategies import T0, distributing


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


# --- report files: what the rules refuse, and --rejects ----------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A folder of the test's files, apart from the SQLite database's."""
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


def _left(db: str) -> list[dict[str, Any]]:
    """r1 distributing since t0, with d3 and d4 gone (unenrolled: they take no report);
    its history then."""
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    for device in ("d3", "d4"):
        cli("rollout", "unenroll", "r1", device, "--db", db, "--now", at())
    return history(db)


# Line 1 applies; lines 2 and 5 are devices that left, line 3 one the rollout never knew.
DAILY = (
    "device,outcome\nd1,installed\nd3,installed\nghost,failed,x\nd2,failed,disk full\nd4,failed\n"
)


def _file(files: Path, text: str = DAILY) -> Path:
    reports = files / "daily.csv"
    reports.write_text(text)
    return reports


def _report_file(db: str, reports: Path | str, *extra: str | Path, expect: int = 0) -> Result:
    return cli(
        "rollout", "report", "r1", "--file", reports, *extra, "--db", db, "--now", at(hours=1),
        expect=expect,
    )  # fmt: skip


def test_every_line_the_rules_refuse_is_named_and_nothing_is_applied(db: str, files: Path) -> None:
    before = _left(db)
    reports = _file(files)
    error = _report_file(db, reports, expect=1).stderr
    assert error.startswith(f"certflow: refused: {reports}: 3 lines refused, nothing was applied")
    assert "--rejects FILE" in error
    assert f"{reports}: line 3: device 'd3' cannot " in error
    assert f"{reports}: line 4: unknown device 'ghost'" in error
    assert f"{reports}: line 6: device 'd4' cannot " in error
    assert "line 2:" not in error
    assert "line 5:" not in error
    assert history(db) == before


def test_refused_lines_keep_their_device_ids_as_they_are(db: str, files: Path) -> None:
    """The lines are put in words once: an id that holds a command's name is data, on
    every line (not only the first refusal's, which the refusal's data names)."""
    before = _left(db)
    reports = _file(files, "d3,installed\nRetry-2,installed\nCancel,failed\n")
    error = _report_file(db, reports, expect=1).stderr
    assert f"{reports}: line 2: unknown device 'Retry-2': it is not in this rollout" in error
    assert "(send `certflow rollout enroll r1 Retry-2` first if it just enrolled)" in error
    assert f"{reports}: line 3: unknown device 'Cancel': " in error
    assert history(db) == before


def test_refused_lines_are_named_the_first_20_then_counted(db: str, files: Path) -> None:
    before = _left(db)
    ghosts = "".join(f"ghost-{n},installed\n" for n in range(30))
    reports = _file(files, "d1,installed\nd3,installed\n" + ghosts)
    error = _report_file(db, reports, expect=1).stderr  # line 2 is a refusal by the rules
    assert f"{reports}: 31 lines refused, nothing was applied" in error
    named = [n for n in range(1, 40) if f"{reports}: line {n}: " in error]
    assert named == list(range(2, 22))
    assert error.rstrip().endswith("and 11 more")
    assert history(db) == before


def test_many_unknown_devices_make_a_bounded_message(db: str, files: Path) -> None:
    """Unknown ids only: bad input (exit 2, as one report of an unknown device), named
    as any refused line is: 22 lines of message for 5,000 ids, not 5,001."""
    before = _left(db)
    reports = _file(files, "".join(f"ghost-{n},installed\n" for n in range(5_000)))
    error = _report_file(db, reports, expect=2).stderr
    assert f"{reports}: 5,000 lines refused, nothing was applied" in error
    assert f"{reports}: line 20: unknown device 'ghost-19'" in error
    assert "line 21:" not in error
    assert error.rstrip().endswith("and 4,980 more")
    assert len(error.splitlines()) == 22
    assert history(db) == before


def _rejected(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def test_rejects_applies_the_other_lines_and_writes_the_refused_ones(db: str, files: Path) -> None:
    before = _left(db)
    rejects = files / "out" / "rejects.csv"
    rejects.parent.mkdir()
    text = _report_file(db, _file(files), "--rejects", rejects).stdout
    assert text.startswith(
        f"2 of 5 reports applied, 3 refused (listed in {rejects}): rollout r1 is distributing"
    )
    rows = _rejected(rejects)
    assert rows[0] == ["line", "device", "outcome", "reason"]
    assert [row[:3] for row in rows[1:]] == [
        ["3", "d3", "installed"],
        ["4", "ghost", "failed"],
        ["6", "d4", "failed"],
    ]
    assert "it is removed" in rows[1][3]
    assert "unknown device 'ghost'" in rows[2][3]
    # The other lines, in one transaction: one journal entry of exactly them.
    after = history(db)
    assert len(after) == len(before) + 1
    assert [c["device_id"] for c in after[-1]["commands"]] == ["d1", "d2"]
    states = {d["device"]: d["state"] for d in status(db, at(hours=1))["devices"]}
    assert (states["d1"], states["d2"], states["d3"], states["d4"]) == (
        "installed", "failed", "removed", "removed",
    )  # fmt: skip
    assert sorted(p.name for p in rejects.parent.iterdir()) == ["rejects.csv"]  # no temp file


def test_rejects_under_json_says_how_many_of_each(db: str, files: Path) -> None:
    _left(db)
    rejects = files / "rejects.csv"
    done = as_json(_report_file(db, _file(files), "--rejects", rejects, "--json"))
    assert done["done"] == f"2 of 5 reports applied, 3 refused (listed in {rejects})"
    assert (done["changed"], done["state"]) == (True, "distributing")
    assert len(_rejected(rejects)) == 4


def test_rejects_with_every_line_refused_changes_nothing_and_lists_them(
    db: str, files: Path
) -> None:
    before = _left(db)
    rejects = files / "rejects.csv"
    reports = _file(files, "d3,installed\nghost,installed\n")
    text = _report_file(db, reports, "--rejects", rejects).stdout
    assert text.startswith("0 of 2 reports applied, 2 refused")
    assert "no change" in text
    assert len(_rejected(rejects)) == 3
    assert history(db) == before


def test_rejects_with_nothing_refused_replaces_the_file_with_its_header(
    db: str, files: Path
) -> None:
    _left(db)
    rejects = files / "rejects.csv"
    rejects.write_text("yesterday's refusals\n")
    text = _report_file(db, _file(files, "d1,installed\n"), "--rejects", rejects).stdout
    assert text.startswith("1 of 1 report applied, 0 refused")
    assert _rejected(rejects) == [["line", "device", "outcome", "reason"]]


def test_rejects_reads_standard_input_too(db: str, files: Path) -> None:
    _left(db)
    rejects = files / "rejects.csv"
    cli(
        "rollout", "report", "r1", "--file", "-", "--rejects", rejects, "--db", db,
        "--now", at(hours=1), input=DAILY,
    )  # fmt: skip
    assert [row[1] for row in _rejected(rejects)[1:]] == ["d3", "ghost", "d4"]


def _unwritable_folder(files: Path) -> Path:
    """A folder this process may not create a file in (as root, permissions do not bind:
    then /sys, where nobody creates files)."""
    if os.geteuid() != 0:
        folder = files / "locked"
        folder.mkdir(mode=0o500)
        return folder
    folder = Path("/sys")
    with pytest.raises(PermissionError):
        (folder / "certflow-probe").open("x")
    return folder


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("missing/rejects.csv", "the folder {tmp}/missing does not exist"),
        ("a-file/rejects.csv", "{tmp}/a-file is not a folder"),
        ("a-folder", "is a folder; give the name of a file to write"),
        ("daily.csv", "is the report file itself; give another file"),
        ("unwritable", "cannot write in the folder {unwritable} (Permission denied)"),
    ],
)
def test_a_rejects_file_that_cannot_be_written_is_refused_before_anything(
    db: str, files: Path, where: str, problem: str
) -> None:
    before = _left(db)
    reports = _file(files)
    (files / "a-file").write_text("")
    (files / "a-folder").mkdir()
    unwritable = _unwritable_folder(files)
    rejects = unwritable / "rejects.csv" if where == "unwritable" else files / where
    content = {p: p.read_bytes() for p in files.iterdir() if p.is_file()}
    error = _report_file(db, reports, "--rejects", rejects, expect=2).stderr
    expected = problem.format(tmp=files, unwritable=unwritable)
    assert error == f"certflow: error: --rejects {rejects}: {expected}\n"
    assert history(db) == before
    assert {p: p.read_bytes() for p in files.iterdir() if p.is_file()} == content


@pytest.mark.parametrize("spelling", ["{path}", "sqlite:///{path}"])
def test_rejects_is_never_the_sqlite_database(upload: Path, files: Path, spelling: str) -> None:
    database = files / "rollouts.db"
    db = spelling.format(path=database)
    cli(*new_args(upload, db))
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    before = database.read_bytes()
    error = _report_file(db, _file(files), "--rejects", database, expect=2).stderr
    assert (
        error
        == f"certflow: error: --rejects {database}: is the database itself; give another file\n"
    )
    assert database.read_bytes() == before


def test_a_failed_command_leaves_an_older_rejects_file_as_it_was(db: str, files: Path) -> None:
    _left(db)
    rejects = files / "rejects.csv"
    rejects.write_text("yesterday's refusals\n")
    # A malformed line, then an instant before the rollout's clock: each refused whole.
    _report_file(db, _file(files, "d1,maybe\n"), "--rejects", rejects, expect=2)
    cli(
        "rollout", "report", "r1", "--file", _file(files), "--rejects", rejects,
        "--db", db, "--now", at(hours=-1), expect=2,
    )  # fmt: skip
    assert rejects.read_text() == "yesterday's refusals\n"
    assert sorted(p.name for p in files.iterdir()) == ["daily.csv", "rejects.csv"]
    # Then a run that goes through replaces it whole.
    _report_file(db, _file(files), "--rejects", rejects)
    assert len(_rejected(rejects)) == 4
    assert sorted(p.name for p in files.iterdir()) == ["daily.csv", "rejects.csv"]


def test_a_rejects_file_lost_after_the_commit_says_what_was_applied(
    db: str, files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills between the commit and the rename: the error says that the other
    lines were applied, and names the refused ones itself."""
    before = _left(db)
    rejects = files / "rejects.csv"

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    error = _report_file(db, _file(files), "--rejects", rejects, expect=2).stderr
    assert error.startswith(
        f"certflow: error: --rejects {rejects}: could not be written (No space left on device); "
        "the other lines were applied, and these 3 were refused"
    )
    assert "line 4: unknown device 'ghost'" in error
    assert len(history(db)) == len(before) + 1
    assert sorted(p.name for p in files.iterdir()) == ["daily.csv"]


def test_rejects_is_only_for_a_file(db: str) -> None:
    error = cli(
        "rollout", "report", "r1", "d1", "installed", "--rejects", "x.csv", "--db", db, expect=2
    ).stderr
    assert "--rejects is only for --file" in error


@pytest.mark.parametrize(
    "device",
    ["d1", "Retry-lab-3", "Cancel", "it's", 'say "hi"', "DEVICE", "NAME", "r1", "ünï code"],
)
def test_a_refused_line_s_words_are_the_rules_words_for_its_device(device: str) -> None:
    """The words of a refused line (the message, the rejects file: ``_why``) are
    describe_refusal's for the device itself, whatever the id holds (a command's name,
    quotes, the word DEVICE or NAME, the rollout's name)."""
    rollout = distributing([device, "other"])
    gone = cf.apply(rollout, cf.Unenroll(device), T0).rollout
    errors: list[cf.CommandRefused | cf.UnknownDevice] = []
    for start, command in (
        (gone, cf.DeviceInstalled(device)),
        (gone, cf.DeviceFailed(device, "x")),
        (distributing(["other"]), cf.DeviceInstalled(device)),
        # A cancelled rollout: its state refuses, naming the command and the device.
        (cf.apply(gone, cf.Cancel(), T0).rollout, cf.Retry(device)),
    ):
        with pytest.raises((cf.CommandRefused, cf.UnknownDevice)) as refused:
            cf.apply(start, command, T0)
        error = refused.value
        assert isinstance(error, cf.CommandRefused | cf.UnknownDevice)
        errors.append(error)
        found = Refused(0, command, error)
        assert _why(found, "r1") == describe_refusal(
            error, names=CLI_NAMES, hint_names=CLI_COMMANDS, rollout="r1", device_id=device
        )
        assert device in _why(found, "r1")
    assert {type(e) for e in errors} == {cf.CommandRefused, cf.UnknownDevice}
