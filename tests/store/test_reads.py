"""Reads never write (``store.md``, Faults): every read runs in a read transaction that
is rolled back, on both backends, and changes no row, even at an instant past a due
timer; a store opened ``read_only`` reads everything and refuses every command; and
SQLite's read-only open works on a read-only file, a read-only folder and an immutable
file, leaving no file behind (as a user whose permissions bind: the tests drop root).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import certflow as cf
from certflow.store import (
    SCHEMA_VERSION,
    PostgresStore,
    SqliteStore,
    StoreBusy,
    StoreError,
    open_store,
)
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.core.strategies import HOUR, T0, build, day
from tests.store.conftest import as_unprivileged, folder_bytes
from tests.store.conftest import shared_folder as shared_folder  # the fixture
from tools.pgserver import LocalPostgres

AnyStore = SqliteStore | PostgresStore
DATA = Path(__file__).parent / "data"


def fill(store: AnyStore) -> None:
    """Rollout ``r``: distributing since T0 (a 6-hour acknowledgement wait), d0
    installed, d1 failed; nothing ticked since, so on day 6.5 the timeouts (T0 + 6 h)
    and the notice (day 6) are due."""
    store.create("r", build(5, policy=cf.Policy(ack_timeout=6 * HOUR)))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "full")], T0 + HOUR)


def every_read(store: AnyStore, at: Any) -> list[object]:
    """Every read of the store's API, at ``at`` where a read takes an instant."""
    return [
        store.view("r", at),
        store.overview("r", at),
        store.devices("r", now=at),
        store.devices("r", [cf.DeviceState.FAILED], limit=2, now=at),
        store.devices("r"),
        list(store.iter_devices("r", now=at, page=2)),
        list(store.iter_devices("r", [cf.DeviceState.FAILED], after="d0", now=at)),
        store.device("r", "d1"),
        store.info("r"),
        store.info("r", at),
        store.rollouts(),
        store.rollouts(at),
        store.plan("r"),
        store.refusal("r", cf.ExtendManually(), at),
        store.next_due(),
        store.next_due("r"),
        store.effects("r"),
        store.effects(include_acknowledged=True),
        store.effects("r", dead=True),
        list(store.journal("r")),
        store.journal_page("r", limit=2),
        store.effect_summaries("r"),
        store.dumps("r"),
        store.replay("r"),
        store.activity("r"),
    ]


@pytest.fixture
def filled(backend: Backend) -> Backend:
    with backend.open() as store:
        fill(store)
    return backend


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_no_read_changes_anything_even_past_a_due_timer(filled: Backend, read_only: bool) -> None:
    before = filled.tables()
    with filled.open(create=False, read_only=read_only) as store:
        for at in (T0 + HOUR, day(6.5), day(30)):
            every_read(store, at)
    assert filled.tables() == before


def test_no_read_commits_or_sends_a_write(filled: Backend) -> None:
    """Every read ends its transaction without a COMMIT, and sends no statement that
    writes (SQLite's trace of what it ran; on both backends, the store's commit hook)."""
    with filled.open(create=False) as store:

        def committed(write: bool) -> None:
            raise AssertionError("a read committed")

        store._commit = committed  # type: ignore[method-assign]
        traced: list[str] = []
        if isinstance(store, SqliteStore):
            store._db.set_trace_callback(traced.append)
        every_read(store, day(6.5))
    written = [
        t for t in traced if t.split()[0].upper() in ("INSERT", "UPDATE", "DELETE", "COMMIT")
    ]
    assert written == []
    assert ("ROLLBACK" in traced) == isinstance(store, SqliteStore)


def test_a_read_only_store_reads_what_a_writable_one_reads(filled: Backend) -> None:
    with filled.open(create=False) as writable:
        expected = every_read(writable, day(6.5))
    with filled.open(create=False, read_only=True) as store:
        assert store.read_only
        assert every_read(store, day(6.5)) == expected


