"""The SQLite store: the embedded default, a second driver of the declarations.

Theory of operation
-------------------
A rollout is one row of ``rollouts`` (the rollout machine's phase and the per-state
device counts) and one row of ``devices`` per device. Every command runs in one
``BEGIN IMMEDIATE`` transaction:

1. read the rollout row;
2. run the rollout machine through the generic interpreter
   (:mod:`certflow.core.interpreter`): catch-up of the timers due by ``now``, then the
   command. The interpreter reaches the fleet through :class:`_Port`, whose fleet-wide
   moves are ``UPDATE`` statements generated from the declarations
   (:mod:`certflow.store._fleetsql`);
3. a device command reads its one device row, takes its destination and actions from
   the compiled :class:`~certflow.core.interpreter.DeviceTable`, and writes the row back
   (O(1) rows: the counts live in the rollout row and change by the transition's delta);
4. append the journal entry and the effects (the outbox), write the rollout row, commit.

So a refused command, a crash or a kill leaves the database as it was before the
command, and the journal always replays to the stored rollout: each entry is the
command (or batch, or advance) and its instant, and replaying it through the in-memory
evaluator gives the same ``dumps``.

Limits, stated plainly: one :class:`SqliteStore` object belongs to one thread; SQLite
serialises writers, so several processes take turns (``busy_timeout``) rather than
write in parallel; the per-device acknowledgement deadline (``ack_due``) is the store's
form of the in-memory timer queue, equal to it for the shipped rules (a row that moved
a device into ``pushed`` without pushing would keep the previous deadline).
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from certflow.core import commands as c
from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.effects import Effect, PushRoot
from certflow.core.errors import CommandRefused, InvalidInput, TimeWentBackwards
from certflow.core.evaluator import Evaluator
from certflow.core.guards import Situation
from certflow.core.instants import require_utc
from certflow.core.machines import RULES, Rules
from certflow.core.plan import DeviceState, Phase, Plan, RolloutState
from certflow.core.rollout import Rollout
from certflow.core.serialization import (
    decode_command,
    decode_effect,
    decode_phase,
    decode_plan,
    document,
    dumps,
    encode,
    loads,
)
from certflow.core.summary import Overview, overview
from certflow.store._errors import StoreBusy, StoreError, UnknownRollout
from certflow.store._fleetsql import DEVICE_COLUMNS, FleetStatement, fleet_update
from certflow.store._model import DeviceRow, JournalEntry, RolloutInfo, StoredEffect
from certflow.store._schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore", "check_rollout_name"]

Synchronous = Literal["NORMAL", "FULL"]
Progress = Callable[[int, int], None]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,17})$")


def _printable(text: str) -> bool:
    """Whether ``text`` can be stored: SQLite takes UTF-8, and a lone surrogate (what a
    non-UTF-8 byte on a command line becomes) has no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_INSERT_CHUNK = 20_000
_COMMAND_TYPES: dict[str, type] = {
    name: getattr(c, name) for name in c.__all__ if isinstance(getattr(c, name), type)
}
_REPORTS = (c.DeviceInstalled, c.DeviceFailed)


def _utc(name: str, value: object) -> datetime:
    return require_utc(name, value)


def _text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat()


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def check_rollout_name(name: object) -> str:
    """``name`` if it is a valid rollout name, else a clear :class:`InvalidInput`."""
    return _check_name(name)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"rollout name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


@attrs.define
class _Row:
    """The rollout row, as one transaction reads and changes it."""

    id: int
    name: str
    plan: Plan
    phase: Phase
    clock: datetime
    counts: dict[str, int]
    size: int
    seq: int


