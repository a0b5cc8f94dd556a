"""``next_due()`` of every rollout from indexes (schema version 5): the earliest instant
at which time moves any running rollout, read as the first entry of two indexes, so
that a scheduler's idle pass costs the same with 10 rollouts and with thousands.

Structural, not timed: the statements it runs are planned on the indexes on both
backends (SQLite's query plan; PostgreSQL's plan as executed, with the rows each node
read), and on SQLite the virtual machine runs the same number of instructions at 10
rollouts as at 300. The answer equals the in-memory evaluator's ``next_due`` of every
rollout's replayed history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

import certflow as cf
from certflow.store import PostgresStore, SqliteStore, SqlStore
from tests.backends import Backend
from tests.core.strategies import DAY, HOUR, T0, build, day

INDEXES = {"rollouts_by_phase_due", "devices_by_deadline"}


def fill(store: SqlStore, count: int, *, ack_timeout: timedelta = 6 * HOUR) -> list[str]:
    """``count`` rollouts of two devices each, in turn: pending; distributing with both
    pushes unanswered (an acknowledgement deadline); distributing, then cancelled (no
    timers left); distributing with both devices installed (only the phase's timers).
    Each starts a minute after the one before, so the first ones hold the earliest
    instants however many follow."""
    names = []
    for k in range(count):
        name = f"r{k:05d}"
        names.append(name)
        start = T0 + k * timedelta(minutes=1)
        store.create(name, build(2, at=T0, policy=cf.Policy(ack_timeout=ack_timeout)))
        if k % 4 == 0:
            continue
        store.apply(name, cf.DistributeRoot(), start)
        if k % 4 == 2:
            store.apply(name, cf.Cancel(), start)
        elif k % 4 == 3:
            store.apply_all(name, [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d1")], start)
    return names


def expected(store: SqlStore, names: list[str]) -> datetime | None:
    """The least next due instant of the rollouts' histories replayed in memory."""
    found = [cf.next_due(store.replay(n)) for n in names]
    return min((d for d in found if d is not None), default=None)


@pytest.mark.parametrize("ack_timeout", [6 * HOUR, 30 * DAY], ids=["deadline", "phase"])
def test_next_due_is_the_earliest_of_every_rollout(
    backend: Backend, ack_timeout: timedelta
) -> None:
    """With short acknowledgement timeouts the earliest instant is a push's deadline;
    with long ones, a phase timer (the first notice)."""
    with backend.open() as store:
        names = fill(store, 8, ack_timeout=ack_timeout)
        due = store.next_due()
        assert due == expected(store, names)
        assert due == min(d for n in names if (d := store.next_due(n)) is not None)
        if ack_timeout == 6 * HOUR:
            assert due == T0 + timedelta(minutes=1) + 6 * HOUR  # r00001's pushes
        else:
            assert due != T0 + timedelta(minutes=1) + ack_timeout
        # Time moves: each tick leaves the next instant as the evaluator sees it.
        for _ in range(4):
            assert due is not None
            store.tick(due)
            due = store.next_due()
            assert due == expected(store, names)


def test_next_due_skips_the_deadlines_of_rollouts_that_ended_or_wait(backend: Backend) -> None:
    """A deadline left on a device of a rollout that is not running (written there by
    hand: the shipped rules drop them at the end) is not a due instant, as it is none
    for the rollout's own ``next_due``."""
    with backend.open() as store:
        names = fill(store, 4)
    backend.query(
        "UPDATE devices SET ack_due = ? WHERE rollout IN "
        "(SELECT id FROM rollouts WHERE name IN ('r00000', 'r00002'))",
        _stored(backend, T0 - DAY),
    )
    with backend.open(create=False) as store:
        assert store.next_due() == expected(store, names)
        assert store.next_due() == T0 + timedelta(minutes=1) + 6 * HOUR


def test_nothing_due_without_a_running_rollout(backend: Backend) -> None:
    with backend.open() as store:
        assert store.next_due() is None
        fill(store, 1)  # pending
        store.create("ended", build(2))
        store.apply("ended", cf.DistributeRoot(), T0)
        store.apply("ended", cf.Cancel(), T0 + HOUR)
        assert store.next_due() is None


@contextmanager
def statements(store: SqlStore) -> Iterator[list[tuple[str, Any]]]:
    """The statements ``store`` runs meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []
    run = store._q

    def recorded(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return run(sql, params)

    store._q = recorded  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del store._q


def _selects(store: SqlStore) -> list[tuple[str, Any]]:
    with statements(store) as seen:
        store.next_due()
    found = [(sql, p) for sql, p in seen if sql.lstrip().upper().startswith("SELECT")]
    assert len(found) == 2  # the phases' timers, the devices' deadlines
    return found


def _stored(backend: Backend, instant: datetime) -> object:
    return instant.isoformat() if backend.name == "sqlite" else instant


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_reads_one_entry_of_each_index(backend: Backend) -> None:
    with backend.open() as store:
        assert isinstance(store, SqliteStore)
        fill(store, 40)
        used = set()
        for sql, params in _selects(store):
            plan = [row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql, params)]
            # SEARCH: a range of an index or key; a SCAN would read a whole table, and a
            # TEMP B-TREE would sort every row found.
            assert all(step.startswith("SEARCH") for step in plan), plan
            used |= {name for name in INDEXES if name in plan[0]}
        assert used == INDEXES


def _sqlite_steps(store: SqliteStore) -> int:
    """The virtual machine instructions ``next_due()`` runs (counted by a progress
    handler called at every instruction): the work of the read, not its time."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store._db.set_progress_handler(count, 1)
    try:
        store.next_due()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_does_the_same_work_at_10_and_at_300_rollouts(backend: Backend) -> None:
    work = {}
    for count in (10, 300):
        with backend.fresh() as store:
            assert isinstance(store, SqliteStore)
            fill(store, count)
            assert store.next_due() == T0 + timedelta(minutes=1) + 6 * HOUR
            work[count] = _sqlite_steps(store)
    assert work[10] == work[300], work
    assert work[10] > 0  # the handler saw the read


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_reads_one_entry_of_each_index(backend: Backend) -> None:
    """The plans as PostgreSQL executes them (EXPLAIN ANALYZE) at 300 rollouts and 600
    devices: an index scan of each index, no sequential scan, and one row read from
    each (one row of an ended or pending rollout at most besides)."""
    with backend.open() as store:
        assert isinstance(store, PostgresStore)
        fill(store, 300)
        store._q("ANALYZE")  # as autovacuum would have, on a database that old
        used = set()
        for sql, params in _selects(store):
            with store._transaction(write=False):
                [(found,)] = store._q("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()
            plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
            nodes = list(_nodes(plan))
            scans = [n for n in nodes if "Scan" in n["Node Type"]]
            assert not [n for n in scans if n["Node Type"] == "Seq Scan"], nodes
            assert not [n for n in nodes if n["Node Type"] == "Sort"], nodes
            for scan in scans:
                assert scan["Actual Rows"] * scan["Actual Loops"] <= 2, scan
            used |= {n.get("Index Name") for n in scans} & INDEXES
        assert used == INDEXES


def test_the_earliest_instant_is_that_of_the_first_rollouts_however_many_follow(
    backend: Backend,
) -> None:
    """The same answer at 10 and 60 rollouts: the later ones start later."""
    answers = []
    for count in (10, 60):
        with backend.fresh() as store:
            names = fill(store, count)
            answers.append(store.next_due())
            assert answers[-1] == expected(store, names)
    assert answers[0] == answers[1] == day(0) + timedelta(minutes=1) + 6 * HOUR