@pytest.mark.parametrize(
    "write",
    [
        lambda s: s.apply("r", cf.DeviceInstalled("d2"), day(1)),
        lambda s: s.apply_all("r", [cf.DeviceInstalled("d2")], day(1)),
        lambda s: s.advance("r", day(7)),
        lambda s: s.tick(day(7)),
        lambda s: s.preview("r", cf.Cancel(), day(1)),
        lambda s: s.acknowledge(["r:2:0"], day(1)),
        lambda s: s.lease(now=day(1)),
        lambda s: s.record_failure("r:2:0", "down"),
        lambda s: s.revive(["r:2:0"]),
        lambda s: s.create("other", build(2)),
    ],
    ids=[
        "apply",
        "apply_all",
        "advance",
        "tick",
        "preview",
        "ack",
        "lease",
        "fail",
        "revive",
        "create",
    ],
)
def test_a_read_only_store_refuses_every_command(
    filled: Backend, write: Callable[[AnyStore], object]
) -> None:
    before = filled.tables()
    with (
        filled.open(create=False, read_only=True) as store,
        pytest.raises(StoreError, match="opened read-only"),
    ):
        write(store)
    assert filled.tables() == before


def test_a_read_only_open_creates_nothing_where_there_is_no_database(backend: Backend) -> None:
    with pytest.raises(StoreError, match="no certflow database there"):
        open_store(backend.target, read_only=True)
    if isinstance(backend, SqliteBackend):
        assert not backend.path.exists()
    else:
        assert backend.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'certflow'") == [
            (0,)
        ]


def test_a_read_only_store_reads_an_older_database_as_it_is(tmp_path: Path) -> None:
    """A database of schema 3 (written by an earlier certflow): a read-only open reads
    it without upgrading it (byte for byte as it was), as the upgraded database reads."""
    path = tmp_path / "old" / "certflow.db"
    path.parent.mkdir()
    shutil.copyfile(DATA / "certflow-schema-3.db", path)
    before = folder_bytes(path.parent)
    with SqliteStore(path, read_only=True) as store:
        names = [i.name for i in store.rollouts()]
        old = {n: (store.dumps(n), store.effects(n, include_acknowledged=True)) for n in names}
    assert folder_bytes(path.parent) == before
    upgraded = tmp_path / "certflow.db"
    shutil.copyfile(DATA / "certflow-schema-3.db", upgraded)
    with SqliteStore(upgraded, create=False) as store:
        assert {
            n: (store.dumps(n), store.effects(n, include_acknowledged=True)) for n in names
        } == old
    assert any(effects for _, effects in old.values())


def test_a_postgresql_read_only_store_reads_an_older_schema_as_it_is(
    postgres_server: LocalPostgres, postgres_url: str
) -> None:
    with PostgresStore(postgres_url) as store:
        fill(store)
        expected = store.effects(include_acknowledged=True)
    filled = PostgresBackend(postgres_server, postgres_url)
    # Version 3's outbox: without the columns version 4 added.
    for column in ("attempts", "last_attempt_at", "next_attempt_at", "dead_at", "superseded_at"):
        filled.query(f"ALTER TABLE outbox DROP COLUMN {column}")
    filled.query("UPDATE certflow_schema SET version = ?", SCHEMA_VERSION - 1)
    before = filled.tables()
    with PostgresStore(postgres_url, read_only=True) as store:
        assert store.effects(include_acknowledged=True) == expected
        every_read(store, day(6.5))
    assert filled.tables() == before
    filled.close()


def test_a_postgresql_read_only_session_refuses_writes_itself(postgres_url: str) -> None:
    """Beyond the store's own check: the server refuses a write of the session."""
    with PostgresStore(postgres_url) as store:
        fill(store)
    with PostgresStore(postgres_url, read_only=True) as store:
        [(setting,)] = store._q("SHOW default_transaction_read_only").fetchall()
        assert setting == "on"


# --- SQLite's files -------------------------------------------------------------------------


def reads(path: Path) -> str:
    """Every read through a read-only store, and what it saw (or the error)."""
    try:
        with SqliteStore(path, read_only=True) as store:
            head = store.view("r", day(6.5))
            every_read(store, day(6.5))
            return f"read {head.overview.state.value} projected={head.projected}"
    except StoreError as error:
        return f"StoreError: {error}"


def database_in(folder: Path) -> Path:
    path = folder / "certflow.db"
    with SqliteStore(path) as store:
        fill(store)
    assert sorted(p.name for p in folder.iterdir()) == ["certflow.db"]
    return path


