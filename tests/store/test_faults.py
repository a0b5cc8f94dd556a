"""Faults (``store.md``, Faults) on both backends: several processes at once, several
nodes, SIGKILL at random moments.

Every test runs on SQLite and on PostgreSQL (the ``backend`` fixture, ``tests/backends.py``)
with real processes against a real database. Workers are forked (``multiprocessing``'s fork
context, or ``os.fork``) after the parent has closed its own stores and its query
connection (:func:`_fork_safe`), and each worker opens its own store after the fork: no
SQLite handle and no psycopg connection ever crosses a fork.
"""

from __future__ import annotations

import itertools
import json
import mmap
import multiprocessing
import os
import random
import signal
import time
import traceback
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import certflow as cf
from certflow.core.serialization import decode_command, encode
from certflow.store import PostgresStore, SqliteStore, drain, retrying
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.core.strategies import HOUR, T0, build, day, distributing

FORK = multiprocessing.get_context("fork")
EFFECT_TYPES = typing.get_args(cf.Effect)  # every effect class
AnyStore = SqliteStore | PostgresStore


def _fork_safe(*backends: Backend) -> None:
    """Close the parent's query connections before a fork; they reconnect on next use."""
    for backend in backends:
        backend.close()


def _run_child(errors: Path, work: Callable[[], None]) -> None:
    """Run ``work`` in a worker; a failure is written to ``errors`` for the parent."""
    try:
        work()
    except BaseException:
        errors.write_text(traceback.format_exc())
        os._exit(1)


def _join_all(processes: list[Any], errors: list[Path]) -> None:
    for process in processes:
        process.join(180)
    for process in processes:
        if process.is_alive():  # a hung worker must not outlive the test
            process.kill()
            process.join()
    found = [e.read_text() for e in errors if e.exists()]
    assert not found, found[0]
    assert [p.exitcode for p in processes] == [0] * len(processes)


def _start(backend: Backend, tmp_path: Path, works: list[Callable[[], None]]) -> list[Path]:
    """Run each of ``works`` in a forked process of its own; wait for all and fail with
    the first worker's traceback, if any."""
    _fork_safe(backend)
    errors = [tmp_path / f"error-{n}.txt" for n in range(len(works))]
    processes = [
        FORK.Process(target=_run_child, args=(errors[n], work)) for n, work in enumerate(works)
    ]
    for process in processes:
        process.start()
    _join_all(processes, errors)
    return errors


def _server_pid(store: AnyStore) -> int:
    """The PostgreSQL server process serving ``store`` (0 for SQLite)."""
    return store._conn.info.backend_pid if isinstance(store, PostgresStore) else 0


def _wait_gone(backend: Backend, server_pid: int) -> None:
    """Wait until the server process of a killed worker has ended (PostgreSQL): only then
    has the server seen the connection close and rolled back its transaction, or finished
    a COMMIT that was already on its way. Checking earlier could race with that COMMIT."""
    if not server_pid:
        return
    give_up = time.monotonic() + 60
    while backend.query("SELECT 1 FROM pg_stat_activity WHERE pid = ?", server_pid):
        assert time.monotonic() < give_up, f"server process {server_pid} outlived its client"
        time.sleep(0.002)


# --- concurrency -------------------------------------------------------------------------------

WORKERS = 4
REPORTS = 5_000
NOW = day(1)


def _report_of(worker: int, j: int) -> cf.Command:
    device = f"d{worker * REPORTS + j}"
    if j % 4 == 0:
        return cf.DeviceFailed(device, f"worker {worker} report {j}")
    return cf.DeviceInstalled(device)


def _reporter(backend: Backend, worker: int, barrier: Any) -> None:
    with backend.open() as store:
        barrier.wait(30)
        for j in range(REPORTS):
            command = _report_of(worker, j)
            retrying(lambda command=command: store.apply("fleet", command, NOW))  # type: ignore[misc]


