"""The commands: creating a rollout, applying a command or a batch (or previewing one),
advancing one rollout and ticking all of them. Each runs the rollout machine through
the generic interpreter over the rollout row and its device rows (:mod:`._port`),
moves one device row through the interpreter's device commands (the port is the
device rows' :class:`~certflow.core.interpreter.DevicePort`), and
appends the journal entry and its effects (:mod:`._journal`) before writing the
rollout row. A turn that changes nothing (a no-op) writes nothing and is rolled
back; the turn that ends a rollout supersedes the effects its end made moot
(:data:`SUPERSEDED`). Each function named after a :class:`~certflow.store.SqlStore`
method is that method (documented there), the store first."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from itertools import groupby
from typing import Any

import attrs

from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.effects import ImportCertificate
from certflow.core.errors import CommandRefused, InvalidInput, UnknownDevice
from certflow.core.instants import require_utc
from certflow.core.plan import DeviceState, Phase, Plan, RolloutState
from certflow.core.preview import Preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import dumps, encode
from certflow.core.summary import Overview, overview
from certflow.store._collector import paused
from certflow.store._driver import Driver, Progress, Row
from certflow.store._inputs import can_store, check_rollout_name, storable
from certflow.store._journal import append, entry_summary
from certflow.store._model import Applied, Refused, RefusedMode, StoredEffect
from certflow.store._outbox import supersede
from certflow.store._port import Held, Port

__all__ = [
    "SUPERSEDED",
    "advance",
    "advance_row",
    "apply",
    "create",
    "is_due",
    "preview",
    "tick",
]


def create(store: Driver, name: str, rollout: Rollout, progress: Progress | None) -> None:
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
        due = store._put(datetime.fromisoformat(group["due"]))
        for index in group["devices"]:
            due_of[index] = due
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    plan, phase = rollout.plan, rollout.phase
    due = i.next_timer(store._compiled, plan, phase, None)
    with store._transaction(write=True):
        if store._q("SELECT 1 FROM rollouts WHERE name = ?", (name,)).fetchone():
            raise InvalidInput(f"{store._where}: a rollout named {name!r} already exists")
        rollout_id = store._q(
            "INSERT INTO rollouts (name, state, plan, phase, clock, counts, size, "
            "phase_due, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
            (
                name,
                phase.state.value,
                json.dumps(encode(plan), separators=(",", ":")),
                json.dumps(encode(phase), separators=(",", ":")),
                store._put(rollout.clock),
                json.dumps(counts, separators=(",", ":")),
                len(ids),
                None if due is None else store._put(due[0]),
            ),
        ).fetchone()[0]
        store._committed((rollout_id, 1, text))
        store._insert_devices(
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
        store._q(
            "INSERT INTO journal (rollout, seq, at, kind, body) VALUES (?, 1, ?, 'create', ?)",
            (rollout_id, store._put(rollout.clock), text),
        )
        store._q(
            "INSERT INTO journal_summaries (rollout, seq, at, kind, summary) "
            "VALUES (?, 1, ?, 'create', ?)",
            (rollout_id, store._put(rollout.clock), entry_summary("create", parsed, counts)),
        )
    store._created()


class _Unchanged(Exception):
    """A command that changed nothing: raised inside its transaction, so that the
    transaction is rolled back (not committed) and the caller returns a no-op."""


#: What the end of a rollout makes moot, by how it ended (store.md, "Superseded
#: effects"): a cancelled rollout pushes no root and announces nothing; an imported one
#: announces nothing more (its root pushes still count: a device that installs the root
#: after the import keeps it).
SUPERSEDED = {"cancel": ("PushRoot", "Notify"), "import": ("Notify",)}


class _Watched(Port):
    """The device port of one write transaction, which notes whether a device row
    changed (a no-op changes none)."""

    changed = False

    def transition(
        self,
        device: Held,
        device_id: str,
        dest: int,
        calls: tuple[i.DeviceAction, ...],
        command: Any,
        run: i.Turn,
    ) -> None:
        if self.changed:  # known already: spare the copy (a batch moves many rows)
            super().transition(device, device_id, dest, calls, command, run)
            return
        before, new = list(device.values), device.new
        super().transition(device, device_id, dest, calls, command, run)
        if new or device.values != before:
            self.changed = True

    def move(self, move: i.FleetMove, now: datetime) -> i.FleetResult:
        result = super().move(move, now)
        if result.ids or result.pushes:
            self.changed = True
        return result


@attrs.define
class _Turn:
    """One transaction's run of the rollout machine, step by step (each timer's instant,
    each command): whether a timer fired, and the step that ended the rollout, if one
    did (where its effects start, how it ended, and when)."""

    run: i.Turn
    port: _Watched
    fired: bool = False
    ended: tuple[int, str, datetime] | None = None

    def step(self, do: Callable[[], None]) -> None:
        run = self.run
        start, state = len(run.effects), run.phase.state
        do()
        if self.ended is None and not state.terminal and run.phase.state.terminal:
            imported = any(isinstance(e, ImportCertificate) for e in run.effects[start:])
            self.ended = (start, "import" if imported else "cancel", run.now)

    def catch_up(self, store: Driver, at: datetime) -> None:
        """:func:`~certflow.core.interpreter.catch_up` to ``at``, one instant at a
        time, so that the step that ends the rollout is known."""
        run = self.run
        while (found := i.next_timer(store._compiled, run.plan, run.phase, run.port)) is not None:
            due = found[0]
            if due > at:
                break
            self.fired = True
            self.step(lambda: i.catch_up(run, due))  # noqa: B023 (called now)
        # What catch_up does once nothing is due: the turn is at `at` (saving a second
        # read of the next acknowledgement deadline on every report).
        run.now = at

    def changed(self, before: Phase) -> bool:
        """Whether the turn changed anything: a timer fired, an effect, a device row, or
        the rollout's phase."""
        return self.fired or bool(self.run.effects) or self.port.changed or self.run.phase != before

    def moot(self, store: Driver, row: Row) -> tuple[frozenset[int], datetime] | None:
        """Supersede what the end of the rollout made moot, in the open transaction
        (after the entry was appended: ``row.seq`` is its sequence number): the
        undelivered effects of earlier entries, and of this entry those emitted before
        the ending step; the ending step's own effects (what says how it ended) stand.
        Returns this entry's superseded positions and the instant, for :func:`append`."""
        if self.ended is None:
            return None
        start, how, when = self.ended
        kinds = SUPERSEDED[how]
        positions = frozenset(
            p for p, e in enumerate(self.run.effects[:start]) if type(e).__name__ in kinds
        )
        return positions, when