@pytest.mark.parametrize(
    ("file_mode", "folder_mode"),
    [(0o444, 0o755), (0o644, 0o555), (0o444, 0o555)],
    ids=["read-only file", "read-only folder", "both"],
)
def test_a_read_only_location_is_read_and_left_as_it_was(
    shared_folder: Path, file_mode: int, folder_mode: int
) -> None:
    """As a user whose permissions bind (``nobody`` when the tests run as root), every
    read works, and the folder holds the same files with the same bytes afterwards: no
    -wal or -shm file was left behind."""
    folder = shared_folder / "ro"
    folder.mkdir()
    folder.chmod(0o777)  # nobody may create files here, unless the test forbids it
    path = database_in(folder)
    path.chmod(file_mode)
    folder.chmod(folder_mode)
    before = folder_bytes(folder)
    assert as_unprivileged(lambda: reads(path)) == "read distributing projected=True"
    assert folder_bytes(folder) == before


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A database file no one may change, root included (``chattr +i``); where the file
    system cannot, a file of mode 444 in a folder of mode 555 read as ``nobody``."""
    path = database_in(tmp_path)
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        path.chmod(0o444)
        tmp_path.chmod(0o555)
    try:
        yield path
    finally:
        if done.returncode == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        tmp_path.chmod(0o755)


def test_an_immutable_file_is_read_and_nothing_is_left_beside_it(immutable: Path) -> None:
    folder = immutable.parent
    before = folder_bytes(folder)
    assert reads(immutable) == "read distributing projected=True"
    assert folder_bytes(folder) == before


def test_a_read_only_store_reads_beside_a_connected_writer(db_path: Path) -> None:
    """A writer holds the database open (its -wal and -shm are there): the read-only
    store reads through them, sees what the writer committed, and leaves them as they
    were."""
    with SqliteStore(db_path) as writer:
        fill(writer)
        writer.apply("r", cf.DeviceInstalled("d2"), T0 + 2 * HOUR)
        assert (db_path.parent / "certflow.db-wal").exists()
        with SqliteStore(db_path, read_only=True) as reader:
            assert reader.device("r", "d2").state is cf.DeviceState.INSTALLED
            writer.apply("r", cf.DeviceInstalled("d3"), T0 + 3 * HOUR)
            assert reader.device("r", "d3").state is cf.DeviceState.INSTALLED
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["certflow.db"]


def test_a_write_between_two_reads_is_seen_by_the_second(db_path: Path) -> None:
    """The read-only store opened the file immutable (no writer was connected); a writer
    then committed and closed: the next read sees it, not a stale page."""
    with SqliteStore(db_path) as writer:
        fill(writer)
    with SqliteStore(db_path, read_only=True) as reader:
        assert reader.device("r", "d2").state is cf.DeviceState.PUSHED
        with SqliteStore(db_path) as writer:
            writer.apply("r", cf.DeviceInstalled("d2"), T0 + 2 * HOUR)
        assert reader.device("r", "d2").state is cf.DeviceState.INSTALLED


def test_a_write_during_an_immutable_read_makes_it_busy_not_wrong(db_path: Path) -> None:
    """A writer that commits and folds its log back into the file while an immutable
    read runs: that read is StoreBusy (try again; nothing changed), the next is right."""
    with SqliteStore(db_path) as writer:
        fill(writer)
    with SqliteStore(db_path, read_only=True) as reader:

        def read_while_written() -> None:
            with reader._transaction(write=False):
                reader._q("SELECT COUNT(*) FROM devices").fetchall()
                with SqliteStore(db_path) as writer:
                    writer.apply("r", cf.DeviceInstalled("d2"), T0 + 2 * HOUR)

        with pytest.raises(StoreBusy, match="while it was read"):
            read_while_written()
        assert reader.device("r", "d2").state is cf.DeviceState.INSTALLED


def test_sqlite_itself_refuses_a_write_through_a_read_only_store(db_path: Path) -> None:
    """Not only the store's check: the connection is SQLite's read-only one."""
    with SqliteStore(db_path) as writer:
        fill(writer)
    with (
        SqliteStore(db_path, read_only=True) as reader,
        pytest.raises(sqlite3.OperationalError, match="readonly"),
    ):
        reader._db.execute("DELETE FROM journal")
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["certflow.db"]
