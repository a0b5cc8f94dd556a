"""The store's backends as the tests see them: one interface over a real SQLite file and a
real PostgreSQL database (on the server the test run starts, ``tools/pgserver.py``).

The ``backend`` fixture is parametrised over both, so that every store test that is not
about one backend's files or server runs on each. A test reads and writes the tables
through :meth:`Backend.query` (the standard drivers, not the store), written with ``?``
placeholders for both.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

import certflow as cf
from certflow.store import PostgresStore, SqliteStore, retrying
from tools.pgserver import LocalPostgres

__all__ = ["BACKENDS", "Backend", "PostgresBackend", "SqliteBackend", "backend"]

T = TypeVar("T")
BACKENDS = ("sqlite", "postgresql")
# The tables in key order: a before/after snapshot of everything the store keeps.
TABLE_KEYS = {
    "certflow_schema": "version",
    "rollouts": "id",
    "devices": "rollout, idx",
    "journal": "rollout, seq",
    "outbox": "rollout, seq, position",
}


class Backend:
    """One database of one backend, fresh for the test."""

    name: str
    target: str  # what open_store, --db and CERTFLOW_DB take

    def open(self, **options: Any) -> SqliteStore | PostgresStore:
        """A store on this database (``create``, ``clock_skew``, ``rules``, ...)."""
        raise NotImplementedError

    def fresh(self, **options: Any) -> SqliteStore | PostgresStore:
        """A store on a new, empty database of this backend (for a test that needs many)."""
        raise NotImplementedError

    def query(self, text: str, *params: object) -> list[tuple[Any, ...]]:
        """``text`` (``?`` placeholders) run through the standard driver, committed."""
        raise NotImplementedError

    @contextmanager
    def write_lock_held(self) -> Iterator[None]:
        """Another connection holding every write of the store until the block ends;
        reads go on (SQLite: the write lock; PostgreSQL: EXCLUSIVE table locks)."""
        raise NotImplementedError
        yield

    def close(self) -> None:
        """Release what the backend opened for the test."""

    def retried_past_the_lock(self, operation: Callable[[], T]) -> T:
        """``operation()`` through ``retrying`` while another connection holds every
        write, which it lets go while the first back-off sleeps: the operation met
        StoreBusy, backed off, and then ran (once)."""
        delays: list[float] = []
        with ExitStack() as lock:
            lock.enter_context(self.write_lock_held())

            def release(delay: float) -> None:  # the other writer finishes meanwhile
                delays.append(delay)
                lock.close()

            done = retrying(operation, sleep=release)
        # Backed off at least once; more if the server took a moment to end the other
        # session (PostgreSQL releases its locks as the session ends, not at close()).
        assert delays[:1] == [0.02]
        return done

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the store's tables, in key order: a before/after snapshot."""
        return {t: self.query(f"SELECT * FROM {t} ORDER BY {k}") for t, k in TABLE_KEYS.items()}

    def check_consistent(self, name: str) -> None:
        """What must hold of a rollout at any moment, checked on the tables themselves and
        then through a freshly opened store:

        - the database's own integrity check passes (SQLite);
        - the per-state counts of the rollout row equal a recount of its device rows;
        - the journal is numbered 1..seq without gaps, and each entry's effects are in
          the outbox at positions 0..n-1;
        - replaying the journal gives the stored rollout (the same ``dumps``).
        """
        [(rollout_id, counts, size, seq)] = self.query(
            "SELECT id, counts, size, seq FROM rollouts WHERE name = ?", name
        )
        recount = dict(
            self.query(
                "SELECT state, COUNT(*) FROM devices WHERE rollout = ? GROUP BY state", rollout_id
            )
        )
        assert {k: v for k, v in json.loads(counts).items() if v} == recount
        assert sum(recount.values()) == size
        journal = self.query(
            "SELECT seq, body FROM journal WHERE rollout = ? ORDER BY seq", rollout_id
        )
        assert [s for s, _ in journal] == list(range(1, seq + 1))
        outbox = self.query(
            "SELECT seq, position FROM outbox WHERE rollout = ? ORDER BY seq, position",
            rollout_id,
        )
        expected = [(s, p) for s, body in journal[1:] for p in range(json.loads(body)["effects"])]
        assert outbox == expected
        with self.open(create=False) as store:
            assert store.dumps(name) == cf.dumps(store.replay(name))


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = str(path)
        self._fresh = 0

    def open(self, **options: Any) -> SqliteStore:
        return SqliteStore(self.path, **options)

    def fresh(self, **options: Any) -> SqliteStore:
        self._fresh += 1
        return SqliteStore(self.path.with_name(f"fresh-{self._fresh}.db"), **options)

    def query(self, text: str, *params: object) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            return db.execute(text, params).fetchall()
        finally:
            db.close()

    @contextmanager
    def write_lock_held(self) -> Iterator[None]:
        holder = sqlite3.connect(self.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            if holder.in_transaction:
                holder.execute("ROLLBACK")
            holder.close()

    def check_consistent(self, name: str) -> None:
        assert self.query("PRAGMA integrity_check") == [("ok",)]
        super().check_consistent(name)


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, server: LocalPostgres, url: str, schema: str = "certflow") -> None:
        self.server = server
        self.url = self.target = url
        self.schema = schema
        self._connection: psycopg.Connection[Any] | None = None

    def open(self, **options: Any) -> PostgresStore:
        options.setdefault("schema", self.schema)
        return PostgresStore(self.url, **options)

    def fresh(self, **options: Any) -> PostgresStore:
        # A schema of its own is much quicker to make than a database.
        return PostgresStore(self.url, schema=f"fresh_{secrets.token_hex(6)}", **options)

    def connection(self) -> psycopg.Connection[Any]:
        """The tests' own connection (autocommit), made again after a server restart."""
        if self._connection is None or self._connection.closed or self._connection.broken:
            self._connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            self._connection.execute("SET TIME ZONE 'UTC'")
            self._connection.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
            )
        return self._connection

    def query(self, text: str, *params: object) -> list[tuple[Any, ...]]:
        cursor = self.connection().execute(_psycopg_spelling(text), params)
        return cursor.fetchall() if cursor.description is not None else []

    @contextmanager
    def write_lock_held(self) -> Iterator[None]:
        holder = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        try:
            holder.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE rollouts, devices, journal, outbox IN EXCLUSIVE MODE")
            yield
        finally:
            holder.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _psycopg_spelling(text: str) -> str:
    return re.sub(r"\?", "%s", text.replace("%", "%%"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty database of each backend in turn (PostgreSQL: a database of its own
    on the run's server, dropped afterwards)."""
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "certflow.db")
        return
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    url = server.create_database()
    chosen = PostgresBackend(server, url)
    try:
        yield chosen
    finally:
        chosen.close()
        with contextlib.suppress(Exception):
            server.drop_database(url.rsplit("/", 1)[1])
