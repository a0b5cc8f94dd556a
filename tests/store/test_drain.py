"""The outbox and the journal (``store.md``, Journal and Outbox): ``drain``, stable
ids, acknowledgements, failing handlers, leases, an append-only journal, refusals that
leave nothing, and ``retrying``. Every test runs on SQLite and on PostgreSQL
(``tests/backends.py``), but one about PostgreSQL's row locks."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import traceback
import typing
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import certflow as cf
from certflow.store import (
    PostgresStore,
    SqliteStore,
    StoreBusy,
    StoredEffect,
    UnknownRollout,
    drain,
    retrying,
)
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day, distributing

AnyStore = SqliteStore | PostgresStore
EFFECT_TYPES = typing.get_args(cf.Effect)  # every effect class


def history(store: AnyStore, name: str = "r") -> None:
    """A rollout whose outbox holds several kinds of effect, from several entries."""
    store.create(name, build(6, policy=cf.Policy(ack_timeout=6 * HOUR)))
    store.apply(name, cf.DistributeRoot(), T0)  # PushRoot
    store.apply_all(name, [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "no space")], T0 + HOUR)
    store.apply(name, cf.Retry("d1"), T0 + 2 * HOUR)  # PushRoot
    store.tick(day(6))  # timeouts at T0 + 6h (and d1's later), the notice


@pytest.fixture
def store(backend: Backend) -> Iterator[AnyStore]:
    with backend.open() as opened:
        history(opened)
        yield opened


class Recorder:
    """Handlers that remember what they were given; ``fail`` names ids that raise."""

    def __init__(self, fail: frozenset[str] = frozenset()) -> None:
        self.calls: list[tuple[str, cf.Effect]] = []
        self.fail = fail

    def __call__(self, effect_id: str, effect: cf.Effect) -> None:
        self.calls.append((effect_id, effect))
        if effect_id in self.fail:
            raise RuntimeError(f"cannot reach the MDM for {effect_id}")

    def handlers(self) -> dict[type, Recorder]:
        return dict.fromkeys(EFFECT_TYPES, self)


def ids(effects: list[StoredEffect]) -> list[str]:
    return [s.id for s in effects]


def test_the_history_fills_the_outbox(store: AnyStore) -> None:
    kinds = [type(s.effect) for s in store.effects()]
    assert kinds.count(cf.PushRoot) == 2
    assert cf.AcknowledgementTimedOut in kinds
    assert cf.Notify in kinds


def test_drain_delivers_each_due_effect_in_order_and_acknowledges_it(store: AnyStore) -> None:
    pending = store.effects()
    recorder = Recorder()
    report = drain(store, recorder.handlers(), day(6))
    assert recorder.calls == [(s.id, s.effect) for s in pending]
    assert report.delivered == tuple(s.id for s in pending)
    assert report.failed == ()
    assert report.unhandled == ()
    assert store.effects() == []
    done = store.effects(include_acknowledged=True)
    assert ids(done) == ids(pending)
    assert {s.acked_at for s in done} == {day(6)}
    # Nothing is delivered twice.
    again = Recorder()
    assert drain(store, again.handlers(), day(7)).delivered == ()
    assert again.calls == []


def test_effects_not_due_yet_and_other_rollouts_wait(store: AnyStore) -> None:
    store.create("other", distributing(2))
    store.apply("other", cf.DeviceFailed("d0", "x"), day(6))
    store.apply("other", cf.Retry("d0"), day(6))
    recorder = Recorder()
    assert drain(store, recorder.handlers(), T0 - HOUR).delivered == ()
    report = drain(store, recorder.handlers(), day(6), rollout="other")
    assert {i.split(":")[0] for i in report.delivered} == {"other"}
    assert [s.rollout for s in store.effects()] == ["r"] * len(store.effects("r"))


def test_effects_without_a_handler_stay_pending(store: AnyStore) -> None:
    recorder = Recorder()
    report = drain(store, {cf.PushRoot: recorder}, day(6))
    assert {type(e) for _, e in recorder.calls} == {cf.PushRoot}
    left = store.effects()
    assert report.unhandled == tuple(s.id for s in left)
    assert left
    assert all(not isinstance(s.effect, cf.PushRoot) for s in left)


def test_a_failing_handler_leaves_its_effect_pending_and_blocks_no_other(
    store: AnyStore,
) -> None:
    pending = store.effects()
    first = pending[0].id
    report = drain(store, Recorder(frozenset({first})).handlers(), day(6))
    assert report.failed == ((first, f"RuntimeError: cannot reach the MDM for {first}"),)
    assert report.delivered == tuple(s.id for s in pending[1:])
    [left] = store.effects()
    assert (left.id, left.effect, left.acked_at) == (first, pending[0].effect, None)
    assert (left.failures, left.last_error) == (1, report.failed[0][1])
    # Delivered again with the same id once its back-off has passed (the failure ended
    # its lease; the first back-off is a minute), until a handler succeeds.
    assert left.next_attempt_at == day(6) + timedelta(minutes=1)
    assert drain(store, Recorder().handlers(), day(6)).delivered == ()
    drain(store, Recorder(frozenset({first})).handlers(), day(6) + timedelta(minutes=1))
    assert store.effects()[0].failures == 2
    retry = Recorder()
    assert drain(store, retry.handlers(), day(7)).delivered == (first,)
    assert retry.calls == [(first, pending[0].effect)]
    [done] = [s for s in store.effects(include_acknowledged=True) if s.id == first]
    assert (done.acked_at, done.failures, done.attempts) == (day(7), 2, 3)


def test_acknowledging_twice_is_harmless(store: AnyStore) -> None:
    first, second = (s.id for s in store.effects()[:2])
    assert store.acknowledge([first], day(6)) == 1
    assert store.acknowledge([first], day(7)) == 0
    assert store.acknowledge([second, second], day(7)) == 1
    acked = {s.id: s.acked_at for s in store.effects(include_acknowledged=True)}
    assert (acked[first], acked[second]) == (day(6), day(7))
    assert first not in ids(store.effects())


@pytest.mark.parametrize("unknown", ["r:99:0", "r:2:7", "nowhere:2:0", "r:two:0", "nonsense"])
def test_an_unknown_effect_id_is_refused_and_nothing_is_acknowledged(
    store: AnyStore, backend: Backend, unknown: str
) -> None:
    before = backend.tables()
    first = store.effects()[0].id
    with pytest.raises(cf.InvalidInput, match="no effect with id"):
        store.acknowledge([first, unknown], day(6))
    with pytest.raises(cf.InvalidInput, match="no effect with id"):
        store.record_failure(unknown, "boom")
    assert backend.tables() == before


def test_effect_ids_are_rollout_seq_position_as_the_journal_says(store: AnyStore) -> None:
    listed = ids(store.effects("r", include_acknowledged=True))
    from_journal = [i for e in store.journal("r") for i in e.effects]
    assert listed == from_journal
    for entry in store.journal("r"):
        assert list(entry.effects) == [f"r:{entry.seq}:{p}" for p in range(len(entry.effects))]
    returned = store.apply("r", cf.Retry("d2"), day(6))
    assert ids(returned) == [f"r:{entry.seq + 1}:0"]
    assert returned == [s for s in store.effects() if s.id == returned[0].id]


def rollout_id(store: AnyStore, name: str) -> int:
    """The internal row id of rollout ``name`` (read through the store's connection:
    ``fresh`` databases are not the one ``Backend.query`` reads)."""
    [(found,)] = store._q("SELECT id FROM rollouts WHERE name = ?", (name,)).fetchall()
    return int(found)


def test_the_same_history_gives_the_same_ids_in_another_database(backend: Backend) -> None:
    """Ids are deterministic: another database, created in another order with another
    rollout first (so the internal row ids differ), gives the same ids and effects."""
    with backend.open() as one, backend.fresh() as two:
        history(one)
        two.create("another", distributing(3))
        history(two)
        assert rollout_id(one, "r") != rollout_id(two, "r")
        outbox = one.effects("r", include_acknowledged=True)
        assert outbox == two.effects("r", include_acknowledged=True)
        assert outbox


def journal_rows(backend: Backend) -> list[tuple[object, ...]]:
    return backend.query("SELECT * FROM journal ORDER BY rollout, seq")


def outbox_bodies(backend: Backend) -> list[tuple[object, ...]]:
    return backend.query(
        "SELECT rollout, seq, position, kind, body, due_at FROM outbox "
        "ORDER BY rollout, seq, position",
    )


def test_the_journal_is_append_only(store: AnyStore, backend: Backend) -> None:
    """Later commands, ticks, refusals, acknowledgements and failed deliveries never
    change an entry already written, nor an effect's content."""
    journal, outbox = journal_rows(backend), outbox_bodies(backend)
    drain(store, Recorder(frozenset({store.effects()[0].id})).handlers(), day(6))
    store.apply("r", cf.DeviceInstalled("d1"), day(6) + HOUR)
    with pytest.raises(cf.CommandRefused):
        store.apply("r", cf.ProceedToImport(), day(7))
    store.apply("r", cf.ExtendManually(), day(6) + 2 * HOUR)
    store.advance("r", day(30))
    store.apply("r", cf.ServerRestarted(), day(30))
    later = journal_rows(backend)
    assert later[: len(journal)] == journal
    assert len(later) == len(journal) + 4
    assert [row[1] for row in later] == list(range(1, len(later) + 1))
    assert outbox_bodies(backend)[: len(outbox)] == outbox
    backend.check_consistent("r")


