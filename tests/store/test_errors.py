"""Bad files (``store.md``, Faults): each gets a clear error naming the file or URL (a
URL without its password), and nothing is changed.

What the contract says of both backends (a newer database, a missing one, a lock held
past the timeout) runs on SQLite and on PostgreSQL (``tests/backends.py``). SQLite's
own cases (garbage, truncated or foreign files, folders, read-only locations) check
that the files in the folder have the same bytes before and after; PostgreSQL's own
cases (a foreign schema, a missing database, an unreachable server, a user without
rights) check that no schema, table or row of the database changed.
"""

from __future__ import annotations

import re
import secrets
import socket
import sqlite3
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import certflow as cf
from certflow.store import (
    SCHEMA_VERSION,
    PostgresStore,
    SqliteStore,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    open_store,
    retrying,
)
from certflow.store._postgres import _MIGRATION_LOCK
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.core.strategies import day, distributing
from tests.store.conftest import as_unprivileged, folder_bytes, query
from tests.store.conftest import shared_folder as shared_folder  # the fixture
from tools.pgserver import LocalPostgres

AnyStore = SqliteStore | PostgresStore


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


def fill(store: AnyStore) -> None:
    store.create("r", distributing(300))
    store.apply("r", cf.DeviceFailed("d1", "disk full"), day(1))
    store.apply("r", cf.Retry("d1"), day(1))  # a pending PushRoot in the outbox


def real_database(path: Path) -> None:
    with SqliteStore(path) as store:
        fill(store)


def postgres_state(url: str) -> list[Any]:
    """Every schema, table, column and row of the database at ``url`` (but the system's):
    a before/after snapshot."""
    with psycopg.connect(url, autocommit=True) as db:
        schemas = db.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema' ORDER BY nspname"
        ).fetchall()
        columns = db.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM "
            "information_schema.columns WHERE table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2, ordinal_position"
        ).fetchall()
        rows = {
            (schema, table): sorted(
                map(
                    repr,
                    db.execute(
                        sql.SQL("SELECT * FROM {}.{}").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    ).fetchall(),
                )
            )
            for schema, table in dict.fromkeys((s, t) for s, t, _, _ in columns)
        }
    return [schemas, columns, rows]


def state(backend: Backend) -> object:
    """What a refused open must leave as it was: SQLite, the folder's files, byte for
    byte; PostgreSQL, the database's schemas, tables and rows."""
    if isinstance(backend, SqliteBackend):
        return folder_bytes(backend.path.parent)
    assert isinstance(backend, PostgresBackend)
    return postgres_state(backend.url)


def refused_at(
    target: str, before: Callable[[], object], match: str, *, create: bool = True
) -> StoreError:
    """``open_store(target)`` (which picks the backend from ``target``) fails with a
    :class:`StoreError` that names ``target`` and says ``match``, and ``before()``, a
    snapshot, is what it was."""
    snapshot = before()
    with pytest.raises(StoreError, match=match) as caught:
        open_store(target, create=create)
    assert target in str(caught.value)
    assert before() == snapshot
    return caught.value


# --- SQLite's own files -----------------------------------------------------------------------


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


# --- both backends ----------------------------------------------------------------------------


def test_a_database_of_a_newer_certflow_is_refused_not_downgraded(backend: Backend) -> None:
    with backend.open() as store:
        fill(store)
    backend.query("UPDATE certflow_schema SET version = ?", 99)
    error = refused_at(backend.target, lambda: state(backend), "written by a newer certflow")
    assert "schema version 99" in str(error)
    assert not isinstance(error, StoreBusy)  # retrying would not help
    with pytest.raises(StoreError, match="written by a newer certflow"):
        backend.open(create=False)
    assert backend.query("SELECT version FROM certflow_schema") == [(99,)]


def nothing_there(backend: Backend) -> bool:
    """No trace of a certflow database: SQLite, no file in the folder; PostgreSQL, no
    schema of certflow's name."""
    if isinstance(backend, SqliteBackend):
        return list(backend.path.parent.iterdir()) == []
    assert isinstance(backend, PostgresBackend)
    return backend.query("SELECT 1 FROM pg_namespace WHERE nspname = ?", backend.schema) == []


