"""``rollouts(now, after=, limit=)``: the list a page at a time, by name, for the web
console's Rollouts page (issue 20). On both backends: the pages are the whole list cut
by name, each line carries the overview that ``view()`` gives, and a page is one read
transaction and one statement (a range of the name's unique index, each row with its
earliest acknowledgement deadline) however many rollouts it holds and whatever their
state. Structural, not timed: statements counted, and SQLite's query plan read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

import certflow as cf
from certflow.store import PostgresStore, RolloutInfo, SqliteStore, SqlStore
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day


def fill(store: SqlStore, count: int) -> list[str]:
    """``count`` rollouts of three devices, in turn: pending; distributing with d0's push
    unanswered (an acknowledgement deadline 6 hours on); distributing, then cancelled;
    distributing with every device installed. Named so that their order by name is not
    the order they were created in."""
    names = []
    for k in range(count):
        name = f"r{(k * 7) % count:04d}-{k}"
        names.append(name)
        store.create(name, build(3, at=T0, policy=cf.Policy(ack_timeout=6 * HOUR)))
        if k % 4 == 0:
            continue
        store.apply(name, cf.DistributeRoot(), T0)
        if k % 4 == 2:
            store.apply(name, cf.Cancel(), T0 + HOUR)
        elif k % 4 == 1:
            store.apply_all(name, [cf.DeviceInstalled("d1"), cf.DeviceInstalled("d2")], T0)
        else:
            installed = [cf.DeviceInstalled(d) for d in ("d0", "d1", "d2")]
            store.apply_all(name, installed, T0 + HOUR)
    return sorted(names)


@contextmanager
def counted(store: SqlStore) -> Iterator[dict[str, list[Any]]]:
    """The statements ``store`` runs meanwhile, and the transactions it begins."""
    seen: dict[str, list[Any]] = {"statements": [], "transactions": []}
    run, begin = store._q, store._begin

    def statement(sql: str, params: Any = ()) -> Any:
        seen["statements"].append(sql)
        return run(sql, params)

    def transaction(write: bool) -> None:
        seen["transactions"].append(write)
        begin(write)

    store._q = statement  # type: ignore[method-assign]
    store._begin = transaction  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del store._q, store._begin


@pytest.mark.parametrize("now", [None, T0 + 2 * HOUR, day(6) + HOUR], ids=str)
def test_pages_are_the_list_cut_by_name_and_carry_the_view(
    backend: Backend, now: datetime | None
) -> None:
    """At no instant, with nothing due, and past the timeouts and the first notice
    (every running rollout projected): the pages joined are the whole list; each line
    equals ``info()`` read alone and its overview ``view()``'s at the same instant."""
    with backend.open() as store:
        names = fill(store, 12)
        whole = store.rollouts(now)
        assert [i.name for i in whole] == names
        pages: list[RolloutInfo] = []
        after = None
        for _ in range(4):
            page = store.rollouts(now, after=after, limit=5)
            assert page == [i for i in whole if after is None or i.name > after][:5]
            pages.extend(page)
            if len(page) < 5:
                break
            after = page[-1].name
        assert pages == whole
        for info in whole:
            assert info == store.info(info.name, now)  # read with its own deadline query
            view = store.view(info.name, info.clock if now is None else max(now, info.clock))
            assert (info.overview, info.projected) == (view.overview, view.projected)
        # Past the first notice every running rollout is projected, and only those.
        stored = {i.name for i in store.rollouts() if i.state.running}
        assert {i.name for i in whole if i.projected} == (stored if now == day(6) + HOUR else set())


def test_after_need_not_be_a_rollout_and_sorts_by_code_point(backend: Backend) -> None:
    with backend.open() as store:
        for name in ("B", "a", "Über-2026", "Z9"):
            store.create(name, build(1))
        assert [i.name for i in store.rollouts(after="")] == ["B", "Z9", "a", "Über-2026"]
        assert [i.name for i in store.rollouts(after="C")] == ["Z9", "a", "Über-2026"]
        assert [i.name for i in store.rollouts(after="a", limit=1)] == ["Über-2026"]
        assert [i.name for i in store.rollouts(after="Ü")] == ["Über-2026"]
        assert store.rollouts(after="Über-2026") == []