def test_the_journal_replays_to_the_stored_rollout(store: AnyStore) -> None:
    assert store.dumps("r") == cf.dumps(store.replay("r"))
    assert [e.kind for e in store.journal("r")] == [
        "create",
        "command",
        "batch",
        "command",
        "advance",
    ]
    create = next(store.journal("r"))
    assert create.body == json.loads(cf.dumps(build(6, policy=cf.Policy(ack_timeout=6 * HOUR))))


@pytest.mark.parametrize(
    ("commands", "at", "error"),
    [
        ([cf.ProceedToImport()], day(6), cf.CommandRefused),
        # Refused at an instant where timers are due: their catch-up is not kept either.
        ([cf.ProceedToImport()], day(8), cf.CommandRefused),
        ([cf.DeviceInstalled("nobody")], day(6), cf.UnknownDevice),
        (
            [cf.Retry("d1"), cf.DeviceFailed("d2", "x"), cf.Reenrolled("d3")],
            day(6),
            cf.CommandRefused,
        ),
        ([cf.Retry("d1"), cf.DeviceInstalled("nobody")], day(8), cf.UnknownDevice),
        ([cf.DeviceInstalled("d2")], day(5), cf.TimeWentBackwards),
    ],
)
def test_a_refused_command_leaves_no_journal_entry_and_no_outbox_row(
    store: AnyStore,
    backend: Backend,
    commands: list[cf.Command],
    at: datetime,
    error: type[Exception],
) -> None:
    before = backend.tables()

    def run() -> object:
        if len(commands) == 1:
            return store.apply("r", commands[0], at)
        return store.apply_all("r", commands, at)

    with pytest.raises(error):
        run()
    assert backend.tables() == before
    assert store.dumps("r") == cf.dumps(store.replay("r"))


