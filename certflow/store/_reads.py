"""The reads: a rollout's head (advancing it first if something fell due), its devices
a page at a time, one device, the refusal a command would meet, the list of rollouts,
when time next moves one, and its ``dumps`` document. Each function named after a
:class:`~certflow.store.SqlStore` method is that method (documented there), the store
first."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime

from certflow.core import interpreter as i
from certflow.core import summary
from certflow.core.commands import Command
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.guards import Situation
from certflow.core.plan import DeviceRecord, DeviceState, Plan, RolloutState
from certflow.core.serialization import document
from certflow.core.summary import Overview
from certflow.store._commands import advance_row, is_due
from certflow.store._driver import Driver, Row
from certflow.store._inputs import MOST, can_store, is_count
from certflow.store._model import RolloutInfo
from certflow.store._port import Port

__all__ = [
    "device",
    "devices",
    "dumps",
    "info",
    "info_of",
    "next_due",
    "overview",
    "plan",
    "refusal",
    "rollouts",
]


def overview(store: Driver, name: str, now: datetime) -> Overview:
    with store._transaction(write=False):
        row = store._row(name)
        at = store._check_now(row, now)
        due = is_due(store, row, at)
    if due:
        with store._transaction(write=True):
            row = store._row(name, own=True)
            if at >= row.clock and is_due(store, row, at):
                advance_row(store, row, at)
        with store._transaction(write=False):
            row = store._row(name)
    counts = {DeviceState(k): v for k, v in row.counts.items()}
    return summary.overview(row.plan, row.phase, counts, max(at, row.clock), store._evaluator)


def devices(
    store: Driver, name: str, states: Sequence[DeviceState], after: str | None, limit: int
) -> list[DeviceRecord]:
    if not is_count(limit):
        raise InvalidInput(f"limit must be a positive number up to {MOST}, got {limit!r}")
    wanted = [DeviceState(s).value for s in states]
    with store._transaction(write=False):
        row = store._row(name)
        start = -1
        if after is not None:
            found = None
            if can_store(after):
                found = store._q(
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
                store._q(
                    f"SELECT {columns} FROM devices WHERE rollout = ? AND state = ? "
                    "AND idx > ? ORDER BY idx LIMIT ?",
                    (row.id, state, start, limit),
                ).fetchall()
                for state in dict.fromkeys(wanted)
            ]
            rows = list(heapq.merge(*runs))[:limit]
        else:
            rows = store._q(
                f"SELECT {columns} FROM devices WHERE rollout = ? AND idx > ? ORDER BY idx LIMIT ?",
                (row.id, start, limit),
            ).fetchall()
    return [
        DeviceRecord(d, DeviceState(s), a, r, store._get(p), store._get(rep))
        for _, d, s, a, r, p, rep in rows
    ]


def refusal(store: Driver, name: str, command: Command, now: datetime) -> CommandRefused | None:
    route = store._compiled.routes.get(type(command))
    if route is None or route[0] != store._compiled.rules.rollout.name:
        raise InvalidInput(f"{command!r} is not an administrator's rollout command")
    with store._transaction(write=False):
        row = store._row(name)
    at = store._check_now(row, now)
    situation = Situation(row.plan, row.phase, max(at, row.clock), Port(store, row).untrusting())
    return i.refusal(store._compiled, situation, route[1], type(command).__name__)


def plan(store: Driver, name: str) -> Plan:
    with store._transaction(write=False):
        return store._row(name).plan


def device(store: Driver, name: str, device_id: str) -> DeviceRecord:
    with store._transaction(write=False):
        row = store._row(name)
        found = None
        if isinstance(device_id, str) and can_store(device_id):
            found = store._q(
                "SELECT device_id, state, attempts, reason, last_push, last_report "
                "FROM devices WHERE rollout = ? AND device_id = ?",
                (row.id, device_id),
            ).fetchone()
    if found is None:
        raise i.unknown_device(device_id)
    d, s, a, r, p, rep = found
    return DeviceRecord(d, DeviceState(s), a, r, store._get(p), store._get(rep))


def info(store: Driver, name: str) -> RolloutInfo:
    with store._transaction(write=False):
        return info_of(store, store._row(name))


def info_of(store: Driver, row: Row) -> RolloutInfo:
    """``row``'s line of the list, inside the open transaction."""
    counts = {DeviceState(k): v for k, v in row.counts.items()}
    head = summary.overview(row.plan, row.phase, counts, row.clock, store._evaluator)
    found = i.next_timer(store._compiled, row.plan, row.phase, Port(store, row))
    return RolloutInfo(
        row.name,
        row.phase.state,
        row.clock,
        sum(counts.values()),
        {state: counts.get(state, 0) for state in DeviceState},
        head.percent_complete,
        None if found is None else found[0],
    )


def rollouts(store: Driver) -> list[RolloutInfo]:
    with store._transaction(write=False):
        names = [r[0] for r in store._q("SELECT name FROM rollouts ORDER BY name")]
        return [info_of(store, store._row(n)) for n in names]


def next_due(store: Driver, name: str | None) -> datetime | None:
    with store._transaction(write=False):
        if name is not None:
            names = [name]
        else:
            running = [s.value for s in RolloutState if s.running]
            marks = ", ".join("?" * len(running))
            names = [
                r[0]
                for r in store._q(f"SELECT name FROM rollouts WHERE state IN ({marks})", running)
            ]
        found = [info_of(store, store._row(n)).next_due for n in names]
    dues = [d for d in found if d is not None]
    return min(dues) if dues else None


def dumps(store: Driver, name: str) -> str:
    with store._transaction(write=False):
        row = store._row(name)
        ids: list[str] = []
        states: list[str] = []
        attempts: list[int] = []
        for device_id, state, attempt in store._q(
            "SELECT device_id, state, attempts FROM devices WHERE rollout = ? ORDER BY idx",
            (row.id,),
        ):
            ids.append(device_id)
            states.append(state)
            attempts.append(attempt)
        reasons = dict(
            store._q(
                "SELECT device_id, reason FROM devices WHERE rollout = ? "
                "AND reason IS NOT NULL ORDER BY idx",
                (row.id,),
            ).fetchall()
        )
        awaiting: list[tuple[datetime, list[int]]] = []
        for due, index in store._q(
            "SELECT ack_due, idx FROM devices WHERE rollout = ? AND ack_due IS NOT NULL "
            "ORDER BY ack_due, idx",
            (row.id,),
        ):
            instant = store._get(due)
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
