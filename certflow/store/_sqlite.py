"""The SQLite store: the embedded default (one file, nothing to install or start).

The rules, the statements and the journal are shared with every SQL backend
(:mod:`certflow.store._sql`); this module opens the file, runs ``BEGIN IMMEDIATE``
writers in write-ahead-log mode, migrates the schema and turns SQLite's errors into
messages that name the file. SQLite serialises writers, so several processes take turns
(``busy_timeout``) rather than write in parallel.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from certflow.core.errors import InvalidInput
from certflow.core.machines import Rules
from certflow.store._errors import StoreBusy, StoreError
from certflow.store._inputs import DELIVERY
from certflow.store._schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    outbox_as_current,
    summaries_as_current,
)
from certflow.store._sql import Cursor, Progress, SqlStore

__all__ = ["SqliteStore"]

Synchronous = Literal["NORMAL", "FULL"]

_INSERT_CHUNK = 20_000


class SqliteStore(SqlStore):
    """Rollouts in one SQLite file (see ``docs/store.md``).

    ``SqliteStore(path)`` opens the database, creating it when ``create`` is true (the
    default) and migrating an older schema forward. ``synchronous`` is ``"NORMAL"``
    (a commit survives a crash of the process; the last commits may be lost if the
    machine loses power) or ``"FULL"`` (a commit survives power loss, at the cost of one
    fsync per commit). A writer waits up to ``busy_timeout`` seconds for another one,
    then raises :class:`StoreBusy`. Every error names the file.

    ``clock_skew``: several processes that read their own clocks and then wait for the
    write lock can arrive slightly out of order. An instant at most ``clock_skew``
    earlier than the rollout's clock is applied at the rollout's clock instead of being
    refused (default 0: every earlier instant is refused, as the evaluator does).

    ``read_only``: open the file read-only (it must exist; an older schema is read as
    it is, never migrated); every transaction only reads, a command is refused, and no
    file is created beside it (see :meth:`_read_only`).

    ``max_attempts``, ``retry_backoff``, ``retry_backoff_limit``: the outbox's dead
    letters and back-off (:meth:`record_failure`); by default an effect is dead at its
    tenth failed delivery, retried after 1, 2, 4, ... minutes, at most hourly.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        clock_skew: timedelta = timedelta(0),
        max_attempts: int = DELIVERY[0],
        retry_backoff: timedelta = DELIVERY[1],
        retry_backoff_limit: timedelta = DELIVERY[2],
        read_only: bool = False,
        rules: Rules | None = None,
        _rules: Rules | None = None,
    ) -> None:
        self.path = Path(path)
        self._where = str(self.path)
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidInput(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if self.path.is_dir():
            raise StoreError(f"{self._where}: is a folder, not a certflow database")
        self.read_only = read_only = bool(read_only)
        missing = _missing_folder(self.path)
        if missing is not None:
            # SQLite would say only "unable to open database file", which reads as a
            # permission problem.
            if create and not read_only:
                raise StoreError(
                    f"{self._where}: cannot create the database: the folder {missing} does "
                    "not exist; create it first"
                )
            raise StoreError(
                f"{self._where}: no certflow database there: the folder {missing} does not "
                "exist (check --db / CERTFLOW_DB)"
            )
        if (read_only or not create) and not self.path.exists():
            raise StoreError(
                f"{self._where}: no certflow database there "
                "(create one with `certflow rollout new`, or check --db / CERTFLOW_DB)"
            )
        self.busy_timeout = busy_timeout
        self._setup(clock_skew, rules, _rules, (max_attempts, retry_backoff, retry_backoff_limit))
        # The stamp of the file an immutable read-only connection reads (see _read_only).
        self._immutable: tuple[bool, int, int, int] | None = None
        self._db = self._read_only() if read_only else self._connect(synchronous, create)

    # --- opening -----------------------------------------------------------------------------

    def _connect(self, synchronous: Synchronous, create: bool) -> sqlite3.Connection:
        existed = self.path.exists()
        try:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, cached_statements=256
            )
        except sqlite3.Error as error:
            raise self._error(error, "cannot open") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            # Refuse a foreign or newer file (or an empty one when a database is expected)
            # before WAL mode rewrites it.
            if self._version(db) == 0 and not create:
                raise StoreError(f"{self._where}: no certflow database there (the file is empty)")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self._where}: cannot use write-ahead logging (mode {mode})")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            self._migrate(db, existed)
        except sqlite3.Error as error:
            db.close()
            raise self._error(error, "cannot open") from None
        except BaseException:
            db.close()
            raise
        return db

    def _read_only(self) -> sqlite3.Connection:
        """A connection that can only read (SQLite's ``mode=ro``), and creates no file.

        A read-only connection to a WAL database needs the -wal and -shm files beside
        it: it creates them when the folder allows (and, read-only, cannot remove them
        when it closes), and fails when it does not. So when there is no -wal file, the
        file is opened ``immutable=1`` (no locks, no -shm, no -wal): no -wal means no
        connection has the database open and every commit is in the file itself.
        ``_begin`` and ``_end_read`` check that assumption around every read (the file's
        inode, size and modification time, and whether a -wal appeared): a read during
        which a writer changed the file is :class:`StoreBusy` (try again), and the next
        read opens the database afresh. With a -wal there (a writer is connected, or
        crashed) the plain read-only connection uses the files that are there.
        """
        stamp = self._stamp()
        immutable = not stamp[0]
        uri = f"{self.path.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
        try:
            db = sqlite3.connect(
                uri,
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,
                cached_statements=256,
            )
        except sqlite3.Error as error:
            raise self._error(error, "cannot open") from None
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            version = self._version(db)
            if version == 0:
                raise StoreError(f"{self._where}: no certflow database there (the file is empty)")
            # An older database is read as it is (a read never migrates it).
            present = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
            self._outbox = outbox_as_current(present)
            self._summary_tables = summaries_as_current(version)
        except sqlite3.Error as error:
            db.close()
            raise self._error(error, "cannot open") from None
        except BaseException:
            db.close()
            raise
        self._immutable = stamp if immutable else None
        return db

    def _stamp(self) -> tuple[bool, int, int, int]:
        """Whether a -wal file is there, and the database file's inode, size and
        modification time: what changes when anything writes it."""
        try:
            found = self.path.stat()
        except OSError as error:
            raise StoreError(f"{self._where}: cannot read it ({error.strerror})") from None
        wal = os.path.exists(f"{self.path}-wal")
        return (wal, found.st_ino, found.st_size, found.st_mtime_ns)

    def _changed_under_read(self) -> bool:
        """Whether the file an immutable connection reads was written since it opened."""
        return self._immutable is not None and self._stamp()[1:] != self._immutable[1:]

    def _version(self, db: sqlite3.Connection) -> int:
        """The schema version (0: an empty file); a foreign or newer database is refused.
        It only reads, so a refused file is left exactly as it was."""
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "certflow_schema" not in tables:
            raise StoreError(f"{self._where}: is an SQLite database, but not certflow's")
        version = 0
        if "certflow_schema" in tables:
            version = db.execute("SELECT version FROM certflow_schema").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self._where}: written by a newer certflow (schema version {version}; "
                f"this certflow knows up to {SCHEMA_VERSION}); upgrade certflow to open it"
            )
        return int(version)

    def _migrate(self, db: sqlite3.Connection, existed: bool) -> None:
        version = self._version(db)
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            tables = {
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "certflow_schema" in tables:
                version = db.execute("SELECT version FROM certflow_schema").fetchone()[0]
            for step in range(version, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[step]):
                    db.execute(statement)
                db.execute("UPDATE certflow_schema SET version = ?", (step + 1,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _error(self, error: sqlite3.Error, doing: str) -> StoreError:
        text = str(error)
        if self._changed_under_read():
            return StoreBusy(
                f"{self._where}: another process wrote the database while it was read; "
                "nothing was changed, try again"
            )
        if self.read_only and ("readonly" in text or "unable to open" in text):
            return StoreError(
                f"{self._where}: {doing}: it cannot be read without writing beside it "
                f"({text}): its write-ahead log needs a -shm file that this user may not "
                "create; run any command on it as a user who may write its folder (which "
                "folds the log back into the file), then read it"
            )
        if "locked" in text or "busy" in text:
            return StoreBusy(
                f"{self._where}: the database is locked by another writer (waited "
                f"{self.busy_timeout:g} s); nothing was changed, try again"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreError(f"{self._where}: not a usable certflow database ({text})")
        if "full" in text:
            return StoreError(f"{self._where}: {doing}: the disk or the database is full ({text})")
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return StoreError(
                f"{self._where}: {doing}: the location is not writable ({text}); "
                "certflow needs to write the database and its -wal and -shm files beside it"
            )
        return StoreError(f"{self._where}: {doing}: {text}")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    # --- the shared code's hooks -------------------------------------------------------------

    # SQLite's planner keeps no statistics: name the deadline index, or a timeout that
    # moves the devices of one deadline would read the whole rollout by its key.
    _by_ack_due = "devices INDEXED BY devices_by_ack_due"
    # Likewise for a batch's devices: read by the rollout's key range, an IN list of ids
    # would read the whole rollout once per chunk.
    _by_device_id = "devices INDEXED BY devices_by_id"

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def _put(self, instant: datetime) -> str:
        # ISO 8601 text in UTC sorts chronologically, so deadlines are index ranges.
        return instant.astimezone(UTC).isoformat()

    def _get(self, stored: Any) -> datetime | None:
        return None if stored is None else datetime.fromisoformat(stored)

    def _insert_devices(
        self, rows: Iterator[tuple[Any, ...]], total: int, progress: Progress | None
    ) -> None:
        done = 0
        while done < total:
            chunk = [next(rows) for _ in range(min(_INSERT_CHUNK, total - done))]
            self._db.executemany(
                "INSERT INTO devices (rollout, idx, device_id, state, attempts, reason, "
                "ack_due) VALUES (?, ?, ?, ?, ?, ?, ?)",
                chunk,
            )
            done += len(chunk)
            if progress is not None:
                progress(done, total)

    _driver_error = sqlite3.Error

    def _begin(self, write: bool) -> None:
        if self._immutable is not None and self._stamp() != self._immutable:
            # Written (or opened by a writer) since the immutable connection opened:
            # its cached pages may be stale. Read it afresh.
            self._db.close()
            self._db = self._read_only()
        try:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as error:
            raise self._error(error, "cannot start a transaction") from None

    def _end_read(self) -> None:
        self._rollback()
        if self._changed_under_read():
            raise StoreBusy(
                f"{self._where}: another process wrote the database while it was read; "
                "nothing was changed, try again"
            )

    def _commit(self, write: bool) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            raise self._error(error, "cannot commit") from None

    def _rollback(self) -> None:
        # After a disk-full or I/O error SQLite may have rolled back already; a second
        # ROLLBACK would raise and hide the real error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


def _missing_folder(path: Path) -> Path | None:
    """The folder ``path`` would be in, if it does not exist; ``None`` when it does, or
    when that cannot be told (no permission to look, a file in its place): SQLite's own
    error then says what is wrong."""
    try:
        os.stat(path.parent)
    except FileNotFoundError:
        return path.parent
    except OSError:
        return None
    return None


def _statements(script: str) -> list[str]:
    """The statements of a migration script, split where SQLite says one is complete."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement in a migration: {pending.strip()[:60]!r}")
    return statements
