"""What a read at an instant past a due timer shows (``store.md``, "Reads never write"):
the rollout as a tick at that instant would leave it, worked out inside the read's own
transaction and never stored.

The store's driver runs the timers through the interpreter, as a tick would, over a
:class:`Dry` port: it moves no device row, but follows what the fleet-wide moves do to
the per-state counts (a timeout moves the devices of one deadline, read through the
deadline index; any other move takes every device of its source states, which the
counts say) and which acknowledgement deadlines they drop. That reads what a tick's own
reads read (the rollout row; for a timeout, a count of its devices through the deadline
index), and is exact for every timer of the shipped rules. A projection it
cannot follow from the counts (a timer that pushes to the fleet, or a timeout after
another fleet-wide move: rules certflow does not ship) is made by the in-memory
evaluator from the whole rollout instead (O(fleet)), so that every declaration reads
the same. The device rows of a projection that moved devices come from the same
in-memory rollout.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import attrs

from certflow.core import interpreter as i
from certflow.core import summary
from certflow.core.plan import DeviceRecord, DeviceState, Phase
from certflow.core.rollout import Rollout
from certflow.core.serialization import document, loads
from certflow.core.summary import Overview
from certflow.store._driver import Driver, Row
from certflow.store._port import Port

__all__ = [
    "Dry",
    "Followed",
    "Projection",
    "Replay",
    "project",
    "projected_devices",
    "rollout_document",
    "stored_rollout",
]


class _Unfollowed(Exception):
    """The counts cannot follow this projection: make it from the whole rollout."""


class Dry(Port):
    """A device port over the stored rows that changes none of them (see the module)."""

    def __init__(
        self, store: Driver, row: Row, deadline: tuple[datetime | None] | None = None
    ) -> None:
        super().__init__(store, row)
        # The earliest stored acknowledgement deadline, if the caller read it with the
        # rollout row (the list reads it for every row in its one query).
        self.deadline = deadline
        self.dropped_all = False
        self.dropped_through: datetime | None = None
        self.moved = False  # a fleet-wide move other than a timeout
        self.devices_moved = False  # any device would move: the stored rows are stale
        self.followed: list[Followed] = []  # the moves, in order, for :class:`Replay`

    def next_timeout(self) -> datetime | None:
        if self.dropped_all:
            return None
        if self.moved:
            raise _Unfollowed  # the stored deadlines of the moved devices are stale
        store, after = self.store, self.dropped_through
        if after is None and self.deadline is not None:
            return self.deadline[0]  # what the read below would find: no row moved
        found = store._q(
            "SELECT MIN(ack_due) FROM devices WHERE rollout = ? AND ack_due IS NOT NULL"
            + ("" if after is None else " AND ack_due > ?"),
            (self.row.id,) if after is None else (self.row.id, store._put(after)),
        ).fetchone()[0]
        return store._get(found)

    def move(self, move: i.FleetMove, now: datetime) -> i.FleetResult:
        store, row = self.store, self.row
        statement = store._statements[move.action]
        if statement.pushes:
            raise _Unfollowed  # the pushed devices' deadlines are not in the counts
        if statement.selection == "due":
            if self.moved:
                raise _Unfollowed
            moved = dict(
                store._q(
                    f"SELECT state, COUNT(*) FROM {store._by_ack_due} "
                    "WHERE rollout = ? AND ack_due = ? GROUP BY state",
                    (row.id, store._put(now)),
                ).fetchall()
            )
        else:
            self.moved = True
            moved = {s: row.counts.get(s, 0) for s in statement.sources}
        self.followed.append(Followed(move, now))
        names = store._states
        for s, d in enumerate(move.dest):
            n = moved.get(names[s], 0) if d >= 0 else 0
            if n:
                self.devices_moved = True
                row.counts[names[s]] = row.counts.get(names[s], 0) - n
                row.counts[names[d]] = row.counts.get(names[d], 0) + n
        # No ids: a projection's effects are never stored, and no action reads them but
        # to emit its effect.
        return i.FleetResult()

    def drop_timeouts(self) -> None:
        self.dropped_all = True
        self.devices_moved = True  # their deadlines go

    def drop_timeouts_due(self, due: datetime) -> None:
        if self.dropped_through is None or due > self.dropped_through:
            self.dropped_through = due

    def flush(self) -> None:
        """Nothing is ever written."""


@attrs.frozen
class Followed:
    """A fleet-wide move that a projection followed through the counts, at ``at``."""

    move: i.FleetMove
    at: datetime


class Replay:
    """The moves a projection followed (:attr:`Projection.moves`), applied to one stored
    device row at a time: the row as a tick would leave it, without reading the fleet.
    Each move writes what its generated ``UPDATE`` writes (:func:`._fleetsql.fleet_update`):
    a device of a source state (and, for a timeout, whose deadline is the move's
    instant) takes the destination and the declared writes of its row's actions."""

    def __init__(self, store: Driver, row: Row, moves: tuple[Followed, ...]) -> None:
        self.moves = moves
        self.names = store._states
        self.index = {name: k for k, name in enumerate(self.names)}
        self.compiled = store._compiled
        self.timeout_reason = i.timeout_reason(store._compiled, row.plan.policy)

    def __call__(self, record: DeviceRecord, ack_due: datetime | None) -> DeviceRecord:
        """``record`` (stored, its deadline ``ack_due``) after the moves."""
        state = self.index[record.state.value]
        attempts, reason, pushed = record.attempts, record.last_failure_reason, record.last_push
        for followed in self.moves:
            move = followed.move
            dest = move.dest[state]
            if dest < 0 or (move.selection == "due" and ack_due != followed.at):
                continue
            for act in move.calls[state]:
                attempts += act.counts
                if act.pushes:
                    pushed = followed.at
                if act.reason == "timeout":
                    reason = self.timeout_reason
            if not self.compiled.keeps_wait(dest, move.calls[state]):
                ack_due = None
            state = dest
        if (state, attempts, reason, pushed) == (
            self.index[record.state.value],
            record.attempts,
            record.last_failure_reason,
            record.last_push,
        ):
            return record  # most rows: nothing to copy
        return attrs.evolve(
            record,
            state=DeviceState(self.names[state]),
            attempts=attempts,
            last_failure_reason=reason,
            last_push=pushed,
        )


