"""Migrations (``store.md``, Faults): a database of the previous schema version opens,
is migrated forward once, and keeps its data."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

import certflow as cf
from certflow.store import SCHEMA_VERSION, SqliteStore, StoreBusy, StoreError
from certflow.store._schema import MIGRATIONS
from tests.core.strategies import HOUR, T0, build, day
from tests.store.conftest import check_consistent, folder_bytes, query

NAMES = ("alpha", "beta")


def history(path: Path) -> None:
    """Two rollouts with journals, pending and acknowledged effects, as a version 1
    store could have written them (no delivery failures: version 1 had no column)."""
    with SqliteStore(path) as store:
        for n, name in enumerate(NAMES):
            store.create(name, build(20 + n, policy=cf.Policy(ack_timeout=6 * HOUR)))
            store.execute(name, cf.DistributeRoot(), T0)
            store.execute_many(
                name, [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "no space")], T0 + HOUR
            )
            store.execute(name, cf.Retry("d1"), T0 + 2 * HOUR)
            store.tick(day(6))
        first = store.effects("alpha")[0]
        store.acknowledge([first.id], day(6))


def version_1(path: Path, source: Path) -> None:
    """A database made by the version 1 schema alone (``MIGRATIONS[0]``), holding the
    rows of ``source`` as version 1 wrote them: the outbox without its later
    columns."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(MIGRATIONS[0])
    db.execute("UPDATE certflow_schema SET version = 1")
    db.execute("ATTACH DATABASE ? AS source", (str(source),))
    for table in ("rollouts", "devices", "journal", "outbox"):
        columns = ", ".join(row[1] for row in db.execute(f"PRAGMA main.table_info({table})"))
        db.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM source.{table}")
    db.execute("DETACH DATABASE source")
    db.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "current" / "certflow.db"
    path.parent.mkdir()
    history(path)
    return path


@pytest.fixture
def old(tmp_path: Path, source: Path) -> Path:
    path = tmp_path / "old" / "certflow.db"
    path.parent.mkdir()
    version_1(path, source)
    return path


def schema(path: Path) -> list[tuple[Any, ...]]:
    return query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


def test_the_previous_version_is_what_the_test_builds(old: Path) -> None:
    assert SCHEMA_VERSION == 3
    assert query(old, "SELECT version FROM certflow_schema") == [(1,)]
    columns = [row[1] for row in query(old, "PRAGMA table_info(outbox)")]
    assert "failures" not in columns
    assert "last_error" not in columns
    assert "leased_until" not in columns


def test_a_version_1_database_is_migrated_with_its_data_intact(old: Path, source: Path) -> None:
    with SqliteStore(source, create=False) as current:
        expected = {
            name: (
                current.dumps(name),
                [
                    (e.seq, e.at, e.kind, e.commands, e.state, e.effects, e.body)
                    for e in current.journal(name)
                ],
            )
            for name in NAMES
        }
        outbox = current.effects(include_acknowledged=True)
        pending = current.effects()
    with SqliteStore(old, create=False) as store:
        assert query(old, "SELECT version FROM certflow_schema") == [(SCHEMA_VERSION,)]
        for name in NAMES:
            journal = [
                (e.seq, e.at, e.kind, e.commands, e.state, e.effects, e.body)
                for e in store.journal(name)
            ]
            assert (store.dumps(name), journal) == expected[name]
            assert cf.dumps(store.replay(name)) == expected[name][0]
        assert store.effects(include_acknowledged=True) == outbox
        assert store.effects() == pending
        assert pending  # still listed, still deliverable
        assert all(s.failures == 0 and s.last_error is None for s in outbox)
        # The new columns work, and so does the rest.
        store.record_failure(pending[0].id, "connection refused")
        [again] = [s for s in store.effects() if s.id == pending[0].id]
        assert (again.failures, again.last_error) == (1, "connection refused")
        leased = store.lease(now=day(6))
        assert [s.id for s in leased] == [s.id for s in pending]
        assert store.lease(now=day(6)) == []
        store.execute("alpha", cf.DeviceInstalled("d1"), day(6))
    for name in NAMES:
        check_consistent(old, name)