class _Port:
    """The interpreter's view of one rollout's device rows (a FleetPort)."""

    def __init__(self, store: SqliteStore, row: _Row) -> None:
        self.store = store
        self.row = row

    def untrusting(self) -> int:
        counts = self.row.counts
        return sum(counts.get(name, 0) for name in self.store._untrusting)

    def next_timeout(self) -> datetime | None:
        found = self.store._db.execute(
            "SELECT MIN(ack_due) FROM devices WHERE rollout = ? AND ack_due IS NOT NULL",
            (self.row.id,),
        ).fetchone()[0]
        return _instant(found)

    def move(self, move: i.FleetMove, now: datetime) -> i.FleetResult:
        statement = self.store._statements[move.action]
        row = self.row
        params: dict[str, Any] = {"rollout": row.id, "now": _text(now)}
        if statement.pushes:
            ack = row.plan.policy.ack_timeout
            params["ack_due"] = None if ack is None else _text(now + ack)
        if "timeout_reason" in statement.sql:
            params["timeout_reason"] = i.timeout_reason(row.plan.policy)
        db = self.store._db
        if statement.selection == "due":
            params["due"] = _text(now)
            moved = dict(
                db.execute(
                    "SELECT state, COUNT(*) FROM devices INDEXED BY devices_by_ack_due "
                    "WHERE rollout = ? AND ack_due = ? GROUP BY state",
                    (row.id, params["due"]),
                ).fetchall()
            )
        else:
            moved = {s: row.counts.get(s, 0) for s in statement.sources}
        results = db.execute(statement.sql, params).fetchall()
        names = self.store._states
        for s, d in enumerate(move.dest):
            if d >= 0 and moved.get(names[s]):
                n = moved[names[s]]
                row.counts[names[s]] = row.counts.get(names[s], 0) - n
                row.counts[names[d]] = row.counts.get(names[d], 0) + n
        if statement.pushes:
            results.sort(key=lambda r: (r[2], r[0]))
            pushes: dict[int, list[str]] = {}
            for _, device_id, attempt in results:
                pushes.setdefault(attempt, []).append(device_id)
            return i.FleetResult(pushes=pushes)
        results.sort()
        return i.FleetResult(ids=[device_id for _, device_id, _ in results])

    def drop_timeouts(self) -> None:
        self.store._db.execute(
            "UPDATE devices SET ack_due = NULL WHERE rollout = ? AND ack_due IS NOT NULL",
            (self.row.id,),
        )

    def drop_timeouts_due(self, due: datetime) -> None:
        self.store._db.execute(
            "UPDATE devices SET ack_due = NULL WHERE rollout = ? AND ack_due <= ?",
            (self.row.id, _text(due)),
        )


