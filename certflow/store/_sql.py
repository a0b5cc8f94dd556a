"""The SQL store: one driver of the declarations, for every SQL backend.

Theory of operation
-------------------
A rollout is one row of ``rollouts`` (the rollout machine's phase and the per-state
device counts) and one row of ``devices`` per device. Every command runs in one write
transaction, which the backend makes exclusive for that rollout (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: the rollout row locked ``FOR NO KEY UPDATE``):

1. read the rollout row;
2. run the rollout machine through the generic interpreter
   (:mod:`certflow.core.interpreter`): catch-up of the timers due by ``now``, then the
   command. The interpreter reaches the fleet through the device port
   (:class:`~certflow.store._port.Port`), whose fleet-wide moves are ``UPDATE``
   statements generated from the declarations (:mod:`certflow.store._fleetsql`);
3. a device command reads its one device row, takes its destination and actions from
   the compiled :class:`~certflow.core.interpreter.DeviceTable`, and keeps the new row in
   the port until the transaction writes it (O(1) rows per report: the counts live in
   the rollout row and change by the transition's delta). A batch reads its devices a
   chunk at a time through the device-id index and writes them back with one
   ``executemany``;
4. append the journal entry and the effects (the outbox), write the rollout row, commit.

So a refused command, a crash or a kill leaves the database as it was before the
command, and the journal always replays to the stored rollout: each entry is the
command (or batch, or advance) and its instant, and replaying it through the in-memory
evaluator gives the same ``dumps``.

A backend (:class:`~certflow.store.SqliteStore`,
:class:`~certflow.store.PostgresStore`) supplies the connection, the transactions, the
error messages, the placeholder style, how an instant is stored, and how a whole fleet
is inserted; every rule and every statement's meaning is in the shared driver, once.

Limits, stated plainly: one store object belongs to one thread; writers of one rollout
take turns (several rollouts may be written at once where the backend allows it); the
per-device acknowledgement deadline (``ack_due``) is the store's form of the in-memory
timer queue, equal to it for the shipped rules (a row that moved a device into
``pushed`` without pushing would keep the previous deadline).

Where each part lives: :class:`SqlStore` (here) holds the commands and the reads; its
journal and outbox methods run the functions of :mod:`._journal` (appending an entry,
reading, replay, activity) and :mod:`._outbox`, which see the store through the
:class:`~certflow.store._driver.Driver` protocol; :mod:`._port` holds a transaction's
device rows, and :mod:`._inputs` says what the store accepts.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, ClassVar

from certflow.core import commands as c
from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.effects import PushRoot
from certflow.core.errors import CommandRefused, InvalidInput, TimeWentBackwards
from certflow.core.evaluator import Evaluator
from certflow.core.guards import Situation
from certflow.core.instants import require_utc
from certflow.core.machines import Rules
from certflow.core.plan import DeviceState, Phase, Plan, RolloutState
from certflow.core.preview import Preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import (
    decode_phase,
    decode_plan,
    document,
    dumps,
    encode,
)
from certflow.core.summary import Overview, overview
from certflow.store import _journal, _outbox
from certflow.store._driver import DEVICE, REPORTS, Cursor, Progress, Row
from certflow.store._errors import StoreError, UnknownRollout
from certflow.store._fleetsql import DEVICE_COLUMNS, FleetStatement, fleet_update
from certflow.store._inputs import MOST, can_store, check_rollout_name, is_count, storable
from certflow.store._model import DeviceRow, JournalEntry, RolloutInfo, StoredEffect
from certflow.store._port import Held, Port

__all__ = ["Cursor", "Progress", "SqlStore", "check_rollout_name", "storable"]

_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,17})$")
_COMMAND_TYPES: dict[str, type] = {
    name: getattr(c, name) for name in c.__all__ if isinstance(getattr(c, name), type)
}
# Device rows a batch reads per statement: well under every backend's parameter limit.
_FETCH_CHUNK = 500


class SqlStore:
    """What every SQL backend shares: the commands, the reads, the journal and the outbox.

    A backend sets ``_where`` (the database as messages name it) and implements the
    hooks below; its constructor calls :meth:`_setup` first.
    """

    _where: str
    clock_skew: timedelta
    # A read of the acknowledgement deadlines that goes through their index.
    _by_ack_due: ClassVar[str] = "devices"
    # A read of devices by id that goes through that index (a batch's IN lists).
    _by_device_id: ClassVar[str] = "devices"
    # How many devices a batch reads per statement.
    _fetch_chunk: ClassVar[int] = _FETCH_CHUNK
    # What a write transaction appends to its read of the rollout row to own it.
    _lock_rollout: ClassVar[str] = ""
    # What a lease appends to its read of the outbox, so that drainers skip each other.
    _skip_locked: ClassVar[str] = ""
    # The driver's own error class, which every backend turns into a StoreError.
    _driver_error: ClassVar[type[Exception]] = Exception

    # --- the backend's hooks ---------------------------------------------------------------

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        """Run one statement, written with ``?`` and ``:name`` placeholders."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        raise NotImplementedError

    def _put(self, instant: datetime) -> Any:
        """An instant as the database stores it."""
        raise NotImplementedError

    def _get(self, stored: Any) -> datetime | None:
        """A stored instant (or NULL) as a UTC datetime."""
        raise NotImplementedError

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[None]:
        """One transaction: a write one owns what it changes; a read one sees one
        snapshot. Whatever fails inside it rolls it back; a driver's error becomes a
        :class:`StoreError` that names the database."""
        self._begin(write)
        try:
            yield
        except self._driver_error as error:
            self._rollback()
            raise self._error(error, "transaction failed") from None
        except BaseException:
            self._rollback()
            raise
        self._commit(write)

    @contextmanager
    def _rehearsal(self) -> Iterator[None]:
        """A write transaction that is always rolled back: a command run for its answer
        (:meth:`preview`), never kept."""
        self._begin(True)
        try:
            yield
        except self._driver_error as error:
            raise self._error(error, "preview failed") from None
        finally:
            self._rollback()

    def _begin(self, write: bool) -> None:
        """Start a write (exclusive for what it changes) or a read transaction."""
        raise NotImplementedError

    def _commit(self, write: bool) -> None:
        """Commit the open transaction (rolled back, and a StoreError, if that fails)."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Roll the open transaction back, if the database still has one."""
        raise NotImplementedError

    def _error(self, error: Any, doing: str) -> StoreError:
        """The driver's ``error`` (an instance of ``_driver_error``: each backend names its
        own class) as a StoreError naming the database and the problem."""
        raise NotImplementedError

    def _insert_devices(
        self, rows: Iterator[tuple[Any, ...]], total: int, progress: Progress | None
    ) -> None:
        """Insert a new rollout's device rows (rollout, idx, device_id, state, attempts,
        reason, ack_due), calling ``progress(done, total)`` as they go."""
        raise NotImplementedError

    def _fetch_devices(self, rollout: int, device_ids: list[str]) -> Cursor:
        """The rows (device_id, then the device columns) of those of ``device_ids`` that
        rollout ``rollout`` has, through the device-id index."""
        marks = ", ".join("?" * len(device_ids))
        return self._q(
            f"SELECT device_id, {DEVICE} FROM {self._by_device_id} WHERE rollout = ? "
            f"AND device_id IN ({marks})",
            (rollout, *device_ids),
        )

    def _batched(self) -> AbstractContextManager[object]:
        """A block of writes whose results nobody reads: a backend may send them together
        (PostgreSQL: one pipeline, one round trip). Errors surface by the block's end."""
        return nullcontext()

    def _created(self) -> None:
        """A new rollout's device rows were committed (a backend may gather statistics)."""

    def _committed(self, marker: tuple[int, int, str]) -> None:
        """Note the journal entry (rollout id, seq, body) the open transaction writes, so
        that a backend that loses its connection while committing can look it up."""

    def close(self) -> None:
        """Release the database."""
        raise NotImplementedError

    # --- setting up --------------------------------------------------------------------------

    def _setup(self, clock_skew: timedelta, rules: Rules) -> None:
        if not isinstance(clock_skew, timedelta) or clock_skew < timedelta(0):
            raise InvalidInput(f"clock_skew must be a timedelta of 0 or more, got {clock_skew!r}")
        self.clock_skew = clock_skew
        self._evaluator = Evaluator(rules)
        self._compiled = compiled = self._evaluator.compiled
        self._states = compiled.device_states
        self._untrusting = tuple(compiled.device_states[s] for s in compiled.untrusting_states)
        self._routes = {_COMMAND_TYPES[name]: route for name, route in compiled.commands.items()}
        self._statements: dict[str, FleetStatement] = {
            name: fleet_update(move, self._states, by_ack_due=self._by_ack_due)
            for name, move in compiled.moves.items()
        }
        unknown = {a.name for a in rules.device.actions} - set(DEVICE_COLUMNS)
        if unknown:
            raise ValueError(f"the store does not know the device actions {sorted(unknown)}")
        self._plans: dict[int, tuple[str, Plan]] = {}
        self._phases: dict[int, tuple[str, Phase]] = {}

    @property
    def location(self) -> str:
        """The database as messages name it: a file path, or a URL without its password."""
        return self._where

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the rollout row ---------------------------------------------------------------------

    def _unknown(self, name: object) -> UnknownRollout:
        return UnknownRollout(f"{self._where}: no rollout named {name!r}")

    def _row(self, name: str, *, own: bool = False) -> Row:
        if not isinstance(name, str) or not can_store(name):
            raise self._unknown(name)
        found = self._q(
            "SELECT id, plan, phase, clock, counts, size, seq FROM rollouts WHERE name = ?"
            + (self._lock_rollout if own else ""),
            (name,),
        ).fetchone()
        if found is None:
            raise self._unknown(name)
        rollout_id, plan_text, phase_text, clock, counts, size, seq = found
        cached = self._plans.get(rollout_id)
        if cached is None or cached[0] != plan_text:
            cached = (plan_text, decode_plan(json.loads(plan_text)))
            self._plans[rollout_id] = cached
        phase = self._phases.get(rollout_id)
        if phase is None or phase[0] != phase_text:
            phase = (phase_text, decode_phase(json.loads(phase_text)))
            self._phases[rollout_id] = phase
        at = self._get(clock)
        if at is None:  # pragma: no cover - the column is NOT NULL
            raise StoreError(f"{self._where}: rollout {name!r} has no clock")
        return Row(rollout_id, name, cached[1], phase[1], at, json.loads(counts), size, seq)

    def _save(self, row: Row, now: datetime) -> None:
        phase = self._phases.get(row.id)
        if phase is None or phase[1] is not row.phase:
            phase = (json.dumps(encode(row.phase), separators=(",", ":")), row.phase)
            self._phases[row.id] = phase
        due = i.next_timer(self._compiled, row.plan, row.phase, None)
        self._q(
            "UPDATE rollouts SET state = ?, phase = ?, clock = ?, counts = ?, size = ?, "
            "phase_due = ?, seq = ? WHERE id = ?",
            (
                row.phase.state.value,
                phase[0],
                self._put(now),
                json.dumps(row.counts, separators=(",", ":")),
                row.size,
                None if due is None else self._put(due[0]),
                row.seq,
                row.id,
            ),
        )

    def _check_now(self, row: Row, now: object) -> datetime:
        at = require_utc("now", now)
        if at < row.clock and row.clock - at <= self.clock_skew:
            return row.clock
        if at < row.clock:
            raise TimeWentBackwards(
                f"now ({at.isoformat()}) is earlier than the last instant rollout "
                f"{row.name!r} has seen ({row.clock.isoformat()}); instants must never go "
                "backwards"
            )
        return at

    # --- creating ----------------------------------------------------------------------------

    def create(
        self, name: str, rollout: Rollout, *, progress: Progress | None = None
    ) -> RolloutInfo:
        """Store ``rollout`` (usually new from :func:`certflow.new_rollout` or
        :func:`certflow.certs.rollout_for`) under ``name``; its document is the journal's
        first entry. ``progress(done, total)`` is called as device rows are written."""
        check_rollout_name(name)
        if not isinstance(rollout, Rollout):
            raise InvalidInput(f"rollout must be a certflow.Rollout, got {type(rollout).__name__}")
        text = dumps(rollout)
        parsed = json.loads(text)
        devices = parsed["devices"]
        ids, states, attempts = devices["ids"], devices["states"], devices["attempts"]
        for device_id in ids:
            storable("device id", device_id)
        reasons = parsed["failure_reasons"]
        for reason in reasons.values():
            storable("failure reason", reason)
        due_of: dict[int, Any] = {}
        for group in parsed["awaiting"]:
            due = self._put(datetime.fromisoformat(group["due"]))
            for index in group["devices"]:
                due_of[index] = due
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        plan, phase = rollout.plan, rollout.phase
        due = i.next_timer(self._compiled, plan, phase, None)
        with self._transaction(write=True):
            if self._q("SELECT 1 FROM rollouts WHERE name = ?", (name,)).fetchone():
                raise InvalidInput(f"{self._where}: a rollout named {name!r} already exists")
            rollout_id = self._q(
                "INSERT INTO rollouts (name, state, plan, phase, clock, counts, size, "
                "phase_due, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
                (
                    name,
                    phase.state.value,
                    json.dumps(encode(plan), separators=(",", ":")),
                    json.dumps(encode(phase), separators=(",", ":")),
                    self._put(rollout.clock),
                    json.dumps(counts, separators=(",", ":")),
                    len(ids),
                    None if due is None else self._put(due[0]),
                ),
            ).fetchone()[0]
            self._committed((rollout_id, 1, text))
            self._insert_devices(
                (
                    (
                        rollout_id,
                        index,
                        device_id,
                        states[index],
                        attempts[index],
                        reasons.get(device_id),
                        due_of.get(index),
                    )
                    for index, device_id in enumerate(ids)
                ),
                len(ids),
                progress,
            )
            self._q(
                "INSERT INTO journal (rollout, seq, at, kind, body) VALUES (?, 1, ?, 'create', ?)",
                (rollout_id, self._put(rollout.clock), text),
            )
        self._created()
        return self.info(name)

    # --- commands ----------------------------------------------------------------------------

    def execute(self, name: str, command: Command, now: datetime) -> list[StoredEffect]:
        """Apply ``command`` to rollout ``name`` at ``now``, as :func:`certflow.apply`
        would (timers due by ``now`` first); one transaction. Returns the effects, as
        placed in the outbox."""
        return self._apply(name, [command], now, "command")

    def execute_many(
        self, name: str, commands: Iterable[Command], now: datetime
    ) -> list[StoredEffect]:
        """Apply ``commands`` in order at ``now``, as :func:`certflow.apply_all` would:
        one transaction, refused whole if any command is refused."""
        return self._apply(name, list(commands), now, "batch")

    def _apply(
        self, name: str, batch: list[Command], now: datetime, kind: str
    ) -> list[StoredEffect]:
        with self._transaction(write=True):
            return self._run(name, batch, now, kind)[0]

    def _run(
        self, name: str, batch: list[Command], now: datetime, kind: str
    ) -> tuple[list[StoredEffect], Row, datetime, Overview]:
        """Apply ``batch`` inside the open write transaction: the effects as stored, the
        rollout row after it, the instant it ran at, and the rollout's head just before
        the batch (the timers due by then fired)."""
        row = self._row(name, own=True)
        at = self._check_now(row, now)
        port = Port(self, row)
        run = i.Run(self._compiled, row.plan, row.phase, at, port, [])
        i.catch_up(run, at)
        before = self._head(row.plan, run.phase, row.counts, at)
        # Every device the batch names, read at once (a device command names one).
        named = (getattr(command, "device_id", None) for command in batch)
        port.fetch(d for d in named if isinstance(d, str) and can_store(d))
        for command in batch:
            self._command(run, port, command)
        row.phase = run.phase
        if kind == "command":
            body: dict[str, Any] = {"command": encode(batch[0])}
        else:
            body = {"commands": [encode(command) for command in batch]}
        with self._batched():
            port.flush()
            stored = _journal.append(self, row, at, kind, body, run.effects)
            self._save(row, at)
        return stored, row, at, before

    def _head(self, plan: Plan, phase: Phase, counts: dict[str, int], at: datetime) -> Overview:
        states = {DeviceState(k): v for k, v in counts.items()}
        return overview(plan, phase, states, at, self._evaluator)

    def preview(self, name: str, command: Command, now: datetime) -> Preview:
        """What ``command`` would do to rollout ``name`` at ``now``, and nothing done: the
        store runs it exactly as :meth:`execute` would (timers due by ``now`` first, the
        same rows, guards and device actions) in a transaction that it then rolls back.
        The answer is the store's own, as :func:`certflow.preview` is the evaluator's:
        the refusal, or the effects and the overview after the command. It holds the
        rollout's write lock while it runs, as a command does."""
        with self._rehearsal():
            try:
                stored, row, at, before = self._run(name, [command], now, "command")
            except CommandRefused as refusal:
                return Preview((), None, refusal)
            after = self._head(row.plan, row.phase, row.counts, at)
        return Preview(tuple(item.effect for item in stored), after, before=before)

    def advance(self, name: str, now: datetime) -> list[StoredEffect]:
        """Advance rollout ``name`` to ``now``, as :func:`certflow.advance` would: every
        timer due by then fires, in order, and the rollout's clock moves to ``now``."""
        with self._transaction(write=True):
            row = self._row(name, own=True)
            return self._advance(row, self._check_now(row, now))

    def _advance(self, row: Row, at: datetime) -> list[StoredEffect]:
        run = i.Run(self._compiled, row.plan, row.phase, at, Port(self, row), [])
        i.catch_up(run, at)
        row.phase = run.phase
        stored = _journal.append(self, row, at, "advance", {}, run.effects)
        self._save(row, at)
        return stored

    def tick(self, now: datetime) -> list[StoredEffect]:
        """Advance every rollout with something due by ``now``, each in its own
        transaction. A rollout another process has just advanced is skipped, so two
        schedulers ticking at once produce each effect once."""
        at = require_utc("now", now)
        stored: list[StoredEffect] = []
        for name in self._due_names(at):
            with self._transaction(write=True):
                row = self._row(name, own=True)
                if row.clock > at:
                    continue  # another process moved it past `at`
                if not self._due(row, at):
                    continue
                stored += self._advance(row, at)
        return stored

    def _due_names(self, at: datetime) -> list[str]:
        running = [s.value for s in RolloutState if s.running]
        marks = ", ".join("?" * len(running))
        with self._transaction(write=False):
            rows = self._q(
                f"SELECT r.name FROM rollouts r WHERE r.state IN ({marks}) AND ("
                "r.phase_due <= ? OR EXISTS (SELECT 1 FROM devices d WHERE d.rollout = r.id "
                "AND d.ack_due IS NOT NULL AND d.ack_due <= ?)) ORDER BY r.name",
                (*running, self._put(at), self._put(at)),
            ).fetchall()
        return [r[0] for r in rows]

    def _due(self, row: Row, at: datetime) -> bool:
        found = i.next_timer(self._compiled, row.plan, row.phase, Port(self, row))
        return found is not None and found[0] <= at

    def _command(self, run: i.Run, port: Port, command: Command) -> None:
        route = self._routes.get(type(command))
        if route is None:
            raise InvalidInput(f"{command!r} is not a certflow command")
        machine, trigger = route
        rules = self._compiled.rules
        run.command = type(command).__name__
        if machine == rules.device.name:
            self._device(run, port, trigger, command)
        elif machine == rules.rollout.name:
            i.fire(run, trigger)
            i.catch_up(run, run.now)
        else:
            i.fire_restart(run, trigger)
            i.catch_up(run, run.now)

    def _device(self, run: i.Run, port: Port, trigger: str, command: Any) -> None:
        table = self._compiled.device[run.phase.state.value][trigger]
        device_id: str = storable("device id", command.device_id)
        storable("the reason", getattr(command, "reason", ""))
        row = port.row
        held = port.device(device_id)
        if held is None:
            if table.enter is None:
                raise i.unknown_device(device_id)
            i.check_gate(run, table, command, device_id)
            initial = self._compiled.rules.device.initial
            held = Held([row.size, initial, 0, None, None, None, None], new=True)
            row.size += 1
            row.counts[initial] = row.counts.get(initial, 0) + 1
            target, calls = table.enter
            self._transition(run, row, held, device_id, target, calls, command)
            port.devices[device_id] = held
            return
        i.check_gate(run, table, command, device_id)
        source = self._states.index(held.values[1])
        dest = table.dest[source]
        if dest == i.IGNORED:
            return
        if dest == i.REFUSED:
            raise i.device_refusal(self._compiled, table, device_id, source, command)
        self._transition(run, row, held, device_id, dest, table.calls[source], command)

    def _transition(
        self,
        run: i.Run,
        row: Row,
        held: Held,
        device_id: str,
        dest: int,
        calls: tuple[Any, ...],
        command: Any,
    ) -> None:
        """Move one held device row to ``dest`` and run its device actions."""
        values = held.values
        source, target = values[1], self._states[dest]
        values[1] = target
        names = [call.name for call in calls]
        policy = row.plan.policy
        now = run.now
        for name in names:
            if name == "push_root":
                values[2] += 1
                values[4] = self._put(now)
                ack = policy.ack_timeout
                values[6] = None if ack is None else self._put(now + ack)
                run.effects.append(PushRoot((device_id,), values[2], now))
            elif name == "keep_reason":
                values[3] = command.reason
            elif name == "record_timeout":
                values[3] = i.timeout_reason(policy)
            else:  # pragma: no cover - the constructor refuses unknown actions
                raise ValueError(f"unknown device action {name!r}")
        if "push_root" not in names and target != DeviceState.PUSHED.value:
            values[6] = None
        if isinstance(command, REPORTS):
            values[5] = self._put(now)
        held.dirty = True
        row.counts[source] -= 1
        row.counts[target] = row.counts.get(target, 0) + 1

    # --- reading -----------------------------------------------------------------------------

    def overview(self, name: str, now: datetime) -> Overview:
        """The view-details head of rollout ``name`` at ``now``. If timers fell due by
        then, the rollout is advanced first (as :meth:`tick` would); otherwise this only
        reads. An instant earlier than the rollout's clock is refused, as
        :func:`certflow.summarize` refuses it (within ``clock_skew``: read at the clock)."""
        with self._transaction(write=False):
            row = self._row(name)
            at = self._check_now(row, now)
            due = self._due(row, at)
        if due:
            with self._transaction(write=True):
                row = self._row(name, own=True)
                if at >= row.clock and self._due(row, at):
                    self._advance(row, at)
            with self._transaction(write=False):
                row = self._row(name)
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
        if not is_count(limit):
            raise InvalidInput(f"limit must be a positive number up to {MOST}, got {limit!r}")
        wanted = [DeviceState(s).value for s in states]
        with self._transaction(write=False):
            row = self._row(name)
            start = -1
            if after is not None:
                found = None
                if can_store(after):
                    found = self._q(
                        "SELECT idx FROM devices WHERE rollout = ? AND device_id = ?",
                        (row.id, after),
                    ).fetchone()
                if found is None:
                    raise i.unknown_device(after)
                start = found[0]
            columns = "idx, device_id, state, attempts, reason, last_push, last_report"
            if wanted:
                # One index range per state, merged by position: a page costs the same
                # whatever the mix of states (an IN list would scan in idx order).
                runs = [
                    self._q(
                        f"SELECT {columns} FROM devices WHERE rollout = ? AND state = ? "
                        "AND idx > ? ORDER BY idx LIMIT ?",
                        (row.id, state, start, limit),
                    ).fetchall()
                    for state in dict.fromkeys(wanted)
                ]
                rows = list(heapq.merge(*runs))[:limit]
            else:
                rows = self._q(
                    f"SELECT {columns} FROM devices WHERE rollout = ? AND idx > ? "
                    "ORDER BY idx LIMIT ?",
                    (row.id, start, limit),
                ).fetchall()
        return [
            DeviceRow(d, DeviceState(s), a, r, self._get(p), self._get(rep))
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
        with self._transaction(write=False):
            row = self._row(name)
        at = self._check_now(row, now)
        situation = Situation(row.plan, row.phase, max(at, row.clock), Port(self, row).untrusting())
        return i.refusal(self._compiled, situation, route[1], type(command).__name__)

    def plan(self, name: str) -> Plan:
        """The facts rollout ``name`` was created from (O(1))."""
        with self._transaction(write=False):
            return self._row(name).plan

    def device(self, name: str, device_id: str) -> DeviceRow:
        """One device of rollout ``name``; :class:`~certflow.UnknownDevice` if unknown."""
        with self._transaction(write=False):
            row = self._row(name)
            found = None
            if isinstance(device_id, str) and can_store(device_id):
                found = self._q(
                    "SELECT device_id, state, attempts, reason, last_push, last_report "
                    "FROM devices WHERE rollout = ? AND device_id = ?",
                    (row.id, device_id),
                ).fetchone()
        if found is None:
            raise i.unknown_device(device_id)
        d, s, a, r, p, rep = found
        return DeviceRow(d, DeviceState(s), a, r, self._get(p), self._get(rep))

    def info(self, name: str) -> RolloutInfo:
        """Rollout ``name``'s line of the list: state, clock, counts, progress (O(1))."""
        with self._transaction(write=False):
            return self._info_of(self._row(name))

    def _info_of(self, row: Row) -> RolloutInfo:
        counts = {DeviceState(k): v for k, v in row.counts.items()}
        head = overview(row.plan, row.phase, counts, row.clock, self._evaluator)
        found = i.next_timer(self._compiled, row.plan, row.phase, Port(self, row))
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
        with self._transaction(write=False):
            names = [r[0] for r in self._q("SELECT name FROM rollouts ORDER BY name")]
            return [self._info_of(self._row(n)) for n in names]

    def next_due(self, name: str | None = None) -> datetime | None:
        """The next instant at which time moves rollout ``name`` (or any rollout), or
        ``None``: a host's scheduler sleeps until then and calls :meth:`tick`."""
        with self._transaction(write=False):
            if name is not None:
                names = [name]
            else:
                running = [s.value for s in RolloutState if s.running]
                marks = ", ".join("?" * len(running))
                names = [
                    r[0]
                    for r in self._q(f"SELECT name FROM rollouts WHERE state IN ({marks})", running)
                ]
            found = [self._info_of(self._row(n)).next_due for n in names]
        dues = [d for d in found if d is not None]
        return min(dues) if dues else None

    def dumps(self, name: str) -> str:
        """Rollout ``name`` as :func:`certflow.dumps` writes it (the same text as the
        in-memory rollout with the same history)."""
        with self._transaction(write=False):
            row = self._row(name)
            ids: list[str] = []
            states: list[str] = []
            attempts: list[int] = []
            for device_id, state, attempt in self._q(
                "SELECT device_id, state, attempts FROM devices WHERE rollout = ? ORDER BY idx",
                (row.id,),
            ):
                ids.append(device_id)
                states.append(state)
                attempts.append(attempt)
            reasons = dict(
                self._q(
                    "SELECT device_id, reason FROM devices WHERE rollout = ? "
                    "AND reason IS NOT NULL ORDER BY idx",
                    (row.id,),
                ).fetchall()
            )
            awaiting: list[tuple[datetime, list[int]]] = []
            for due, index in self._q(
                "SELECT ack_due, idx FROM devices WHERE rollout = ? AND ack_due IS NOT NULL "
                "ORDER BY ack_due, idx",
                (row.id,),
            ):
                instant = self._get(due)
                if not awaiting or awaiting[-1][0] != instant:
                    awaiting.append((instant, []))  # type: ignore[arg-type]
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

    # --- the journal -------------------------------------------------------------------------

    def journal(self, name: str) -> Iterator[JournalEntry]:
        """Rollout ``name``'s journal, oldest first."""
        return _journal.read(self, name)

    def activity(self, name: str) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
        """What each device of rollout ``name`` was sent and answered, from the journal:
        the instants of its pushes (``PushRoot`` effects) and of the reports that answered
        a push (``DeviceInstalled``/``DeviceFailed`` while it was pushed; duplicates left
        out: a report that came while the device awaited an answer, as the device machine
        declares it), in order. The forecast's input (:func:`certflow.sim.forecast`).

        Folds the journal through the in-memory evaluator one command at a time (a batch
        equals its commands applied in turn), so it costs a replay.
        """
        return _journal.activity(self, name)

    def replay(self, name: str) -> Rollout:
        """Rollout ``name`` rebuilt from its journal alone, through the in-memory
        evaluator: ``dumps(store.replay(n)) == store.dumps(n)``."""
        return _journal.replay(self, name)

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
        return _outbox.effects(self, name, include_acknowledged, due_by)

    def lease(
        self,
        name: str | None = None,
        *,
        now: datetime,
        duration: timedelta = timedelta(minutes=5),
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEffect]:
        """Claim pending effects due by ``now`` for delivery until ``now + duration``.

        Another drainer's lease skips them until then, so two drainers do not deliver
        the same effect while both run; an effect whose drainer died is claimed again
        when its lease runs out (delivery stays at-least-once). ``kinds`` limits the
        claim to those effect classes (by name, such as ``"PushRoot"``), ``limit`` to
        that many effects, in the order they were emitted. Acknowledge what was
        delivered; :meth:`record_failure` gives an effect back at once.
        """
        return _outbox.lease(self, name, now, duration, kinds, limit)

    def acknowledge(self, effect_ids: Iterable[str], now: datetime) -> int:
        """Mark effects as performed; returns how many were pending. Acknowledging twice
        is harmless; an unknown id is refused and nothing is acknowledged."""
        return _outbox.acknowledge(self, effect_ids, now)

    def record_failure(self, effect_id: str, error: str) -> None:
        """Remember that delivering an effect failed; it stays pending, and its lease
        (if any) ends, so that the next drain tries it again."""
        _outbox.record_failure(self, effect_id, error)
