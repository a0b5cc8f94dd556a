"""The SQL store on both backends against the in-memory evaluator: the differential
test, and the store's own contract (journal replay, O(1) reads of a device report,
paging). Every test here runs on SQLite and on PostgreSQL (``tests/backends.py``),
except the few that look at one backend's own machinery.

The oracle is the pure evaluator: every history of commands and time steps is applied
to a :class:`certflow.Rollout` and to the store, and after every step the two must agree
on the outcome (the same effects, or the same refusal: class and message), on
``dumps``, and on ``next_due``. The journal must replay to the stored rollout at the end.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import certflow as cf
from certflow.core.preview import preview
from certflow.store import Applied, PostgresStore, SqliteStore, StoreError, UnknownRollout
from tests.backends import Backend
from tests.core.strategies import (
    ADMIN_COMMANDS,
    DAY,
    DEVICE_COMMANDS,
    HOUR,
    T0,
    build,
    day,
    distributing,
    policies,
)

ADMIN = st.sampled_from(ADMIN_COMMANDS)
steps = st.one_of(
    st.just(timedelta(0)),
    st.integers(1, 59).map(lambda m: m * timedelta(minutes=1)),
    st.integers(1, 48).map(lambda h: h * HOUR),
    st.integers(1, 9).map(lambda d: d * DAY),
)


def without_clock(rollout: cf.Rollout) -> dict[str, Any]:
    """The rollout's document but its clock: what a no-op leaves as it was."""
    document: dict[str, Any] = json.loads(cf.dumps(rollout))
    del document["clock"]
    return document


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", run()
    except cf.CertflowError as error:
        return type(error).__name__, str(error)


def _refused(applied: Applied) -> list[tuple[int, tuple[str, str]]]:
    """What ``apply_all(..., refused=...)`` refused, as :func:`_outcome` words it (the
    store names the rollout where the evaluator says "this rollout")."""
    return [
        (r.position, (type(r.error).__name__, str(r.error).replace("rollout 'r'", "this rollout")))
        for r in applied.refused
    ]


