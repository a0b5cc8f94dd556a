"""Faults (``store.md``, Faults): several processes at once, SIGKILL at random moments.

Everything here runs against real SQLite files with real processes: workers are forked
(``multiprocessing``'s fork context, or ``os.fork``) after the parent has closed its own
connection, so no SQLite handle crosses a fork.
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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import certflow as cf
from certflow.core.serialization import decode_command, encode
from certflow.store import SqliteStore, drain, retrying
from tests.core.strategies import HOUR, T0, build, day, distributing
from tests.store.conftest import check_consistent, query

FORK = multiprocessing.get_context("fork")
EFFECT_TYPES = typing.get_args(cf.Effect)  # every effect class


def _run_child(errors: Path, work: Callable[[], None]) -> None:
    """Run ``work`` in a worker; a failure is written to ``errors`` for the parent."""
    try:
        work()
    except BaseException:
        errors.write_text(traceback.format_exc())
        os._exit(1)


def _join_all(processes: list[Any], errors: list[Path]) -> None:
    for process in processes:
        process.join(120)
    found = [e.read_text() for e in errors if e.exists()]
    assert not found, found[0]
    assert [p.exitcode for p in processes] == [0] * len(processes)


# --- concurrency -------------------------------------------------------------------------------

WORKERS = 4
REPORTS = 5_000
NOW = day(1)


def _report_of(worker: int, j: int) -> cf.Command:
    device = f"d{worker * REPORTS + j}"
    if j % 4 == 0:
        return cf.DeviceFailed(device, f"worker {worker} report {j}")
    return cf.DeviceInstalled(device)


def _reporter(path: Path, worker: int, barrier: Any) -> None:
    with SqliteStore(path) as store:
        barrier.wait(30)
        for j in range(REPORTS):
            command = _report_of(worker, j)
            retrying(lambda command=command: store.execute("fleet", command, NOW))  # type: ignore[misc]


def test_four_processes_lose_no_report(tmp_path: Path) -> None:
    """4 processes x 5,000 reports, each in its own transaction, on one rollout of
    20,000 devices: the counts are exact and equal a recount, the journal has one entry
    per report, and it replays to the stored rollout."""
    path = tmp_path / "certflow.db"
    with SqliteStore(path) as store:
        store.create("fleet", distributing(WORKERS * REPORTS))
    errors = [tmp_path / f"error-{w}.txt" for w in range(WORKERS)]
    barrier = FORK.Barrier(WORKERS)
    processes = [
        FORK.Process(target=_run_child, args=(errors[w], lambda w=w: _reporter(path, w, barrier)))
        for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    _join_all(processes, errors)

    failed = WORKERS * REPORTS // 4
    with SqliteStore(path, create=False) as store:
        counts = store.overview("fleet", NOW).counts
        assert counts[cf.DeviceState.FAILED] == failed
        assert counts[cf.DeviceState.INSTALLED] == WORKERS * REPORTS - failed
        assert counts[cf.DeviceState.PUSHED] == 0
        # A recount through the store's keyset paging, and one on the file itself.
        paged: Counter[cf.DeviceState] = Counter()
        after = None
        while page := store.devices("fleet", after=after, limit=1_000):
            paged.update(row.state for row in page)
            after = page[-1].device_id
        assert {s: n for s, n in counts.items() if n} == dict(paged)
        recount = dict(query(path, "SELECT state, COUNT(*) FROM devices GROUP BY state"))
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
    check_consistent(path, "fleet")


TICKS = (T0 + HOUR, day(6), day(7), day(13), day(14), day(20), day(21))


def _ticker(path: Path, barrier: Any) -> None:
    with SqliteStore(path) as store:
        for at in TICKS:
            barrier.wait(30)
            retrying(lambda at=at: store.tick(at))  # type: ignore[misc]


def test_two_schedulers_ticking_at_once_produce_each_effect_once(tmp_path: Path) -> None:
    """Two processes call ``tick`` at the same instants (released together by a
    barrier): the outbox holds the effects of the in-memory history exactly once."""
    path = tmp_path / "certflow.db"
    rollout = distributing(500, policy=cf.Policy(ack_timeout=HOUR))
    with SqliteStore(path) as store:
        store.create("r", rollout)
        assert store.next_due() == cf.next_due(rollout)
    barrier = FORK.Barrier(2)
    errors = [tmp_path / f"error-{w}.txt" for w in range(2)]
    processes = [
        FORK.Process(target=_run_child, args=(errors[w], lambda: _ticker(path, barrier)))
        for w in range(2)
    ]
    for process in processes:
        process.start()
    _join_all(processes, errors)

    expected: list[cf.Effect] = []
    for at in TICKS:
        step = cf.advance(rollout, at)
        rollout = step.rollout
        expected += step.effects
    with SqliteStore(path, create=False) as store:
        assert [s.effect for s in store.effects("r")] == expected
        assert [e.kind for e in store.journal("r")] == ["create"] + ["advance"] * len(TICKS)
        assert store.dumps("r") == cf.dumps(rollout)
        assert store.next_due() == cf.next_due(rollout)
    check_consistent(path, "r")


# --- crashes -----------------------------------------------------------------------------------

PHASES = ("report", "batch", "tick", "drain")
BLOCKS = 26  # a fresh database each, with one round of each phase twice: 208 kills
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


# Where a worker's connection was when it died, kept in a page of memory shared with
# the parent (SQLite's trace hook sees every statement before it runs).
IDLE, WRITING, COMMITTING, READING = range(4)
WHERE = ("outside a write transaction", "in a write transaction", "in a COMMIT", "in a read")


def _trace(shared: mmap.mmap) -> Callable[[str], None]:
    def trace(sql: str) -> None:
        head = sql.lstrip()[:16].upper()
        if head.startswith("BEGIN IMMEDIATE"):
            shared[0] = WRITING
        elif head.startswith("BEGIN"):
            shared[0] = READING
        elif head.startswith("COMMIT"):
            shared[0] = COMMITTING if shared[0] == WRITING else IDLE
        elif head.startswith("ROLLBACK"):
            shared[0] = IDLE

    return trace


def _worker(
    ready: int,
    shared: mmap.mmap,
    path: Path,
    phase: str,
    log_path: Path,
    performed: Path,
    seed: int,
    start: str,
) -> None:
    """Work of one ``phase`` in a loop until killed; one byte on ``ready`` once the
    store is open."""
    rng = random.Random(seed)
    store = SqliteStore(path)
    store._db.set_trace_callback(_trace(shared))  # observes only; changes nothing
    log = _Log(log_path)
    done = _Log(performed)
    now = datetime.fromisoformat(start)
    ids = [f"d{k}" for k in range(FLEET)]
    os.write(ready, b"r")

    def command(kind: str, commands: list[cf.Command]) -> None:
        listed = [encode(c) for c in commands]
        log.note("B", kind=kind, at=now.isoformat(), commands=listed)
        try:
            if kind == "command":
                stored = store.execute("r", commands[0], now)
            else:
                stored = store.execute_many("r", commands, now)
        except cf.CommandRefused:
            shared[0] = IDLE
            log.note("R", kind=kind, at=now.isoformat(), commands=listed)
            return
        shared[0] = IDLE
        log.note(
            "A", kind=kind, at=now.isoformat(), commands=listed, effects=[s.id for s in stored]
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
            log.note("A", kind=kind, at=now.isoformat(), effects=[s.id for s in stored])
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
    """A forked worker running ``work(ready)``; returns its pid and the read end of its
    ready pipe."""
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
    return pid, read


def _check_acknowledged(path: Path, logs: list[Path], performed: Path, where: int) -> None:
    """Every operation whose call returned is in the database; a refused one left no
    entry; every acknowledged effect was performed by its handler first; an operation
    killed inside its write transaction left nothing."""
    with SqliteStore(path, create=False) as store:
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
                assert (at, line["kind"], commands) in entries, line
            elif line["mark"] == "A" and (
                line["kind"] == "advance" or (line["kind"] == "tick" and line["effects"])
            ):
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


def _crash_rounds(tmp_path: Path, blocks: int, seed: int) -> Counter[tuple[str, str]]:
    rng = random.Random(seed)
    landings: Counter[tuple[str, str]] = Counter()
    for block in range(blocks):
        folder = tmp_path / f"block-{block}"
        folder.mkdir()
        path = folder / "certflow.db"
        policy = cf.Policy(ack_timeout=6 * HOUR)
        with SqliteStore(path) as store:
            if block % 2:  # distributed through the store
                store.create("r", build(FLEET, policy=policy))
                store.execute("r", cf.DistributeRoot(), T0)
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
            with SqliteStore(path, create=False) as store:
                clock = store.rollouts()[0].clock
            start = (max(clock, latest) + timedelta(seconds=1)).isoformat()
            shared = mmap.mmap(-1, 1)  # anonymous: shared with the forked worker
            args = (shared, path, phase, log, performed, rng.getrandbits(32), start)
            pid, pipe = _fork(lambda fd, args=args: _worker(fd, *args), errors)  # type: ignore[misc]
            ready = os.read(pipe, 1)
            os.close(pipe)
            assert ready == b"r", errors.read_text() if errors.exists() else "worker died"
            time.sleep(rng.uniform(0.0005, 0.02))
            if n % 2:  # every other kill waits (a little) for a write transaction
                give_up = time.monotonic() + 0.2
                while shared[0] != WRITING and time.monotonic() < give_up:
                    pass
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status), errors.read_text() if errors.exists() else status
            assert os.WTERMSIG(status) == signal.SIGKILL
            check_consistent(path, "r")
            where = shared[0]
            shared.close()
            _check_acknowledged(path, logs, performed, where)
            landings[phase, WHERE[where]] += 1
            for line in _lines(log):
                latest = max(latest, datetime.fromisoformat(line["at"]))
    return landings


def test_sigkill_at_random_moments_leaves_every_transaction_done_or_not_started(
    tmp_path: Path,
) -> None:
    """208 workers killed with SIGKILL at a random moment while they report, report in
    batches, tick or drain (every other kill waits for a write transaction to be under
    way, so that about half land inside one). After each kill, on the reopened
    database: integrity is ``ok``, counts equal a recount, the journal replays to the
    stored rollout, every operation that returned is there, a refused one is not, one
    killed inside its write transaction left nothing, and no effect was acknowledged
    before its handler ran."""
    landings = _crash_rounds(tmp_path, BLOCKS, seed=8)
    assert sum(landings.values()) == BLOCKS * 2 * len(PHASES) >= 200
    for phase in PHASES:
        assert sum(n for (p, _), n in landings.items() if p == phase) == BLOCKS * 2


def test_a_creation_killed_at_a_random_moment_is_all_or_nothing(tmp_path: Path) -> None:
    """20 workers killed while they store a 10,000-device rollout: each rollout is
    afterwards absent, or present whole and consistent; the earlier ones are untouched."""
    rng = random.Random(8)
    path = tmp_path / "certflow.db"
    SqliteStore(path).close()
    rollout = distributing(10_000)
    created: list[str] = []
    for n in range(20):
        errors = tmp_path / f"error-{n}.txt"

        def create(ready: int, name: str = f"big-{n}") -> None:
            store = SqliteStore(path)
            os.write(ready, b"r")
            store.create(name, rollout)
            time.sleep(60)

        pid, pipe = _fork(create, errors)
        assert os.read(pipe, 1) == b"r", errors.read_text() if errors.exists() else "died"
        os.close(pipe)
        time.sleep(rng.uniform(0, 0.15))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert query(path, "PRAGMA integrity_check") == [("ok",)]
        names = [r[0] for r in query(path, "SELECT name FROM rollouts ORDER BY id")]
        assert names in (created, [*created, f"big-{n}"])
        if len(names) > len(created):
            check_consistent(path, names[-1])
        created = names
        assert query(path, "SELECT COUNT(*) FROM devices") == [(10_000 * len(names),)]
        assert query(path, "SELECT COUNT(*) FROM journal") == [(len(names),)]