def _turn(store: Driver, row: Row, at: datetime) -> _Turn:
    port = _Watched(store, row)
    return _Turn(i.Turn(store._compiled, row.plan, row.phase, at, port, []), port)


def _supersede(store: Driver, turn: _Turn, row: Row) -> None:
    """After :func:`append`: the earlier entries' effects that the end made moot."""
    if turn.ended is not None:
        _, how, when = turn.ended
        supersede(store, row.id, row.seq, SUPERSEDED[how], when)


def apply(
    store: Driver,
    name: str,
    batch: list[Command],
    now: datetime,
    kind: str,
    refused: RefusedMode = "raise",
) -> Applied:
    """``apply`` (``kind`` "command") and ``apply_all`` (``kind`` "batch"): the
    commands of ``batch`` in one write transaction; a no-op is rolled back, and so is a
    batch with a refusal under ``refused="list"``."""
    if refused not in ("raise", "skip", "list"):
        raise InvalidInput(f"refused must be 'raise', 'skip' or 'list', got {refused!r}")
    skipped: list[Refused] | None = None if refused == "raise" else []
    try:
        with paused(len(batch)), store._transaction(write=True):
            stored, _, _, _ = run_batch(store, name, batch, now, kind, skipped=skipped)
            if stored is None or (refused == "list" and skipped):
                raise _Unchanged
    except _Unchanged:
        return Applied(changed=False, refused=skipped or ())
    return Applied(stored, refused=skipped or ())


