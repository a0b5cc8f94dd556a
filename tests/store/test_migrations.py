"""Migrations (``store.md``, Faults): a database of an earlier schema version (the first,
and the previous) opens, is migrated forward once, and keeps its data. Every test that
opens a database runs on SQLite and on PostgreSQL (``tests/backends.py``).

A version N database is built by the first N migrations alone (``MIGRATIONS[:N]``,
``POSTGRES_MIGRATIONS[:N]``) and filled with the rows of a current store, less the
columns version N did not have. SQLite: a file of its own beside the source file;
PostgreSQL: the ``certflow`` schema of the test's database, the source being the schema
``current`` of the same database.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import signal
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql

import certflow as cf
from certflow.store import SCHEMA_VERSION, StoreBusy, StoredEffect, StoreError
from certflow.store._schema import MIGRATIONS, POSTGRES_MIGRATIONS
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.core.strategies import HOUR, T0, build, day
from tests.store.conftest import folder_bytes

NAMES = ("alpha", "beta")
TABLES = ("rollouts", "devices", "journal", "outbox")


def history(backend: Backend) -> None:
    """Two rollouts with journals, pending and acknowledged effects, as a version 1
    store could have written them (no delivery failures, no leases: version 1 had no
    columns for them)."""
    with backend.open() as store:
        for n, name in enumerate(NAMES):
            store.create(name, build(20 + n, policy=cf.Policy(ack_timeout=6 * HOUR)))
            store.apply(name, cf.DistributeRoot(), T0)
            store.apply_all(
                name, [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "no space")], T0 + HOUR
            )
            store.apply(name, cf.Retry("d1"), T0 + 2 * HOUR)
            store.tick(day(6))
        first = store.effects("alpha")[0]
        store.acknowledge([first.id], day(6))


def beside(backend: Backend, name: str, folder: Path) -> Backend:
    """Another database of ``backend``'s kind: SQLite, the file ``folder/certflow.db``;
    PostgreSQL, the schema ``name`` of the same database."""
    if isinstance(backend, PostgresBackend):
        return PostgresBackend(backend.server, backend.url, schema=name)
    assert isinstance(backend, SqliteBackend)
    folder.mkdir(exist_ok=True)
    return SqliteBackend(folder / "certflow.db")


def version_1(target: Backend, source: Backend, at: int = 1) -> None:
    """``target`` made by the schema of version ``at`` alone (the first ``at``
    migrations), holding the rows of ``source`` as that version wrote them: the outbox
    without its later columns."""
    if isinstance(target, SqliteBackend):
        assert isinstance(source, SqliteBackend)
        db = sqlite3.connect(target.path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        for step in MIGRATIONS[:at]:
            db.executescript(step)
        db.execute("UPDATE certflow_schema SET version = ?", (at,))
        db.execute("ATTACH DATABASE ? AS source", (str(source.path),))
        for table in TABLES:
            columns = ", ".join(row[1] for row in db.execute(f"PRAGMA main.table_info({table})"))
            db.execute(f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM source.{table}")
        db.execute("DETACH DATABASE source")
        db.close()
        return
    assert isinstance(target, PostgresBackend)
    assert isinstance(source, PostgresBackend)
    mine, theirs = sql.Identifier(target.schema), sql.Identifier(source.schema)
    with psycopg.connect(target.url, autocommit=True) as pg:
        pg.execute(sql.SQL("CREATE SCHEMA {}").format(mine))
        pg.execute(sql.SQL("SET search_path TO {}").format(mine))
        for step in POSTGRES_MIGRATIONS[:at]:
            pg.execute(step.encode())
        pg.execute("UPDATE certflow_schema SET version = %s", (at,))
        for table in TABLES:
            listed = sql.SQL(", ").join(
                sql.Identifier(name)
                for (name,) in pg.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (target.schema, table),
                )
            )
            # The rollouts' ids are an identity column: keep the source's, and move the
            # sequence past them, as if version 1 had numbered them itself.
            pg.execute(
                sql.SQL(
                    "INSERT INTO {mine}.{table} ({listed}) OVERRIDING SYSTEM VALUE "
                    "SELECT {listed} FROM {theirs}.{table}"
                ).format(mine=mine, theirs=theirs, table=sql.Identifier(table), listed=listed)
            )
        pg.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT MAX(id) FROM rollouts))",
            (f"{target.schema}.rollouts",),
        )


def structure(backend: Backend) -> list[tuple[Any, ...]]:
    """The schema's tables, columns, indexes and constraints, as the database describes
    them (not the data)."""
    if isinstance(backend, SqliteBackend):
        return backend.query("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
    assert isinstance(backend, PostgresBackend)
    schema = backend.schema
    columns = backend.query(
        "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
        "column_default, is_identity FROM information_schema.columns WHERE table_schema = ? "
        "ORDER BY table_name, ordinal_position",
        schema,
    )
    # Index definitions name their schema: leave it out, to compare two schemas.
    indexes = [
        (name, definition.replace(f" {schema}.", " "))
        for name, definition in backend.query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = ? ORDER BY indexname",
            schema,
        )
    ]
    constraints = backend.query(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ? ORDER BY c.relname, k.conname",
        schema,
    )
    return [*columns, *indexes, *constraints]


def columns_of(backend: Backend, table: str) -> list[str]:
    if isinstance(backend, SqliteBackend):
        return [row[1] for row in backend.query(f"PRAGMA table_info({table})")]
    assert isinstance(backend, PostgresBackend)
    return [
        name
        for (name,) in backend.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            backend.schema,
            table,
        )
    ]


def version(backend: Backend) -> int:
    [(found,)] = backend.query("SELECT version FROM certflow_schema")
    return int(found)


def snapshot(backend: Backend) -> object:
    """Everything an open could change: the schema and the rows, and for SQLite the
    files' bytes."""
    state = (structure(backend), backend.tables())
    if isinstance(backend, SqliteBackend):
        return (state, folder_bytes(backend.path.parent))
    return state