class StoreAgainstEvaluator(RuleBasedStateMachine):
    """Random histories through both drivers; they never disagree."""

    backend: Backend  # set by the test, one subclass per backend

    def __init__(self) -> None:
        super().__init__()
        self.store = self.backend.fresh()
        self.memory: cf.Rollout | None = None
        self.ids: list[str] = []
        self.now = T0
        self.noop = False  # whether the store found the last command a no-op

    def teardown(self) -> None:
        try:
            if self.memory is not None:
                assert cf.dumps(self.store.replay("r")) == self.store.dumps("r")
        finally:
            self.store.close()

    @initialize(
        devices=st.integers(0, 12),
        policy=policies(),
        kind=st.sampled_from(cf.CertificateKind),
        public=st.booleans(),
        trusted=st.integers(0, 3),
        distribute=st.booleans(),
    )
    def create(
        self,
        devices: int,
        policy: cf.Policy,
        kind: cf.CertificateKind,
        public: bool,
        trusted: int,
        distribute: bool,
    ) -> None:
        self.ids = [f"d{i}" for i in range(devices)]
        rollout = build(
            devices,
            policy=policy,
            kind=kind,
            public=public,
            trusted=tuple(self.ids[:trusted]),
        )
        self.memory = rollout
        self.store.create("r", rollout)
        if distribute:  # through both drivers, so that most histories start running
            self._both(
                lambda r: cf.apply(r, cf.DistributeRoot(), T0),
                lambda: self.store.apply("r", cf.DistributeRoot(), T0),
            )

    def _both(self, memory: Callable[[cf.Rollout], cf.Step], stored: Callable[[], Any]) -> None:
        assert self.memory is not None
        before = self.memory
        expected = _outcome(lambda: memory(before))
        got = _outcome(stored)
        if expected[0] == "ok":
            assert got[0] == "ok", got
            step: cf.Step = expected[1]
            assert [s.effect for s in got[1]] == list(step.effects)
            self.noop = not got[1].changed
            if got[1].changed:
                self.memory = step.rollout
            else:
                # A no-op: the store kept the rollout as it was, its clock too (nothing
                # was committed); the evaluator's differs at most by its clock.
                assert without_clock(step.rollout) == without_clock(before)
        else:
            # The store names the rollout where the evaluator says "this rollout".
            assert (got[0], got[1].replace("rollout 'r'", "this rollout")) == expected

    def _device_command(self, data: st.DataObject) -> cf.Command:
        pool = [*self.ids, "new-1", "new-2", "ghost"]
        make = data.draw(st.sampled_from(DEVICE_COMMANDS))
        return make(data.draw(st.sampled_from(pool)))

    @rule(data=st.data(), step=steps)
    def device_command(self, data: st.DataObject, step: timedelta) -> None:
        self.now += step
        command, now = self._device_command(data), self.now
        self._both(lambda r: cf.apply(r, command, now), lambda: self.store.apply("r", command, now))

    @rule(data=st.data(), size=st.integers(0, 6), step=steps)
    def device_batch(self, data: st.DataObject, size: int, step: timedelta) -> None:
        self.now += step
        commands = [self._device_command(data) for _ in range(size)]
        now = self.now
        self._both(
            lambda r: cf.apply_all(r, commands, now),
            lambda: self.store.apply_all("r", commands, now),
        )

    @rule(data=st.data(), size=st.integers(0, 6), step=steps)
    def a_batch_skips_what_is_refused(
        self, data: st.DataObject, size: int, step: timedelta
    ) -> None:
        # apply_all(refused="skip" or "list") against the evaluator applying the commands
        # one at a time, leaving out each one it refuses.
        assert self.memory is not None
        self.now += step
        commands = [self._device_command(data) for _ in range(size)]
        now, rollout = self.now, self.memory
        accepted: list[cf.Command] = []
        refused: list[tuple[int, tuple[str, Any]]] = []
        for position, command in enumerate(commands):
            found = _outcome(lambda: cf.apply(rollout, command, now))  # noqa: B023
            if found[0] == "ok":
                rollout = found[1].rollout
                accepted.append(command)
            elif found[0] in ("CommandRefused", "UnknownDevice"):
                refused.append((position, found))
            else:  # bad input (an instant before the clock): raised, as by the default
                accepted = commands
                break
        if refused:
            before = self.store.dumps("r"), len(list(self.store.journal("r")))
            listed = self.store.apply_all("r", commands, now, refused="list")
            assert (listed.changed, list(listed), _refused(listed)) == (False, [], refused)
            assert (self.store.dumps("r"), len(list(self.store.journal("r")))) == before
        done: list[Applied] = []

        def skipping() -> Applied:
            done.append(self.store.apply_all("r", commands, now, refused="skip"))
            return done[0]

        self._both(lambda r: cf.apply_all(r, accepted, now), skipping)
        if done:
            assert _refused(done[0]) == refused

    @rule(data=st.data(), step=steps)
    def every_pushed_device_answers(self, data: st.DataObject, step: timedelta) -> None:
        # Batches of many reports, where the rollout has pushed devices to answer them.
        assert self.memory is not None
        self.now += step
        now = self.memory.clock if self.now < self.memory.clock else self.now
        pushed = [d.device_id for d in self.memory.devices() if d.state is cf.DeviceState.PUSHED]
        failed = data.draw(st.sets(st.sampled_from(pushed))) if pushed else set()
        commands = [
            cf.DeviceFailed(d, "store locked") if d in failed else cf.DeviceInstalled(d)
            for d in pushed
        ]
        self._both(
            lambda r: cf.apply_all(r, commands, now),
            lambda: self.store.apply_all("r", commands, now),
        )

    def _devices_in(self, state: cf.DeviceState) -> list[str]:
        assert self.memory is not None
        return [d.device_id for d in self.memory.devices() if d.state is state]

    @rule(data=st.data(), step=steps, answer=st.sampled_from(DEVICE_COMMANDS[:3]))
    def a_device_in_a_live_state_acts(
        self, data: st.DataObject, step: timedelta, answer: Callable[[str], cf.Command]
    ) -> None:
        # Aimed commands: a pushed device answers or is retried, a failed one retried.
        live = self._devices_in(cf.DeviceState.PUSHED) + self._devices_in(cf.DeviceState.FAILED)
        if not live:
            return
        self.now += step
        command, now = answer(data.draw(st.sampled_from(live))), self.now
        self._both(lambda r: cf.apply(r, command, now), lambda: self.store.apply("r", command, now))

    @rule(step=steps)
    def a_new_device_enrols(self, step: timedelta) -> None:
        assert self.memory is not None
        self.now += step
        command, now = cf.Enroll(f"late-{self.memory.device_count}"), self.now
        self._both(lambda r: cf.apply(r, command, now), lambda: self.store.apply("r", command, now))

    @rule(data=st.data(), step=steps, admin=st.booleans())
    def a_command_is_previewed_then_done(
        self, data: st.DataObject, step: timedelta, admin: bool
    ) -> None:
        # Both drivers' previews give the same answer as the command then gives, and the
        # store's preview leaves nothing behind (no journal entry, no effect, no change).
        assert self.memory is not None
        self.now += step
        command = data.draw(ADMIN) if admin else self._device_command(data)
        memory, now = self.memory, self.now
        before = (self.store.dumps("r"), len(list(self.store.journal("r"))))
        outbox = [e.id for e in self.store.effects("r", include_acknowledged=True)]
        expected = _outcome(lambda: preview(memory, command, now))
        got = _outcome(lambda: self.store.preview("r", command, now))
        assert (self.store.dumps("r"), len(list(self.store.journal("r")))) == before
        assert [e.id for e in self.store.effects("r", include_acknowledged=True)] == outbox
        if expected[0] != "ok":
            assert (got[0], got[1].replace("rollout 'r'", "this rollout")) == expected
            return
        assert got[0] == "ok", got
        mine, theirs = expected[1], got[1]
        assert theirs.effects == mine.effects
        assert theirs.overview == mine.overview
        assert theirs.before == mine.before
        if mine.refusal is None:
            assert theirs.refusal is None
        else:
            assert theirs.refusal is not None
            shown = str(theirs.refusal).replace("rollout 'r'", "this rollout")
            assert (type(theirs.refusal), shown) == (type(mine.refusal), str(mine.refusal))
        self._both(lambda r: cf.apply(r, command, now), lambda: self.store.apply("r", command, now))
        # What was previewed is what was done.
        assert self.memory is not None
        done = self.memory if mine.refusal is None else memory
        if mine.rollout is not None and self.noop:  # the store kept its clock
            assert without_clock(mine.rollout) == without_clock(done)
        else:
            assert mine.rollout is None or cf.dumps(mine.rollout) == cf.dumps(done)
        assert (mine.rollout is None) == (mine.refusal is not None)

    @rule(command=ADMIN, step=steps)
    def administrator(self, command: cf.Command, step: timedelta) -> None:
        self.now += step
        now = self.now
        self._both(lambda r: cf.apply(r, command, now), lambda: self.store.apply("r", command, now))

    @rule(step=steps)
    def time_passes(self, step: timedelta) -> None:
        self.now += step
        now = self.now
        self._both(lambda r: cf.advance(r, now), lambda: self.store.advance("r", now))

    @precondition(lambda self: self.memory is not None and cf.next_due(self.memory) is not None)
    @rule(offset=st.sampled_from([timedelta(0), timedelta(seconds=1)]))
    def a_scheduler_ticks_when_due(self, offset: timedelta) -> None:
        assert self.memory is not None
        due = cf.next_due(self.memory)
        assert due is not None
        self.now = max(self.now, due + offset)
        now = self.now
        # tick() advances only the rollouts with something due, as advance() would.
        self._both(lambda r: cf.advance(r, now), lambda: self.store.tick(now))

    @rule(back=st.integers(1, 3600))
    def an_instant_in_the_past_is_refused(self, back: int) -> None:
        assert self.memory is not None
        past = self.memory.clock - timedelta(seconds=back)
        self._both(lambda r: cf.advance(r, past), lambda: self.store.advance("r", past))

    @invariant()
    def the_same_rollout(self) -> None:
        if self.memory is None:
            return
        assert self.store.dumps("r") == cf.dumps(self.memory)
        assert self.store.next_due("r") == cf.next_due(self.memory)
        overview = self.store.overview("r", self.memory.clock)
        assert overview.counts == self.memory.counts()