def run_batch(
    store: Driver,
    name: str,
    batch: list[Command],
    now: datetime,
    kind: str,
    head: bool = False,
    skipped: list[Refused] | None = None,
) -> tuple[list[StoredEffect] | None, Row, datetime, Overview | None]:
    """Apply ``batch`` inside the open write transaction: the effects as stored (``None``
    for a no-op, which writes nothing), the rollout row after it, the instant it ran at,
    and with ``head`` the rollout's head just before the batch (the timers due by then
    fired: a preview's ``before``; a command does not pay for it).

    Given a ``skipped`` list, a command the rules refuse (or naming an unknown device)
    is noted there and the batch goes on: a refusal is decided before anything moves,
    so a refused command changed nothing, and the journal records only the commands
    that ran (its replay skips nothing)."""
    row = store._row(name, own=True)
    at = store._check_now(row, now)
    turn = _turn(store, row, at)
    run, port = turn.run, turn.port
    turn.catch_up(store, at)
    before = _head(store, row.plan, run.phase, row.counts, at) if head else None
    # Every device the batch names, read at once (a device command names one).
    named = [d for c in batch if isinstance(d := getattr(c, "device_id", None), str)]
    port.fetch(named if _all_storable(named) else [d for d in named if can_store(d)])
    ran: list[Command] = []
    device = store._compiled.rules.device.name
    # Runs of device commands of one type go through the interpreter's dispatch once,
    # with the store's own loop over them (as the evaluator's kernel takes them): a
    # device command moves no rollout state, so a run is one step of the turn.
    for cls, run_of in groupby(enumerate(batch), lambda item: type(item[1])):
        route = store._compiled.routes.get(cls)
        if route is not None and route[0] == device:
            commands = list(run_of)
            turn.step(lambda: _devices(store, run, port, cls, commands, ran, skipped))  # noqa: B023
            continue
        for position, command in run_of:
            try:
                turn.step(lambda: _command(store, run, port, command))  # noqa: B023 (called now)
            except (CommandRefused, UnknownDevice) as error:
                if skipped is None:
                    raise
                skipped.append(_refused(position, command, error))
            else:
                ran.append(command)
    if not turn.changed(row.phase):
        return None, row, at, before
    row.phase = run.phase
    if kind == "command":
        body: dict[str, Any] = {"command": encode(ran[0])}
    else:
        body = {"commands": [encode(command) for command in ran]}
    with store._batched():
        port.flush()
        stored = append(store, row, at, kind, body, run.effects, turn.moot(store, row))
        _supersede(store, turn, row)
        store._save(row, at)
    return stored, row, at, before


def _head(
    store: Driver, plan: Plan, phase: Phase, counts: dict[str, int], at: datetime
) -> Overview:
    states = {DeviceState(k): v for k, v in counts.items()}
    return overview(plan, phase, states, at, store._evaluator)


def preview(store: Driver, name: str, command: Command, now: datetime) -> Preview:
    with store._rehearsal():
        try:
            stored, row, at, before = run_batch(store, name, [command], now, "command", True)
        except CommandRefused as refusal:
            return Preview((), None, refusal)
        after = _head(store, row.plan, row.phase, row.counts, at)
    return Preview(tuple(item.effect for item in stored or ()), after, before=before)


def advance(store: Driver, name: str, now: datetime) -> Applied:
    try:
        with store._transaction(write=True):
            row = store._row(name, own=True)
            stored = advance_row(store, row, store._check_now(row, now))
            if stored is None:
                raise _Unchanged
    except _Unchanged:
        return Applied(changed=False)
    return Applied(stored)