@attrs.frozen
class Projection:
    """A rollout read at ``at``: its plan, phase and counts as a tick at ``at`` would
    leave them. ``projected``: timers fell due between the rollout's clock and ``at``
    (the earliest at ``due``), so this is not what is stored; ``moved``: the stored
    device rows differ from the projection's (``rollout`` then holds them, when the
    projection was made in memory; otherwise ``moves`` are the fleet-wide moves that
    :class:`Replay` applies to each stored row)."""

    row: Row
    at: datetime
    phase: Phase
    counts: dict[str, int]
    projected: bool
    due: datetime | None
    moved: bool
    next_due: datetime | None
    rollout: Rollout | None = None
    moves: tuple[Followed, ...] = ()

    def overview(self, store: Driver) -> Overview:
        counts = {DeviceState(k): v for k, v in self.counts.items()}
        return summary.overview(self.row.plan, self.phase, counts, self.at, store._evaluator)


def project(
    store: Driver,
    row: Row,
    at: datetime,
    *,
    whole: bool = False,
    deadline: tuple[datetime | None] | None = None,
) -> Projection:
    """``row`` (read in the open transaction) as a tick at ``at`` would leave it; nothing
    is written. ``whole``: make a projection that moves devices in memory (for its
    device rows). ``deadline``: the earliest stored acknowledgement deadline of its
    devices (``(None,)``: none), if already read in the transaction."""
    at = max(at, row.clock)
    stored = Row(**attrs.asdict(row, recurse=False))
    stored.counts = dict(row.counts)
    port = Dry(store, stored, deadline)
    found = i.next_timer(store._compiled, row.plan, row.phase, port)
    if found is None or found[0] > at:
        return Projection(row, at, row.phase, row.counts, False, None, False, _next(found))
    run = i.Turn(store._compiled, row.plan, row.phase, at, port, [])
    try:
        i.catch_up(run, at)
        if whole and port.devices_moved:
            raise _Unfollowed
        after = i.next_timer(store._compiled, row.plan, run.phase, port)
    except _Unfollowed:
        return _in_memory(store, row, at, found[0])
    return Projection(
        row,
        at,
        run.phase,
        stored.counts,
        True,
        found[0],
        port.devices_moved,
        _next(after),
        moves=tuple(port.followed),
    )


def _next(found: tuple[datetime, Any] | None) -> datetime | None:
    return None if found is None else found[0]


def _in_memory(store: Driver, row: Row, at: datetime, due: datetime) -> Projection:
    before = stored_rollout(store, row)
    rollout = store._evaluator.advance(before, at).rollout
    counts = {state.value: n for state, n in rollout.counts().items()}
    # Its device rows are the in-memory rollout's (moved or not: they are at hand).
    return Projection(
        row, at, rollout.phase, counts, True, due, True, store._evaluator.next_due(rollout), rollout
    )


def stored_rollout(store: Driver, row: Row) -> Rollout:
    """The stored rollout of ``row`` as a :class:`Rollout` (reads every device row, in
    the open transaction)."""
    return loads(rollout_document(store, row))


def rollout_document(store: Driver, row: Row) -> str:
    """``row``'s rollout as :func:`certflow.dumps` writes it, read in the open
    transaction."""
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


def projected_devices(
    projection: Projection, states: frozenset[DeviceState], after: str | None
) -> Iterator[DeviceRecord]:
    """The projection's devices in creation order, of ``states`` (all when empty), after
    device ``after``: from its in-memory rollout."""
    rollout = projection.rollout
    if rollout is None:  # pragma: no cover - project(whole=True) made one
        raise RuntimeError("a projection that moved devices has no rollout")
    started = after is None
    for record in rollout.devices():
        if not started:
            started = record.device_id == after
            continue
        if not states or record.state in states:
            yield record