def test_a_missing_database_is_not_created_when_one_is_expected(backend: Backend) -> None:
    """SQLite: no file; PostgreSQL: a database without certflow's schema."""
    assert nothing_there(backend)
    refused_at(backend.target, lambda: state(backend), "no certflow database there", create=False)
    with pytest.raises(StoreError, match="no certflow database there"):
        backend.open(create=False)
    assert nothing_there(backend)


def test_a_lock_held_past_the_timeout_is_store_busy_and_changes_nothing(
    backend: Backend,
) -> None:
    with backend.open() as filling:
        fill(filling)
    before = backend.tables()
    store = backend.open(busy_timeout=0.2)
    try:
        with backend.write_lock_held():
            [pushed] = store.effects("r")
            attempts: list[Callable[[], object]] = [
                lambda: store.apply("r", cf.DeviceInstalled("d2"), day(2)),
                lambda: store.apply_all("r", [cf.DeviceInstalled("d3")], day(2)),
                lambda: store.advance("r", day(8)),
                lambda: store.tick(day(8)),
                lambda: store.acknowledge([pushed.id], day(2)),
                lambda: store.record_failure(pushed.id, "unreachable"),
                lambda: store.lease(now=day(2)),
                lambda: store.create("other", distributing(3)),
            ]
            for attempt in attempts:
                # SQLite: "locked by another writer"; PostgreSQL: "another writer held".
                with pytest.raises(StoreBusy, match="another writer") as caught:
                    attempt()
                assert backend.target in str(caught.value)
                assert isinstance(caught.value, cf.CertflowError)
            # Readers are not held up by a writer.
            assert store.overview("r", day(1)).counts[cf.DeviceState.PUSHED] == 300
            assert store.dumps("r") == cf.dumps(store.replay("r"))
            assert [s.id for s in store.effects("r")] == [pushed.id]
            assert len(store.devices("r", [cf.DeviceState.PUSHED], limit=500)) == 300
        assert backend.tables() == before
        # The store is still usable once the lock is gone (retried: PostgreSQL ends the
        # holder's session, and frees its locks, a moment after it closed).
        retrying(lambda: store.apply("r", cf.DeviceInstalled("d2"), day(2)))
    finally:
        store.close()
    backend.check_consistent("r")


def test_retrying_waits_out_a_lock_and_applies_the_command_once(backend: Backend) -> None:
    with backend.open() as filling:
        fill(filling)
    with backend.open(busy_timeout=0.1) as store:
        backend.retried_past_the_lock(lambda: store.apply("r", cf.DeviceInstalled("d2"), day(2)))
        assert [e.commands for e in store.journal("r")][-1] == (cf.DeviceInstalled("d2"),)
        assert len(list(store.journal("r"))) == 4


# --- PostgreSQL's own refusals ----------------------------------------------------------------


def test_a_postgresql_schema_holding_foreign_tables_is_refused_untouched(
    postgres_url: str,
) -> None:
    """The host's own tables in the schema certflow would use: certflow neither adds
    its tables beside them nor touches them."""
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE SCHEMA certflow")
        db.execute("CREATE TABLE certflow.customers (name text)")
        db.execute("INSERT INTO certflow.customers VALUES ('ada')")
    for create in (True, False):
        refused_at(
            postgres_url,
            lambda: postgres_state(postgres_url),
            "schema 'certflow' holds tables that are not certflow's",
            create=create,
        )
    [_, columns, rows] = postgres_state(postgres_url)
    assert [c[:3] for c in columns] == [("certflow", "customers", "name")]
    assert rows == {("certflow", "customers"): ["('ada',)"]}


def test_a_postgresql_database_that_does_not_exist_is_refused_naming_it(
    postgres_server: LocalPostgres,
) -> None:
    name = f"missing_{secrets.token_hex(4)}"
    url = postgres_server.url(name)
    with pytest.raises(StoreError, match="does not exist") as caught:
        open_store(url)
    assert str(caught.value).startswith(f"{url}: ")
    assert name in str(caught.value)
    admin = postgres_server.url()
    with psycopg.connect(admin, autocommit=True) as db:
        assert db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall() == []


