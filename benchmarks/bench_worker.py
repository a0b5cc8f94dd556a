"""Benchmark of ``certflow worker`` (issue 19): what a pass with nothing due costs at 10
rollouts and at many, how fast the loop drains a webhook backlog and how late it ticks
the timers that fall due meanwhile, and one worker against two on PostgreSQL.

Run ``python benchmarks/bench_worker.py`` (``--quick``: 1,000 rollouts and a backlog of
5,000 effects instead of 10,000 and 100,000; ``--effects N`` and ``--rollouts N`` set
either). The webhook is a threaded ``http.server`` on 127.0.0.1 that answers 204 at
once. Targets (issue 19):

* an idle pass costing the same at 10 and at 10,000 rollouts (the due instants come
  from the store's indexes; the ratio is printed);
* a backlog delivered at >= 300 effects/s by one worker (SQLite), faster by two
  (PostgreSQL, two processes);
* the lag between a due instant and its tick under 1 s while the backlog drains: 20
  rollouts whose acknowledgement deadlines fall due during the drain, each ticked by
  the loop (``Worker.run`` on a clock that runs from the due instants' day at the real
  clock's pace); the lag is the journal's instant of the tick less the deadline.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certflow as cf
from certflow.store import SqliteStore, SqlStore
from certflow.worker import Config, EventLog, Worker, open_worker_store, read_config

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
RATE_TARGET = 300.0
LAG_TARGET = 1.0
TIMERS = 20


class _Count:
    """The requests the webhook answered (``value``), and of them the backlog's pushes
    (effects of rollout ``r``), shared with the threads that count them."""

    def __init__(self) -> None:
        self.value = self.pushes = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.value = self.pushes = 0


COUNT = _Count()


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        push = self.headers.get("Certflow-Effect-Id", "").startswith("r:")
        with COUNT.lock:
            COUNT.value += 1
            COUNT.pushes += push

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _rollout(devices: list[str], at: datetime = T0, ack: timedelta = 6 * HOUR) -> cf.Rollout:
    return cf.new_rollout(
        devices,
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=at,
        policy=cf.Policy(ack_timeout=ack),
    )


def _config(folder: Path, url: str, batch: int) -> Config:
    (folder / "secret").write_text("bench-secret")
    return read_config(
        f'[worker]\nbatch = {batch}\n[webhook]\nurl = "{url}"\nsecret_file = "secret"\n'
        '[routes]\n"*" = ["webhook"]\n',
        base=folder,
    )


def _worker(store: SqlStore, config: Config) -> Worker:
    log = EventLog(stream=open(os.devnull, "w"))  # noqa: SIM115 (the bench's lifetime)
    return Worker(store, config, log=log)


def idle_pass(folder: Path, rollouts: int, url: str) -> tuple[float, float, float]:
    """One pass with nothing due (next_due, lease) plus the next wake-up, over
    ``rollouts`` distributing rollouts whose push was delivered: the best and the median
    of 500 after 20 to warm the connection (the first passes after the rollouts were
    written read pages the later ones find cached); and the best of the store's
    ``tick`` alone, which the pass no longer runs when nothing is due."""
    db = folder / f"idle-{rollouts}.db"
    with SqliteStore(db) as store:
        for i in range(rollouts):
            store.create(f"r{i:05d}", _rollout([f"d{i}"]))
            store.apply(f"r{i:05d}", cf.DistributeRoot(), T0)
        store.acknowledge([e.id for e in store.effects()], T0)
    config = _config(folder, url, 20)
    tick = float("inf")
    passes = []
    with open_worker_store(db, config.worker) as store:
        worker = _worker(store, config)
        for n in range(520):
            started = time.perf_counter()
            report = worker.run_pass(T0 + HOUR)
            worker.next_wakeup(T0 + HOUR)
            if n >= 20:
                passes.append(time.perf_counter() - started)
            assert not report.deliveries
            assert report.due is None
        for _ in range(20):
            started = time.perf_counter()
            store.tick(T0 + HOUR)
            tick = min(tick, time.perf_counter() - started)
        worker.close()
    passes.sort()
    return passes[0], passes[len(passes) // 2], tick


def fill_backlog(store: SqlStore, effects: int) -> list[datetime]:
    """Rollout ``r`` with ``effects`` due pushes (one per enrolment, at T0), and
    ``TIMERS`` rollouts of one device whose acknowledgement deadlines fall due at
    T0 + 1 s, + 1 s + step, ... while the backlog drains (spread over the drain's
    length at 1,000 effects/s, so that they fall within it at any rate up to that).
    Returns the deadlines."""
    store.create("r", _rollout(["d0"]))
    store.apply("r", cf.DistributeRoot(), T0)
    for start in range(0, effects - 1, 5_000):
        enrol = [cf.Enroll(f"e{i}") for i in range(start, min(start + 5_000, effects - 1))]
        store.apply_all("r", enrol, T0)
    step = effects / 1_000 / (TIMERS + 1)
    deadlines = []
    for k in range(TIMERS):
        due = T0 + timedelta(seconds=1 + k * step)
        name = f"timer{k:02d}"
        store.create(name, _rollout([f"t{k}"], at=due - 2 * HOUR, ack=HOUR))
        store.apply(name, cf.DistributeRoot(), due - HOUR)
        store.acknowledge([e.id for e in store.effects(name)], due - HOUR)
        deadlines.append(due)
    return deadlines


def clock_from(instant: datetime) -> Callable[[], datetime]:
    """The real clock's pace, from ``instant`` on: the loop meets the deadlines as it
    would meet them in production."""
    began = time.monotonic()
    return lambda: instant + timedelta(seconds=time.monotonic() - began)


def lags(store: SqlStore, deadlines: list[datetime]) -> list[float]:
    """Seconds from each timer rollout's deadline to the tick that fired it."""
    found = []
    for k, due in enumerate(deadlines):
        ticks = [e.at for e in store.journal(f"timer{k:02d}") if e.kind == "advance"]
        if not ticks:
            raise SystemExit(f"timer{k:02d}: never ticked")
        found.append((ticks[0] - due).total_seconds())
    return found


