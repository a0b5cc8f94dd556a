"""Benchmark of ``certflow worker`` (issue 19): what a pass with nothing due costs at 10
rollouts and at many, and how fast one worker drains a webhook backlog.

Run ``python benchmarks/bench_worker.py`` (``--quick``: 1,000 rollouts and a backlog of
5,000 effects instead of 10,000 and 100,000). SQLite in a temporary folder; the webhook
is a threaded ``http.server`` on 127.0.0.1 that answers 204 at once. Targets (issue 19):
a backlog delivered at >= 300 effects/s by one worker; an idle pass costing the same at
10 and 10,000 rollouts (reported as the ratio: the store's ``next_due`` and ``tick``
read every running rollout's row today, so it is not met yet).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certflow as cf
from certflow.store import SqliteStore
from certflow.worker import EventLog, Worker, open_worker_store, read_config

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RATE_TARGET = 300.0


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _rollout(devices: list[str]) -> cf.Rollout:
    return cf.new_rollout(
        devices,
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
    )


def _worker(folder: Path, db: Path, url: str, batch: int) -> tuple[SqliteStore, Worker]:
    (folder / "secret").write_text("bench-secret")
    config = read_config(
        f'[worker]\nbatch = {batch}\n[webhook]\nurl = "{url}"\nsecret_file = "secret"\n'
        '[routes]\n"*" = ["webhook"]\n',
        base=folder,
    )
    store = open_worker_store(db, config.worker)
    log = EventLog(stream=open("/dev/null", "w"))  # noqa: SIM115 (the bench's lifetime)
    return store, Worker(store, config, log=log)  # type: ignore[return-value]


def idle_pass(folder: Path, rollouts: int, url: str) -> float:
    """Best of 5: one pass with nothing due (tick, lease) plus the next wake-up, over
    ``rollouts`` distributing rollouts whose push was delivered."""
    db = folder / f"idle-{rollouts}.db"
    with SqliteStore(db) as store:
        for i in range(rollouts):
            store.create(f"r{i:05d}", _rollout([f"d{i}"]))
            store.apply(f"r{i:05d}", cf.DistributeRoot(), T0)
        store.acknowledge([e.id for e in store.effects()], T0)
    store, worker = _worker(folder, db, url, 20)
    best = float("inf")
    with store:
        for _ in range(5):
            started = time.perf_counter()
            worker.run_pass(T0 + timedelta(hours=1))
            worker.next_wakeup(T0 + timedelta(hours=1))
            best = min(best, time.perf_counter() - started)
        worker.close()
    return best


def backlog(folder: Path, effects: int, url: str) -> tuple[float, float]:
    """Seconds to deliver ``effects`` due webhook effects (one rollout, one PushRoot per
    enrolment), and the rate."""
    db = folder / "backlog.db"
    with SqliteStore(db) as store:
        store.create("r", _rollout(["d0"]))
        store.apply("r", cf.DistributeRoot(), T0)
        for start in range(0, effects - 1, 5_000):
            enrol = [cf.Enroll(f"e{i}") for i in range(start, min(start + 5_000, effects - 1))]
            store.apply_all("r", enrol, T0)
    store, worker = _worker(folder, db, url, 100)
    with store:
        started = time.perf_counter()
        report = worker.run_pass(T0)
        took = time.perf_counter() - started
        worker.close()
    if len(report.delivered) != effects:
        raise SystemExit(f"delivered {len(report.delivered)} of {effects}")
    return took, effects / took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 rollouts, 5,000 effects")
    args = parser.parse_args(argv)
    many, effects = (1_000, 5_000) if args.quick else (10_000, 100_000)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    print(f"certflow worker benchmark ({platform.python_implementation()} "
          f"{platform.python_version()}, SQLite)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        few = idle_pass(folder, 10, url)
        lots = idle_pass(folder, many, url)
        print(f"idle pass: {1000 * few:.2f} ms at 10 rollouts, {1000 * lots:.2f} ms at "
              f"{many:,} ({lots / few:.0f}x)")  # fmt: skip
        took, rate = backlog(folder, effects, url)
        verdict = "ok" if rate >= RATE_TARGET else f"BELOW the {RATE_TARGET:.0f}/s target"
        print(f"backlog: {effects:,} webhook effects in {took:.1f} s = {rate:.0f} effects/s "
              f"({verdict})")  # fmt: skip
    server.shutdown()
    return 0 if rate >= RATE_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