def test_four_processes_lose_no_report(backend: Backend, tmp_path: Path) -> None:
    """4 processes x 5,000 reports, each in its own transaction, on one rollout of
    20,000 devices: the counts are exact and equal a recount, the journal has one entry
    per report, and it replays to the stored rollout."""
    with backend.open() as store:
        store.create("fleet", distributing(WORKERS * REPORTS))
    barrier = FORK.Barrier(WORKERS)
    _start(
        backend,
        tmp_path,
        [lambda w=w: _reporter(backend, w, barrier) for w in range(WORKERS)],  # type: ignore[misc]
    )

    failed = WORKERS * REPORTS // 4
    with backend.open(create=False) as store:
        counts = store.overview("fleet", NOW).counts
        assert counts[cf.DeviceState.FAILED] == failed
        assert counts[cf.DeviceState.INSTALLED] == WORKERS * REPORTS - failed
        assert counts[cf.DeviceState.PUSHED] == 0
        # A recount through the store's keyset paging, and one on the tables themselves.
        paged: Counter[cf.DeviceState] = Counter()
        after = None
        while page := store.devices("fleet", after=after, limit=1_000):
            paged.update(row.state for row in page)
            after = page[-1].device_id
        assert {s: n for s, n in counts.items() if n} == dict(paged)
        recount = dict(backend.query("SELECT state, COUNT(*) FROM devices GROUP BY state"))
        assert recount == {s.value: n for s, n in paged.items()}
        journal = list(store.journal("fleet"))
        assert [e.kind for e in journal] == ["create"] + ["command"] * (WORKERS * REPORTS)
        assert Counter(c for e in journal for c in e.commands) == Counter(
            _report_of(w, j) for w in range(WORKERS) for j in range(REPORTS)
        )
        # The writers really took turns (or this test would prove little).
        workers = [int(e.body["command"]["device_id"][1:]) // REPORTS for e in journal[1:]]
        assert sum(a != b for a, b in itertools.pairwise(workers)) >= WORKERS
        assert store.dumps("fleet") == cf.dumps(store.replay("fleet"))
        failure = store.device("fleet", "d5000")
        assert failure.state is cf.DeviceState.FAILED
        assert failure.last_failure_reason == "worker 1 report 0"
    backend.check_consistent("fleet")


TICKS = (T0 + HOUR, day(6), day(7), day(13), day(14), day(20), day(21))


def _ticker(backend: Backend, barrier: Any) -> None:
    with backend.open() as store:
        for at in TICKS:
            barrier.wait(30)
            retrying(lambda at=at: store.tick(at))  # type: ignore[misc]


def test_two_schedulers_ticking_at_once_produce_each_effect_once(
    backend: Backend, tmp_path: Path
) -> None:
    """Two processes call ``tick`` at the same instants (released together by a
    barrier): the outbox holds the effects of the in-memory history exactly once."""
    rollout = distributing(500, policy=cf.Policy(ack_timeout=HOUR))
    with backend.open() as store:
        store.create("r", rollout)
        assert store.next_due() == cf.next_due(rollout)
    barrier = FORK.Barrier(2)
    _start(backend, tmp_path, [lambda: _ticker(backend, barrier)] * 2)

    expected: list[cf.Effect] = []
    for at in TICKS:
        step = cf.advance(rollout, at)
        rollout = step.rollout
        expected += step.effects
    with backend.open(create=False) as store:
        # Every effect (the import supersedes the notices not delivered: all of them).
        assert [s.effect for s in store.effects("r", include_acknowledged=True)] == expected
        assert [e.kind for e in store.journal("r")] == ["create"] + ["advance"] * len(TICKS)
        assert store.dumps("r") == cf.dumps(rollout)
        assert store.next_due() == cf.next_due(rollout)
    backend.check_consistent("r")


# --- several nodes -----------------------------------------------------------------------------

NODES = 3
SHARE = 2_000  # devices each node reports
TICK_EVERY = 50  # a node ticks after every 50 of its reports
# The nodes share one clock (a counter in shared memory) that runs from day 1 to day 7.5,
# across the notice of day 6 and the checkpoint of day 7. A node reads it and then waits
# for the rollout, so instants arrive out of order: ``clock_skew`` applies a late one at
# the rollout's clock. It spans the whole run, because a writer may wait while the others
# commit thousands of reports (SQLite does not serve waiting writers in turn).
STEP = (day(7.5) - day(1)) / (NODES * SHARE * (1 + 1 / TICK_EVERY))
SKEW = timedelta(days=7)


def _node_report(node: int, j: int) -> cf.Command:
    device = f"d{node * SHARE + j}"
    if j % 7 == 3:
        return cf.DeviceFailed(device, f"node {node} report {j}")
    return cf.DeviceInstalled(device)


def _shared_now(clock: Any) -> datetime:
    with clock.get_lock():
        clock.value += 1
        ticks: int = clock.value
    return day(1) + ticks * STEP


def _node(backend: Backend, node: int, clock: Any, barrier: Any) -> None:
    with backend.open(clock_skew=SKEW) as store:
        barrier.wait(30)
        for j in range(SHARE):
            command = _node_report(node, j)
            retrying(lambda command=command: store.apply("fleet", command, _shared_now(clock)))  # type: ignore[misc]
            if j % TICK_EVERY == TICK_EVERY - 1:
                retrying(lambda: store.tick(_shared_now(clock)))


def test_three_nodes_report_their_shares_and_tick_as_they_go(
    backend: Backend, tmp_path: Path
) -> None:
    """3 node processes report 2,000 devices each (one in seven a failure), one
    transaction per report, and call ``tick`` every 50 reports, through ``retrying``,
    while the shared clock crosses the notice of day 6 and the checkpoint of day 7.
    Afterwards the counts are exact and equal a recount, the journal holds every report
    once and replays to the stored rollout, and the timers fired once: the effects are
    those of the in-memory rollout advanced to the same clock."""
    size = NODES * SHARE
    rollout = distributing(size)
    with backend.open() as store:
        store.create("fleet", rollout)
    clock = FORK.Value("q", 0)
    barrier = FORK.Barrier(NODES)
    _start(
        backend,
        tmp_path,
        [lambda n=n: _node(backend, n, clock, barrier) for n in range(NODES)],  # type: ignore[misc]
    )

    reports = [_node_report(n, j) for n in range(NODES) for j in range(SHARE)]
    failed = sum(isinstance(r, cf.DeviceFailed) for r in reports)
    with backend.open(create=False) as store:
        info = store.rollouts()[0]
        assert info.clock >= day(7)  # the checkpoint's instant was reached
        assert info.counts[cf.DeviceState.FAILED] == failed
        assert info.counts[cf.DeviceState.INSTALLED] == size - failed
        assert info.counts[cf.DeviceState.PUSHED] == 0
        journal = list(store.journal("fleet"))
        commands = Counter(c for e in journal for c in e.commands)
        assert commands == Counter(reports)  # every report once: none lost, none doubled
        assert {e.kind for e in journal[1:]} <= {"command", "advance"}
        # The nodes' reports interleaved (or this test would prove little).
        nodes = [
            int(e.body["command"]["device_id"][1:]) // SHARE for e in journal if e.kind == "command"
        ]
        assert sum(a != b for a, b in itertools.pairwise(nodes)) >= NODES
        # The notice and the checkpoint fired once each, whichever node got there first.
        # (Compared by what fired and when: a notice also tells the progress at its
        # instant, which here depends on how the nodes' reports interleaved.)
        expected = cf.advance(cf.apply_all(rollout, reports, day(1)).rollout, info.clock)

        def fired(effects: Iterable[cf.Effect]) -> list[tuple[type, datetime]]:
            return [(type(e), e.due_at) for e in effects]

        assert fired(s.effect for s in store.effects("fleet")) == fired(expected.effects)
        assert [type(e) for e in expected.effects] == [cf.Notify, cf.ImportPostponed]
        assert info.state is expected.rollout.phase.state
        assert store.dumps("fleet") == cf.dumps(store.replay("fleet"))
    recount = dict(backend.query("SELECT state, COUNT(*) FROM devices GROUP BY state"))
    assert recount == {"installed": size - failed, "failed": failed}
    backend.check_consistent("fleet")


# Two nodes tick at each of these instants together. "ready-*" rollouts have every device
# installed, so the checkpoint of day 7 imports them; "late-*" ones have a failure, so the
# checkpoints postpone them and the deadline (day 21) forces the import.
SAME_INSTANTS = (day(2), day(6), day(6.5), day(7), day(7.5), day(13), day(14), day(20), day(21))
PAIRS = 8  # rollouts of each kind


def _same_instant_rollouts() -> dict[str, cf.Rollout]:
    found: dict[str, cf.Rollout] = {}
    for k in range(PAIRS):
        fleet = distributing(20)
        ready = [cf.DeviceInstalled(f"d{i}") for i in range(20)]
        found[f"ready-{k}"] = cf.apply_all(fleet, ready, day(1)).rollout
        late: list[cf.Command] = [*ready[1:], cf.DeviceFailed("d0", "unreachable")]
        found[f"late-{k}"] = cf.apply_all(fleet, late, day(1)).rollout
    return found


def _same_instant_ticker(backend: Backend, barrier: Any, out: Path) -> None:
    with backend.open() as store, out.open("a", encoding="utf-8") as log:
        for at in SAME_INSTANTS:
            barrier.wait(30)
            began = time.monotonic()
            stored = retrying(lambda at=at: store.tick(at))  # type: ignore[misc]
            ended = time.monotonic()
            line = {"at": at.isoformat(), "ids": [s.id for s in stored], "span": [began, ended]}
            log.write(json.dumps(line) + "\n")
            log.flush()


def test_two_nodes_ticking_at_the_same_instant_produce_every_effect_exactly_once(
    backend: Backend, tmp_path: Path
) -> None:
    """Two node processes, released together by a barrier at each of nine instants
    (the notices, the checkpoints of day 7 and 14 and the deadline among them), tick 16
    rollouts at once: every rollout's outbox holds exactly the effects of the in-memory
    rollout advanced through the same instants, so one import per rollout, never two;
    no effect id was returned to both nodes; and the journal has one advance per instant
    that had something due."""
    rollouts = _same_instant_rollouts()
    with backend.open() as store:
        for name, rollout in rollouts.items():
            store.create(name, rollout)
    barrier = FORK.Barrier(2)
    logs = [tmp_path / f"node-{n}.log" for n in range(2)]
    _start(
        backend,
        tmp_path,
        [lambda n=n: _same_instant_ticker(backend, barrier, logs[n]) for n in range(2)],  # type: ignore[misc]
    )

    returned = [[json.loads(line) for line in log.read_text().splitlines()] for log in logs]
    ids = [i for node in returned for line in node for i in line["ids"]]
    assert len(ids) == len(set(ids))  # no effect was produced for both nodes
    with backend.open(create=False) as store:
        stored = store.effects(include_acknowledged=True)
        assert sorted(ids) == sorted(s.id for s in stored)
        for name, rollout in rollouts.items():
            expected: list[cf.Effect] = []
            due: list[datetime] = []
            for at in SAME_INSTANTS:
                next_due = cf.next_due(rollout)
                if next_due is not None and next_due <= at:  # tick leaves the others alone
                    due.append(at)
                    step = cf.advance(rollout, at)
                    rollout = step.rollout
                    expected += step.effects
            assert [s.effect for s in stored if s.rollout == name] == expected, name
            imports = [e for e in expected if isinstance(e, cf.ImportCertificate)]
            assert [e.forced for e in imports] == [name.startswith("late")], name
            advances = [e.at for e in store.journal(name) if e.kind == "advance"]
            assert advances == due, name
            assert store.dumps(name) == cf.dumps(rollout), name
    for name in rollouts:
        backend.check_consistent(name)
    # The two ticks overlapped in time at some instants: they really ran together.
    together = sum(
        max(a["span"][0], b["span"][0]) < min(a["span"][1], b["span"][1])
        for a, b in zip(*returned, strict=True)
    )
    print(f"{backend.name}: the two ticks overlapped at {together} of 9 instants")
    assert together >= 1


DRAIN_ROLLOUTS = 10
DRAIN_FLEET = 40
DRAIN_NOW = day(2)


def _drainer(backend: Backend, node: int, barrier: Any, out: Path) -> None:
    """Drain half the rollouts each at the same moment as the other drainer, the other
    half in opposite orders, then everything until nothing is pending. Each delivery is
    appended to ``out`` and fsynced before the handler returns (before it is
    acknowledged)."""
    with backend.open() as store, out.open("a", encoding="utf-8") as log:

        def deliver(effect_id: str, effect: cf.Effect) -> None:
            log.write(effect_id + "\n")
            log.flush()
            os.fsync(log.fileno())

        handlers = dict.fromkeys(EFFECT_TYPES, deliver)
        names = [f"r{k}" for k in range(DRAIN_ROLLOUTS)]
        half = DRAIN_ROLLOUTS // 2
        for name in names[:half]:
            barrier.wait(30)
            drain(store, handlers, DRAIN_NOW, rollout=name)
        barrier.wait(30)
        for name in names[half:] if node == 0 else reversed(names[half:]):
            drain(store, handlers, DRAIN_NOW, rollout=name)
        while store.effects(due_by=DRAIN_NOW):  # the other may hold some under its lease
            drain(store, handlers, DRAIN_NOW)


def test_two_drainers_deliver_each_effect_once(backend: Backend, tmp_path: Path) -> None:
    """Two drainer processes call ``drain`` at the same ``now`` on 10 rollouts of 41
    effects: 5 rollouts each at the same moment (a barrier), 5 in opposite orders, then
    everything until nothing is pending.
    Each delivery is recorded in the drainer's file (appended and fsynced): no effect id
    was delivered twice, and every due effect was delivered and acknowledged."""
    with backend.open() as store:
        for k in range(DRAIN_ROLLOUTS):
            name = f"r{k}"
            store.create(name, build(DRAIN_FLEET))
            store.apply(name, cf.DistributeRoot(), T0)
            ids = [f"d{i}" for i in range(DRAIN_FLEET)]
            store.apply_all(name, [cf.DeviceFailed(d, "unreachable") for d in ids], day(1))
            store.apply_all(name, [cf.Retry(d) for d in ids], day(1))  # one push each
        due = {s.id for s in store.effects(due_by=DRAIN_NOW)}
        assert len(due) == DRAIN_ROLLOUTS * (DRAIN_FLEET + 1)
    barrier = FORK.Barrier(2)
    logs = [tmp_path / f"drainer-{n}.log" for n in range(2)]
    _start(
        backend,
        tmp_path,
        [lambda n=n: _drainer(backend, n, barrier, logs[n]) for n in range(2)],  # type: ignore[misc]
    )

    delivered = [log.read_text().split() for log in logs]
    everything = delivered[0] + delivered[1]
    duplicates = [i for i, n in Counter(everything).items() if n > 1]
    assert not duplicates
    assert set(everything) == due
    with backend.open(create=False) as store:
        assert store.effects(due_by=DRAIN_NOW) == []
        acknowledged = store.effects(include_acknowledged=True)
        assert {s.id for s in acknowledged if s.acked_at is not None} == due
    print(f"{backend.name}: the drainers delivered {len(delivered[0])} and {len(delivered[1])}")
    assert all(delivered)  # both really drained (or this would prove little)


# --- crashes -----------------------------------------------------------------------------------

PHASES = ("report", "batch", "tick", "drain")
# A fresh database each, with one round of each phase twice: 208 kills on SQLite, 128 on
# PostgreSQL, where a round costs more (a connection, a server process that must end).
BLOCKS = {"sqlite": 26, "postgresql": 16}
FLEET = 150


class _Log:
    """A worker's side file: ``B`` before an operation, ``A`` once it returned (the
    acknowledged log), ``R`` when it was refused; one JSON line each, written before
    the worker goes on (fsynced too, but for ``B``: a SIGKILL loses no written line)."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def note(self, mark: str, **fields: Any) -> None:
        self.file.write(json.dumps({"mark": mark, **fields}) + "\n")
        self.file.flush()
        if mark != "B":
            os.fsync(self.file.fileno())


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The complete lines of a side file (a kill may tear the last one)."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    for line in text.split("\n")[:-1]:
        yield json.loads(line)


# Where a worker's connection was when it was stopped, kept in a page of memory shared
# with the parent: each statement is marked before it is sent.
IDLE, WRITING, COMMITTING, READING = range(4)
WHERE = ("outside a write transaction", "in a write transaction", "in a COMMIT", "in a read")


def _trace(shared: mmap.mmap, write_begin: str) -> Callable[[str], None]:
    def trace(sql: str) -> None:
        head = sql.lstrip().upper()
        if head.startswith(write_begin):
            shared[0] = WRITING
        elif head.startswith("BEGIN"):
            shared[0] = READING
        elif head.startswith("COMMIT"):
            shared[0] = COMMITTING if shared[0] == WRITING else IDLE
        elif head.startswith("ROLLBACK"):
            shared[0] = IDLE

    return trace


def _observe(store: AnyStore, shared: mmap.mmap) -> None:
    """Keep ``shared[0]`` up to date with where ``store``'s connection is. SQLite: its
    trace hook, which sees every statement before it runs. PostgreSQL: a wrapper around
    the connection's ``execute``, through which the store sends every BEGIN, COMMIT and
    ROLLBACK (a write transaction begins ``READ COMMITTED``, a read ``REPEATABLE READ
    READ ONLY``). Either only observes."""
    if isinstance(store, SqliteStore):
        store._db.set_trace_callback(_trace(shared, "BEGIN IMMEDIATE"))
        return
    trace = _trace(shared, "BEGIN ISOLATION LEVEL READ COMMITTED")
    connection = store._conn
    send = connection.execute

    def execute(query: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(query, str):
            trace(query)
        return send(query, *args, **kwargs)

    connection.execute = execute  # type: ignore[method-assign]


def _server_view(backend: Backend, server_pid: int) -> str:
    """What the PostgreSQL server says of a (stopped) worker's transaction: whether one is
    open, and whether it holds a transaction id, which a transaction takes when it first
    locks or writes a row (every write transaction's first statement locks the rollout
    row, or the outbox rows it leases)."""
    if not server_pid:
        return ""
    rows = backend.query(
        "SELECT state, backend_xid IS NOT NULL, query FROM pg_stat_activity WHERE pid = ?",
        server_pid,
    )
    if not rows or rows[0][0] == "idle":
        return "server: no transaction"
    state, has_xid, statement = rows[0]
    if state == "active" and statement.strip().upper().startswith("COMMIT"):
        return "server: COMMIT running"
    if has_xid:
        return "server: transaction holding row locks"
    return "server: transaction, no row locked yet"


def _worker(
    ready: int,
    shared: mmap.mmap,
    target: Backend,
    phase: str,
    log_path: Path,
    performed: Path,
    seed: int,
    start: str,
) -> None:
    """Work of one ``phase`` in a loop until killed; ``r`` and the server process's id on
    ``ready`` once the store is open."""
    rng = random.Random(seed)
    store = target.open()
    _observe(store, shared)
    log = _Log(log_path)
    done = _Log(performed)
    now = datetime.fromisoformat(start)
    ids = [f"d{k}" for k in range(FLEET)]
    os.write(ready, b"r" + _server_pid(store).to_bytes(4, "little"))

    def command(kind: str, commands: list[cf.Command]) -> None:
        listed = [encode(c) for c in commands]
        log.note("B", kind=kind, at=now.isoformat(), commands=listed)
        try:
            if kind == "command":
                stored = store.apply("r", commands[0], now)
            else:
                stored = store.apply_all("r", commands, now)
        except cf.CommandRefused:
            shared[0] = IDLE
            log.note("R", kind=kind, at=now.isoformat(), commands=listed)
            return
        shared[0] = IDLE
        log.note(
            "A",
            kind=kind,
            at=now.isoformat(),
            commands=listed,
            effects=[s.id for s in stored],
            changed=stored.changed,
        )

    def handler(effect_id: str, effect: cf.Effect) -> None:
        shared[0] = IDLE
        done.note("P", id=effect_id)
        if rng.random() < 0.25:
            raise RuntimeError("the device did not answer")

    handlers = dict.fromkeys(EFFECT_TYPES, handler)
    while True:
        if phase == "report":
            now += timedelta(seconds=1)
            device = rng.choice(ids)
            report: cf.Command = (
                cf.DeviceInstalled(device)
                if rng.random() < 0.5
                else cf.DeviceFailed(device, f"report at {now.isoformat()}")
            )
            command("command", [report])
        elif phase == "batch":
            now += timedelta(seconds=1)
            pushed = [d.device_id for d in store.devices("r", [cf.DeviceState.PUSHED], limit=FLEET)]
            failed = [d.device_id for d in store.devices("r", [cf.DeviceState.FAILED], limit=FLEET)]
            batch: list[cf.Command] = []
            for _ in range(rng.randint(10, 150)):
                pick = rng.random()
                if pushed and pick < 0.3:
                    batch.append(cf.DeviceFailed(rng.choice(pushed), "unreachable"))
                elif failed and pick < 0.5:
                    batch.append(cf.Retry(failed.pop()))
                else:
                    batch.append(cf.DeviceInstalled(rng.choice(ids)))
            command("batch", batch)
        elif phase == "tick":
            now += timedelta(minutes=rng.randint(1, 240))
            kind = rng.choice(("advance", "tick"))
            log.note("B", kind=kind, at=now.isoformat())
            stored = store.advance("r", now) if kind == "advance" else store.tick(now)
            shared[0] = IDLE
            log.note(
                "A",
                kind=kind,
                at=now.isoformat(),
                effects=[s.id for s in stored],
                changed=stored.changed,
            )
        elif rng.random() < 0.5:  # drain: make effects, or deliver them
            now += timedelta(seconds=1)
            pushed = [d.device_id for d in store.devices("r", [cf.DeviceState.PUSHED], limit=FLEET)]
            failed = [d.device_id for d in store.devices("r", [cf.DeviceState.FAILED], limit=FLEET)]
            if failed:
                command("command", [cf.Retry(rng.choice(failed))])
            elif pushed:
                command("command", [cf.DeviceFailed(rng.choice(pushed), "no answer")])
        else:
            log.note("B", kind="drain", at=now.isoformat())
            outcome = drain(store, handlers, now)
            shared[0] = IDLE
            log.note(
                "A",
                kind="drain",
                at=now.isoformat(),
                delivered=list(outcome.delivered),
                failed=[i for i, _ in outcome.failed],
            )


def _fork(work: Callable[[int], None], errors: Path) -> tuple[int, int]:
    """A forked worker running ``work(ready)``; returns its pid and the server process id
    it sent on its ready pipe once its store was open (0 for SQLite)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into pytest
        try:
            os.close(read)
            work(write)
        except BaseException:
            errors.write_text(traceback.format_exc())
        os._exit(1)
    os.close(write)
    got = b""
    while len(got) < 5 and (chunk := os.read(read, 5 - len(got))):
        got += chunk
    os.close(read)
    assert got[:1] == b"r", errors.read_text() if errors.exists() else "the worker died"
    return pid, int.from_bytes(got[1:], "little")


def _stop(pid: int, errors: Path) -> None:
    """SIGSTOP the worker and wait until it is stopped (its marks hold still)."""
    os.kill(pid, signal.SIGSTOP)
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), errors.read_text() if errors.exists() else status