def _wait_for(pushes: int, total: int, limit: float) -> float:
    """Seconds until the webhook has answered the backlog's ``pushes`` since it was
    reset; then waits until it has answered ``total`` requests (the timers' too)."""
    started = time.perf_counter()
    drained = None
    while True:
        with COUNT.lock:
            if drained is None and COUNT.pushes >= pushes:
                drained = time.perf_counter() - started
            if drained is not None and COUNT.value >= total:
                return drained
        if time.perf_counter() - started > limit:
            raise SystemExit(f"only {COUNT.value} of {total} delivered in {limit:.0f} s")
        time.sleep(0.02)


def drain_sqlite(folder: Path, effects: int, url: str) -> tuple[float, list[float]]:
    """One worker's loop (``Worker.run``) draining the backlog on SQLite: the seconds
    until the webhook had every effect, and the timers' lags."""
    db = folder / "backlog.db"
    with SqliteStore(db) as store:
        deadlines = fill_backlog(store, effects)
        pushes = len(store.effects("r"))
    config = _config(folder, url, 100)
    COUNT.reset()
    box: list[Worker] = []
    ready = threading.Event()

    def run() -> None:
        with open_worker_store(db, config.worker) as store:
            box.append(_worker(store, config))
            ready.set()
            box[0].run(clock_from(T0))
            box[0].close()

    thread = threading.Thread(target=run)
    thread.start()
    ready.wait()
    try:
        # Every push, then each timer's timeout (its AcknowledgementTimedOut).
        took = _wait_for(pushes, pushes + TIMERS, limit=effects / 50 + 120)
    finally:
        box[0].stop.set()
        thread.join()
    with SqliteStore(db) as store:
        return took, lags(store, deadlines)


def _child(url: str, hook: str, folder: str) -> None:
    """A worker process on PostgreSQL, until SIGTERM."""
    config = _config(Path(folder), hook, 100)
    with open_worker_store(url, config.worker) as store:
        worker = _worker(store, config)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
        worker.run(clock_from(T0))
        worker.close()


def drain_postgres(folder: Path, effects: int, hook: str, workers: int) -> float | str:
    """``workers`` processes draining the backlog on PostgreSQL (a throwaway server,
    tools/pgserver.py, fsync on): seconds until the webhook had every effect; or why
    it could not run."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from certflow.store import PostgresStore
    from tools.pgserver import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres(settings={"fsync": "on", "synchronous_commit": "on"}).start()
    except PostgresUnavailable as error:
        return f"skipped: {error}"
    try:
        url = server.create_database("bench")
        with PostgresStore(url) as store:
            fill_backlog(store, effects)
            pushes = len(store.effects("r"))
        COUNT.reset()
        fork = multiprocessing.get_context("fork")
        processes = [
            fork.Process(target=_child, args=(url, hook, str(folder))) for _ in range(workers)
        ]
        for process in processes:
            process.start()
        try:
            return _wait_for(pushes, pushes + TIMERS, limit=effects / 50 + 120)
        finally:
            for process in processes:
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)
            for process in processes:
                process.join(60)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 rollouts, 5,000 effects")
    parser.add_argument("--rollouts", type=int, help="rollouts of the large idle pass")
    parser.add_argument("--effects", type=int, help="effects of the backlog")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    many, effects = (1_000, 5_000) if args.quick else (10_000, 100_000)
    many, effects = args.rollouts or many, args.effects or effects
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    print(f"certflow worker benchmark ({platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f})")  # fmt: skip
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = sorted({10, min(1_000, many), many})
        idle = {n: idle_pass(folder, n, url) for n in sizes}
        for n, (took, median, tick) in idle.items():
            print(f"idle pass at {n:>6,} rollouts: best {1000 * took:.3f} ms, median "
                  f"{1000 * median:.3f} ms (the store's tick alone, not run: "
                  f"{1000 * tick:.2f} ms)")  # fmt: skip
        ratio = idle[many][1] / idle[10][1]
        print(f"idle pass: {ratio:.2f}x from 10 to {many:,} rollouts (medians)")
        took, found = drain_sqlite(folder, effects, url)
        rate = effects / took
        ok &= rate >= RATE_TARGET and max(found) < LAG_TARGET
        verdict = "ok" if rate >= RATE_TARGET else f"BELOW the {RATE_TARGET:.0f}/s target"
        print(f"backlog, one worker, SQLite: {effects:,} webhook effects in "
              f"{took:.1f} s = {rate:.0f} effects/s ({verdict})")  # fmt: skip
        print(f"tick lag while it drains ({TIMERS} timers): max {max(found):.3f} s, "
              f"median {sorted(found)[len(found) // 2]:.3f} s "
              f"({'ok' if max(found) < LAG_TARGET else 'OVER 1 s'})")  # fmt: skip
        if not args.no_postgres:
            rates = {}
            for workers in (1, 2):
                done = drain_postgres(folder, effects, url, workers)
                if isinstance(done, str):
                    print(f"PostgreSQL: {done}")
                    break
                rates[workers] = effects / done
                print(f"backlog, {workers} worker{'s' if workers > 1 else ''}, PostgreSQL: "
                      f"{effects:,} effects in {done:.1f} s = "
                      f"{rates[workers]:.0f} effects/s")  # fmt: skip
            if len(rates) == 2:
                print(f"two workers on PostgreSQL: {rates[2] / rates[1]:.2f}x one")
    server.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
