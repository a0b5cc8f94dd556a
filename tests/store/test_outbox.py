"""The outbox's delivery record (``store.md``, Outbox: "Dead letters"), on both backends:
each effect's attempts, last error and delivery instant; failures back off
exponentially; ``max_attempts`` failures make an effect dead (no longer delivered,
listed with ``dead=True``), and ``revive`` makes it pending again. What ``drain`` does
with it is in ``test_drain.py``; the end of a rollout superseding effects is here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import certflow as cf
from certflow.store import Handler, PostgresStore, SqliteStore, drain
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day

AnyStore = SqliteStore | PostgresStore
MINUTE = timedelta(minutes=1)


def queued(store: AnyStore) -> list[str]:
    """A rollout whose distribution queued one PushRoot (``r:2:0``), due at T0."""
    store.create("r", build(4, policy=cf.Policy(ack_timeout=6 * HOUR)))
    store.apply("r", cf.DistributeRoot(), T0)
    return [e.id for e in store.effects("r")]


@pytest.fixture
def store(backend: Backend) -> Iterator[AnyStore]:
    """Three failures make an effect dead; back-off 1 min, doubled, at most 3 min."""
    with backend.open(
        max_attempts=3, retry_backoff=MINUTE, retry_backoff_limit=3 * MINUTE
    ) as opened:
        queued(opened)
        yield opened


def test_each_lease_is_an_attempt_and_the_acknowledgement_its_delivery_instant(
    store: AnyStore,
) -> None:
    [first] = store.lease("r", now=T0 + HOUR)
    assert (first.attempts, first.last_attempt_at, first.status) == (1, T0 + HOUR, "pending")
    assert store.effects("r") == [first]
    store.acknowledge([first.id], T0 + 2 * HOUR)
    [done] = store.effects("r", include_acknowledged=True)
    assert (done.status, done.acked_at, done.attempts) == ("acknowledged", T0 + 2 * HOUR, 1)
    assert store.effects("r") == []


def test_failures_back_off_exponentially_up_to_the_limit_then_the_effect_is_dead(
    store: AnyStore,
) -> None:
    [effect_id] = [e.id for e in store.effects("r")]
    now = T0 + HOUR
    waits = []
    for _ in range(3):
        assert len(store.lease("r", now=now)) == 1
        after = store.record_failure(effect_id, "mail server down")  # at the lease's instant
        assert after == store.effects("r", include_acknowledged=True)[0]
        if after.next_attempt_at is None:
            break
        waits.append(after.next_attempt_at - now)
        # Not before its next attempt, and then at once.
        assert store.lease("r", now=after.next_attempt_at - timedelta(seconds=1)) == []
        now = after.next_attempt_at
    assert waits == [MINUTE, 2 * MINUTE]
    assert (after.status, after.failures, after.dead_at) == ("dead", 3, now)
    assert (after.attempts, after.last_error) == (3, "mail server down")
    # Dead: no longer delivered, not among the pending, listed as dead.
    assert store.lease("r", now=day(30)) == []
    assert store.effects("r") == []
    assert store.effects("r", dead=True) == [after]


def test_the_back_off_is_capped(backend: Backend) -> None:
    with backend.open(max_attempts=10, retry_backoff=MINUTE, retry_backoff_limit=3 * MINUTE) as s:
        [effect_id] = queued(s)
        waits = []
        for n in range(5):
            at = T0 + n * HOUR
            waits.append(s.record_failure(effect_id, "down", now=at).next_attempt_at - at)  # type: ignore[operator]
        assert waits == [MINUTE, 2 * MINUTE, 3 * MINUTE, 3 * MINUTE, 3 * MINUTE]


def test_a_dead_effect_is_revived_with_max_attempts_more_tries(store: AnyStore) -> None:
    [effect_id] = [e.id for e in store.effects("r")]
    for n in range(3):
        store.record_failure(effect_id, f"failure {n}", now=T0 + n * HOUR)
    [dead] = store.effects("r", dead=True)
    assert store.revive([effect_id]) == 1
    [alive] = store.effects("r")
    assert (alive.status, alive.failures, alive.dead_at, alive.next_attempt_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert (alive.attempts, alive.last_error) == (dead.attempts, "failure 2")  # the record
    assert store.revive([effect_id]) == 0  # already pending: harmless, nothing changes
    assert store.effects("r") == [alive]
    [leased] = store.lease("r", now=day(1))
    assert leased.id == effect_id


def test_drain_reports_the_effects_it_made_dead_and_delivers_them_no_more(
    store: AnyStore,
) -> None:
    [effect_id] = [e.id for e in store.effects("r")]

    def failing(effect_id: str, effect: cf.Effect) -> None:
        raise ConnectionError("no route to the MDM")

    handlers: dict[type, Handler] = {cf.PushRoot: failing}
    reports = [drain(store, handlers, T0 + n * HOUR) for n in range(4)]
    assert [r.failed[0][0] if r.failed else None for r in reports] == [effect_id] * 3 + [None]
    assert [r.dead for r in reports] == [(), (), (effect_id,), ()]
    [dead] = store.effects("r", dead=True)
    assert dead.last_error == "ConnectionError: no route to the MDM"


def test_reviving_a_bad_id_refuses_the_whole_call(store: AnyStore) -> None:
    [effect_id] = [e.id for e in store.effects("r")]
    for n in range(3):
        store.record_failure(effect_id, "down", now=T0 + n * HOUR)
    before = store.effects("r", include_acknowledged=True)
    for bad in ("r:9:0", "r:2:00", "nope:2:0", "garbage"):
        with pytest.raises(cf.InvalidInput, match="no effect with id"):
            store.revive([effect_id, bad])
    assert store.effects("r", include_acknowledged=True) == before
    store.revive([effect_id])
    store.acknowledge([effect_id], day(1))
    with pytest.raises(cf.InvalidInput, match="is acknowledged; only a dead effect"):
        store.revive([effect_id])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"retry_backoff": timedelta(seconds=-1)}, "retry_backoff must be a timedelta"),
        ({"retry_backoff_limit": 5}, "retry_backoff_limit must be a timedelta"),
        ({"retry_backoff": 2 * HOUR}, "retry_backoff_limit .* is shorter than retry_backoff"),
    ],
)
def test_bad_delivery_settings_are_refused_clearly(
    backend: Backend, options: dict[str, object], message: str
) -> None:
    with pytest.raises(cf.InvalidInput, match=message):
        backend.open(**options)


def test_a_failure_of_an_effect_that_is_not_pending_changes_nothing(store: AnyStore) -> None:
    [effect_id] = [e.id for e in store.effects("r")]
    store.acknowledge([effect_id], T0)
    before = store.effects("r", include_acknowledged=True)
    assert store.record_failure(effect_id, "late failure") == before[0]
    assert store.effects("r", include_acknowledged=True) == before


def test_dead_and_all_together_are_refused(store: AnyStore) -> None:
    with pytest.raises(cf.InvalidInput, match="not both"):
        store.effects("r", dead=True, include_acknowledged=True)


# --- the lease's order: due instants across rollouts (schema 6, outbox_by_due) -------------


def distributed(store: AnyStore, name: str, at: datetime, enrolled: int = 0) -> None:
    """Rollout ``name`` distributing from ``at`` (one push, ``NAME:2:0``), and
    ``enrolled`` devices enrolled at ``at`` (one push each, ``NAME:3:N``)."""
    store.create(name, build(1, at=T0 - HOUR))
    store.apply(name, cf.DistributeRoot(), at)
    if enrolled:
        store.apply_all(name, [cf.Enroll(f"e{i}") for i in range(enrolled)], at)


def test_a_lease_takes_the_due_effects_of_every_rollout_in_the_order_they_fell_due(
    backend: Backend,
) -> None:
    """A rollout created later is not kept behind an earlier one's backlog that fell due
    after its effects: the lease goes by due instant, then rollout (in the order they
    were created), journal entry and position."""
    with backend.open() as store:
        distributed(store, "a", T0, enrolled=6)  # a backlog: 7 pushes due at T0
        distributed(store, "b", T0 + 2 * HOUR, enrolled=3)  # 4 due at T0 + 2 h
        distributed(store, "c", T0 + HOUR)  # 1 due at T0 + 1 h
        distributed(store, "d", T0)  # 1 due at T0, with a's
        store.apply_all("a", [cf.Enroll(f"later{i}") for i in range(3)], T0 + 3 * HOUR)
        batches = [[e.id for e in store.lease(now=T0 + 3 * HOUR, limit=5)] for _ in range(4)]
    assert batches == [
        ["a:2:0", "a:3:0", "a:3:1", "a:3:2", "a:3:3"],
        ["a:3:4", "a:3:5", "d:2:0", "c:2:0", "b:2:0"],
        ["b:3:0", "b:3:1", "b:3:2", "a:4:0", "a:4:1"],
        ["a:4:2"],
    ]


def _lease_select(store: AnyStore, **lease: Any) -> tuple[str, Any]:
    """The statement the lease reads the outbox with, and its parameters."""
    seen: list[tuple[str, Any]] = []
    run = store._q

    def recorded(sql: str, params: Any = ()) -> Any:
        seen.append((sql, params))
        return run(sql, params)

    store._q = recorded  # type: ignore[method-assign]
    try:
        store.lease(**lease)
    finally:
        del store._q
    [found] = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT O.ROLLOUT")]
    return found


def _big_outbox(store: AnyStore) -> None:
    """2,002 effects, of which a lease at T0 + 1 h finds one due: 1,001 acknowledged
    (rollout "old"), 1,001 not due yet ("late", at T0 + 2 h), and "due"'s push."""
    distributed(store, "old", T0, enrolled=1_000)
    store.acknowledge([e.id for e in store.effects("old")], T0)
    distributed(store, "late", T0 + 2 * HOUR, enrolled=1_000)
    distributed(store, "due", T0 + HOUR / 2)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_leases_through_the_due_index_without_sorting(backend: Backend) -> None:
    with backend.open() as store:
        assert isinstance(store, SqliteStore)
        _big_outbox(store)
        sql, params = _lease_select(store, now=T0 + HOUR, limit=10, kinds=["PushRoot"])
        plan = [row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql, params)]
        # SEARCH: a range of the index (due_at <= now); a SCAN would read every row, and
        # a TEMP B-TREE would sort every row found.
        assert plan == ["SEARCH o USING INDEX outbox_by_due (due_at<?)"], plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_leases_through_the_due_index_reading_only_what_is_due(
    backend: Backend,
) -> None:
    """The plan as PostgreSQL executes it (EXPLAIN ANALYZE): an index scan of
    outbox_by_due that reads the one row due of 2,002, no sequential scan and no
    sort."""
    with backend.open() as store:
        assert isinstance(store, PostgresStore)
        _big_outbox(store)
        store._q("ANALYZE")  # as autovacuum would have
        sql, params = _lease_select(store, now=T0 + HOUR, limit=10, kinds=["PushRoot"])
        with store._transaction(write=True):
            [(found,)] = store._q("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()
        plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
        nodes = list(_nodes(plan))
        scans = [n for n in nodes if "Scan" in n["Node Type"]]
        assert [n.get("Index Name") for n in scans] == ["outbox_by_due"], nodes
        assert not [n for n in nodes if n["Node Type"] in ("Seq Scan", "Sort")], nodes
        # The one entry due by then, read once: leased by the lease above, so the plan's
        # own run finds it taken (the filter on leased_until removes it).
        [scan] = scans
        assert scan["Actual Loops"] == 1, scan
        assert scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) == 1, scan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)