def test_the_store_agrees_with_the_evaluator(backend: Backend) -> None:
    machine = type("Against", (StoreAgainstEvaluator,), {"backend": backend})
    run_state_machine_as_test(machine, settings=settings(stateful_step_count=30))


# --- The store's own contract ---------------------------------------------------------------

AnyStore = SqliteStore | PostgresStore


@pytest.fixture
def store(backend: Backend) -> Iterator[AnyStore]:
    with backend.open() as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "rollouts.db") as opened:
        yield opened


def _statements_of(store: AnyStore, run: Callable[[], object]) -> list[str]:
    """The statements ``run`` sends through the store's shared code, as written there
    (values are parameters, so equal statements are equal text)."""
    sent: list[str] = []
    query, many = store._q, store._many

    def recorded_query(text: str, params: Any = ()) -> Any:
        sent.append(text)
        return query(text, params)

    def recorded_many(text: str, rows: Any) -> None:
        sent.append(text)
        many(text, rows)

    store._q, store._many = recorded_query, recorded_many  # type: ignore[method-assign]
    try:
        run()
    finally:
        del store._q, store._many
    return sent


def test_a_device_report_sends_the_same_statements_at_any_fleet_size(backend: Backend) -> None:
    sent = []
    for size in (10, 2_000):
        with backend.fresh() as store:
            store.create("r", distributing(size))
            sent.append(
                _statements_of(store, lambda: store.apply("r", cf.DeviceInstalled("d3"), day(1)))
            )
    assert sent[0] == sent[1]
    assert len(sent[0]) <= 8