# --- leases -----------------------------------------------------------------------------------


def test_two_drainers_leasing_at_the_same_instant_get_disjoint_effects(
    store: AnyStore, backend: Backend
) -> None:
    pending = store.effects(due_by=day(6))
    with backend.open() as other:
        first = store.lease(now=day(6), limit=2)
        second = other.lease(now=day(6))
        assert ids(first) == ids(pending[:2])
        assert ids(second) == ids(pending[2:])
        # The same effects, as `effects` lists them, each with its attempt counted.
        assert [(e.id, e.effect) for e in first + second] == [(e.id, e.effect) for e in pending]
        assert {(e.attempts, e.last_attempt_at) for e in first + second} == {(1, day(6))}
        assert store.lease(now=day(6)) == other.lease(now=day(6)) == []
    # A lease hides nothing from the listing, and the holder acknowledges as usual.
    assert store.effects() == first + second
    assert store.acknowledge(ids(first), day(6)) == 2
    assert ids(store.effects()) == ids(second)


def test_an_expired_lease_is_claimed_again(store: AnyStore, backend: Backend) -> None:
    """A drainer that died holding a lease: its effects come back when the lease ends
    (at-least-once delivery), not before."""
    lease = timedelta(minutes=10)
    taken = store.lease(now=day(6), duration=lease)
    assert taken
    with backend.open() as other:
        assert other.lease(now=day(6) + lease - timedelta(seconds=1)) == []
        again = other.lease(now=day(6) + lease)
        assert ids(again) == ids(taken)
        # Now the other drainer holds them, for its own duration.
        assert store.lease(now=day(6) + lease + timedelta(minutes=4)) == []


