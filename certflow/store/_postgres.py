"""The PostgreSQL store: one database for hosts that run several server nodes.

The rules, the statements and the journal are shared with every SQL backend
(:mod:`certflow.store._sql`); this module connects with psycopg 3, runs the
transactions and turns the server's errors into messages that name the URL (never its
password).

Theory of operation
-------------------
- **Writers of one rollout take turns on its row.** A command's transaction (``READ
  COMMITTED``) first reads the rollout row ``FOR NO KEY UPDATE``, which waits for the
  writer before it and then reads what that one committed. Every change to a rollout
  (its devices, journal and outbox) happens under that lock, so the counts stay exact,
  the journal gapless, and two nodes ticking at the same instant fire each timer once:
  the second finds the clock already there and nothing due. Rollouts do not wait for
  each other. A lock not granted within ``busy_timeout`` is :class:`StoreBusy`.
- **Reads see one snapshot** (``REPEATABLE READ READ ONLY``), and take no lock.
- **Drainers lease** effects with ``FOR UPDATE SKIP LOCKED``: two that run at once
  claim different effects, and never wait for each other.
- **Bulk writes:** a new rollout's devices go in by ``COPY``; a batch's changed devices
  are written back by one pipelined ``executemany``.
- **A lost connection** (the server restarted, a network cut) is
  :class:`StoreUnavailable`, safe to retry, and the next command reconnects. If it is
  lost while committing, the store reconnects (for up to ``in_doubt_wait`` seconds),
  waits for the transaction to let go of the rollout row (a cut connection leaves it
  running on the server, perhaps still committing), and looks for the journal entry the
  command wrote: found, the command committed and returns normally; absent, it did not,
  and the error says so (except for a ``create``, whose row cannot be waited for: it
  may commit after all, and a retry then says "already exists"). Only if the server
  stays away, or the transaction does not end, that long is the outcome unknown, and
  the error says that instead.
- **A silent node** (a cut network, a lost machine) inside a transaction loses it after
  ``stalled_timeout`` (the session's ``idle_in_transaction_session_timeout``), so its
  rollout is not held for the hours TCP takes to notice; client keepalives let a node
  notice a server that went away.
- **Writes run READ COMMITTED** whatever the server's default, so a writer that waited
  for the rollout's lock reads what the one before it committed, instead of failing.

Limits, stated plainly: one store object holds one connection and belongs to one
thread; certflow's tables live in their own PostgreSQL schema (namespace, ``certflow``
by default), so they can share a database with the host's own tables.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

try:
    import psycopg
    from psycopg import errors, sql
    from psycopg.pq import TransactionStatus
except ImportError as missing:  # the `postgresql` extra is not installed
    from certflow.store._errors import StoreError

    raise StoreError(
        "PostgreSQL needs the psycopg package: pip install 'certflow[postgresql]'"
    ) from missing

from certflow.core.errors import InvalidInput
from certflow.core.machines import Rules
from certflow.store._errors import (
    StoreBusy,
    StoreError,
    StoreUnavailable,
    secrets_of,
    without_password,
)
from certflow.store._inputs import DELIVERY
from certflow.store._schema import (
    POSTGRES_MIGRATIONS,
    SCHEMA_VERSION,
    outbox_as_current,
    summaries_as_current,
)
from certflow.store._sql import Cursor, Progress, SqlStore

__all__ = ["PostgresStore"]

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)")
_COPY_PROGRESS = 20_000
# The lock every migrating process takes, so that a schema is migrated once.
_MIGRATION_LOCK = 0x63657274666C6F77  # "certflow"
# A connection the server answered with FATAL is refused for good (a missing database or
# role, a bad password: retrying changes nothing), except for these passing states. The
# server's words may be translated, so an unknown FATAL counts as refused: not retried.
_PASSING = (
    "starting up",
    "shutting down",
    "in recovery",
    "not yet accepting connections",
    "not accepting connections",
    "too many clients",
    "remaining connection slots",
    "terminating connection",
)
# libpq's own words for a connection it cannot even try (no password to send).
_CLIENT_REFUSED = ("fe_sendauth",)
# lock_timeout and idle_in_transaction_session_timeout are whole milliseconds in 32 bits,
# and 0 would mean "wait for ever".
_LONGEST_MS = 2**31 - 1
# How long a silent peer may hold things before the server or the client gives up on it:
# a node that stalls inside a transaction, or whose network is cut, would otherwise hold
# its rollout's row lock until TCP notices (hours, by default).
_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}
# A batch's devices: one lookup of the unique (rollout, device_id) key per id (the LIMIT
# keeps the planner from turning it into a join that scans the rollout).
_FETCH = (
    "SELECT w.device_id, d.idx, d.state, d.attempts, d.reason, d.last_push, d.last_report, "
    "d.ack_due FROM unnest(%s::text[]) AS w (device_id) CROSS JOIN LATERAL (SELECT * FROM "
    "devices WHERE rollout = %s AND device_id = w.device_id LIMIT 1) AS d"
)
_FETCH_ONE = (
    "SELECT device_id, idx, state, attempts, reason, last_push, last_report, ack_due "
    "FROM devices WHERE device_id = %s AND rollout = %s"
)
_BUSY = (
    errors.LockNotAvailable,
    errors.SerializationFailure,
    errors.DeadlockDetected,
    # Two nodes creating a rollout of the same name at once: the later one, retried,
    # finds the rollout there and says so.
    errors.UniqueViolation,
)


class PostgresStore(SqlStore):
    """Rollouts in a PostgreSQL database (see ``docs/store.md``), for several nodes.

    ``PostgresStore(url)`` connects to ``url`` (``postgresql://user:password@host:port/
    database``, with any libpq parameter) and keeps certflow's tables in the schema
    ``schema``, creating and migrating it when ``create`` is true (the default).

    ``busy_timeout``: how long a command waits for another writer of the same rollout
    before :class:`StoreBusy`. ``connect_timeout``: how long one connection attempt
    waits. ``in_doubt_wait``: how long a command whose connection broke while committing
    keeps reconnecting to learn whether it committed. ``stalled_timeout``: how long the
    server lets a node sit silent inside a transaction before ending it (and freeing
    the rollout's lock). ``clock_skew``, ``max_attempts``, ``retry_backoff`` and
    ``retry_backoff_limit``: as for :class:`SqliteStore`. ``read_only``: every
    transaction is ``READ ONLY`` (the session's default too), a command is refused, and
    the schema is never created or migrated (an older one is read as it is). Every error
    names the URL without its password.
    """

    _lock_rollout = " FOR NO KEY UPDATE"
    _fetch_chunk = 5_000  # ids travel as one array parameter, not one parameter each
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        schema: str = "certflow",
        busy_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        in_doubt_wait: float = 30.0,
        stalled_timeout: float = 60.0,
        clock_skew: timedelta = timedelta(0),
        max_attempts: int = DELIVERY[0],
        retry_backoff: timedelta = DELIVERY[1],
        retry_backoff_limit: timedelta = DELIVERY[2],
        read_only: bool = False,
        rules: Rules | None = None,
        _rules: Rules | None = None,
    ) -> None:
        self.read_only = bool(read_only)
        if not isinstance(url, str) or not url.startswith(("postgresql://", "postgres://")):
            shown = without_password(url) if isinstance(url, str) else url
            raise InvalidInput(f"database {shown!r}: a PostgreSQL URL starts with postgresql://")
        self.url = url
        self._where = without_password(url)
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise InvalidInput(
                f"schema {schema!r} is not valid: use 1 to 63 lower-case letters, digits or "
                "'_', starting with a letter or '_'"
            )
        for what, value in (
            ("busy_timeout", busy_timeout),
            ("connect_timeout", connect_timeout),
            ("in_doubt_wait", in_doubt_wait),
            ("stalled_timeout", stalled_timeout),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.001 <= value <= _LONGEST_MS / 1000
            ):
                raise InvalidInput(
                    f"{what} must be a number of seconds from 0.001 to {_LONGEST_MS // 1000}, "
                    f"got {value!r}"
                )
        self.schema = schema
        self.busy_timeout = float(busy_timeout)
        self.connect_timeout = float(connect_timeout)
        self.in_doubt_wait = float(in_doubt_wait)
        self.stalled_timeout = float(stalled_timeout)
        self._closed = False
        self._setup(clock_skew, rules, _rules, (max_attempts, retry_backoff, retry_backoff_limit))
        self._sql_of: dict[str, str] = {}
        self._marker: tuple[int, int, str] | None = None
        self._conn = self._connect()
        try:
            self._open(create)
        except BaseException:
            self._conn.close()
            raise

    # --- connecting --------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            given = psycopg.conninfo.conninfo_to_dict(self.url)
            # The URL's own keepalive settings win over these defaults.
            keepalives = {k: v for k, v in _KEEPALIVES.items() if k not in given}
            conn = psycopg.connect(
                psycopg.conninfo.make_conninfo(self.url, **keepalives),
                autocommit=True,
                connect_timeout=max(1, round(self.connect_timeout)),
                application_name="certflow",
            )
        except psycopg.ProgrammingError as error:  # libpq could not read the URL
            raise InvalidInput(
                f"{self._where}: not a usable PostgreSQL URL ({self._first_line(error)})"
            ) from None
        except psycopg.Error as error:
            text = self._first_line(error)
            if text.startswith("connection is bad:"):  # libpq refused it before trying
                raise InvalidInput(f"{self._where}: not a usable PostgreSQL URL ({text})") from None
            answered = "FATAL:" in text and not any(word in text for word in _PASSING)
            if answered or any(word in text for word in _CLIENT_REFUSED):
                # No retry will change this answer.
                raise StoreError(
                    f"{self._where}: the PostgreSQL server refused the connection ({text}); "
                    "check the URL's user, password and database"
                ) from None
            raise StoreUnavailable(
                f"{self._where}: cannot connect to the PostgreSQL server ({text}); check the "
                "URL and that the server runs"
            ) from None
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            for setting, seconds in (
                ("lock_timeout", self.busy_timeout),
                ("idle_in_transaction_session_timeout", self.stalled_timeout),
            ):
                conn.execute(
                    sql.SQL("SET {} = {}").format(
                        sql.Identifier(setting),
                        sql.Literal(f"{min(max(1, round(seconds * 1000)), _LONGEST_MS)}ms"),
                    )
                )
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            if self.read_only:
                # The server itself refuses any write of this session, whatever the
                # role may do.
                conn.execute("SET default_transaction_read_only = on")
        except psycopg.Error as error:
            conn.close()
            raise StoreError(
                f"{self._where}: cannot set up the connection ({self._first_line(error)})"
            ) from None
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection, made again if the last one broke (a restarted server)."""
        if self._closed:
            raise StoreError(f"{self._where}: the store is closed")
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._connect()
        return self._conn

    def _open(self, create: bool) -> None:
        """Check the schema's version (refusing a foreign or newer one, or a missing one
        when ``create`` is false), and migrate it forward."""
        try:
            version = self._version()
            if version == 0 and (self.read_only or not create):
                raise StoreError(
                    f"{self._where}: no certflow database there (no schema {self.schema!r} "
                    "with certflow's tables; create one with `certflow rollout new`, or "
                    "check --db / CERTFLOW_DB)"
                )
            if version < SCHEMA_VERSION and self.read_only:
                # Read as it is: a read never migrates it.
                present = {
                    row[0]
                    for row in self._conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = 'outbox'",
                        (self.schema,),
                    )
                }
                self._outbox = outbox_as_current(present)
                self._summary_tables = summaries_as_current(version)
            elif version < SCHEMA_VERSION:
                self._migrate()
        except psycopg.Error as error:
            raise self._error(error, "cannot open") from None

    def _version(self) -> int:
        conn = self._conn
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v')",
                (self.schema,),
            )
        }
        if tables and "certflow_schema" not in tables:
            raise StoreError(
                f"{self._where}: schema {self.schema!r} holds tables that are not certflow's; "
                "give certflow a schema of its own"
            )
        if not tables:
            return 0
        # Named with its schema: a role without USAGE on it would otherwise be told the
        # table is missing (the search path skips a schema it may not use).
        found = conn.execute(
            sql.SQL("SELECT version FROM {}.certflow_schema").format(sql.Identifier(self.schema))
        ).fetchone()
        version = 0 if found is None else int(found[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self._where}: written by a newer certflow (schema version {version}; "
                f"this certflow knows up to {SCHEMA_VERSION}); upgrade certflow to open it"
            )
        return version

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute("BEGIN")
        try:
            # Every process that migrates takes the same lock, and reads the version
            # again once it has it: another one may have migrated meanwhile.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            version = self._version()
            for step in range(version, SCHEMA_VERSION):
                conn.execute(POSTGRES_MIGRATIONS[step].encode())
                conn.execute("UPDATE certflow_schema SET version = %s", (step + 1,))
            conn.execute("COMMIT")
        except BaseException:
            if not conn.broken:
                conn.execute("ROLLBACK")
            raise

    # --- errors ------------------------------------------------------------------------------

    def _first_line(self, error: BaseException) -> str:
        """The error's first line, with the URL and every spelling of its password
        removed: libpq quotes the URL it could not read."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        text = text.replace(self.url, self._where)
        secrets = secrets_of(self.url)
        with suppress(psycopg.Error):
            password = psycopg.conninfo.conninfo_to_dict(self.url).get("password")
            if password:
                secrets.append(str(password))
        for secret in sorted(set(secrets), key=len, reverse=True):
            text = text.replace(secret, "***")
        # The server quotes whole values it refuses, which can be megabytes.
        return text if len(text) <= 500 else f"{text[:500]}..."

    def _error(self, error: psycopg.Error, doing: str) -> StoreError:
        text = self._first_line(error)
        if isinstance(error, _BUSY):
            return StoreBusy(
                f"{self._where}: another writer held the rollout past {self.busy_timeout:g} s "
                f"or changed it at the same moment ({text}); nothing was changed, try again"
            )
        if self._conn.broken or self._conn.closed or isinstance(error, errors.AdminShutdown):
            return StoreUnavailable(
                f"{self._where}: {doing}: the connection to the server was lost ({text}); "
                "nothing was changed, try again"
            )
        if isinstance(error, errors.InsufficientPrivilege):
            return StoreError(f"{self._where}: {doing}: not permitted ({text})")
        if isinstance(error, errors.ReadOnlySqlTransaction):
            return StoreError(
                f"{self._where}: {doing}: the server only reads (a standby?) ({text}); "
                "connect to the primary"
            )
        if isinstance(error, errors.DiskFull | errors.OutOfMemory):
            return StoreError(f"{self._where}: {doing}: the server is out of space ({text})")
        if isinstance(error, errors.UndefinedTable | errors.UndefinedColumn):
            return StoreError(
                f"{self._where}: {doing}: certflow's tables are missing or damaged ({text})"
            )
        return StoreError(f"{self._where}: {doing}: {text}")

    def close(self) -> None:
        """Close the connection; the store is not used again."""
        self._closed = True
        self._conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    # --- the shared code's hooks -------------------------------------------------------------

    def _q(self, text: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        return self._conn.execute(self._translated(text), params)

    def _many(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(self._translated(text), rows)

    def _translated(self, text: str) -> str:
        """The shared code's ``?`` and ``:name`` placeholders in psycopg's spelling."""
        found = self._sql_of.get(text)
        if found is None:
            found = _NAMED.sub(r"%(\1)s", text.replace("%", "%%").replace("?", "%s"))
            self._sql_of[text] = found
        return found

    def _put(self, instant: datetime) -> datetime:
        return instant.astimezone(UTC)

    def _get(self, stored: Any) -> datetime | None:
        return None if stored is None else stored.astimezone(UTC)

    def _insert_devices(
        self, rows: Iterator[tuple[Any, ...]], total: int, progress: Progress | None
    ) -> None:
        with (
            self._conn.cursor() as cursor,
            cursor.copy(
                "COPY devices (rollout, idx, device_id, state, attempts, reason, ack_due) "
                "FROM STDIN"
            ) as copy,
        ):
            for done, row in enumerate(rows, 1):
                copy.write_row(row)
                if progress is not None and (done % _COPY_PROGRESS == 0 or done == total):
                    progress(done, total)

    def _created(self) -> None:
        # Statistics now, not when autovacuum gets round to it (a minute or more): without
        # them the planner reads a batch's devices through the rollout's whole key range.
        # Only the tables' owner may; for another role it is a warning, and a lost
        # connection shows up on the next command, so neither stops the creation.
        with suppress(psycopg.Error):
            self._conn.execute("ANALYZE devices")

    def _fetch_devices(self, rollout: int, device_ids: list[str]) -> Cursor:
        # Not an IN list: planned as one index lookup per id whether or not the table
        # has statistics yet (a role that does not own the tables cannot ANALYZE them,
        # and autovacuum comes a minute or more later).
        if len(device_ids) == 1:  # one report: the plain key lookup is the cheapest
            return self._conn.execute(_FETCH_ONE, (device_ids[0], rollout))
        return self._conn.execute(_FETCH, (device_ids, rollout))

    def _batched(self) -> AbstractContextManager[object]:
        return self._conn.pipeline()

    def _committed(self, marker: tuple[int, int, str]) -> None:
        self._marker = marker

    _driver_error = psycopg.Error

    def _begin(self, write: bool) -> None:
        conn = self._connection()
        if conn.info.transaction_status != TransactionStatus.IDLE:
            # PostgreSQL only warns about a second BEGIN, and the inner ROLLBACK would end
            # the outer transaction: refuse, as SQLite does (a store call made from inside
            # another, e.g. from a progress callback).
            raise StoreError(f"{self._where}: a transaction is already open on this store")
        self._marker = None
        try:
            # Named, not the server's default: a writer waits for the rollout's row lock
            # and then reads what the writer before it committed (READ COMMITTED); a
            # database defaulting to REPEATABLE READ would fail it instead.
            conn.execute(
                "BEGIN ISOLATION LEVEL READ COMMITTED"
                if write
                else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            )
        except psycopg.Error as error:
            raise self._error(error, "cannot start a transaction") from None

    def _commit(self, write: bool) -> None:
        conn = self._conn
        try:
            conn.execute("COMMIT")
        except psycopg.Error as error:
            if not (conn.broken or conn.closed) or not write:
                self._rollback()
                raise self._error(error, "cannot commit") from None
            self._in_doubt(error)

    def _rollback(self) -> None:
        conn = self._conn
        if conn.broken or conn.closed:
            return  # the server rolls back a transaction whose connection is gone
        with suppress(psycopg.Error):  # it broke meanwhile; the next command reconnects
            conn.execute("ROLLBACK")

    def _in_doubt(self, error: psycopg.Error) -> None:
        """The connection broke while committing: return if the transaction committed,
        raise :class:`StoreUnavailable` if it did not, :class:`StoreError` if the server
        stays away too long to tell."""
        text = self._first_line(error)
        marker = self._marker
        if marker is None:  # acknowledgements, failures and leases are safe to repeat
            raise StoreUnavailable(
                f"{self._where}: the connection was lost while committing ({text}); it is "
                "safe to repeat (acknowledging twice is harmless)"
            )
        deadline = time.monotonic() + self.in_doubt_wait
        delay = 0.05
        while True:
            try:
                conn = self._connection()
                rollout, seq, body = marker
                # Only a connection was lost: the transaction may still be committing on
                # the server (waiting for a synchronous standby, say), invisible until it
                # ends. Wait for it to let go of the rollout row it locked, or its entry
                # would be found missing and the command, retried, applied twice.
                conn.execute("SELECT 1 FROM rollouts WHERE id = %s FOR SHARE", (rollout,))
                found = conn.execute(
                    "SELECT body = %s FROM journal WHERE rollout = %s AND seq = %s",
                    (body, rollout, seq),
                ).fetchone()
                break
            except (psycopg.Error, StoreError) as failure:
                refused = isinstance(failure, StoreError) and not isinstance(
                    failure, StoreUnavailable
                )  # the server refuses the reconnection for good: waiting cannot tell
                if refused or time.monotonic() + delay > deadline:
                    raise StoreError(
                        f"{self._where}: the connection was lost while committing ({text}) "
                        f"and within {self.in_doubt_wait:g} s the server did not answer or the "
                        "transaction did not end, so whether the command was applied is "
                        "unknown; look at the rollout's "
                        "history before repeating it (a repeated device report is harmless)"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        if found is None or not found[0]:
            raise StoreUnavailable(
                f"{self._where}: the connection was lost while committing ({text}); the "
                "command was not applied, try again"
            )