def _kill(pid: int, errors: Path) -> None:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), errors.read_text() if errors.exists() else status
    assert os.WTERMSIG(status) == signal.SIGKILL


def _check_acknowledged(target: Backend, logs: list[Path], performed: Path, where: int) -> None:
    """Every operation whose call returned is in the database; a refused one left no
    entry; every acknowledged effect was performed by its handler first; an operation
    killed inside its write transaction (before its COMMIT was sent) left nothing."""
    with target.open(create=False) as store:
        journal = list(store.journal("r"))
        outbox = {s.id: s for s in store.effects("r", include_acknowledged=True)}
    entries = {(e.at, e.kind, e.commands) for e in journal}
    instants = {e.at for e in journal}
    advanced = {e.at for e in journal if e.kind == "advance"}
    for log in logs:
        lines = list(_lines(log))
        for line in lines:
            at = datetime.fromisoformat(line["at"])
            commands = tuple(decode_command(c) for c in line.get("commands", ()))
            if line["mark"] == "R":
                assert at not in instants, line
            elif line["mark"] == "A" and line["kind"] in ("command", "batch"):
                # A no-op returned without journaling anything.
                assert ((at, line["kind"], commands) in entries) == line["changed"], line
            elif line["mark"] == "A" and line["kind"] in ("advance", "tick") and line["changed"]:
                assert at in advanced, line
            elif line["mark"] == "A" and line["kind"] == "drain":
                assert all(outbox[i].acked_at is not None for i in line["delivered"]), line
                assert all(outbox[i].failures > 0 for i in line["failed"]), line
            for effect_id in line.get("effects", ()):
                assert effect_id in outbox, line
    ran = {line["id"] for line in _lines(performed)}
    acked = {i for i, s in outbox.items() if s.acked_at is not None}
    assert acked <= ran
    last = ([{}, *_lines(logs[-1])])[-1]
    if (
        where == WRITING
        and last.get("mark") == "B"
        and last["kind"] in ("command", "batch", "advance")
    ):
        assert datetime.fromisoformat(last["at"]) not in instants, last