def advance_row(store: Driver, row: Row, at: datetime) -> list[StoredEffect] | None:
    """Fire what fell due by ``at`` for ``row``, inside the open write transaction; the
    effects as stored, or ``None`` when nothing fell due (nothing is written)."""
    turn = _turn(store, row, at)
    turn.catch_up(store, at)
    if not turn.changed(row.phase):
        return None
    row.phase = turn.run.phase
    stored = append(store, row, at, "advance", {}, turn.run.effects, turn.moot(store, row))
    _supersede(store, turn, row)
    store._save(row, at)
    return stored


def tick(store: Driver, now: datetime) -> Applied:
    at = require_utc("now", now)
    stored: list[StoredEffect] = []
    changed = False
    for name in _due_names(store, at):
        with store._transaction(write=True):
            row = store._row(name, own=True)
            if row.clock > at:
                continue  # another process moved it past `at`
            if not is_due(store, row, at):
                continue
            found = advance_row(store, row, at)
            if found is not None:
                changed = True
                stored += found
    return Applied(stored, changed=changed)


def _due_names(store: Driver, at: datetime) -> list[str]:
    running = [s.value for s in RolloutState if s.running]
    marks = ", ".join("?" * len(running))
    with store._transaction(write=False):
        rows = store._q(
            f"SELECT r.name FROM rollouts r WHERE r.state IN ({marks}) AND ("
            "r.phase_due <= ? OR EXISTS (SELECT 1 FROM devices d WHERE d.rollout = r.id "
            "AND d.ack_due IS NOT NULL AND d.ack_due <= ?)) ORDER BY r.name",
            (*running, store._put(at), store._put(at)),
        ).fetchall()
    return [r[0] for r in rows]


def is_due(store: Driver, row: Row, at: datetime) -> bool:
    """Whether a timer of ``row`` (its phase's or a push's) falls due by ``at``."""
    found = i.next_timer(store._compiled, row.plan, row.phase, Port(store, row))
    return found is not None and found[0] <= at


def _all_storable(texts: list[Any]) -> bool:
    """Whether a database can store every one of ``texts`` (:func:`storable`): one
    encoding of them all rather than one call each (a batch names a million devices)."""
    try:
        joined = "".join(texts)
        joined.encode("utf-8")
    except (TypeError, UnicodeEncodeError):
        return False
    return "\x00" not in joined


def _refused(position: int, command: Command, error: CommandRefused | UnknownDevice) -> Refused:
    # Without its traceback: a batch may hold 100,000s of refusals, and each traceback
    # would keep its frames alive.
    return Refused(position, command, error.with_traceback(None))


def _devices(
    store: Driver,
    run: i.Turn,
    port: Port,
    kind: type,
    commands: list[tuple[int, Any]],
    ran: list[Command],
    skipped: list[Refused] | None,
) -> None:
    """A run of device commands of one type ``kind`` (each with its position in the
    batch), one after the other as :func:`_command` runs each: checked, then through
    :func:`~certflow.core.interpreter.device_command` with the table of the rollout's
    state, which none of them changes."""

    # What a device row can hold, checked before any rule as _command checks it: for
    # the whole run at once, and command by command (in order, so that the first
    # problem is the one raised) only if some text of it fails.
    texts = [command.device_id for _, command in commands]
    if hasattr(kind, "reason"):
        texts += [command.reason for _, command in commands]
    checked = _all_storable(texts)

    def each(run: i.Turn, table: i.DeviceTable, _: object) -> None:
        for position, command in commands:
            if not checked:
                storable("device id", command.device_id)
                storable("the reason", getattr(command, "reason", ""))
            try:
                i.device_command(run, port, table, command)
            except (CommandRefused, UnknownDevice) as error:
                if skipped is None:
                    raise
                skipped.append(_refused(position, command, error))
            else:
                ran.append(command)

    i.dispatch(run, port, kind, (command for _, command in commands), each)


def _command(store: Driver, run: i.Turn, port: Port, command: Command) -> None:
    if hasattr(command, "device_id") and type(command) in store._compiled.routes:
        # What a device row can hold, checked before any rule (the rules run next).
        storable("device id", command.device_id)
        storable("the reason", getattr(command, "reason", ""))
    i.dispatch(run, port, type(command), (command,))