class SqliteStore:
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
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 5.0,
        clock_skew: timedelta = timedelta(0),
        rules: Rules = RULES,
    ) -> None:
        self.path = Path(path)
        self._where = str(self.path)
        if synchronous not in ("NORMAL", "FULL"):
            raise InvalidInput(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if self.path.is_dir():
            raise StoreError(f"{self._where}: is a folder, not a certflow database")
        if not create and not self.path.exists():
            raise StoreError(
                f"{self._where}: no certflow database there "
                "(create one with `certflow rollout new`, or check --db / CERTFLOW_DB)"
            )
        if not isinstance(clock_skew, timedelta) or clock_skew < timedelta(0):
            raise InvalidInput(f"clock_skew must be a timedelta of 0 or more, got {clock_skew!r}")
        self.busy_timeout = busy_timeout
        self.clock_skew = clock_skew
        self._evaluator = Evaluator(rules)
        self._compiled = compiled = self._evaluator.compiled
        self._states = compiled.device_states
        self._untrusting = tuple(compiled.device_states[s] for s in compiled.untrusting_states)
        self._routes = {_COMMAND_TYPES[name]: route for name, route in compiled.commands.items()}
        self._statements: dict[str, FleetStatement] = {
            name: fleet_update(move, self._states) for name, move in compiled.moves.items()
        }
        unknown = {a.name for a in rules.device.actions} - set(DEVICE_COLUMNS)
        if unknown:
            raise ValueError(f"the store does not know the device actions {sorted(unknown)}")
        self._plans: dict[int, tuple[str, Plan]] = {}
        self._phases: dict[int, tuple[str, Phase]] = {}
        self._db = self._connect(synchronous, create)

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

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions ------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as error:
            raise self._error(error, "cannot start a transaction") from None
        try:
            yield db
        except sqlite3.Error as error:
            self._rollback()
            raise self._error(error, "transaction failed") from None
        except BaseException:
            self._rollback()
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            raise self._error(error, "cannot commit") from None

    def _rollback(self) -> None:
        # After a disk-full or I/O error SQLite may have rolled back already; a second
        # ROLLBACK would raise and hide the real error.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _row(self, db: sqlite3.Connection, name: str) -> _Row:
        if not isinstance(name, str) or not _printable(name):
            raise UnknownRollout(f"{self._where}: no rollout named {name!r}")
        found = db.execute(
            "SELECT id, plan, phase, clock, counts, size, seq FROM rollouts WHERE name = ?",
            (name,),
        ).fetchone()
        if found is None:
            raise UnknownRollout(f"{self._where}: no rollout named {name!r}")
        rollout_id, plan_text, phase_text, clock, counts, size, seq = found
        cached = self._plans.get(rollout_id)
        if cached is None or cached[0] != plan_text:
            cached = (plan_text, decode_plan(json.loads(plan_text)))
            self._plans[rollout_id] = cached
        phase = self._phases.get(rollout_id)
        if phase is None or phase[0] != phase_text:
            phase = (phase_text, decode_phase(json.loads(phase_text)))
            self._phases[rollout_id] = phase
        return _Row(
            rollout_id,
            name,
            cached[1],
            phase[1],
            datetime.fromisoformat(clock),
            json.loads(counts),
            size,
            seq,
        )

    def _save(self, db: sqlite3.Connection, row: _Row, now: datetime) -> None:
        phase = self._phases.get(row.id)
        if phase is None or phase[1] is not row.phase:
            phase = (json.dumps(encode(row.phase), separators=(",", ":")), row.phase)
            self._phases[row.id] = phase
        due = i.next_timer(self._compiled, row.plan, row.phase, None)
        db.execute(
            "UPDATE rollouts SET state = ?, phase = ?, clock = ?, counts = ?, size = ?, "
            "phase_due = ?, seq = ? WHERE id = ?",
            (
                row.phase.state.value,
                phase[0],
                _text(now),
                json.dumps(row.counts, separators=(",", ":")),
                row.size,
                None if due is None else _text(due[0]),
                row.seq,
                row.id,
            ),
        )

    def _check_now(self, row: _Row, now: object) -> datetime:
        at = _utc("now", now)
        if at < row.clock and row.clock - at <= self.clock_skew:
            return row.clock
        if at < row.clock:
            raise TimeWentBackwards(
                f"now ({at.isoformat()}) is earlier than the last instant rollout "
                f"{row.name!r} has seen ({row.clock.isoformat()}); instants must never go "
                "backwards"
            )
        return at

    def _journal(
        self,
        db: sqlite3.Connection,
        row: _Row,
        at: datetime,
        kind: str,
        body: dict[str, Any],
        effects: Sequence[Effect],
    ) -> list[StoredEffect]:
        row.seq += 1
        body = {**body, "state": row.phase.state.value, "effects": len(effects)}
        db.execute(
            "INSERT INTO journal (rollout, seq, at, kind, body) VALUES (?, ?, ?, ?, ?)",
            (row.id, row.seq, _text(at), kind, json.dumps(body, separators=(",", ":"))),
        )
        stored = []
        for position, effect in enumerate(effects):
            db.execute(
                "INSERT INTO outbox (rollout, seq, position, kind, body, due_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.seq,
                    position,
                    type(effect).__name__,
                    json.dumps(encode(effect), separators=(",", ":")),
                    _text(effect.due_at),
                ),
            )
            stored.append(
                StoredEffect(f"{row.name}:{row.seq}:{position}", row.name, effect, None, 0, None)
            )
        return stored

    # --- creating ----------------------------------------------------------------------------

    def create(
        self, name: str, rollout: Rollout, *, progress: Progress | None = None
    ) -> RolloutInfo:
        """Store ``rollout`` (usually new from :func:`certflow.new_rollout` or
        :func:`certflow.certs.rollout_for`) under ``name``; its document is the journal's
        first entry. ``progress(done, total)`` is called as device rows are written."""
        _check_name(name)
        if not isinstance(rollout, Rollout):
            raise InvalidInput(f"rollout must be a certflow.Rollout, got {type(rollout).__name__}")
        text = dumps(rollout)
        parsed = json.loads(text)
        devices = parsed["devices"]
        ids, states, attempts = devices["ids"], devices["states"], devices["attempts"]
        unstorable = next((d for d in ids if not _printable(d)), None)
        if unstorable is not None:
            raise InvalidInput(f"device id {unstorable!r} is not valid UTF-8 text")
        reasons = parsed["failure_reasons"]
        due_of: dict[int, str] = {}
        for group in parsed["awaiting"]:
            for index in group["devices"]:
                due_of[index] = _text(datetime.fromisoformat(group["due"]))
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        plan, phase = rollout.plan, rollout.phase
        due = i.next_timer(self._compiled, plan, phase, None)
        with self._transaction(write=True) as db:
            if db.execute("SELECT 1 FROM rollouts WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"{self._where}: a rollout named {name!r} already exists")
            cursor = db.execute(
                "INSERT INTO rollouts (name, state, plan, phase, clock, counts, size, "
                "phase_due, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (
                    name,
                    phase.state.value,
                    json.dumps(encode(plan), separators=(",", ":")),
                    json.dumps(encode(phase), separators=(",", ":")),
                    _text(rollout.clock),
                    json.dumps(counts, separators=(",", ":")),
                    len(ids),
                    None if due is None else _text(due[0]),
                ),
            )
            rollout_id = cursor.lastrowid
            total = len(ids)
            for start in range(0, total, _INSERT_CHUNK):
                end = min(start + _INSERT_CHUNK, total)
                db.executemany(
                    "INSERT INTO devices (rollout, idx, device_id, state, attempts, reason, "
                    "ack_due) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            rollout_id,
                            index,
                            ids[index],
                            states[index],
                            attempts[index],
                            reasons.get(ids[index]),
                            due_of.get(index),
                        )
                        for index in range(start, end)
                    ),
                )
                if progress is not None:
                    progress(end, total)
            db.execute(
                "INSERT INTO journal (rollout, seq, at, kind, body) VALUES (?, 1, ?, 'create', ?)",
                (rollout_id, _text(rollout.clock), text),
            )
            db.execute("UPDATE rollouts SET seq = 1 WHERE id = ?", (rollout_id,))
        return self._info(name)

    # --- commands ----------------------------------------------------------------------------

    def execute(self, name: str, command: Command, now: datetime) -> list[StoredEffect]:
        """Apply ``command`` to rollout ``name`` at ``now``, as :func:`certflow.apply`
        would (timers due by ``now`` first); one transaction. Returns the effects, as
        placed in the outbox."""
        with self._transaction(write=True) as db:
            row = self._row(db, name)
            at = self._check_now(row, now)
            run = i.Run(self._compiled, row.plan, row.phase, at, _Port(self, row), [])
            i.catch_up(run, at)
            self._command(db, run, row, command)
            row.phase = run.phase
            body = {"command": encode(command)}
            stored = self._journal(db, row, at, "command", body, run.effects)
            self._save(db, row, at)
        return stored

    def execute_many(
        self, name: str, commands: Iterable[Command], now: datetime
    ) -> list[StoredEffect]:
        """Apply ``commands`` in order at ``now``, as :func:`certflow.apply_all` would:
        one transaction, refused whole if any command is refused."""
        batch = list(commands)
        with self._transaction(write=True) as db:
            row = self._row(db, name)
            at = self._check_now(row, now)
            run = i.Run(self._compiled, row.plan, row.phase, at, _Port(self, row), [])
            i.catch_up(run, at)
            for command in batch:
                self._command(db, run, row, command)
            row.phase = run.phase
            body = {"commands": [encode(command) for command in batch]}
            stored = self._journal(db, row, at, "batch", body, run.effects)
            self._save(db, row, at)
        return stored

    def advance(self, name: str, now: datetime) -> list[StoredEffect]:
        """Advance rollout ``name`` to ``now``, as :func:`certflow.advance` would: every
        timer due by then fires, in order, and the rollout's clock moves to ``now``."""
        with self._transaction(write=True) as db:
            row = self._row(db, name)
            at = self._check_now(row, now)
            return self._advance(db, row, at)

    def _advance(self, db: sqlite3.Connection, row: _Row, at: datetime) -> list[StoredEffect]:
        run = i.Run(self._compiled, row.plan, row.phase, at, _Port(self, row), [])
        i.catch_up(run, at)
        row.phase = run.phase
        stored = self._journal(db, row, at, "advance", {}, run.effects)
        self._save(db, row, at)
        return stored

    def tick(self, now: datetime) -> list[StoredEffect]:
        """Advance every rollout with something due by ``now``, each in its own
        transaction. A rollout another process has just advanced is skipped, so two
        schedulers ticking at once produce each effect once."""
        at = _utc("now", now)
        stored: list[StoredEffect] = []
        for name in self._due_names(at):
            with self._transaction(write=True) as db:
                row = self._row(db, name)
                if row.clock > at:
                    continue  # another process moved it past `at`
                if not self._due(db, row, at):
                    continue
                stored += self._advance(db, row, at)
        return stored

    def _due_names(self, at: datetime) -> list[str]:
        running = [s.value for s in RolloutState if s.running]
        marks = ", ".join("?" * len(running))
        with self._transaction(write=False) as db:
            rows = db.execute(
                f"SELECT r.name FROM rollouts r WHERE r.state IN ({marks}) AND ("
                "r.phase_due <= ? OR EXISTS (SELECT 1 FROM devices d WHERE d.rollout = r.id "
                "AND d.ack_due IS NOT NULL AND d.ack_due <= ?)) ORDER BY r.name",
                (*running, _text(at), _text(at)),
            ).fetchall()
        return [r[0] for r in rows]

    def _due(self, db: sqlite3.Connection, row: _Row, at: datetime) -> bool:
        found = i.next_timer(self._compiled, row.plan, row.phase, _Port(self, row))
        return found is not None and found[0] <= at

    def _command(self, db: sqlite3.Connection, run: i.Run, row: _Row, command: Command) -> None:
        route = self._routes.get(type(command))
        if route is None:
            raise InvalidInput(f"{command!r} is not a certflow command")
        machine, trigger = route
        rules = self._compiled.rules
        run.command = type(command).__name__
        if machine == rules.device.name:
            self._device(db, run, row, trigger, command)
        elif machine == rules.rollout.name:
            i.fire(run, trigger)
            i.catch_up(run, run.now)
        else:
            i.fire_restart(run, trigger)
            i.catch_up(run, run.now)

    def _device(
        self, db: sqlite3.Connection, run: i.Run, row: _Row, trigger: str, command: Any
    ) -> None:
        table = self._compiled.device[run.phase.state.value][trigger]
        device_id: str = command.device_id
        if not _printable(device_id):
            raise InvalidInput(f"device id {device_id!r} is not valid UTF-8 text")
        if not _printable(getattr(command, "reason", "")):
            raise InvalidInput(f"the reason {command.reason!r} is not valid UTF-8 text")
        found = db.execute(
            "SELECT idx, state, attempts, reason, last_push, last_report, ack_due "
            "FROM devices WHERE rollout = ? AND device_id = ?",
            (row.id, device_id),
        ).fetchone()
        states = self._states
        if found is None:
            if table.enter is None:
                raise i.unknown_device(device_id)
            i.check_gate(run, table, command, device_id)
            initial = self._compiled.rules.device.initial
            values = [row.size, initial, 0, None, None, None, None]
            row.size += 1
            row.counts[initial] = row.counts.get(initial, 0) + 1
            target, calls = table.enter
            self._transition(run, row, values, device_id, target, calls, command)
            db.execute(
                "INSERT INTO devices (rollout, idx, device_id, state, attempts, reason, "
                "last_push, last_report, ack_due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, values[0], device_id, *values[1:]),
            )
            return
        i.check_gate(run, table, command, device_id)
        source = states.index(found[1])
        dest = table.dest[source]
        if dest == i.IGNORED:
            return
        if dest == i.REFUSED:
            raise i.device_refusal(self._compiled, table, device_id, source, command)
        values = list(found)
        self._transition(run, row, values, device_id, dest, table.calls[source], command)
        db.execute(
            "UPDATE devices SET state = ?, attempts = ?, reason = ?, last_push = ?, "
            "last_report = ?, ack_due = ? WHERE rollout = ? AND idx = ?",
            (*values[1:], row.id, values[0]),
        )

    def _transition(
        self,
        run: i.Run,
        row: _Row,
        values: list[Any],
        device_id: str,
        dest: int,
        calls: tuple[Any, ...],
        command: Any,
    ) -> None:
        """Move one device row (``values``: idx, state, attempts, reason, last_push,
        last_report, ack_due) to ``dest`` and run its device actions."""
        source, target = values[1], self._states[dest]
        values[1] = target
        names = [call.name for call in calls]
        policy = row.plan.policy
        now = run.now
        for name in names:
            if name == "push_root":
                values[2] += 1
                values[4] = _text(now)
                ack = policy.ack_timeout
                values[6] = None if ack is None else _text(now + ack)
                run.effects.append(PushRoot((device_id,), values[2], now))
            elif name == "keep_reason":
                values[3] = command.reason
            elif name == "record_timeout":
                values[3] = i.timeout_reason(policy)
            else:  # pragma: no cover - the constructor refuses unknown actions
                raise ValueError(f"unknown device action {name!r}")
        if "push_root" not in names and target != DeviceState.PUSHED.value:
            values[6] = None
        if isinstance(command, _REPORTS):
            values[5] = _text(now)
        row.counts[source] -= 1
        row.counts[target] = row.counts.get(target, 0) + 1

    # --- reading -----------------------------------------------------------------------------

    def overview(self, name: str, now: datetime) -> Overview:
        """The view-details head of rollout ``name`` at ``now``. If timers fell due by
        then, the rollout is advanced first (as :meth:`tick` would); otherwise this only
        reads. An instant earlier than the rollout's clock is refused, as
        :func:`certflow.summarize` refuses it (within ``clock_skew``: read at the clock)."""
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            at = self._check_now(row, now)
            due = self._due(db, row, at)
        if due:
            with self._transaction(write=True) as db:
                row = self._row(db, name)
                if at >= row.clock and self._due(db, row, at):
                    self._advance(db, row, at)
        with self._transaction(write=False) as db:
            row = self._row(db, name)
        counts = {DeviceState(k): v for k, v in row.counts.items()}
        return overview(row.plan, row.phase, counts, max(at, row.clock), self._evaluator)

    def devices(
        self,
        name: str,
        states: Sequence[DeviceState] = (),
        *,
        after: str | None = None,
        limit: int = 50,
    ) -> list[DeviceRow]:
        """A page of rollout ``name``'s devices in creation order, of ``states`` (all when
        empty), starting after device ``after``: keyset paging, one index range read."""
        if not isinstance(limit, int) or limit < 1:
            raise InvalidInput(f"limit must be a positive number, got {limit!r}")
        wanted = [DeviceState(s).value for s in states]
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            start = -1
            if after is not None:
                found = db.execute(
                    "SELECT idx FROM devices WHERE rollout = ? AND device_id = ?", (row.id, after)
                ).fetchone()
                if found is None:
                    raise i.unknown_device(after)
                start = found[0]
            columns = "idx, device_id, state, attempts, reason, last_push, last_report"
            if wanted:
                # One index range per state, merged by position: a page costs the same
                # whatever the mix of states (an IN list would scan in idx order).
                runs = [
                    db.execute(
                        f"SELECT {columns} FROM devices WHERE rollout = ? AND state = ? "
                        "AND idx > ? ORDER BY idx LIMIT ?",
                        (row.id, state, start, limit),
                    ).fetchall()
                    for state in dict.fromkeys(wanted)
                ]
                rows = list(heapq.merge(*runs))[:limit]
            else:
                rows = db.execute(
                    f"SELECT {columns} FROM devices WHERE rollout = ? AND idx > ? "
                    "ORDER BY idx LIMIT ?",
                    (row.id, start, limit),
                ).fetchall()
        return [
            DeviceRow(d, DeviceState(s), a, r, _instant(p), _instant(rep))
            for _, d, s, a, r, p, rep in rows
        ]

    def refusal(self, name: str, command: Command, now: datetime) -> CommandRefused | None:
        """The refusal an administrator's ``command`` would meet at ``now``, or ``None``;
        as :meth:`certflow.Evaluator.refusal`, it chooses the row without running it, so
        nothing is written. A rollout with timers due by ``now`` is judged as it is; call
        :meth:`overview` (which advances it) first for the answer after them."""
        route = self._routes.get(type(command))
        if route is None or route[0] != self._compiled.rules.rollout.name:
            raise InvalidInput(f"{command!r} is not an administrator's rollout command")
        with self._transaction(write=False) as db:
            row = self._row(db, name)
        at = self._check_now(row, now)
        situation = Situation(
            row.plan, row.phase, max(at, row.clock), _Port(self, row).untrusting()
        )
        return i.refusal(self._compiled, situation, route[1], type(command).__name__)

    def plan(self, name: str) -> Plan:
        """The facts rollout ``name`` was created from (O(1))."""
        with self._transaction(write=False) as db:
            return self._row(db, name).plan

    def device(self, name: str, device_id: str) -> DeviceRow:
        """One device of rollout ``name``; :class:`~certflow.UnknownDevice` if unknown."""
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            found = db.execute(
                "SELECT device_id, state, attempts, reason, last_push, last_report "
                "FROM devices WHERE rollout = ? AND device_id = ?",
                (row.id, device_id),
            ).fetchone()
        if found is None:
            raise i.unknown_device(device_id)
        d, s, a, r, p, rep = found
        return DeviceRow(d, DeviceState(s), a, r, _instant(p), _instant(rep))

    def info(self, name: str) -> RolloutInfo:
        """Rollout ``name``'s line of the list: state, clock, counts, progress (O(1))."""
        return self._info(name)

    def _info(self, name: str) -> RolloutInfo:
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            return self._info_of(db, row)

    def _info_of(self, db: sqlite3.Connection, row: _Row) -> RolloutInfo:
        counts = {DeviceState(k): v for k, v in row.counts.items()}
        head = overview(row.plan, row.phase, counts, row.clock, self._evaluator)
        found = i.next_timer(self._compiled, row.plan, row.phase, _Port(self, row))
        return RolloutInfo(
            row.name,
            row.phase.state,
            row.clock,
            sum(counts.values()),
            {state: counts.get(state, 0) for state in DeviceState},
            head.percent_complete,
            None if found is None else found[0],
        )

    def rollouts(self) -> list[RolloutInfo]:
        """Every rollout, by name."""
        with self._transaction(write=False) as db:
            names = [r[0] for r in db.execute("SELECT name FROM rollouts ORDER BY name")]
            return [self._info_of(db, self._row(db, n)) for n in names]

    def next_due(self, name: str | None = None) -> datetime | None:
        """The next instant at which time moves rollout ``name`` (or any rollout), or
        ``None``: a host's scheduler sleeps until then and calls :meth:`tick`."""
        with self._transaction(write=False) as db:
            if name is not None:
                names = [name]
            else:
                running = [s.value for s in RolloutState if s.running]
                marks = ", ".join("?" * len(running))
                names = [
                    r[0]
                    for r in db.execute(
                        f"SELECT name FROM rollouts WHERE state IN ({marks})", running
                    )
                ]
            found = [self._info_of(db, self._row(db, n)).next_due for n in names]
        dues = [d for d in found if d is not None]
        return min(dues) if dues else None

    def dumps(self, name: str) -> str:
        """Rollout ``name`` as :func:`certflow.dumps` writes it (the same text as the
        in-memory rollout with the same history)."""
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            ids: list[str] = []
            states: list[str] = []
            attempts: list[int] = []
            for device_id, state, attempt in db.execute(
                "SELECT device_id, state, attempts FROM devices WHERE rollout = ? ORDER BY idx",
                (row.id,),
            ):
                ids.append(device_id)
                states.append(state)
                attempts.append(attempt)
            reasons = dict(
                db.execute(
                    "SELECT device_id, reason FROM devices WHERE rollout = ? "
                    "AND reason IS NOT NULL ORDER BY idx",
                    (row.id,),
                ).fetchall()
            )
            awaiting: list[tuple[datetime, list[int]]] = []
            for due, index in db.execute(
                "SELECT ack_due, idx FROM devices WHERE rollout = ? AND ack_due IS NOT NULL "
                "ORDER BY ack_due, idx",
                (row.id,),
            ):
                instant = datetime.fromisoformat(due)
                if not awaiting or awaiting[-1][0] != instant:
                    awaiting.append((instant, []))
                awaiting[-1][1].append(index)
        return document(
            row.plan,
            row.phase,
            row.clock,
            ids=ids,
            states=states,
            attempts=attempts,
            reasons=reasons,
            awaiting=awaiting,
        )

    def journal(self, name: str) -> Iterator[JournalEntry]:
        """Rollout ``name``'s journal, oldest first."""
        with self._transaction(write=False) as db:
            row = self._row(db, name)
            entries = db.execute(
                "SELECT seq, at, kind, body FROM journal WHERE rollout = ? ORDER BY seq",
                (row.id,),
            ).fetchall()
        for seq, at, kind, text in entries:
            body = json.loads(text)
            if kind == "create":
                commands: tuple[Command, ...] = ()
                state = RolloutState(body["phase"]["state"])
                effects: tuple[str, ...] = ()
            else:
                listed = body.get("commands") or ([body["command"]] if "command" in body else [])
                commands = tuple(decode_command(x) for x in listed)
                state = RolloutState(body["state"])
                effects = tuple(f"{name}:{seq}:{p}" for p in range(body["effects"]))
            yield JournalEntry(
                name, seq, datetime.fromisoformat(at), kind, commands, state, effects, body
            )

    def activity(self, name: str) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
        """What each device of rollout ``name`` was sent and answered, from the journal:
        the instants of its pushes (``PushRoot`` effects) and of the reports that answered
        a push (``DeviceInstalled``/``DeviceFailed`` while it was pushed; duplicates left
        out), in order. The forecast's input (:func:`certflow.sim.forecast`).

        Folds the journal through the in-memory evaluator one command at a time (a batch
        equals its commands applied in turn), so it costs a replay.
        """
        evaluator = self._evaluator
        pushes: dict[str, list[datetime]] = {}
        reports: dict[str, list[datetime]] = {}
        rollout: Rollout | None = None

        def pushed(effects: Iterable[Effect]) -> None:
            for effect in effects:
                if isinstance(effect, PushRoot):
                    for device_id in effect.device_ids:
                        pushes.setdefault(device_id, []).append(effect.due_at)

        for entry in self.journal(name):
            if entry.kind == "create":
                rollout = loads(json.dumps(entry.body))
                continue
            if rollout is None:
                raise StoreError(f"{self._where}: rollout {name!r}: journal has no creation")
            step = evaluator.advance(rollout, entry.at)
            rollout = step.rollout
            pushed(step.effects)
            for command in entry.commands:
                answers = (
                    isinstance(command, _REPORTS)
                    and rollout.device_state(command.device_id) is DeviceState.PUSHED
                )
                step = evaluator.apply(rollout, command, entry.at)
                rollout = step.rollout
                pushed(step.effects)
                if answers:
                    reports.setdefault(command.device_id, []).append(entry.at)  # type: ignore[union-attr]
        return pushes, reports

    def replay(self, name: str) -> Rollout:
        """Rollout ``name`` rebuilt from its journal alone, through the in-memory
        evaluator: ``dumps(store.replay(n)) == store.dumps(n)``."""
        evaluator = self._evaluator
        rollout: Rollout | None = None
        for entry in self.journal(name):
            if entry.kind == "create":
                rollout = loads(json.dumps(entry.body))
            elif rollout is None:
                raise StoreError(f"{self._where}: rollout {name!r}: journal has no creation")
            elif entry.kind == "advance":
                rollout = evaluator.advance(rollout, entry.at).rollout
            elif entry.kind == "command":
                rollout = evaluator.apply(rollout, entry.commands[0], entry.at).rollout
            else:
                rollout = evaluator.apply_all(rollout, entry.commands, entry.at).rollout
        if rollout is None:
            raise StoreError(f"{self._where}: rollout {name!r}: journal has no creation")
        return rollout

    # --- the outbox --------------------------------------------------------------------------

    def effects(
        self,
        name: str | None = None,
        *,
        include_acknowledged: bool = False,
        due_by: datetime | None = None,
    ) -> list[StoredEffect]:
        """The effects in the outbox, pending only unless ``include_acknowledged``, only
        those due by ``due_by`` if given, in the order they were emitted."""
        where = [] if include_acknowledged else ["o.acked_at IS NULL"]
        params: list[Any] = []
        if due_by is not None:
            where.append("o.due_at <= ?")
            params.append(_text(_utc("due_by", due_by)))
        with self._transaction(write=False) as db:
            if name is not None:
                where.append("o.rollout = ?")
                params.append(self._row(db, name).id)
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = db.execute(
                "SELECT r.name, o.seq, o.position, o.body, o.acked_at, o.failures, o.last_error "
                f"FROM outbox o JOIN rollouts r ON r.id = o.rollout {clause} "
                "ORDER BY r.name, o.seq, o.position",
                params,
            ).fetchall()
        return [
            StoredEffect(
                f"{n}:{seq}:{pos}",
                n,
                decode_effect(json.loads(body)),
                _instant(acked),
                failures,
                error,
            )
            for n, seq, pos, body, acked, failures, error in rows
        ]

    def _locate(self, db: sqlite3.Connection, effect_id: str) -> tuple[int, int, int]:
        name, _, rest = str(effect_id).partition(":")
        seq, _, position = rest.partition(":")
        found = None
        # Exactly as the store spells ids: ASCII digits, no leading zeros, within SQLite's range.
        if _NUMBER.match(seq) and _NUMBER.match(position) and _printable(name):
            row = db.execute("SELECT id FROM rollouts WHERE name = ?", (name,)).fetchone()
            if row is not None:
                found = db.execute(
                    "SELECT rollout, seq, position FROM outbox WHERE rollout = ? AND seq = ? "
                    "AND position = ?",
                    (row[0], int(seq), int(position)),
                ).fetchone()
        if found is None:
            raise InvalidInput(f"{self._where}: no effect with id {effect_id!r}")
        return found  # type: ignore[no-any-return]

    def acknowledge(self, effect_ids: Iterable[str], now: datetime) -> int:
        """Mark effects as performed; returns how many were pending. Acknowledging twice
        is harmless; an unknown id is refused and nothing is acknowledged."""
        at = _text(_utc("now", now))
        ids = list(effect_ids)
        acknowledged = 0
        with self._transaction(write=True) as db:
            keys = [self._locate(db, effect_id) for effect_id in ids]
            for key in keys:
                acknowledged += db.execute(
                    "UPDATE outbox SET acked_at = ? WHERE rollout = ? AND seq = ? "
                    "AND position = ? AND acked_at IS NULL",
                    (at, *key),
                ).rowcount
        return acknowledged

    def record_failure(self, effect_id: str, error: str) -> None:
        """Remember that delivering an effect failed; it stays pending."""
        with self._transaction(write=True) as db:
            key = self._locate(db, effect_id)
            db.execute(
                "UPDATE outbox SET failures = failures + 1, last_error = ? WHERE rollout = ? "
                "AND seq = ? AND position = ? AND acked_at IS NULL",
                (error[:2000], *key),
            )


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