def _block_backend(backend: Backend, folder: Path, block: int) -> Backend:
    """A fresh database for one block: a new file, or a new schema of the test's database."""
    if isinstance(backend, PostgresBackend):
        return PostgresBackend(backend.server, backend.url, schema=f"block_{block}")
    return SqliteBackend(folder / "certflow.db")


def _crash_rounds(
    backend: Backend, tmp_path: Path, blocks: int, seed: int
) -> Counter[tuple[str, str, str]]:
    rng = random.Random(seed)
    landings: Counter[tuple[str, str, str]] = Counter()
    for block in range(blocks):
        folder = tmp_path / f"block-{block}"
        folder.mkdir()
        target = _block_backend(backend, folder, block)
        try:
            landings += _crash_block(target, folder, block, rng)
        finally:
            target.close()
    return landings


def _crash_block(
    target: Backend, folder: Path, block: int, rng: random.Random
) -> Counter[tuple[str, str, str]]:
    landings: Counter[tuple[str, str, str]] = Counter()
    policy = cf.Policy(ack_timeout=6 * HOUR)
    with target.open() as store:
        if block % 2:  # distributed through the store
            store.create("r", build(FLEET, policy=policy))
            store.apply("r", cf.DistributeRoot(), T0)
        else:  # stored while distributing: replay starts from a loaded document
            store.create("r", distributing(FLEET, policy=policy))
    performed = folder / "performed.log"
    phases = list(PHASES * 2)
    rng.shuffle(phases)
    logs: list[Path] = []
    latest = T0
    for n, phase in enumerate(phases):
        log = folder / f"round-{n}-{phase}.log"
        logs.append(log)
        errors = folder / f"round-{n}-error.txt"
        with target.open(create=False) as store:
            clock = store.rollouts()[0].clock
        start = (max(clock, latest) + timedelta(seconds=1)).isoformat()
        shared = mmap.mmap(-1, 1)  # anonymous: shared with the forked worker
        args = (shared, target, phase, log, performed, rng.getrandbits(32), start)
        _fork_safe(target)
        pid, server_pid = _fork(lambda fd, args=args: _worker(fd, *args), errors)  # type: ignore[misc]
        time.sleep(rng.uniform(0.0005, 0.02))
        if n % 2:  # every other kill waits (a little) for a write transaction
            give_up = time.monotonic() + 0.2
            while shared[0] != WRITING and time.monotonic() < give_up:
                pass
        _stop(pid, errors)
        where = shared[0]
        server = _server_view(target, server_pid)  # while the worker is stopped
        _kill(pid, errors)
        _wait_gone(target, server_pid)
        target.check_consistent("r")
        shared.close()
        _check_acknowledged(target, logs, performed, where)
        landings[phase, WHERE[where], server] += 1
        for line in _lines(log):
            latest = max(latest, datetime.fromisoformat(line["at"]))
    return landings