def test_a_device_report_reads_and_writes_a_constant_number_of_rows(tmp_path: Path) -> None:
    # Count the statements SQLite executes for one report at two fleet sizes, through
    # the connection's trace hook: the same statements, whatever the fleet's size.
    counts = []
    for size in (10, 2_000):
        with SqliteStore(tmp_path / f"{size}.db") as store:
            store.create("r", distributing(size))
            traced: list[str] = []
            store._db.set_trace_callback(traced.append)
            store.apply("r", cf.DeviceInstalled("d3"), day(1))
            store._db.set_trace_callback(None)
            # Values differ with the fleet's size (counts, ids); the statements do not.
            counts.append([re.sub(r"'[^']*'|\b\d+\b", "?", t) for t in traced])
            plan = store._db.execute(
                "EXPLAIN QUERY PLAN SELECT idx, state FROM devices WHERE rollout = 1 "
                "AND device_id = 'd3'"
            ).fetchall()
            assert "USING INDEX devices_by_id" in str(plan) or "USING COVERING INDEX" in str(plan)
    assert counts[0] == counts[1]
    assert not any("SCAN" in s.upper() for s in counts[0])


def _batch_read(store: AnyStore, ids: list[str]) -> list[str]:
    """The statements with which a batch of reports on ``ids`` reads its devices."""
    sent = _statements_of(
        store, lambda: store.apply_all("r", [cf.DeviceInstalled(d) for d in ids], day(1))
    )
    return [t for t in sent if "device_id IN (" in t]


def test_sqlite_reads_a_batch_s_devices_through_their_index(sqlite_store: SqliteStore) -> None:
    # Without statistics SQLite would read the rollout's whole key range per IN list
    # (a 100,000-report batch at 1M devices took 36 s instead of 2.4 s).
    store = sqlite_store
    store.create("r", distributing(5_000))
    ids = [f"d{i}" for i in range(0, 5_000, 7)]
    reads = _batch_read(store, ids)
    assert reads
    for text in reads:
        marks = text.count("?")
        plan = str(
            store._db.execute("EXPLAIN QUERY PLAN " + text, (1, *ids[: marks - 1])).fetchall()
        )
        assert "devices_by_id" in plan, plan


def test_postgresql_reads_a_batch_s_devices_through_their_index(postgres_url: str) -> None:
    # The store gathers statistics when it creates a rollout: without them (autovacuum
    # comes a minute or more later) the planner reads the rollout's key range instead.
    with PostgresStore(postgres_url) as store:
        store.create("r", distributing(100_000))
        [(analyzed,)] = store._q(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'devices'"
        ).fetchall()
        assert analyzed is not None
        ids = [f"d{i}" for i in range(0, 100_000, 200)]
        plan = store._q(
            "EXPLAIN SELECT device_id, idx FROM devices WHERE rollout = ? AND device_id IN "
            f"({', '.join('?' * len(ids))})",
            (1, *ids),
        ).fetchall()
        assert "devices_by_id" in str(plan), plan
        plan = store._q(
            "EXPLAIN " + store._statements["time_out_pushes"].sql,
            {"rollout": 1, "now": T0, "timeout_reason": "z", "due": T0},
        ).fetchall()
        assert "devices_by_ack_due" in str(plan), plan


def test_the_fleet_wide_statements_come_from_the_declarations(store: AnyStore) -> None:
    statements = store._statements
    assert set(statements) == {"push_pending", "mark_stragglers", "retry_failed", "time_out_pushes"}
    assert "state IN ('failed')" in statements["retry_failed"].sql
    assert "state = 'reenroll_required'" in statements["mark_stragglers"].sql


def _evolve(
    rules: cf.Rules, machine: str, transitions: tuple[cf.Transition, ...], **more: Any
) -> cf.Rules:
    spec = getattr(rules, machine)
    return attrs.evolve(rules, **{machine: attrs.evolve(spec, transitions=transitions, **more)})