@pytest.mark.parametrize("count", [8, 40])
def test_a_page_is_one_statement_in_one_read_transaction(backend: Backend, count: int) -> None:
    """Whatever the number of rollouts and their states (distributing ones have devices
    awaiting an answer, whose deadline is their next_due), the page is read by one
    statement; so is the whole list, and the list at an instant with nothing due."""
    with backend.open() as store:
        fill(store, count)
        calls: list[dict[str, Any]] = [
            {"after": "r0002", "limit": count},
            {},
            {"now": T0 + 2 * HOUR},
        ]
        for options in calls:
            with counted(store) as seen:
                found = store.rollouts(**options)
            assert len(found) >= count // 2
            assert any(i.next_due is not None for i in found)  # deadlines and notices
            assert len(seen["statements"]) == 1
            assert seen["transactions"] == [False]


def test_a_projected_rollout_reads_what_its_projection_needs(backend: Backend) -> None:
    """Past a due timeout, the projection counts the devices of that deadline and reads
    the next one (as a tick would): statements for each projected rollout alone, none
    for the others."""
    with backend.open() as store:
        names = fill(store, 8)  # two rollouts with d0 unanswered, due at T0 + 6 h
        at = T0 + 7 * HOUR
        with counted(store) as seen:
            infos = store.rollouts(at)
        projected = [k for k, info in enumerate(infos) if info.projected]
        assert len(projected) == 2
        alone = []
        for k in projected:
            with counted(store) as one:
                store.rollouts(at, after=names[k - 1] if k else None, limit=1)
            alone.append(len(one["statements"]) - 1)
        assert min(alone) > 0
        assert len(seen["statements"]) == 1 + sum(alone)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_reads_a_range_of_the_name_index(backend: Backend) -> None:
    with backend.open() as store:
        assert isinstance(store, SqliteStore)
        fill(store, 8)
        with counted(store) as seen:
            store.rollouts(after="r0002", limit=3)
        [sql] = seen["statements"]
        plan = [row[3] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql, ("r0002", 3))]
        assert plan[0] == "SEARCH rollouts USING INDEX sqlite_autoindex_rollouts_1 (name>?)"
        assert not any("TEMP B-TREE" in step or step.startswith("SCAN") for step in plan), plan
        assert any("devices_by_ack_due" in step for step in plan), plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_reads_a_range_of_the_name_index(backend: Backend) -> None:
    """The plan PostgreSQL executes at 300 rollouts: the name's index, no sort, and
    only the page's rows read from it."""
    with backend.open() as store:
        assert isinstance(store, PostgresStore)
        fill(store, 300)
        store._q("ANALYZE")
        with counted(store) as seen:
            store.rollouts(after="r0100", limit=10)
        [sql] = seen["statements"]
        with store._transaction(write=False):
            [(found,)] = store._q("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, ("r0100", 10)).fetchall()
        top = found[0]["Plan"]
        nodes = list(_nodes(top))
        assert not any(n["Node Type"] in ("Sort", "Seq Scan") for n in nodes), nodes
        scans = [n for n in nodes if n.get("Relation Name") == "rollouts"]
        assert [n["Node Type"] for n in scans] == ["Index Scan"]
        assert scans[0]["Actual Rows"] == 10


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit must be a positive number"),
        ({"limit": -1}, "limit must be a positive number"),
        ({"limit": True}, "limit must be a positive number"),
        ({"limit": 2**31}, "limit must be a positive number"),
        ({"after": 3}, "after must be a rollout name"),
        ({"after": "\udcff"}, "not valid UTF-8"),
        ({"now": datetime(2026, 7, 1)}, "timezone"),
    ],
)
def test_bad_arguments_are_refused(backend: Backend, options: Any, message: str) -> None:
    with backend.open() as store:
        store.create("r", build(1))
        with pytest.raises(cf.InvalidInput, match=message):
            store.rollouts(**options)


def test_an_instant_behind_a_rollout_shows_it_as_stored(backend: Backend) -> None:
    """The list reads every rollout at one instant: one ahead of it is not refused."""
    with backend.open() as store:
        store.create("r", build(2, at=T0))
        store.apply("r", cf.DistributeRoot(), T0 + timedelta(days=2))
        [info] = store.rollouts(T0, limit=1)
        assert info.clock == T0 + timedelta(days=2)
        assert info.overview == store.view("r", info.clock).overview