def test_sigkill_at_random_moments_leaves_every_transaction_done_or_not_started(
    backend: Backend, tmp_path: Path
) -> None:
    """Workers killed with SIGKILL at a random moment while they report, report in
    batches, tick or drain (every other kill waits for a write transaction to be under
    way, so that about half land inside one): 208 on SQLite, 128 on PostgreSQL. Each is
    stopped first, so that where it was can be read: its own mark, made before each
    statement is sent, and on PostgreSQL the server's view of its transaction. After each
    kill (and, on PostgreSQL, once the server process serving it has ended), on the
    reopened database: integrity is ``ok`` (SQLite), counts equal a recount, the journal
    replays to the stored rollout, every operation that returned is there, a refused one
    is not, one killed inside its write transaction left nothing, and no effect was
    acknowledged before its handler ran."""
    blocks = BLOCKS[backend.name]
    landings = _crash_rounds(backend, tmp_path, blocks, seed=8)
    kills = sum(landings.values())
    assert kills == blocks * 2 * len(PHASES) >= 100
    for phase in PHASES:
        assert sum(n for (p, _, _), n in landings.items() if p == phase) == blocks * 2
    inside = sum(n for (_, w, _), n in landings.items() if w == WHERE[WRITING])
    held = sum(
        n
        for (_, w, s), n in landings.items()
        if w == WHERE[WRITING] and s == "server: transaction holding row locks"
    )
    print(f"{backend.name}: {kills} kills, {inside} inside a write transaction", end="")
    print(f" ({held} with the server holding its row locks)" if backend.name != "sqlite" else "")
    for (phase, where, server), n in sorted(landings.items()):
        print(f"  {phase:6} {where:28} {server:40} {n}")
    # About half the kills waited for a write transaction, and most found one.
    assert inside >= kills // 4
    if isinstance(backend, PostgresBackend):
        # The server confirms it: those transactions held their row locks when killed.
        assert held >= kills // 8


