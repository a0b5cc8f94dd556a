"""The outbox and the journal (``store.md``, Journal and Outbox): ``drain``, stable
ids, acknowledgements, failing handlers, an append-only journal, refusals that leave
nothing, and ``retrying``."""

from __future__ import annotations

import json
import sqlite3
import typing
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import (
    SqliteStore,
    StoreBusy,
    StoredEffect,
    drain,
    retrying,
)
from tests.core.strategies import HOUR, T0, build, day, distributing
from tests.store.conftest import check_consistent, query, tables, write_lock_held

EFFECT_TYPES = typing.get_args(cf.Effect)  # every effect class


def history(store: SqliteStore, name: str = "r") -> None:
    """A rollout whose outbox holds several kinds of effect, from several entries."""
    store.create(name, build(6, policy=cf.Policy(ack_timeout=6 * HOUR)))
    store.execute(name, cf.DistributeRoot(), T0)  # PushRoot
    store.execute_many(
        name, [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "no space")], T0 + HOUR
    )
    store.execute(name, cf.Retry("d1"), T0 + 2 * HOUR)  # PushRoot
    store.tick(day(6))  # timeouts at T0 + 6h (and d1's later), the notice


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db_path) as opened:
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


def test_the_history_fills_the_outbox(store: SqliteStore) -> None:
    kinds = [type(s.effect) for s in store.effects()]
    assert kinds.count(cf.PushRoot) == 2
    assert cf.AcknowledgementTimedOut in kinds
    assert cf.Notify in kinds


def test_drain_delivers_each_due_effect_in_order_and_acknowledges_it(
    store: SqliteStore,
) -> None:
    pending = store.effects()
    recorder = Recorder()
    report = drain(store, recorder.handlers(), day(6))
    assert recorder.calls == [(s.id, s.effect) for s in pending]
    assert report.delivered == tuple(s.id for s in pending)
    assert report.failed == ()
    assert report.unhandled == ()
    assert store.effects() == []
    done = store.effects(include_acknowledged=True)
    assert [s.id for s in done] == [s.id for s in pending]
    assert {s.acked_at for s in done} == {day(6)}
    # Nothing is delivered twice.
    again = Recorder()
    assert drain(store, again.handlers(), day(7)).delivered == ()
    assert again.calls == []


def test_effects_not_due_yet_and_other_rollouts_wait(store: SqliteStore) -> None:
    store.create("other", distributing(2))
    store.execute("other", cf.DeviceFailed("d0", "x"), day(6))
    store.execute("other", cf.Retry("d0"), day(6))
    recorder = Recorder()
    assert drain(store, recorder.handlers(), T0 - HOUR).delivered == ()
    report = drain(store, recorder.handlers(), day(6), rollout="other")
    assert {i.split(":")[0] for i in report.delivered} == {"other"}
    assert [s.rollout for s in store.effects()] == ["r"] * len(store.effects("r"))


def test_effects_without_a_handler_stay_pending(store: SqliteStore) -> None:
    recorder = Recorder()
    report = drain(store, {cf.PushRoot: recorder}, day(6))
    assert {type(e) for _, e in recorder.calls} == {cf.PushRoot}
    left = store.effects()
    assert report.unhandled == tuple(s.id for s in left)
    assert left
    assert all(not isinstance(s.effect, cf.PushRoot) for s in left)


def test_a_failing_handler_leaves_its_effect_pending_and_blocks_no_other(
    store: SqliteStore,
) -> None:
    pending = store.effects()
    first = pending[0].id
    report = drain(store, Recorder(frozenset({first})).handlers(), day(6))
    assert report.failed == ((first, f"RuntimeError: cannot reach the MDM for {first}"),)
    assert report.delivered == tuple(s.id for s in pending[1:])
    [left] = store.effects()
    assert (left.id, left.effect, left.acked_at) == (first, pending[0].effect, None)
    assert (left.failures, left.last_error) == (1, report.failed[0][1])
    # Delivered again with the same id, until a handler succeeds.
    drain(store, Recorder(frozenset({first})).handlers(), day(6))
    assert store.effects()[0].failures == 2
    retry = Recorder()
    assert drain(store, retry.handlers(), day(7)).delivered == (first,)
    assert retry.calls == [(first, pending[0].effect)]
    [done] = [s for s in store.effects(include_acknowledged=True) if s.id == first]
    assert (done.acked_at, done.failures) == (day(7), 2)


