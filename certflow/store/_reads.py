"""The reads: a rollout's head (projected, if something fell due: :mod:`._projection`),
its devices a page at a time (or every one, streamed in keyset pages), one device, the
refusal a command would meet, the list of rollouts, when time next moves one, and its
``dumps`` document. Every one runs in a read transaction, which is rolled back: a read
never writes. Each function named after
a :class:`~certflow.store.SqlStore` method is that method (documented there), the store
first."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import Any

import attrs

from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.guards import Situation
from certflow.core.instants import require_utc
from certflow.core.plan import DeviceRecord, DeviceState, Plan, RolloutState
from certflow.core.summary import Overview
from certflow.store._driver import ROLLOUT, Driver, Row, row_of
from certflow.store._inputs import MOST, can_store, is_count, storable
from certflow.store._model import RolloutInfo, View
from certflow.store._projection import (
    Projection,
    Replay,
    project,
    projected_devices,
    rollout_document,
)

__all__ = [
    "device",
    "devices",
    "dumps",
    "info",
    "info_of",
    "iter_devices",
    "next_due",
    "overview",
    "plan",
    "refusal",
    "rollouts",
    "view",
]


def view(store: Driver, name: str, now: datetime) -> View:
    with store._transaction(write=False):
        row = store._row(name)
        found = project(store, row, store._check_now(row, now))
    return View(found.overview(store), found.projected, found.due)


def overview(store: Driver, name: str, now: datetime) -> Overview:
    return view(store, name, now).overview


def devices(
    store: Driver,
    name: str,
    states: Sequence[DeviceState],
    after: str | None,
    limit: int,
    now: datetime | None,
) -> list[DeviceRecord]:
    if not is_count(limit):
        raise InvalidInput(f"limit must be a positive number up to {MOST}, got {limit!r}")
    wanted = [DeviceState(s).value for s in states]
    with store._transaction(write=False):
        row = store._row(name)
        start = _start(store, row, after)
        if now is not None:
            projection = project(store, row, store._check_now(row, now), whole=True)
            if projection.moved:
                return _projected_page(store, projection, wanted, after, limit)
        rows = _stored_page(store, row.id, wanted, start, limit)
    return [_record(store, r) for r in rows]


def iter_devices(
    store: Driver,
    name: str,
    states: Sequence[DeviceState],
    after: str | None,
    now: datetime | None,
    page: int,
) -> Generator[DeviceRecord, None, None]:
    """:meth:`SqlStore.iter_devices <certflow.store.SqlStore.iter_devices>`: the devices
    of a projection that moved them are the stored rows run through the moves it
    followed (:class:`._projection.Replay`), a page at a time, and filtered by state
    afterwards; only a projection the counts cannot follow (rules certflow does not
    ship) is read in memory, O(fleet). The arguments are checked at once, the database
    with the first row."""
    if not is_count(page):
        raise InvalidInput(f"page must be a positive number up to {MOST}, got {page!r}")
    wanted = [DeviceState(s).value for s in states]
    return _iter_devices(store, name, wanted, after, now, page)


def _iter_devices(
    store: Driver, name: str, wanted: list[str], after: str | None, now: datetime | None, page: int
) -> Generator[DeviceRecord, None, None]:
    # One read transaction (one snapshot) held while the caller consumes the rows; a
    # caller that stops early closes the generator, which rolls it back.
    with store._transaction(write=False):
        row = store._row(name)
        start = _start(store, row, after)
        replay: Replay | None = None
        if now is not None:
            projection = project(store, row, store._check_now(row, now))
            if projection.rollout is not None:  # rules certflow does not ship: in memory
                states = frozenset(DeviceState(s) for s in wanted)
                found = projected_devices(projection, states, after)
                while chunk := list(itertools.islice(found, page)):
                    yield from _with_instants(store, projection.row.id, chunk)
                return
            if projection.moves:
                replay = Replay(store, row, projection.moves)
        while True:
            # Moved devices may change state: read them all, filter once moved.
            rows = _stored_page(store, row.id, wanted if replay is None else [], start, page)
            for stored in rows:
                record = _record(store, stored)
                if replay is not None:
                    record = replay(record, store._get(stored[-1]))
                    if wanted and record.state.value not in wanted:
                        continue
                yield record
            if len(rows) < page:
                return
            start = rows[-1][0]


_COLUMNS = "idx, device_id, state, attempts, reason, last_push, last_report, ack_due"


def _start(store: Driver, row: Row, after: str | None) -> int:
    """The position after which a page starts: that of device ``after`` (an unknown
    device is refused), or before the first."""
    if after is None:
        return -1
    found = None
    if can_store(after):
        found = store._q(
            "SELECT idx FROM devices WHERE rollout = ? AND device_id = ?", (row.id, after)
        ).fetchone()
    if found is None:
        raise i.unknown_device(after)
    start: int = found[0]
    return start


def _stored_page(
    store: Driver, rollout: int, wanted: list[str], start: int, limit: int
) -> list[tuple[Any, ...]]:
    """Up to ``limit`` stored device rows (:data:`_COLUMNS`) after position ``start``, of
    the ``wanted`` states (every state when empty), by position."""
    if not wanted:
        return store._q(
            f"SELECT {_COLUMNS} FROM devices WHERE rollout = ? AND idx > ? ORDER BY idx LIMIT ?",
            (rollout, start, limit),
        ).fetchall()
    # One index range per state, merged by position: a page costs the same whatever the
    # mix of states (an IN list would scan in idx order).
    runs = [
        store._q(
            f"SELECT {_COLUMNS} FROM devices WHERE rollout = ? AND state = ? "
            "AND idx > ? ORDER BY idx LIMIT ?",
            (rollout, state, start, limit),
        ).fetchall()
        for state in dict.fromkeys(wanted)
    ]
    return list(heapq.merge(*runs))[:limit]


def _record(store: Driver, stored: tuple[Any, ...]) -> DeviceRecord:
    _, d, s, a, r, p, rep, _ = stored
    return DeviceRecord(d, DeviceState(s), a, r, store._get(p), store._get(rep))


def _with_instants(store: Driver, rollout: int, page: list[DeviceRecord]) -> list[DeviceRecord]:
    """``page`` with the stored instants of each device's last push and report (timers
    neither push nor report: no shipped timer pushes), inside the open transaction."""
    instants: dict[str, tuple[object, object]] = {}
    for start in range(0, len(page), store._fetch_chunk):
        chunk = [r.device_id for r in page[start : start + store._fetch_chunk]]
        for device_id, _, _, _, _, pushed, reported, _ in store._fetch_devices(rollout, chunk):
            instants[device_id] = (pushed, reported)
    return [
        attrs.evolve(
            r,
            last_push=store._get(instants[r.device_id][0]),
            last_report=store._get(instants[r.device_id][1]),
        )
        for r in page
    ]


def _projected_page(
    store: Driver, projection: Projection, wanted: list[str], after: str | None, limit: int
) -> list[DeviceRecord]:
    """A page of the projection's in-memory devices, inside the open transaction."""
    states = frozenset(DeviceState(s) for s in wanted)
    page = list(itertools.islice(projected_devices(projection, states, after), limit))
    return _with_instants(store, projection.row.id, page)


