"""``SqlStore.iter_devices``: every device of a rollout (of some states, after a device),
streamed in keyset pages inside one read transaction, with no page limit and in constant
memory; read past due timers, each stored row is moved as a tick would move it, and
equals the in-memory evaluator advanced there. On both backends.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certflow as cf
from certflow.core.errors import InvalidInput
from certflow.store import PostgresStore, SqliteStore, UnknownRollout
from certflow.store._projection import project
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day
from tests.store.test_projection import _retrying_checkpoint

AnyStore = SqliteStore | PostgresStore
Seen = tuple[str, str, int, str | None, datetime | None, datetime | None]


def seen(devices: Any) -> list[Seen]:
    return [
        (d.device_id, d.state.value, d.attempts, d.last_failure_reason, d.last_push, d.last_report)
        for d in devices
    ]


def without_instants(devices: Any) -> list[tuple[str, str, int, str | None]]:
    return [(d.device_id, d.state.value, d.attempts, d.last_failure_reason) for d in devices]


def distributing(
    store: AnyStore, devices: int, ack: timedelta | None, name: str = "r"
) -> cf.Rollout:
    """Rollout ``name`` distributing since T0 over ``devices`` devices, d0 installed, d1
    failed, d2 unenrolled and d3 failed and retried, an hour later; the same in memory."""
    rollout = cf.apply(build(devices, policy=cf.Policy(ack_timeout=ack)), cf.DistributeRoot(), T0)
    commands: list[cf.Command] = [
        cf.DeviceInstalled("d0"),
        cf.DeviceFailed("d1", "disk full"),
        cf.Unenroll("d2"),
        cf.DeviceFailed("d3", "declined"),
        cf.Retry("d3"),
    ]
    memory = cf.apply_all(rollout.rollout, commands, T0 + HOUR).rollout
    store.create(name, rollout.rollout)
    store.apply_all(name, commands, T0 + HOUR)
    return memory


def test_every_device_in_creation_order_as_the_pages_give_them(backend: Backend) -> None:
    with backend.open() as store:
        distributing(store, 12, None)
        everything = store.devices("r", limit=100)
        assert [d.device_id for d in everything] == [f"d{n}" for n in range(12)]
        for page in (1, 2, 5, 11, 12, 13, 1000):
            assert seen(store.iter_devices("r", page=page)) == seen(everything)
        wanted = [cf.DeviceState.FAILED, cf.DeviceState.REMOVED, cf.DeviceState.PUSHED]
        for states in ([], [cf.DeviceState.PUSHED], wanted, [cf.DeviceState.REENROLL_REQUIRED]):
            for after in (None, "d0", "d3", "d11"):
                paged = store.devices("r", states, after=after, limit=100)
                for page in (1, 3, 100):
                    streamed = store.iter_devices("r", states, after=after, page=page)
                    assert seen(streamed) == seen(paged), (states, after, page)


def test_past_due_timers_each_row_moves_as_a_tick_would_move_it(backend: Backend) -> None:
    """Timeouts (a 6-hour wait), the notice, the checkpoints and the forced import: the
    rows streamed at each instant are the evaluator's rollout advanced there, with the
    instants the page shows; the stored rows are moved one by one (the projection
    followed the counts: nothing is read in memory), and nothing is stored."""
    with backend.open() as store:
        for name, ack in (("wait", 6 * HOUR), ("no-wait", None)):
            memory = distributing(store, 9, ack, name)
            before = backend.tables()
            moved = 0
            for later in (T0 + 2 * HOUR, T0 + 7 * HOUR, day(6.5), day(7.5), day(22), day(40)):
                expected = list(cf.advance(memory, later).rollout.devices())
                streamed = list(store.iter_devices(name, now=later, page=2))
                assert without_instants(streamed) == without_instants(expected), (ack, later)
                assert seen(streamed) == seen(store.devices(name, now=later, limit=100))
                for state in cf.DeviceState:
                    assert without_instants(
                        store.iter_devices(name, [state], now=later, page=2)
                    ) == without_instants(d for d in expected if d.state is state)
                with store._transaction(write=False):
                    projection = project(store, store._row(name), later)
                assert projection.rollout is None  # not read in memory
                moved += bool(projection.moves)
            assert moved >= 2  # the forced import (and the timeouts, with a wait)
            assert backend.tables() == before


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.integers(1, 30 * 24).map(lambda h: h * HOUR), min_size=1, max_size=4),
    ack=st.sampled_from([None, HOUR, 6 * HOUR]),
    answers=st.lists(st.sampled_from(["installed", "failed", None]), min_size=5, max_size=5),
)
def test_any_read_instant_streams_what_the_evaluator_advances_to(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[timedelta],
    ack: timedelta | None,
    answers: list[str | None],
) -> None:
    """SQLite only (hypothesis draws many rollouts; the SQL is the same on both)."""
    rollout = cf.apply(build(5, policy=cf.Policy(ack_timeout=ack)), cf.DistributeRoot(), T0).rollout
    commands: list[cf.Command] = [
        cf.DeviceInstalled(f"d{n}") if a == "installed" else cf.DeviceFailed(f"d{n}", "x")
        for n, a in enumerate(answers)
        if a is not None
    ]
    rollout = cf.apply_all(rollout, commands, T0 + timedelta(minutes=30)).rollout
    with SqliteStore(tmp_path_factory.mktemp("iter") / "certflow.db") as store:
        store.create("r", rollout)
        at = T0 + timedelta(minutes=30)
        for step in steps:
            at += step
            expected = list(cf.advance(rollout, at).rollout.devices())
            assert without_instants(store.iter_devices("r", now=at, page=2)) == without_instants(
                expected
            )
            failed = store.iter_devices("r", [cf.DeviceState.FAILED], now=at, page=1)
            assert without_instants(failed) == without_instants(
                d for d in expected if d.state is cf.DeviceState.FAILED
            )


def test_a_projection_the_counts_cannot_follow_streams_from_memory(backend: Backend) -> None:
    rules = _retrying_checkpoint(cf.RULES)
    evaluator = cf.Evaluator(_rules=rules)
    rollout = evaluator.apply(build(5), cf.DistributeRoot(), T0).rollout
    rollout = evaluator.apply(rollout, cf.DeviceFailed("d0", "full"), T0 + HOUR).rollout
    with backend.fresh(_rules=rules) as store:
        store.create("r", rollout)
        later = day(7) + HOUR  # the first checkpoint postponed and retried d0
        expected = list(evaluator.advance(rollout, later).rollout.devices())
        with store._transaction(write=False):
            assert project(store, store._row("r"), later).rollout is not None
        streamed = list(store.iter_devices("r", now=later, page=2))
        assert without_instants(streamed) == without_instants(expected)
        assert seen(streamed) == seen(store.devices("r", now=later))
        after = store.iter_devices("r", [cf.DeviceState.PUSHED], after="d1", now=later, page=1)
        assert [d.device_id for d in after] == ["d2", "d3", "d4"]


def test_errors_come_with_the_first_row_and_an_early_close_ends_the_read(
    backend: Backend,
) -> None:
    with backend.open() as store:
        distributing(store, 6, None)
        with pytest.raises(InvalidInput, match="page must be a positive number"):
            store.iter_devices("r", page=0)
        with pytest.raises(ValueError, match="'sideways' is not a valid DeviceState"):
            store.iter_devices("r", ["sideways"])  # type: ignore[list-item]
        unknown = store.iter_devices("nosuch")
        with pytest.raises(UnknownRollout, match="no rollout named 'nosuch'"):
            next(unknown)
        with pytest.raises(cf.UnknownDevice, match="'d99'"):
            next(store.iter_devices("r", after="d99"))
        with pytest.raises(cf.TimeWentBackwards):
            next(store.iter_devices("r", now=T0))
        rows = store.iter_devices("r", page=2)
        assert next(rows).device_id == "d0"
        rows.close()  # stopped early: the read transaction ends with it
        assert [d.device_id for d in store.iter_devices("r", after="d3")] == ["d4", "d5"]


def _counting(store: AnyStore) -> list[tuple[str, Any]]:
    """Every statement the store runs from now on (and its parameters)."""
    statements: list[tuple[str, Any]] = []
    query = store._q

    def counted(sql: str, params: Any = ()) -> Any:
        statements.append((sql, params))
        return query(sql, params)

    store._q = counted  # type: ignore[method-assign]
    return statements


def _consume(rows: Iterator[cf.DeviceRecord]) -> tuple[int, str]:
    """How many rows, and the last id, keeping none of them."""
    count, last = 0, ""
    for record in rows:
        count, last = count + 1, record.device_id
    return count, last


FLEET = 30_000


def test_thirty_thousand_devices_stream_in_pages_in_constant_memory(backend: Backend) -> None:
    """Every row arrives, read a page per statement, and the peak of memory while they
    stream is a small part of what the whole list of devices takes."""
    with backend.open() as store:
        store.create("r", build(FLEET))
        store.apply("r", cf.DistributeRoot(), T0)
        store.apply_all("r", [cf.DeviceFailed(f"d{n}", "full") for n in range(0, FLEET, 7)], T0)
        statements = _counting(store)
        assert _consume(store.iter_devices("r", page=1_000)) == (FLEET, f"d{FLEET - 1}")
        pages = [s for s, _ in statements if "ORDER BY idx LIMIT" in s]
        assert len(pages) == FLEET // 1_000 + 1  # the last one finds nothing more
        assert all(params[-1] == 1_000 for s, params in statements if s in pages)

        tracemalloc.start()
        try:
            whole = store.devices("r", limit=FLEET)  # a list of the whole fleet
            _, whole_peak = tracemalloc.get_traced_memory()
            del whole
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            assert _consume(store.iter_devices("r", page=1_000)) == (FLEET, f"d{FLEET - 1}")
            _, streamed_peak = tracemalloc.get_traced_memory()
            failed = store.iter_devices("r", [cf.DeviceState.FAILED], page=500)
            assert _consume(failed) == (len(range(0, FLEET, 7)), f"d{(FLEET - 1) // 7 * 7}")
            # Projected past the forced import (day 22): every row moved, one at a time.
            moved = store.iter_devices("r", [cf.DeviceState.REENROLL_REQUIRED], now=day(22))
            assert _consume(moved) == (FLEET, f"d{FLEET - 1}")
            _, moved_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert streamed_peak - base < whole_peak / 10, (streamed_peak - base, whole_peak)
        assert moved_peak - base < whole_peak / 10, (moved_peak - base, whole_peak)
