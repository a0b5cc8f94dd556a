"""A read at an instant past a due timer (``store.md``, "Reads never write"): the store
shows the rollout as a tick at that instant would leave it, says so, and stores nothing.
On both backends, against the in-memory evaluator advanced to the same instant, and
against what a tick then stores.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certflow as cf
from certflow.core.machines import call
from certflow.core.summary import overview
from certflow.store import PostgresStore, SqliteStore
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day

AnyStore = SqliteStore | PostgresStore


def history(devices: int, failed: int, installed: int, policy: cf.Policy) -> list[cf.Command]:
    return [
        *(cf.DeviceInstalled(f"d{n}") for n in range(installed)),
        *(cf.DeviceFailed(f"d{n}", "full") for n in range(installed, installed + failed)),
    ]


def stored_and_memory(
    store: AnyStore, name: str, rollout: cf.Rollout, commands: list[cf.Command], at: datetime
) -> cf.Rollout:
    store.create(name, rollout)
    store.apply(name, cf.DistributeRoot(), T0)
    memory = cf.apply(rollout, cf.DistributeRoot(), T0).rollout
    if commands:
        store.apply_all(name, commands, at)
        memory = cf.apply_all(memory, commands, at).rollout
    return memory


def records(devices: list[cf.DeviceRecord]) -> list[tuple[str, str, int, str | None]]:
    return [(d.device_id, d.state.value, d.attempts, d.last_failure_reason) for d in devices]


def test_reads_past_due_timers_are_the_evaluator_s_and_what_a_tick_then_stores(
    backend: Backend,
) -> None:
    """Rollouts with timeouts, notices, checkpoints and the deadline due at many later
    instants: the projected head, list line and device pages equal the evaluator's
    rollout advanced there, and a tick at that instant then stores exactly that."""
    with backend.open() as store:
        cases = 0
        for n, (devices, failed, installed, ack) in enumerate(
            [(6, 1, 2, 6 * HOUR), (4, 0, 4, None), (5, 2, 0, 2 * HOUR), (3, 0, 0, None)]
        ):
            policy = cf.Policy(ack_timeout=ack)
            name = f"r{n}"
            memory = stored_and_memory(
                store,
                name,
                build(devices, policy=policy),
                history(devices, failed, installed, policy),
                T0 + HOUR,
            )
            for later in (T0 + 2 * HOUR, day(0.5), day(6.5), day(7.5), day(14.5), day(22)):
                before = backend.tables()
                expected = cf.advance(memory, later).rollout
                seen = store.view(name, later)
                assert seen.overview == overview(
                    expected.plan, expected.phase, expected.counts(), later
                )
                due = cf.next_due(memory)
                assert seen.projected == (due is not None and due <= later)
                assert seen.due == (due if seen.projected else None)
                assert records(store.devices(name, now=later, limit=100)) == records(
                    list(expected.devices())
                )
                for state in cf.DeviceState:
                    assert records(store.devices(name, [state], now=later, limit=100)) == records(
                        [d for d in expected.devices() if d.state is state]
                    )
                line = store.info(name, later)
                assert (line.state, line.percent_complete, line.projected) == (
                    expected.phase.state,
                    seen.overview.percent_complete,
                    seen.projected,
                )
                assert line.next_due == cf.next_due(expected)
                assert backend.tables() == before  # nothing stored
                cases += seen.projected
            # What the projection showed is what a tick stores.
            store.advance(name, day(22))
            assert store.dumps(name) == cf.dumps(cf.advance(memory, day(22)).rollout)
        assert cases > 10


def test_a_read_says_whether_it_is_projected(backend: Backend) -> None:
    with backend.open() as store:
        store.create("r", build(3))
        store.apply("r", cf.DistributeRoot(), T0)
        notice = store.next_due("r")
        assert notice == day(6)
        assert (store.view("r", day(5)).projected, store.view("r", day(5)).due) == (False, None)
        seen = store.view("r", day(6) + HOUR)
        assert (seen.projected, seen.due) == (True, day(6))
        assert [i.projected for i in store.rollouts(day(6) + HOUR)] == [True]
        assert [i.projected for i in store.rollouts()] == [False]
        assert store.rollouts()[0].clock == T0  # the stored clock, not the projection's
        # A list at an instant before a rollout's clock shows it as stored.
        store.apply("r", cf.DeviceInstalled("d0"), day(1))
        assert store.info("r", day(0.5)) == store.info("r")
        assert [i.projected for i in store.rollouts(T0)] == [False]


def test_the_refusal_is_judged_as_a_tick_would_leave_the_rollout(backend: Backend) -> None:
    rollout = cf.apply(build(3), cf.DistributeRoot(), T0).rollout
    with backend.open() as store:
        store.create("r", rollout)
        for at in (day(5), day(6.5), day(22)):
            for command in (cf.ExtendManually(), cf.ImportNow(), cf.Cancel()):
                mine = store.refusal("r", command, at)
                theirs = cf.Evaluator().refusal(rollout, command, at)
                assert (
                    None if mine is None else str(mine).replace("rollout 'r'", "this rollout")
                ) == (None if theirs is None else str(theirs))


def _retrying_checkpoint(rules: cf.Rules) -> cf.Rules:
    """The rules with a checkpoint that postpones and retries every failed device: a
    timer that pushes to the fleet, which the counts cannot follow (no shipped rule
    does it)."""
    rollout = rules.rollout
    rows = tuple(
        attrs.evolve(r, actions=(*r.actions, call("retry_failed")))
        if r.trigger == "checkpoint" and r.dest == "extended"
        else r
        for r in rollout.transitions
    )
    return attrs.evolve(rules, rollout=attrs.evolve(rollout, transitions=rows))


def test_a_projection_the_counts_cannot_follow_is_made_in_memory(backend: Backend) -> None:
    rules = _retrying_checkpoint(cf.RULES)
    evaluator = cf.Evaluator(_rules=rules)
    rollout = evaluator.apply(build(4), cf.DistributeRoot(), T0).rollout
    rollout = evaluator.apply(rollout, cf.DeviceFailed("d0", "full"), T0 + HOUR).rollout
    with backend.fresh(_rules=rules) as store:
        store.create("r", rollout)
        before = store.dumps("r")
        later = day(7) + HOUR  # the first checkpoint postponed and retried d0
        expected = evaluator.advance(rollout, later).rollout
        assert expected.device_state("d0") is cf.DeviceState.PUSHED
        seen = store.view("r", later)
        assert seen.projected
        assert seen.overview.counts == expected.counts()
        assert records(store.devices("r", now=later)) == records(list(expected.devices()))
        assert store.dumps("r") == before


@settings(max_examples=25)
@given(
    steps=st.lists(st.integers(1, 30 * 24).map(lambda h: h * HOUR), min_size=1, max_size=4),
    ack=st.sampled_from([None, HOUR, 6 * HOUR]),
    answers=st.lists(st.sampled_from(["installed", "failed", None]), min_size=4, max_size=4),
)
def test_any_read_instant_projects_as_the_evaluator_advances(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[timedelta],
    ack: timedelta | None,
    answers: list[str | None],
) -> None:
    """SQLite only (hypothesis draws many rollouts; the SQL is the same text on both)."""
    rollout = cf.apply(build(4, policy=cf.Policy(ack_timeout=ack)), cf.DistributeRoot(), T0).rollout
    commands: list[cf.Command] = [
        cf.DeviceInstalled(f"d{n}") if a == "installed" else cf.DeviceFailed(f"d{n}", "x")
        for n, a in enumerate(answers)
        if a is not None
    ]
    rollout = cf.apply_all(rollout, commands, T0 + timedelta(minutes=30)).rollout
    folder = tmp_path_factory.mktemp("projection")
    with SqliteStore(folder / "certflow.db") as store:
        store.create("r", rollout)
        at = T0 + timedelta(minutes=30)
        for step in steps:
            at += step
            expected = cf.advance(rollout, at).rollout
            assert store.view("r", at).overview.counts == expected.counts()
            assert store.view("r", at).overview.state is expected.phase.state
            assert records(store.devices("r", now=at, limit=10)) == records(
                list(expected.devices())
            )
        assert store.dumps("r") == cf.dumps(rollout)  # nothing stored