def test_record_failure_gives_the_lease_back(store: AnyStore, backend: Backend) -> None:
    taken = store.lease(now=day(6))
    first = taken[0]
    store.record_failure(first.id, "connection refused")
    with backend.open() as other:
        # Back once the first back-off (a minute from the lease's instant) has passed.
        assert [e.id for e in other.lease(now=day(6))] == []
        [back] = other.lease(now=day(6) + timedelta(minutes=1))
        assert (back.id, back.effect) == (first.id, first.effect)
        assert (back.failures, back.last_error, back.attempts) == (1, "connection refused", 2)
        assert other.lease(now=day(6) + timedelta(minutes=1)) == []


def test_a_lease_takes_only_the_kinds_asked_for(store: AnyStore) -> None:
    pending = store.effects(due_by=day(6))
    assert store.lease(now=day(6), kinds=[]) == []
    assert store.lease(now=day(6), kinds=["NoSuchEffect"]) == []
    [notice] = store.lease(now=day(6), kinds=["Notify"])
    assert isinstance(notice.effect, cf.Notify)
    pushes = store.lease(now=day(6), kinds={"PushRoot"})
    assert [type(s.effect) for s in pushes] == [cf.PushRoot, cf.PushRoot]
    # The kinds not asked for were left free.
    rest = store.lease(now=day(6))
    assert {type(s.effect) for s in rest} == {cf.AcknowledgementTimedOut}
    assert sorted(ids([notice, *pushes, *rest])) == sorted(ids(pending))


def test_a_lease_takes_at_most_its_limit_in_the_order_emitted(store: AnyStore) -> None:
    pending = ids(store.effects(due_by=day(6)))
    assert len(pending) == 5
    batches = [ids(store.lease(now=day(6), limit=2)) for _ in range(4)]
    assert batches == [pending[:2], pending[2:4], pending[4:], []]


def test_a_lease_takes_only_what_is_due_and_of_the_rollout_named(store: AnyStore) -> None:
    store.create("another", distributing(2))  # sorts before "r", with a later row id
    store.apply("another", cf.DeviceFailed("d0", "x"), day(6))
    store.apply("another", cf.Retry("d0"), day(6))
    assert store.lease(now=T0 - HOUR) == []
    # The two pushes, not the later timeouts (leased past day 6, so kept out below).
    early = store.lease(now=T0 + 3 * HOUR, duration=timedelta(days=30))
    assert ids(early) == ["r:2:0", "r:4:0"]
    assert ids(store.lease("another", now=day(6))) == ids(store.effects("another"))
    assert [s.rollout for s in store.lease(now=day(6))] == ["r"] * 3
    with pytest.raises(UnknownRollout):
        store.lease("nowhere", now=day(6))


DURATION = "duration must be a positive timedelta"
LIMIT = "limit must be a positive number"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"duration": timedelta(0)}, DURATION, id="duration=0"),
        pytest.param({"duration": timedelta(seconds=-1)}, DURATION, id="duration=-1s"),
        pytest.param({"duration": 300}, DURATION, id="duration=300"),
        pytest.param({"limit": 0}, LIMIT, id="limit=0"),
        pytest.param({"limit": -1}, LIMIT, id="limit=-1"),
        pytest.param({"limit": 1.5}, LIMIT, id="limit=1.5"),
        pytest.param({"limit": "2"}, LIMIT, id="limit='2'"),
        # A bool is an int to Python, but not a number of effects.
        pytest.param({"limit": True}, LIMIT, id="limit=True"),
        pytest.param({"now": datetime(2026, 7, 7, 9)}, "now is a naive datetime", id="naive-now"),
    ],
)
def test_a_bad_lease_is_refused_clearly_and_leases_nothing(
    store: AnyStore, backend: Backend, options: dict[str, Any], message: str
) -> None:
    before = backend.tables()
    arguments: dict[str, Any] = {"now": day(6), **options}
    with pytest.raises(cf.InvalidInput, match=message):
        store.lease(**arguments)
    assert backend.tables() == before
    assert len(store.lease(now=day(6))) == 5


