"""Bad files (``store.md``, Faults): each gets a clear error naming the file, and
nothing is changed: the files in the folder have the same bytes before and after."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import SCHEMA_VERSION, SqliteStore, StoreBusy, StoreError, open_store, retrying
from tests.core.strategies import day, distributing
from tests.store.conftest import folder_bytes, query, write_lock_held


def refused(path: Path, match: str, **options: object) -> StoreError:
    """Opening ``path`` fails with a :class:`StoreError` that names the file and says
    ``match``; the folder's files are byte for byte what they were."""
    folder = path.parent
    before = folder_bytes(folder) if folder.is_dir() else None
    with pytest.raises(StoreError, match=match) as caught:
        SqliteStore(path, **options)  # type: ignore[arg-type]
    assert isinstance(caught.value, cf.CertflowError)
    assert str(path) in str(caught.value)
    if before is not None:
        assert folder_bytes(folder) == before
    return caught.value


def real_database(path: Path) -> None:
    with SqliteStore(path) as store:
        store.create("r", distributing(300))
        store.execute("r", cf.DeviceFailed("d1", "disk full"), day(1))
        store.execute("r", cf.Retry("d1"), day(1))  # a pending PushRoot in the outbox


def test_garbage_bytes_are_not_a_database(db_path: Path) -> None:
    db_path.write_bytes(bytes(range(256)) * 32)
    refused(db_path, "not a usable certflow database")


@pytest.mark.parametrize("keep", [50, 100, 4096, 0.5, -4096])
def test_a_truncated_database_is_refused(db_path: Path, keep: float) -> None:
    real_database(db_path)
    size = db_path.stat().st_size
    cut = int(size * keep) if isinstance(keep, float) else keep if keep > 0 else size + keep
    with db_path.open("r+b") as file:
        file.truncate(cut)
    refused(db_path, "not a usable certflow database")