def test_a_migrated_database_has_the_schema_of_a_new_one(old: Path, tmp_path: Path) -> None:
    SqliteStore(old, create=False).close()
    new = tmp_path / "new.db"
    SqliteStore(new).close()
    assert schema(old) == schema(new)


def test_opening_twice_is_idempotent(old: Path) -> None:
    SqliteStore(old, create=False).close()
    after_first = folder_bytes(old.parent)
    SqliteStore(old, create=False).close()
    assert folder_bytes(old.parent) == after_first
    assert query(old, "SELECT version FROM certflow_schema") == [(SCHEMA_VERSION,)]


def _open_and_read(path: Path, barrier: Any, errors: Path) -> None:
    try:
        barrier.wait(30)
        with SqliteStore(path, create=False) as store:
            store.dumps("alpha")
    except BaseException:
        errors.write_text(traceback.format_exc())
        os._exit(1)


def test_processes_opening_an_old_database_at_once_migrate_it_once(
    old: Path, tmp_path: Path
) -> None:
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(4)
    errors = [tmp_path / f"error-{n}.txt" for n in range(4)]
    processes = [
        fork.Process(target=_open_and_read, args=(old, barrier, errors[n])) for n in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    found = [e.read_text() for e in errors if e.exists()]
    assert not found, found[0]
    assert [p.exitcode for p in processes] == [0] * 4
    assert query(old, "SELECT version FROM certflow_schema") == [(SCHEMA_VERSION,)]
    check_consistent(old, "alpha")


def test_a_migration_that_fails_leaves_the_database_at_its_version(old: Path) -> None:
    """A version 1 file whose outbox already has a ``failures`` column (a hand edit):
    the migration's ``ALTER TABLE`` fails, and its transaction leaves nothing."""
    db = sqlite3.connect(old)
    db.execute("ALTER TABLE outbox ADD COLUMN failures INTEGER")
    db.commit()
    db.close()
    before = (schema(old), folder_bytes(old.parent))
    with pytest.raises(StoreError, match="duplicate column") as caught:
        SqliteStore(old, create=False)
    assert str(old) in str(caught.value)
    assert (schema(old), folder_bytes(old.parent)) == before
    assert query(old, "SELECT version FROM certflow_schema") == [(1,)]


def test_an_old_database_locked_by_another_writer_is_left_at_its_version(old: Path) -> None:
    before = folder_bytes(old.parent)
    holder = sqlite3.connect(old, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy) as caught:
            SqliteStore(old, create=False, busy_timeout=0.2)
        assert str(old) in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert folder_bytes(old.parent) == before
    assert query(old, "SELECT version FROM certflow_schema") == [(1,)]
    SqliteStore(old, create=False).close()  # and it migrates once the lock is gone
    assert query(old, "SELECT version FROM certflow_schema") == [(SCHEMA_VERSION,)]


def test_a_migration_killed_at_a_random_moment_leaves_either_version(
    old: Path, tmp_path: Path
) -> None:
    """60 processes killed with SIGKILL at a random moment while they open (and
    migrate) a copy of a version 1 database: each copy is afterwards wholly version 1
    or wholly the current version, passes its checks, and opens."""
    rng = random.Random(8)
    v1_schema = schema(old)
    new = tmp_path / "new.db"
    SqliteStore(new).close()
    outcomes: list[int] = []
    for n in range(60):
        copy = tmp_path / f"copy-{n}" / "certflow.db"
        copy.parent.mkdir()
        copy.write_bytes(old.read_bytes())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into pytest
            try:
                os.write(write, b"r")  # about to open
                SqliteStore(copy, create=False)
                time.sleep(60)
            finally:
                os._exit(1)
        os.close(write)
        os.read(read, 1)
        os.close(read)
        time.sleep(rng.uniform(0.005, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        [(version,)] = query(copy, "SELECT version FROM certflow_schema")
        outcomes.append(version)
        assert schema(copy) == (v1_schema if version == 1 else schema(new))
        for name in NAMES:
            check_consistent(copy, name)
    assert set(outcomes) <= {1, SCHEMA_VERSION}