def test_a_removed_row_refuses_in_the_store_with_the_declared_hint(backend: Backend) -> None:
    rollout = cf.RULES.rollout
    rules = _evolve(
        cf.RULES,
        "rollout",
        tuple(
            r
            for r in rollout.transitions
            if (r.source, r.trigger) != ("pending", "proceed_to_import")
        ),
        guards=tuple(g for g in rollout.guards if g.name != "not_expired"),  # now unused
    )
    with backend.fresh(_rules=rules) as changed, backend.fresh() as shipped:
        changed.create("r", build(2))
        shipped.create("r", build(2))
        with pytest.raises(cf.CommandRefused) as refused:
            changed.apply("r", cf.ProceedToImport(), T0)
        expected = _outcome(
            lambda: cf.Evaluator(_rules=rules).apply(build(2), cf.ProceedToImport(), T0)
        )
        assert ("CommandRefused", str(refused.value)) == expected
        assert "it applies to a pending rollout" in str(refused.value)
        shipped.apply("r", cf.ProceedToImport(), T0)
        assert shipped.overview("r", T0).state is cf.RolloutState.FORCED


def test_an_added_device_row_happens_in_the_store(backend: Backend) -> None:
    added = cf.Transition("removed", "report_installed", "installed", note="came back trusting")
    rules = _evolve(cf.RULES, "device", (*cf.RULES.device.transitions, added))
    with backend.fresh(_rules=rules) as changed:
        changed.create("r", distributing(2))
        changed.apply("r", cf.Unenroll("d0"), day(1))
        changed.apply("r", cf.DeviceInstalled("d0"), day(2))
        assert changed.device("r", "d0").state is cf.DeviceState.INSTALLED
        memory = cf.Evaluator(_rules=rules).apply(
            cf.apply(distributing(2), cf.Unenroll("d0"), day(1)).rollout,
            cf.DeviceInstalled("d0"),
            day(2),
        )
        assert changed.dumps("r") == cf.dumps(memory.rollout)


def test_an_added_push_row_changes_the_generated_fleet_statement(backend: Backend) -> None:
    from certflow.core.machines import call

    added = cf.Transition("failed", "push", "pushed", actions=(call("push_root"),))
    rules = _evolve(cf.RULES, "device", (*cf.RULES.device.transitions, added))
    with backend.fresh(_rules=rules) as changed:
        sql = changed._statements["push_pending"].sql
        assert "state IN ('pending', 'failed')" in sql
        created = build(3)
        changed.create("r", created)
        changed.apply("r", cf.DistributeRoot(), T0)
        memory = cf.Evaluator(_rules=rules).apply(created, cf.DistributeRoot(), T0).rollout
        assert changed.dumps("r") == cf.dumps(memory)


def test_journal_entries_name_their_commands_states_and_effects(store: AnyStore) -> None:
    store.create("r", build(3))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "x")], day(1))
    store.advance("r", day(6))
    entries = list(store.journal("r"))
    assert [(e.seq, e.kind, e.state.value) for e in entries] == [
        (1, "create", "pending"),
        (2, "command", "distributing"),
        (3, "batch", "distributing"),
        (4, "advance", "distributing"),
    ]
    assert entries[1].commands == (cf.DistributeRoot(),)
    assert entries[1].effects == ("r:2:0",)
    assert entries[3].effects == ("r:4:0",)  # the day-6 notice
    pending = store.effects("r")
    assert [(e.id, type(e.effect).__name__) for e in pending] == [
        ("r:2:0", "PushRoot"),
        ("r:4:0", "Notify"),
    ]


def test_devices_are_paged_by_keyset_and_filtered_by_state(store: AnyStore) -> None:
    store.create("r", build(10))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceFailed(f"d{i}", "no") for i in (1, 3, 4, 8)], day(1))
    failed = [cf.DeviceState.FAILED]
    first = store.devices("r", failed, limit=2)
    assert [d.device_id for d in first] == ["d1", "d3"]
    rest = store.devices("r", failed, after="d3", limit=5)
    assert [d.device_id for d in rest] == ["d4", "d8"]
    both = store.devices("r", [cf.DeviceState.FAILED, cf.DeviceState.PUSHED], after="d7", limit=9)
    assert [(d.device_id, d.state.value) for d in both] == [("d8", "failed"), ("d9", "pushed")]
    assert rest[0].last_failure_reason == "no"
    assert rest[0].last_report == day(1)
    assert rest[0].last_push == T0
    with pytest.raises(cf.UnknownDevice, match="'nobody'"):
        store.devices("r", failed, after="nobody")
    with pytest.raises(
        cf.InvalidInput, match="limit must be a positive number up to 2147483647, got 0"
    ):
        store.devices("r", limit=0)


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 101, "e\u0301", "a:b", 3, "_x", "a/b"])
def test_a_bad_rollout_name_is_refused(store: AnyStore, name: Any) -> None:
    with pytest.raises(cf.InvalidInput, match=r"rollout name .* is not valid"):
        store.create(name, build(1))