def test_acknowledging_twice_is_harmless(store: SqliteStore) -> None:
    first, second = (s.id for s in store.effects()[:2])
    assert store.acknowledge([first], day(6)) == 1
    assert store.acknowledge([first], day(7)) == 0
    assert store.acknowledge([second, second], day(7)) == 1
    acked = {s.id: s.acked_at for s in store.effects(include_acknowledged=True)}
    assert (acked[first], acked[second]) == (day(6), day(7))
    assert first not in {s.id for s in store.effects()}


@pytest.mark.parametrize("unknown", ["r:99:0", "r:2:7", "nowhere:2:0", "r:two:0", "nonsense"])
def test_an_unknown_effect_id_is_refused_and_nothing_is_acknowledged(
    store: SqliteStore, db_path: Path, unknown: str
) -> None:
    before = tables(db_path)
    first = store.effects()[0].id
    with pytest.raises(cf.InvalidInput, match="no effect with id"):
        store.acknowledge([first, unknown], day(6))
    with pytest.raises(cf.InvalidInput, match="no effect with id"):
        store.record_failure(unknown, "boom")
    assert tables(db_path) == before


def test_effect_ids_are_rollout_seq_position_as_the_journal_says(store: SqliteStore) -> None:
    listed = [s.id for s in store.effects("r", include_acknowledged=True)]
    from_journal = [i for e in store.journal("r") for i in e.effects]
    assert listed == from_journal
    for entry in store.journal("r"):
        assert list(entry.effects) == [f"r:{entry.seq}:{p}" for p in range(len(entry.effects))]
    returned = store.execute("r", cf.Retry("d2"), day(6))
    assert [s.id for s in returned] == [f"r:{entry.seq + 1}:0"]
    assert returned == [s for s in store.effects() if s.id == returned[0].id]


def outbox_of(path: Path, name: str) -> list[StoredEffect]:
    with SqliteStore(path, create=False) as store:
        return store.effects(name, include_acknowledged=True)


def test_the_same_history_gives_the_same_ids_in_another_database(tmp_path: Path) -> None:
    """Ids are deterministic: another database, created in another order with another
    rollout first (so the internal row ids differ), gives the same ids and effects."""
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    with SqliteStore(one) as store:
        history(store)
    with SqliteStore(two) as store:
        store.create("another", distributing(3))
        history(store)
    assert query(one, "SELECT id FROM rollouts WHERE name = 'r'") != query(
        two, "SELECT id FROM rollouts WHERE name = 'r'"
    )
    assert outbox_of(one, "r") == outbox_of(two, "r")
    assert outbox_of(one, "r")


def journal_rows(path: Path) -> list[tuple[object, ...]]:
    return query(path, "SELECT * FROM journal ORDER BY rollout, seq")


def outbox_bodies(path: Path) -> list[tuple[object, ...]]:
    return query(
        path,
        "SELECT rollout, seq, position, kind, body, due_at FROM outbox "
        "ORDER BY rollout, seq, position",
    )


def test_the_journal_is_append_only(store: SqliteStore, db_path: Path) -> None:
    """Later commands, ticks, refusals, acknowledgements and failed deliveries never
    change an entry already written, nor an effect's content."""
    journal, outbox = journal_rows(db_path), outbox_bodies(db_path)
    drain(store, Recorder(frozenset({store.effects()[0].id})).handlers(), day(6))
    store.execute("r", cf.DeviceInstalled("d1"), day(6) + HOUR)
    with pytest.raises(cf.CommandRefused):
        store.execute("r", cf.ProceedToImport(), day(7))
    store.execute("r", cf.ExtendManually(), day(6) + 2 * HOUR)
    store.advance("r", day(30))
    store.execute("r", cf.ServerRestarted(), day(30))
    later = journal_rows(db_path)
    assert later[: len(journal)] == journal
    assert len(later) == len(journal) + 4
    assert [row[1] for row in later] == list(range(1, len(later) + 1))
    assert outbox_bodies(db_path)[: len(outbox)] == outbox
    check_consistent(db_path, "r")