@pytest.fixture
def source(backend: Backend, tmp_path: Path) -> Backend:
    current = beside(backend, "current", tmp_path / "current")
    history(current)
    return current


@pytest.fixture
def old(backend: Backend, source: Backend) -> Backend:
    """The test's database (``backend``) at version 1, holding ``source``'s rows."""
    version_1(backend, source)
    return backend


def test_the_previous_version_is_what_the_test_builds(old: Backend) -> None:
    assert SCHEMA_VERSION == 7
    assert version(old) == 1
    columns = columns_of(old, "outbox")
    assert columns == ["rollout", "seq", "position", "kind", "body", "due_at", "acked_at"]
    assert len(old.query("SELECT * FROM journal")) == 2 * 5


def test_a_version_1_database_is_migrated_with_its_data_intact(
    old: Backend, source: Backend
) -> None:
    with source.open(create=False) as current:
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
    with old.open(create=False) as store:
        assert version(old) == SCHEMA_VERSION
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
        assert [s.id for s in leased] == [s.id for s in sorted(pending, key=due_order)]
        assert store.lease(now=day(6)) == []
        store.apply("alpha", cf.DeviceInstalled("d1"), day(6))
        store.create("gamma", build(2))
    for name in (*NAMES, "gamma"):
        old.check_consistent(name)


def index_names(backend: Backend) -> set[str]:
    if isinstance(backend, SqliteBackend):
        return {n for (n,) in backend.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert isinstance(backend, PostgresBackend)
    return {
        n
        for (n,) in backend.query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = ?", backend.schema
        )
    }


def due_order(stored: StoredEffect) -> tuple[object, ...]:
    """A lease's order: the due instant, then the rollout (alpha was created first),
    the journal entry and the position."""
    _, seq, position = stored.id.split(":")
    return (stored.due_at, NAMES.index(stored.rollout), int(seq), int(position))


def test_a_database_of_version_4_gets_the_next_due_indexes(
    backend: Backend, source: Backend
) -> None:
    """Version 4 (the whole delivery record) to 5: the indexes of the next due instant
    (``next_due`` from two index reads) are built on open over the rows already there,
    and the answer is the one the source store gives."""
    version_1(backend, source, at=4)
    due_indexes = {"rollouts_by_phase_due", "devices_by_deadline"}
    assert not due_indexes & index_names(backend)
    with source.open(create=False) as current:
        expected = current.next_due()
    assert expected is not None
    with backend.open(create=False) as store:
        assert version(backend) == SCHEMA_VERSION
        assert due_indexes <= index_names(backend)
        assert store.next_due() == expected
        assert store.tick(expected).changed
    for name in NAMES:
        backend.check_consistent(name)


def test_a_database_of_the_previous_version_gets_the_outbox_due_index(
    backend: Backend, source: Backend
) -> None:
    """Version 5 to 6: ``outbox_by_due`` (the deliverable effects by due instant, across
    rollouts) is built on open over the outbox already there, without the acknowledged
    effect; the lease reads through it and takes the pending effects in due order."""
    version_1(backend, source, at=5)
    assert "outbox_by_due" not in index_names(backend)
    with source.open(create=False) as current:
        pending = current.effects()
    with backend.open(create=False) as store:
        assert version(backend) == SCHEMA_VERSION
        assert "outbox_by_due" in index_names(backend)
        leased = store.lease(now=day(6))
        assert [s.id for s in leased] == [s.id for s in sorted(pending, key=due_order)]
    for name in NAMES:
        backend.check_consistent(name)