def refusal(store: Driver, name: str, command: Command, now: datetime) -> CommandRefused | None:
    route = store._compiled.routes.get(type(command))
    if route is None or route[0] != store._compiled.rules.rollout.name:
        raise InvalidInput(f"{command!r} is not an administrator's rollout command")
    with store._transaction(write=False):
        row = store._row(name)
        # Judged as a tick at `now` would leave the rollout (nothing is stored).
        found = project(store, row, store._check_now(row, now))
    untrusting = sum(found.counts.get(s, 0) for s in store._untrusting)
    situation = Situation(row.plan, found.phase, found.at, untrusting)
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


def info(store: Driver, name: str, now: datetime | None) -> RolloutInfo:
    with store._transaction(write=False):
        return info_of(store, store._row(name), now)


def info_of(
    store: Driver,
    row: Row,
    now: datetime | None = None,
    deadline: tuple[datetime | None] | None = None,
) -> RolloutInfo:
    """``row``'s line of the list (at ``now``: projected, if timers fell due), inside the
    open transaction; ``deadline`` as :func:`._projection.project` takes it."""
    # A list is read at one instant for every rollout: one whose clock is ahead of it
    # (another process is in its future, or a script drove it with --now) is shown as
    # stored, not refused.
    at = row.clock if now is None else max(require_utc("now", now), row.clock)
    found = project(store, row, at, deadline=deadline)
    counts = {DeviceState(k): v for k, v in found.counts.items()}
    head = found.overview(store)
    return RolloutInfo(
        row.name,
        found.phase.state,
        row.clock,
        sum(counts.values()),
        {state: counts.get(state, 0) for state in DeviceState},
        head.percent_complete,
        found.next_due,
        found.projected,
        overview=head,
    )