def test_drain_with_two_stores_running_alternately_delivers_each_effect_once(
    store: AnyStore, backend: Backend
) -> None:
    """One drainer's handler runs while the other drains: the second skips what the
    first has leased, takes the rest, and no effect is delivered twice."""
    pending = ids(store.effects(due_by=day(6)))
    delivered: list[tuple[str, str]] = []
    with backend.open() as other:

        def by_other(effect_id: str, effect: cf.Effect) -> None:
            delivered.append(("other", effect_id))

        def by_first(effect_id: str, effect: cf.Effect) -> None:
            delivered.append(("first", effect_id))
            drain(other, dict.fromkeys(EFFECT_TYPES, by_other), day(6))

        report = drain(store, {cf.PushRoot: by_first}, day(6))
        assert drain(other, dict.fromkeys(EFFECT_TYPES, by_other), day(6)).delivered == ()
    assert sorted(i for _, i in delivered) == sorted(pending)
    assert report.delivered == ("r:2:0", "r:4:0")
    assert {i for who, i in delivered if who == "first"} == {"r:2:0", "r:4:0"}
    assert store.effects() == []


def _drainer(backend: Backend, now: datetime, barrier: Any, out: Path) -> None:
    """A drainer process: lease two effects at a time and acknowledge them, until none
    is left; writes the ids it got to ``out`` (or its traceback beside it)."""
    try:
        got: list[str] = []
        with backend.open() as store:
            barrier.wait(30)
            while claimed := retrying(functools.partial(store.lease, now=now, limit=2)):
                got += ids(claimed)
                retrying(functools.partial(store.acknowledge, ids(claimed), now))
        out.write_text(json.dumps(got))
    except BaseException:
        out.with_suffix(".error").write_text(traceback.format_exc())
        os._exit(1)