def test_names_are_unique_and_unknown_names_are_clear(store: AnyStore) -> None:
    store.create("r", build(1))
    with pytest.raises(cf.InvalidInput, match="a rollout named 'r' already exists"):
        store.create("r", build(1))
    with pytest.raises(UnknownRollout, match="no rollout named 'q'"):
        store.apply("q", cf.DistributeRoot(), T0)
    assert isinstance(UnknownRollout("x"), StoreError)


def test_a_refused_command_changes_nothing(store: AnyStore) -> None:
    store.create("r", build(2))
    before = store.dumps("r")
    with pytest.raises(cf.CommandRefused, match="rollout is pending; distribute the root first"):
        store.apply("r", cf.ExtendManually(), T0)
    with pytest.raises(cf.CommandRefused):
        store.apply_all("r", [cf.DistributeRoot(), cf.ExtendManually()], T0)
    assert store.dumps("r") == before
    assert [e.kind for e in store.journal("r")] == ["create"]
    assert store.effects("r") == []


def test_tick_advances_only_what_is_due_and_two_ticks_emit_once(backend: Backend) -> None:
    with backend.open() as first, backend.open() as second:
        first.create("a", distributing(2))
        first.create("b", build(2))  # pending: nothing is ever due
        assert first.next_due() == day(6)
        assert [type(e.effect).__name__ for e in first.tick(day(6))] == ["Notify"]
        assert second.tick(day(6)) == []
        assert [e.kind for e in second.journal("b")] == ["create"]
        assert first.next_due() == day(7)


def test_a_naive_instant_is_refused(store: AnyStore) -> None:
    store.create("r", build(1))
    with pytest.raises(cf.InvalidInput, match="now is a naive datetime"):
        store.apply("r", cf.DistributeRoot(), datetime(2026, 7, 1, 9))


@given(offset_hours=st.integers(-12, 14))
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_instants_in_any_offset_are_kept_as_the_same_instants(
    backend: Backend, offset_hours: int
) -> None:
    from datetime import timezone

    zone = timezone(timedelta(hours=offset_hours))
    with backend.fresh() as store:  # a new database per example
        store.create("r", build(2))
        store.apply("r", cf.DistributeRoot(), T0.astimezone(zone))
        store.apply("r", cf.DeviceInstalled("d0"), day(1).astimezone(zone))
        memory = cf.apply(cf.apply(build(2), cf.DistributeRoot(), T0).rollout,
                          cf.DeviceInstalled("d0"), day(1)).rollout  # fmt: skip
        assert store.dumps("r") == cf.dumps(memory)


def test_the_database_is_a_real_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with SqliteStore(path) as store:
        store.create("r", build(1))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_report_slightly_behind_the_clock_is_applied_at_the_clock_within_the_skew(
    backend: Backend,
) -> None:
    with backend.open(clock_skew=timedelta(seconds=2)) as store:
        store.create("r", build(3))
        store.apply("r", cf.DistributeRoot(), T0 + HOUR)
        store.apply("r", cf.DeviceInstalled("d0"), T0 + HOUR - timedelta(seconds=2))
        assert store.device("r", "d0").last_report == T0 + HOUR
        with pytest.raises(cf.TimeWentBackwards, match="earlier than the last instant"):
            store.apply("r", cf.DeviceInstalled("d1"), T0 + HOUR - timedelta(seconds=3))
    with pytest.raises(cf.InvalidInput, match="clock_skew must be a timedelta of 0 or more"):
        backend.open(clock_skew=timedelta(seconds=-1))


def test_the_plan_is_read_from_the_rollout_row(store: AnyStore) -> None:
    rollout = build(2, public=True, kind=cf.CertificateKind.AGENT_SERVER)
    store.create("r", rollout)
    assert store.plan("r") == rollout.plan
    with pytest.raises(UnknownRollout, match="no rollout named 'q'"):
        store.plan("q")


def test_refusal_answers_as_the_evaluator_and_writes_nothing(store: AnyStore) -> None:
    rollout = build(2)
    store.create("r", rollout)
    cases: list[tuple[cf.Command, datetime]] = [
        (cf.ExtendManually(), T0),
        (cf.ProceedToImport(), T0),
        (cf.DistributeRoot(), T0),
        (cf.Cancel(), T0 + HOUR),
    ]
    for command, at in cases:
        expected = cf.Evaluator().refusal(rollout, command, at)
        got = store.refusal("r", command, at)
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            assert (str(got), got.reason, got.allowed_at) == (
                str(expected),
                expected.reason,
                expected.allowed_at,
            )
    assert [e.kind for e in store.journal("r")] == ["create"]
    with pytest.raises(cf.InvalidInput, match="is not an administrator's rollout command"):
        store.refusal("r", cf.DeviceInstalled("d0"), T0)