def rollouts(
    store: Driver, now: datetime | None, after: str | None, limit: int | None
) -> list[RolloutInfo]:
    if after is not None:
        if not isinstance(after, str):
            raise InvalidInput(f"after must be a rollout name or None, got {after!r}")
        storable("after", after)
    if limit is not None and not is_count(limit):
        raise InvalidInput(f"limit must be a positive number up to {MOST}, got {limit!r}")
    if now is not None:
        require_utc("now", now)
    params: list[object] = []
    where = ""
    if after is not None:
        where = " WHERE name > ?"
        params.append(after)
    if limit is not None:
        params.append(limit)
    # One statement for the page: a range of the unique index on the name, each row with
    # its devices' earliest acknowledgement deadline (one entry of devices_by_ack_due),
    # which is what the projection would otherwise read per running rollout for its
    # next_due. Timers due by `now` still cost a projected rollout its own reads.
    with store._transaction(write=False):
        rows = store._q(
            f"SELECT {ROLLOUT}, (SELECT MIN(ack_due) FROM devices WHERE devices.rollout = "
            f"rollouts.id AND ack_due IS NOT NULL) FROM rollouts{where} ORDER BY name"
            + (" LIMIT ?" if limit is not None else ""),
            params,
        ).fetchall()
        return [info_of(store, row_of(store, r[:-1]), now, (store._get(r[-1]),)) for r in rows]


def next_due(store: Driver, name: str | None) -> datetime | None:
    with store._transaction(write=False):
        if name is not None:
            return info_of(store, store._row(name)).next_due
        return _earliest_due(store)


def _earliest_due(store: Driver) -> datetime | None:
    """The earliest instant at which time moves any rollout, inside the open transaction:
    two reads of the first entry of an index (rollouts_by_phase_due, devices_by_deadline;
    schema version 5), whatever the number of rollouts, so that a scheduler with nothing
    due pays the same at 10 rollouts as at 10,000. Equal to the least ``next_due`` of
    every running rollout: ``phase_due`` is the earliest of its state's timers that do
    not read the fleet (written with every change of the row), and a device's
    ``ack_due`` is the fleet's timer of a state that declares one."""
    running = [s.value for s in RolloutState if s.running]
    fleet = [
        s for s in running if any(i.TIMERS[t.name].reads_fleet for t in store._compiled.timers[s])
    ]
    # ORDER BY ... LIMIT 1 rather than MIN(): the index is walked in order and the read
    # ends at the first entry of a running rollout (with certflow's rules the very first:
    # the end of a rollout clears its timers); a MIN() over the join reads every entry.
    dues = [
        store._q(
            f"SELECT phase_due FROM rollouts WHERE phase_due IS NOT NULL "
            f"AND state IN ({_marks(running)}) ORDER BY phase_due LIMIT 1",
            running,
        ).fetchone()
    ]
    if fleet:
        # CROSS JOIN: SQLite, which keeps no statistics, then reads the deadlines first
        # (PostgreSQL chooses its order from its statistics, and reads them first too).
        dues.append(
            store._q(
                "SELECT d.ack_due FROM devices d CROSS JOIN rollouts r "
                "WHERE r.id = d.rollout AND d.ack_due IS NOT NULL "
                f"AND r.state IN ({_marks(fleet)}) ORDER BY d.ack_due LIMIT 1",
                fleet,
            ).fetchone()
        )
    found = [store._get(d[0]) for d in dues if d is not None]
    return min((d for d in found if d is not None), default=None)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def dumps(store: Driver, name: str) -> str:
    with store._transaction(write=False):
        return rollout_document(store, store._row(name))