def test_drainer_processes_running_at_once_deliver_each_effect_once(
    backend: Backend, tmp_path: Path
) -> None:
    with backend.open() as store:
        devices = [f"d{n}" for n in range(40)]
        store.create("r", distributing(devices))
        # One PushRoot per device, each its own effect.
        batch: list[cf.Command] = [cf.DeviceFailed(d, "offline") for d in devices]
        store.apply_all("r", [*batch, *(cf.Retry(d) for d in devices)], day(1))
        pending = ids(store.effects())
    assert len(pending) == 40
    backend.close()  # nothing of psycopg's may cross the fork
    fork = multiprocessing.get_context("fork")
    barrier = fork.Barrier(3)
    outs = [tmp_path / f"drainer-{n}.json" for n in range(3)]
    processes = [
        fork.Process(target=_drainer, args=(backend, day(1), barrier, out)) for out in outs
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    errors = [o.with_suffix(".error").read_text() for o in outs if o.with_suffix(".error").exists()]
    assert not errors, errors[0]
    assert [p.exitcode for p in processes] == [0] * 3
    got = [i for out in outs for i in json.loads(out.read_text())]
    assert sorted(got) == sorted(pending)  # each once: none twice, none missing
    assert backend.query("SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL") == [(0,)]


def test_postgresql_leases_skip_rows_another_drainer_has_locked(postgres_url: str) -> None:
    """``FOR UPDATE SKIP LOCKED``: a drainer whose lease is still being written holds
    its rows; another drainer takes the rest at once instead of waiting (which would
    end in StoreBusy after the busy timeout)."""
    with PostgresStore(postgres_url, busy_timeout=0.2) as store:
        history(store)
        with psycopg.connect(postgres_url, autocommit=True) as holder:
            holder.execute("SET search_path TO certflow")
            holder.execute("BEGIN")
            holder.execute("SELECT 1 FROM outbox WHERE seq = 2 FOR UPDATE")
            assert ids(store.lease(now=day(6))) == ["r:4:0", "r:5:0", "r:5:1", "r:5:2"]
            holder.execute("ROLLBACK")
        assert ids(store.lease(now=day(6))) == ["r:2:0"]


# --- retrying ---------------------------------------------------------------------------------


@pytest.fixture
def held(backend: Backend) -> Iterator[None]:
    """Another connection holding every write of the database."""
    with backend.open() as opened:
        history(opened)
    with backend.write_lock_held():
        yield


@pytest.mark.usefixtures("held")
def test_retrying_gives_up_after_its_attempts_with_the_last_store_busy(
    backend: Backend,
) -> None:
    delays: list[float] = []
    calls: list[int] = []
    with backend.open(busy_timeout=0.05) as store:

        def report() -> object:
            calls.append(1)
            return store.apply("r", cf.DeviceInstalled("d2"), day(6))

        with pytest.raises(StoreBusy, match=re.escape(backend.target)):
            retrying(report, attempts=3, first_delay=0.5, sleep=delays.append)
    assert (len(calls), delays) == (3, [0.5, 1.0])


def test_retrying_does_not_retry_a_refusal(store: AnyStore) -> None:
    calls: list[int] = []

    def refused() -> object:
        calls.append(1)
        return store.apply("r", cf.ProceedToImport(), day(6))

    with pytest.raises(cf.CommandRefused):
        retrying(refused, sleep=lambda _: None)
    assert calls == [1]


def test_retrying_a_lease_waits_out_a_lock_and_leases_once(backend: Backend) -> None:
    """``drain`` leases through ``retrying``: a lease that met a held database, retried
    after the other writer finished, claims each effect once."""
    with backend.open() as opened:
        history(opened)
    with backend.open(busy_timeout=0.05) as store:
        claimed = backend.retried_past_the_lock(lambda: store.lease(now=day(6)))
        assert len(claimed) == 5
        assert store.lease(now=day(6)) == []


def test_retrying_needs_at_least_one_attempt() -> None:
    with pytest.raises(cf.CertflowError, match="at least 1"):
        retrying(lambda: None, attempts=0)


# --- found by review --------------------------------------------------------------------------


def test_a_rollout_stored_while_distributing_keeps_every_acknowledgement_timer(
    backend: Backend,
) -> None:
    """The store agrees with the in-memory rollout it was given (not reloaded)."""
    rollout = distributing(3, policy=cf.Policy(ack_timeout=6 * HOUR))
    step = cf.apply(rollout, cf.DeviceInstalled("d0"), T0 + HOUR)
    with backend.open() as store:
        store.create("r", rollout)
        store.apply("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        assert store.dumps("r") == cf.dumps(step.rollout)
        assert store.next_due("r") == cf.next_due(step.rollout) == T0 + 6 * HOUR


def test_a_rollout_stored_while_distributing_replays_to_the_stored_rollout(
    backend: Backend,
) -> None:
    """Replay starts from the loaded creation document; a report of the first device
    waiting for its acknowledgement once dropped the others' timers there (fixed in the
    core's ``loads``)."""
    with backend.open() as store:
        store.create("r", distributing(3, policy=cf.Policy(ack_timeout=6 * HOUR)))
        store.apply("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        assert store.dumps("r") == cf.dumps(store.replay("r"))


def test_drain_refuses_a_naive_now_clearly(backend: Backend) -> None:
    with backend.open() as store:
        store.create("r", distributing(2))
        with pytest.raises(cf.InvalidInput, match="now is a naive datetime"):
            drain(store, {}, datetime(2026, 7, 2))


def _statements_of(store: AnyStore, run: Callable[[], object]) -> list[str]:
    """The statements ``run`` sends through the store's shared code, as written there."""
    sent: list[str] = []
    query = store._q

    def recorded(text: str, params: Any = ()) -> Any:
        sent.append(text)
        return query(text, params)

    store._q = recorded  # type: ignore[method-assign]
    try:
        run()
    finally:
        del store._q
    return sent


def test_drain_reads_only_the_effects_due(backend: Backend) -> None:
    with backend.open() as store:
        store.create("r", distributing(2))
        store.advance("r", day(6))  # the day-6 notice
        report = None

        def run() -> None:
            nonlocal report
            report = drain(store, {cf.Notify: lambda i, e: None}, day(5))

        sent = _statements_of(store, run)
        assert report is not None
        assert report.delivered == ()
        reads = [t for t in sent if "FROM outbox" in t]
        assert reads
        assert all("due_at <= " in t for t in reads), reads
        assert any("o.due_at <= " in t for t in reads)  # the listing of unhandled ones