def closed_port() -> int:
    """A port of 127.0.0.1 that nobody listens on (as far as one can know)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("password", ["s3cret", "s3cret/@:%"])
@pytest.mark.parametrize("spelling", ["authority", "parameter"])
def test_an_unreachable_server_is_a_clear_error_naming_the_url_without_its_password(
    postgres_server: LocalPostgres, password: str, spelling: str
) -> None:
    port = closed_port()
    quoted = urllib.parse.quote(password, safe="")
    if spelling == "authority":
        url = postgres_server.url(password=password)
        shown = f"postgresql://certflow:***@127.0.0.1:{port}/postgres"
    else:  # libpq's password= parameter
        url = postgres_server.url() + f"?password={quoted}"
        shown = f"postgresql://certflow@127.0.0.1:{port}/postgres?password=***"
    url = url.replace(f":{postgres_server.port}/", f":{port}/")
    with pytest.raises(StoreError) as caught:
        open_store(url, create=False)
    assert isinstance(caught.value, StoreUnavailable)  # safe to retry: nothing was done
    message = str(caught.value)
    assert message.startswith(f"{shown}: cannot connect to the PostgreSQL server"), message
    assert "***" in message
    # Nowhere, in any spelling: not in the message, nor in the traceback a host logs.
    logged = "".join(traceback.format_exception(caught.value))
    for secret in {password, quoted, "s3cret"}:
        assert secret not in message
        assert secret not in logged


@pytest.fixture
def weak_role(postgres_server: LocalPostgres, postgres_url: str) -> Iterator[str]:
    """The URL of the test's database for a new role that may log in and nothing more
    (PUBLIC's default rights: connect, no CREATE on the database)."""
    role = f"weak_{secrets.token_hex(4)}"
    admin = postgres_server.url()
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    parts = urllib.parse.urlsplit(postgres_url)
    yield urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    # Roles belong to the whole server: drop it (its grants first), or it outlives the test.
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_postgresql_user_who_may_not_create_the_schema_is_refused(
    postgres_url: str, weak_role: str
) -> None:
    error = refused_at(weak_role, lambda: postgres_state(postgres_url), "not permitted")
    assert re.search(r"permission denied for database", str(error))
    assert not isinstance(error, StoreBusy)  # retrying would not help


def test_a_postgresql_user_without_rights_on_the_schema_is_refused(
    postgres_url: str, weak_role: str
) -> None:
    """certflow's tables are there, but not this user's to read: the error says so,
    rather than calling the tables missing or damaged."""
    with PostgresStore(postgres_url) as store:
        fill(store)
    error = refused_at(weak_role, lambda: postgres_state(postgres_url), "not permitted")
    assert "missing or damaged" not in str(error)


def test_a_postgresql_user_who_may_only_read_cannot_write(
    postgres_url: str, weak_role: str
) -> None:
    with PostgresStore(postgres_url) as store:
        fill(store)
    role = urllib.parse.urlsplit(weak_role).username
    assert role is not None
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(sql.SQL("GRANT USAGE ON SCHEMA certflow TO {}").format(sql.Identifier(role)))
        db.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA certflow TO {}").format(
                sql.Identifier(role)
            )
        )
    before = postgres_state(postgres_url)
    with open_store(weak_role) as store:
        assert store.info("r").counts[cf.DeviceState.PUSHED] == 300
        with pytest.raises(StoreError, match="not permitted") as caught:
            store.apply("r", cf.DeviceInstalled("d2"), day(2))
        assert weak_role in str(caught.value)
        assert not isinstance(caught.value, StoreBusy)
    assert postgres_state(postgres_url) == before


def test_a_new_postgresql_schema_is_not_created_while_another_process_migrates(
    postgres_url: str,
) -> None:
    """Another process holding the migration lock (creating or migrating the schema):
    StoreBusy after the busy timeout, and no schema half made."""
    before = postgres_state(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        with pytest.raises(StoreBusy) as caught:
            PostgresStore(postgres_url, busy_timeout=0.2)
        assert postgres_url in str(caught.value)
        assert postgres_state(postgres_url) == before
        holder.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    PostgresStore(postgres_url).close()  # and it is made once the lock is gone
    assert postgres_state(postgres_url) != before