def test_the_journal_exports_as_json_lines_that_replay(store: AnyStore) -> None:
    import json

    from certflow.core.serialization import decode_command

    store.create("r", build(2))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceInstalled("d0")], T0 + HOUR)
    lines = [json.dumps(e.as_dict(document=True)) for e in store.journal("r")]
    first, *rest = (json.loads(line) for line in lines)
    assert (first["kind"], first["seq"], first["rollout"]) == ("create", 1, "r")
    rollout = cf.loads(json.dumps(first["document"]))
    for entry in rest:
        commands = [decode_command(c) for c in entry["commands"]]
        at = datetime.fromisoformat(entry["at"])
        rollout = cf.apply_all(rollout, commands, at).rollout
    assert cf.dumps(rollout) == store.dumps("r")
    assert "document" not in store.journal("r").__next__().as_dict()


# --- found by review --------------------------------------------------------------------------


def test_a_full_disk_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "x.db") as store:
        store.create("small", build(2))
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 5}")
        with pytest.raises(StoreError, match=r"x\.db: .*full"):
            store.create("big", build(50_000))
        assert [i.name for i in store.rollouts()] == ["small"]


def test_the_timeout_statements_read_the_ack_due_index(sqlite_store: SqliteStore) -> None:
    store = sqlite_store
    # One device's timeout must not read the whole rollout, whatever the planner guesses.
    sql = store._statements["time_out_pushes"].sql
    params = {"rollout": 1, "now": "x", "timeout_reason": "z", "due": "w"}
    plan = str(store._db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall())
    assert "devices_by_ack_due (rollout=? AND ack_due=?)" in plan
    store.create("r", build(3, policy=cf.Policy(ack_timeout=HOUR)))
    store.apply("r", cf.DistributeRoot(), T0)
    traced: list[str] = []
    store._db.set_trace_callback(traced.append)
    store.apply("r", cf.DeviceInstalled("d0"), T0 + 2 * HOUR)  # after the timeout fell due
    store._db.set_trace_callback(None)
    counting = next(t for t in traced if "COUNT(*)" in t)
    plan = str(store._db.execute("EXPLAIN QUERY PLAN " + counting).fetchall())
    assert "devices_by_ack_due" in plan


def test_text_a_database_cannot_store_is_refused_clearly(store: AnyStore) -> None:
    store.create("r", distributing(2))
    with pytest.raises(cf.InvalidInput, match="is not valid UTF-8 text"):
        store.apply("r", cf.Enroll("\udcff"), T0 + HOUR)
    with pytest.raises(cf.InvalidInput, match="is not valid UTF-8 text"):
        store.apply("r", cf.DeviceFailed("d0", "bad \udcff"), T0 + HOUR)
    with pytest.raises(cf.InvalidInput, match="not printable"):  # new_rollout's id rule
        store.create("s", build(["ok", "\udcff"]))
    with pytest.raises(UnknownRollout):
        store.overview("\udcff", T0)
    with pytest.raises(cf.InvalidInput, match="contains a NUL character"):
        store.apply("r", cf.Enroll("a\x00b"), T0 + HOUR)
    with pytest.raises(cf.UnknownDevice):
        store.device("r", "a\x00b")
    with pytest.raises(UnknownRollout):
        store.info("a\x00b")


@pytest.mark.parametrize("alias", ["r:02:0", "r:\u0662:0", "r:2:00", "r:2:-0", "r:2:0 "])
def test_only_the_store_s_own_spelling_of_an_effect_id_is_accepted(
    store: SqliteStore, alias: str
) -> None:
    store.create("r", build(2))
    store.apply("r", cf.DistributeRoot(), T0)
    with pytest.raises(cf.InvalidInput, match="no effect with id"):
        store.acknowledge([alias], T0)
    assert store.acknowledge(["r:2:0"], T0) == 1


def test_a_failure_after_the_acknowledgement_is_not_recorded(store: AnyStore) -> None:
    store.create("r", build(2))
    store.apply("r", cf.DistributeRoot(), T0)
    store.acknowledge(["r:2:0"], T0)
    store.record_failure("r:2:0", "a second drainer lost the race")
    (effect,) = store.effects("r", include_acknowledged=True)
    assert (effect.failures, effect.last_error) == (0, None)