def test_a_database_of_a_newer_certflow_is_refused_not_downgraded(db_path: Path) -> None:
    real_database(db_path)
    db = sqlite3.connect(db_path)
    db.execute("UPDATE certflow_schema SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    error = refused(db_path, "written by a newer certflow")
    assert f"schema version {SCHEMA_VERSION + 1}" in str(error)


def test_an_sqlite_database_that_is_not_certflows_is_refused_untouched(db_path: Path) -> None:
    """Also in the rollback-journal mode most SQLite files are in: the store must not
    turn the file into write-ahead logging before it has refused it."""
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.execute("INSERT INTO customers VALUES ('ada')")
    db.commit()
    db.close()
    refused(db_path, "not certflow's")
    assert query(db_path, "PRAGMA journal_mode") == [("delete",)]


def test_a_missing_database_is_not_created_when_one_is_expected(db_path: Path) -> None:
    refused(db_path, "no certflow database there", create=False)
    with pytest.raises(StoreError, match="no certflow database there"):
        open_store(db_path, create=False)
    assert list(db_path.parent.iterdir()) == []


def test_an_empty_file_is_not_a_database_when_one_is_expected(db_path: Path) -> None:
    """``create=False`` (every command but ``new``): an empty file, say from ``touch``,
    is refused and left empty rather than silently made a new database."""
    db_path.touch()
    refused(db_path, "no certflow database there", create=False)
    assert db_path.read_bytes() == b""
    SqliteStore(db_path).close()  # create=True makes it one
    assert query(db_path, "SELECT version FROM certflow_schema") == [(SCHEMA_VERSION,)]


def test_a_folder_is_not_a_database(tmp_path: Path) -> None:
    folder = tmp_path / "rollouts"
    folder.mkdir()
    refused(folder, "is a folder")
    assert list(folder.iterdir()) == []


def test_a_location_under_a_file_cannot_hold_a_database(tmp_path: Path) -> None:
    """A read-only location that holds for root too: the parent is a regular file."""
    parent = tmp_path / "rollouts"
    parent.write_text("not a folder")
    refused(parent / "certflow.db", "not writable")
    assert parent.read_text() == "not a folder"


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder outside pytest's private temporary tree, so that an unprivileged user
    can reach it; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="certflow-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(folder)


def as_unprivileged(work: Callable[[], str]) -> str:
    """``work()`` in a forked process without root's power to ignore permissions: when
    the tests run as root, the child becomes ``nobody`` first. Returns what it returned
    (or its traceback)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            text = work()
        except BaseException:
            text = traceback.format_exc()
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def open_error(path: Path) -> str:
    try:
        SqliteStore(path).close()
    except StoreError as error:
        return f"StoreError: {error}"
    return "opened"


def test_a_read_only_folder_cannot_hold_a_new_database(shared_folder: Path) -> None:
    """``chmod 0o555``, enforced for an unprivileged user (the tests drop root in a
    forked child when they run as root, where permission bits stop nothing)."""
    folder = shared_folder / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    path = folder / "certflow.db"
    outcome = as_unprivileged(lambda: open_error(path))
    assert outcome.startswith("StoreError: "), outcome
    assert str(path) in outcome
    assert "not writable" in outcome
    assert list(folder.iterdir()) == []


def test_a_database_in_a_read_only_folder_is_refused_untouched(shared_folder: Path) -> None:
    """A database the user may read but neither it nor its folder may be written: the
    write-ahead log cannot be opened beside it."""
    folder = shared_folder / "read-only"
    folder.mkdir()
    path = folder / "certflow.db"
    real_database(path)
    path.chmod(0o444)
    folder.chmod(0o555)
    before = folder_bytes(folder)
    outcome = as_unprivileged(lambda: open_error(path))
    assert outcome.startswith("StoreError: "), outcome
    assert str(path) in outcome
    assert folder_bytes(folder) == before


@pytest.fixture
def locked(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A real database, and another connection holding its write lock."""
    real_database(db_path)
    with write_lock_held(db_path) as holder:
        yield holder


def everything(path: Path) -> list[list[tuple[object, ...]]]:
    return [
        query(path, f"SELECT * FROM {table}")
        for table in ("certflow_schema", "rollouts", "devices", "journal", "outbox")
    ]


def test_a_lock_held_past_the_timeout_is_store_busy_and_changes_nothing(
    db_path: Path, locked: sqlite3.Connection
) -> None:
    before = everything(db_path)
    store = SqliteStore(db_path, busy_timeout=0.2)
    [pushed] = store.effects("r")
    attempts: list[Callable[[], object]] = [
        lambda: store.execute("r", cf.DeviceInstalled("d2"), day(2)),
        lambda: store.execute_many("r", [cf.DeviceInstalled("d3")], day(2)),
        lambda: store.advance("r", day(8)),
        lambda: store.tick(day(8)),
        lambda: store.acknowledge([pushed.id], day(2)),
        lambda: store.record_failure(pushed.id, "unreachable"),
        lambda: store.create("other", distributing(3)),
    ]
    for attempt in attempts:
        with pytest.raises(StoreBusy, match="locked by another writer") as caught:
            attempt()
        assert str(db_path) in str(caught.value)
        assert isinstance(caught.value, cf.CertflowError)
    # Readers are not held up by a writer (write-ahead logging).
    assert store.overview("r", day(1)).counts[cf.DeviceState.PUSHED] == 300
    assert store.dumps("r") == cf.dumps(store.replay("r"))
    assert [s.id for s in store.effects("r")] == [pushed.id]
    assert len(store.devices("r", [cf.DeviceState.PUSHED], limit=500)) == 300
    locked.execute("ROLLBACK")
    assert everything(db_path) == before
    # The store is still usable once the lock is gone.
    store.execute("r", cf.DeviceInstalled("d2"), day(2))
    store.close()


def test_retrying_waits_out_a_lock_and_applies_the_command_once(
    db_path: Path, locked: sqlite3.Connection
) -> None:
    store = SqliteStore(db_path, busy_timeout=0.1)
    delays: list[float] = []

    def release(delay: float) -> None:  # the other writer commits while we back off
        delays.append(delay)
        if locked.in_transaction:
            locked.execute("COMMIT")

    retrying(lambda: store.execute("r", cf.DeviceInstalled("d2"), day(2)), sleep=release)
    assert delays == [0.02]
    assert [e.commands for e in store.journal("r")][-1] == (cf.DeviceInstalled("d2"),)
    assert len(list(store.journal("r"))) == 4
    store.close()


def test_a_new_database_is_not_created_while_another_process_holds_the_file(
    db_path: Path,
) -> None:
    db_path.touch()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        error = refused(db_path, "locked by another writer", busy_timeout=0.2)
        assert isinstance(error, StoreBusy)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert db_path.read_bytes() == b""


def test_a_postgresql_url_is_refused_naming_it_without_its_password() -> None:
    from certflow.store import open_store

    with pytest.raises(StoreError) as refused:
        open_store("postgresql://certflow:s3cret@db.example:5432/certflow")
    message = str(refused.value)
    assert message.startswith("postgresql://certflow:***@db.example:5432/certflow: ")
    assert "s3cret" not in message