CREATED = 9  # a creator's mark once its creation returned


def _creator(
    target: Backend, rollout: cf.Rollout, name: str, shared: mmap.mmap
) -> Callable[[int], None]:
    def create(ready: int) -> None:
        store = target.open()
        _observe(store, shared)
        os.write(ready, b"r" + _server_pid(store).to_bytes(4, "little"))
        store.create(name, rollout)
        shared[0] = CREATED
        time.sleep(60)

    return create


def test_a_creation_killed_at_a_random_moment_is_all_or_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    """20 workers killed while they store a 10,000-device rollout, at a random moment
    within one and a half times what a first, timed worker took: each rollout is
    afterwards absent, or present whole and consistent; the earlier ones are untouched;
    and some kills landed inside the creation's transaction."""
    rng = random.Random(8)
    rollout = distributing(10_000)
    shared = mmap.mmap(-1, 1)
    _fork_safe(backend)
    pid, _ = _fork(_creator(backend, rollout, "timed", shared), tmp_path / "error-timed.txt")
    began = time.monotonic()
    while shared[0] != CREATED:
        assert time.monotonic() < began + 60, "the timed creation did not finish"
        time.sleep(0.001)
    took = time.monotonic() - began
    _kill(pid, tmp_path / "error-timed.txt")
    created = ["timed"]
    outcomes: Counter[tuple[str, int]] = Counter()
    for n in range(20):
        errors = tmp_path / f"error-{n}.txt"
        shared[0] = IDLE
        _fork_safe(backend)
        pid, server_pid = _fork(_creator(backend, rollout, f"big-{n}", shared), errors)
        time.sleep(rng.uniform(0, 1.5 * took))
        _stop(pid, errors)
        where = shared[0]
        _kill(pid, errors)
        _wait_gone(backend, server_pid)
        if isinstance(backend, SqliteBackend):
            assert backend.query("PRAGMA integrity_check") == [("ok",)]
        names = [r[0] for r in backend.query("SELECT name FROM rollouts ORDER BY id")]
        assert names in (created, [*created, f"big-{n}"])
        if len(names) > len(created):
            backend.check_consistent(names[-1])
        if where == WRITING:  # killed before its COMMIT was sent: nothing of it is there
            assert names == created
        created = names
        assert backend.query("SELECT COUNT(*) FROM devices") == [(10_000 * len(names),)]
        assert backend.query("SELECT COUNT(*) FROM journal") == [(len(names),)]
        outcomes["whole" if names[-1] == f"big-{n}" else "absent", where] += 1
    shared.close()
    inside = sum(n for (_, where), n in outcomes.items() if where == WRITING)
    whole = sum(n for (outcome, _), n in outcomes.items() if outcome == "whole")
    print(f"{backend.name}: creation {took:.3f} s; {whole} of 20 whole, {inside} killed inside one")
    assert inside >= 1