def test_the_journal_replays_to_the_stored_rollout(store: SqliteStore) -> None:
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
    store: SqliteStore,
    db_path: Path,
    commands: list[cf.Command],
    at: datetime,
    error: type[Exception],
) -> None:
    before = tables(db_path)

    def run() -> object:
        if len(commands) == 1:
            return store.execute("r", commands[0], at)
        return store.execute_many("r", commands, at)

    with pytest.raises(error):
        run()
    assert tables(db_path) == before
    assert store.dumps("r") == cf.dumps(store.replay("r"))


@pytest.fixture
def held(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock."""
    with SqliteStore(db_path) as opened:
        history(opened)
    with write_lock_held(db_path) as holder:
        yield holder


def test_retrying_gives_up_after_its_attempts_with_the_last_store_busy(
    db_path: Path, held: sqlite3.Connection
) -> None:
    delays: list[float] = []
    calls: list[int] = []
    with SqliteStore(db_path, busy_timeout=0.05) as store:

        def report() -> object:
            calls.append(1)
            return store.execute("r", cf.DeviceInstalled("d2"), day(6))

        with pytest.raises(StoreBusy, match=str(db_path)):
            retrying(report, attempts=3, first_delay=0.5, sleep=delays.append)
    assert (len(calls), delays) == (3, [0.5, 1.0])


def test_retrying_does_not_retry_a_refusal(store: SqliteStore) -> None:
    calls: list[int] = []

    def refused() -> object:
        calls.append(1)
        return store.execute("r", cf.ProceedToImport(), day(6))

    with pytest.raises(cf.CommandRefused):
        retrying(refused, sleep=lambda _: None)
    assert calls == [1]


def test_retrying_needs_at_least_one_attempt() -> None:
    with pytest.raises(cf.CertflowError, match="at least 1"):
        retrying(lambda: None, attempts=0)


def test_a_rollout_stored_while_distributing_keeps_every_acknowledgement_timer(
    db_path: Path,
) -> None:
    """The store agrees with the in-memory rollout it was given (not reloaded)."""
    rollout = distributing(3, policy=cf.Policy(ack_timeout=6 * HOUR))
    step = cf.apply(rollout, cf.DeviceInstalled("d0"), T0 + HOUR)
    with SqliteStore(db_path) as store:
        store.create("r", rollout)
        store.execute("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        assert store.dumps("r") == cf.dumps(step.rollout)
        assert store.next_due("r") == cf.next_due(step.rollout) == T0 + 6 * HOUR


def test_a_rollout_stored_while_distributing_replays_to_the_stored_rollout(
    db_path: Path,
) -> None:
    """Replay starts from the loaded creation document; a report of the first device
    waiting for its acknowledgement once dropped the others' timers there (fixed in the
    core's ``loads``)."""
    with SqliteStore(db_path) as store:
        store.create("r", distributing(3, policy=cf.Policy(ack_timeout=6 * HOUR)))
        store.execute("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        assert store.dumps("r") == cf.dumps(store.replay("r"))


def test_drain_refuses_a_naive_now_clearly(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        store.create("r", distributing(2))
        with pytest.raises(cf.InvalidInput, match="now is a naive datetime"):
            drain(store, {}, datetime(2026, 7, 2))


def test_drain_reads_only_the_effects_due(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        store.create("r", distributing(2))
        store.advance("r", day(6))  # the day-6 notice
        traced: list[str] = []
        store._db.set_trace_callback(traced.append)
        report = drain(store, {cf.Notify: lambda i, e: None}, day(5))
        store._db.set_trace_callback(None)
        assert report.delivered == ()
        assert any("o.due_at <= " in t for t in traced)