def test_a_version_6_database_gets_summary_tables_and_pages_read_it_whole(
    backend: Backend, source: Backend
) -> None:
    """Version 6 to 7: the summary tables are made empty; the entries and effects written
    before are summarized from their bodies (no device counts), those written after from
    their summaries, and the pages say the same of both."""
    with source.open(create=False) as current:
        expected = {name: current.journal_page(name) for name in NAMES}
        effects = {name: current.effect_summaries(name) for name in NAMES}
    version_1(backend, source, at=6)
    assert "journal_summaries" not in structure_names(backend)
    with backend.open(create=False) as store:
        assert version(backend) == SCHEMA_VERSION
        for name in NAMES:
            old = store.journal_page(name)
            assert [attrs.evolve(e, counts=None) for e in expected[name]] == old
            assert {e.counts for e in old} == {None}
            assert store.effect_summaries(name) == effects[name]
        store.apply("alpha", cf.DeviceInstalled("d2"), day(6.5))
        newest = store.journal_page("alpha", limit=1)[0]
        assert newest.counts is not None
        assert newest.counts[cf.DeviceState.INSTALLED] == 2
    assert backend.query("SELECT count(*) FROM journal_summaries") == [(1,)]


def structure_names(backend: Backend) -> set[str]:
    """The tables of ``backend``'s database."""
    if isinstance(backend, SqliteBackend):
        return {n for (n,) in backend.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert isinstance(backend, PostgresBackend)
    return {
        n
        for (n,) in backend.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = ?", backend.schema
        )
    }


@pytest.fixture
def previous(backend: Backend, tmp_path: Path) -> tuple[Backend, Backend]:
    """A database of version 3 (failures and leases, no dead letters, no superseding),
    holding the rows of a current store that recorded a failed delivery and a lease; and
    that store."""
    current = beside(backend, "current", tmp_path / "current")
    history(current)
    with current.open(create=False) as store:
        pending = store.effects()
        store.lease("alpha", now=day(6), limit=1)
        store.record_failure(pending[0].id, "mail server down", now=day(6))
    version_1(backend, current, at=3)
    return backend, current


def test_a_version_3_database_opens_and_upgrades(
    previous: tuple[Backend, Backend],
) -> None:
    """Its effects keep their failures, errors and leases; the new columns start empty
    (no attempt counted yet, none dead or superseded), and work."""
    old, source = previous
    assert version(old) == 3
    assert "dead_at" not in columns_of(old, "outbox")
    with source.open(create=False) as current:
        expected = {name: current.dumps(name) for name in NAMES}
        recorded = [
            (e.id, e.effect, e.acked_at, e.failures, e.last_error)
            for e in current.effects(include_acknowledged=True)
        ]
    with old.open(create=False, max_attempts=2) as store:
        assert version(old) == SCHEMA_VERSION
        assert {name: store.dumps(name) for name in NAMES} == expected
        outbox = store.effects(include_acknowledged=True)
        assert [(e.id, e.effect, e.acked_at, e.failures, e.last_error) for e in outbox] == (
            recorded
        )
        assert {(e.attempts, e.dead_at, e.superseded_at) for e in outbox} == {(0, None, None)}
        failed = next(e for e in outbox if e.failures)
        assert (failed.status, failed.last_error) == ("pending", "mail server down")
        # The back-off is new: an effect that failed under version 3 is retried at once,
        # and a second failure makes it dead (max_attempts=2).
        assert failed.id in [e.id for e in store.lease("alpha", now=day(6))]
        assert store.record_failure(failed.id, "still down", now=day(6)).status == "dead"
        assert [e.id for e in store.effects("alpha", dead=True)] == [failed.id]
        assert store.revive([failed.id]) == 1
        store.apply("alpha", cf.Cancel(), day(7))
        assert "superseded" in {e.status for e in store.effects("alpha", include_acknowledged=True)}
    for name in NAMES:
        old.check_consistent(name)


def test_a_migrated_database_has_the_schema_of_a_new_one(
    old: Backend, backend: Backend, tmp_path: Path
) -> None:
    old.open(create=False).close()
    new = beside(backend, "new", tmp_path / "new")
    new.open().close()
    assert structure(old) == structure(new)
    assert structure(new)  # the comparison saw the tables
    new.close()


def test_opening_twice_is_idempotent(old: Backend) -> None:
    old.open(create=False).close()
    after_first = snapshot(old)
    old.open(create=False).close()
    assert snapshot(old) == after_first
    assert version(old) == SCHEMA_VERSION


def _open_and_read(backend: Backend, barrier: Any, errors: Path) -> None:
    try:
        barrier.wait(30)
        with backend.open(create=False) as store:
            store.dumps("alpha")
    except BaseException:
        errors.write_text(traceback.format_exc())
        os._exit(1)


