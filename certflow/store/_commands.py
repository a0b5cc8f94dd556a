"""The commands: creating a rollout, applying a command or a batch (or previewing one),
advancing one rollout and ticking all of them. Each runs the rollout machine through
the generic interpreter over the rollout row and its device rows (:mod:`._port`),
moves one device row through the interpreter's device commands (the port is the
device rows' :class:`~certflow.core.interpreter.DevicePort`), and
appends the journal entry and its effects (:mod:`._journal`) before writing the
rollout row. Each function named after a :class:`~certflow.store.SqlStore` method is
that method (documented there), the store first."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.instants import require_utc
from certflow.core.plan import DeviceState, Phase, Plan, RolloutState
from certflow.core.preview import Preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import dumps, encode
from certflow.core.summary import Overview, overview
from certflow.store._driver import Driver, Progress, Row
from certflow.store._inputs import can_store, check_rollout_name, storable
from certflow.store._journal import append
from certflow.store._model import StoredEffect
from certflow.store._port import Port

__all__ = ["advance", "advance_row", "apply", "create", "is_due", "preview", "tick"]


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
    store._created()


def apply(
    store: Driver, name: str, batch: list[Command], now: datetime, kind: str
) -> list[StoredEffect]:
    """``apply`` (``kind`` "command") and ``apply_all`` (``kind`` "batch"): the
    commands of ``batch`` in one write transaction."""
    with store._transaction(write=True):
        return run_batch(store, name, batch, now, kind)[0]


def run_batch(
    store: Driver, name: str, batch: list[Command], now: datetime, kind: str
) -> tuple[list[StoredEffect], Row, datetime, Overview]:
    """Apply ``batch`` inside the open write transaction: the effects as stored, the
    rollout row after it, the instant it ran at, and the rollout's head just before
    the batch (the timers due by then fired)."""
    row = store._row(name, own=True)
    at = store._check_now(row, now)
    port = Port(store, row)
    run = i.Turn(store._compiled, row.plan, row.phase, at, port, [])
    i.catch_up(run, at)
    before = _head(store, row.plan, run.phase, row.counts, at)
    # Every device the batch names, read at once (a device command names one).
    named = (getattr(command, "device_id", None) for command in batch)
    port.fetch(d for d in named if isinstance(d, str) and can_store(d))
    for command in batch:
        _command(store, run, port, command)
    row.phase = run.phase
    if kind == "command":
        body: dict[str, Any] = {"command": encode(batch[0])}
    else:
        body = {"commands": [encode(command) for command in batch]}
    with store._batched():
        port.flush()
        stored = append(store, row, at, kind, body, run.effects)
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
            stored, row, at, before = run_batch(store, name, [command], now, "command")
        except CommandRefused as refusal:
            return Preview((), None, refusal)
        after = _head(store, row.plan, row.phase, row.counts, at)
    return Preview(tuple(item.effect for item in stored), after, before=before)


def advance(store: Driver, name: str, now: datetime) -> list[StoredEffect]:
    with store._transaction(write=True):
        row = store._row(name, own=True)
        return advance_row(store, row, store._check_now(row, now))


def advance_row(store: Driver, row: Row, at: datetime) -> list[StoredEffect]:
    """Fire what fell due by ``at`` for ``row``, inside the open write transaction."""
    run = i.Turn(store._compiled, row.plan, row.phase, at, Port(store, row), [])
    i.catch_up(run, at)
    row.phase = run.phase
    stored = append(store, row, at, "advance", {}, run.effects)
    store._save(row, at)
    return stored


def tick(store: Driver, now: datetime) -> list[StoredEffect]:
    at = require_utc("now", now)
    stored: list[StoredEffect] = []
    for name in _due_names(store, at):
        with store._transaction(write=True):
            row = store._row(name, own=True)
            if row.clock > at:
                continue  # another process moved it past `at`
            if not is_due(store, row, at):
                continue
            stored += advance_row(store, row, at)
    return stored


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


def _command(store: Driver, run: i.Turn, port: Port, command: Command) -> None:
    if hasattr(command, "device_id") and type(command) in store._compiled.routes:
        # What a device row can hold, checked before any rule (the rules run next).
        storable("device id", command.device_id)
        storable("the reason", getattr(command, "reason", ""))
    i.dispatch(run, port, type(command), (command,))