def test_a_page_of_several_states_reads_one_index_range_per_state(
    sqlite_store: SqliteStore,
) -> None:
    store = sqlite_store
    store.create("r", build(6))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceFailed("d4", "x"), cf.DeviceInstalled("d1")], T0)
    traced: list[str] = []
    store._db.set_trace_callback(traced.append)
    page = store.devices("r", [cf.DeviceState.FAILED, cf.DeviceState.INSTALLED], limit=5)
    store._db.set_trace_callback(None)
    assert [d.device_id for d in page] == ["d1", "d4"]
    pages = [t for t in traced if t.startswith("SELECT idx")]
    assert len(pages) == 2
    assert all(" IN (" not in t for t in pages)


def test_an_overview_before_the_rollout_s_clock_is_refused(store: AnyStore) -> None:
    store.create("r", build(2))
    store.apply("r", cf.DistributeRoot(), T0 + HOUR)
    with pytest.raises(cf.TimeWentBackwards):
        store.overview("r", T0)
    with pytest.raises(cf.TimeWentBackwards):
        store.refusal("r", cf.ExtendManually(), T0)


def test_both_backends_answer_edge_calls_alike(backend: Backend) -> None:
    # Found by review: each of these behaved differently on the two backends.
    store = backend.open()
    store.create("r", build(2))
    store.apply("r", cf.DistributeRoot(), T0)
    for limit in (2**63, True):
        with pytest.raises(cf.InvalidInput, match="limit must be a positive number"):
            store.devices("r", limit=limit)
        with pytest.raises(cf.InvalidInput, match="limit must be a positive number"):
            store.lease(now=T0, limit=limit)
    assert store.lease(now=T0, kinds=["PushRoot\x00"]) == []  # no stored kind has a NUL
    assert [e.id for e in store.lease(now=T0, kinds=["PushRoot"])] == ["r:2:0"]
    store.close()
    with pytest.raises(StoreError):
        store.info("r")


def test_rules_given_to_a_store_are_deprecated_and_still_run(backend: Backend) -> None:
    with pytest.warns(DeprecationWarning, match=r"the store's rules= is deprecated"):
        store = backend.fresh(rules=cf.RULES)
    with store:
        assert store._evaluator.rules is cf.RULES


def test_the_old_spellings_of_apply_are_deprecated_and_still_apply(backend: Backend) -> None:
    with backend.fresh() as store:
        store.create("r", build(2))
        with pytest.warns(DeprecationWarning, match=r"SqlStore.execute is deprecated"):
            store.execute("r", cf.DistributeRoot(), T0)
        with pytest.warns(DeprecationWarning, match=r"SqlStore.execute_many is deprecated"):
            store.execute_many("r", [cf.DeviceInstalled("d0")], T0)
        assert store.overview("r", T0).counts[cf.DeviceState.INSTALLED] == 1


def test_a_stored_device_is_a_device_record_and_device_row_is_deprecated(
    backend: Backend,
) -> None:
    with backend.fresh() as store:
        store.create("r", build(2))
        assert isinstance(store.device("r", "d0"), cf.DeviceRecord)
    import certflow.store

    with pytest.warns(DeprecationWarning, match=r"certflow.store.DeviceRow is deprecated"):
        assert certflow.store.DeviceRow is cf.DeviceRecord


@pytest.mark.parametrize(
    ("expires_in", "extend_at"),
    [(5 * DAY, None), (7.5 * DAY, None), (10 * DAY, 6.5), (24 * DAY, 6.5), (-DAY, None)],
)
def test_the_store_runs_the_expiry_rule_as_the_evaluator_does(
    store: AnyStore, expires_in: timedelta, extend_at: float | None
) -> None:
    # The rule is declared (a timer and its rows), so the store's driver gets it too:
    # the same notices, postponements and import at the same instants.
    rollout = cf.apply(build(2, existing_expires_in=expires_in), cf.DistributeRoot(), T0).rollout
    store.create("r", rollout)
    expected: list[cf.Effect] = []
    if extend_at is not None:
        rollout, more = cf.apply(rollout, cf.ExtendManually(), day(extend_at))
        expected.extend(more)
        store.apply("r", cf.ExtendManually(), day(extend_at))
    while (due := cf.next_due(rollout)) is not None:
        rollout, more = cf.advance(rollout, due)
        expected.extend(more)
        assert store.next_due() == due
        store.tick(due)
    assert [s.effect for s in store.effects("r", include_acknowledged=True)] == expected
    assert store.dumps("r") == cf.dumps(rollout)