def test_processes_opening_an_old_database_at_once_migrate_it_once(
    old: Backend, tmp_path: Path
) -> None:
    """Each process waits for the one migrating (SQLite: the write lock; PostgreSQL:
    an advisory lock), then finds the version already current."""
    old.close()  # nothing of psycopg's may cross the fork
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
    assert version(old) == SCHEMA_VERSION
    # Migrated once: a second run of a step would have failed on its ALTER TABLE.
    assert columns_of(old, "outbox")[-8:] == [
        "failures",
        "last_error",
        "leased_until",
        "attempts",
        "last_attempt_at",
        "next_attempt_at",
        "dead_at",
        "superseded_at",
    ]
    old.check_consistent("alpha")


def test_a_migration_that_fails_leaves_the_database_at_its_version(old: Backend) -> None:
    """A version 1 database whose outbox already has a ``failures`` column (a hand
    edit): the migration's ``ALTER TABLE`` fails, and its transaction leaves nothing."""
    old.query("ALTER TABLE outbox ADD COLUMN failures INTEGER")
    before = snapshot(old)
    # SQLite: "duplicate column name"; PostgreSQL: "column ... already exists".
    with pytest.raises(StoreError, match=r"duplicate column|already exists") as caught:
        old.open(create=False)
    assert old.target in str(caught.value)
    assert not isinstance(caught.value, StoreBusy)  # retrying would not help
    assert snapshot(old) == before
    assert version(old) == 1


def test_an_old_database_locked_by_another_writer_is_left_at_its_version(old: Backend) -> None:
    """SQLite: the other writer holds the write lock; PostgreSQL: its table locks keep
    the migration's ALTER TABLE waiting, until the busy timeout."""
    before = snapshot(old)
    with old.write_lock_held(), pytest.raises(StoreBusy) as caught:
        old.open(create=False, busy_timeout=0.2)
    assert old.target in str(caught.value)
    assert snapshot(old) == before
    assert version(old) == 1
    old.open(create=False).close()  # and it migrates once the lock is gone
    assert version(old) == SCHEMA_VERSION


def _wait_for_the_killed_session(backend: Backend) -> None:
    """PostgreSQL ends a killed client's session (rolling back what it had not
    committed) when it notices the closed connection: wait until it has, so that what
    the test reads next is the outcome, not a transaction still under way."""
    if not isinstance(backend, PostgresBackend):
        return  # SQLite: the process is the session, and it is gone
    deadline = time.monotonic() + 30
    while backend.query(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'certflow'"
    ) != [(0,)]:
        assert time.monotonic() < deadline, "the killed client's session did not end"
        time.sleep(0.005)


def test_a_migration_killed_at_a_random_moment_leaves_either_version(
    backend: Backend, old: Backend, source: Backend, tmp_path: Path
) -> None:
    """40 processes killed with SIGKILL at a random moment while they open (and
    migrate) a copy of a version 1 database: each copy is afterwards wholly version 1
    or wholly the current version, passes its checks, and opens. (PostgreSQL migrates
    in one transaction, under an advisory lock.)"""
    rng = random.Random(8)
    v1_structure = structure(old)
    new = beside(backend, "new", tmp_path / "new")
    new.open().close()
    new_structure = structure(new)
    new.close()
    outcomes: list[int] = []
    for n in range(40):
        copy = beside(backend, f"copy_{n}", tmp_path / f"copy-{n}")
        if isinstance(copy, SqliteBackend):
            assert isinstance(old, SqliteBackend)
            copy.path.write_bytes(old.path.read_bytes())
        else:
            version_1(copy, source)
        # Nothing of psycopg's may cross the fork.
        for each in (backend, source, copy):
            each.close()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: never returns into pytest
            try:
                os.write(write, b"r")  # about to open
                copy.open(create=False)
                time.sleep(60)
            finally:
                os._exit(1)
        os.close(write)
        os.read(read, 1)
        os.close(read)
        time.sleep(rng.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _wait_for_the_killed_session(copy)
        found = version(copy)
        outcomes.append(found)
        assert structure(copy) == (v1_structure if found == 1 else new_structure)
        for name in NAMES:
            copy.check_consistent(name)  # which opens it: migrates a version 1 copy
        copy.close()
    assert set(outcomes) <= {1, SCHEMA_VERSION}


def test_the_backends_number_their_schema_versions_alike() -> None:
    """One version number in ``certflow_schema`` means the same tables on both."""
    assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION
    for sqlite_step, postgres_step in zip(MIGRATIONS, POSTGRES_MIGRATIONS, strict=True):
        made = re.findall(r"(?:CREATE TABLE|ADD COLUMN|INDEX) (\w+)", sqlite_step)
        assert made == re.findall(r"(?:CREATE TABLE|ADD COLUMN|INDEX) (\w+)", postgres_step)
