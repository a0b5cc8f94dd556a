"""The database failing under a running worker (issue 19, faults): busy past the store's
retries while the loop delivers (both backends), and the PostgreSQL server restarted
while two ``certflow worker`` processes deliver. Real servers throughout: the database,
the webhook receiver, the worker's own processes.

What the loop promises (docs/worker.md, Guarantees): it logs ``store_unavailable``,
pauses, and carries on; an effect whose handlers succeeded while the database could not
take the acknowledgement is acknowledged once the database answers, so it is not
delivered again; every effect ends acknowledged.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import PostgresStore, SqliteStore, SqlStore, Store, StoredEffect
from certflow.worker import EventLog, Worker
from tests.backends import Backend, PostgresBackend
from tests.worker.helpers import config_text, make_config
from tests.worker.servers import WebhookServer
from tests.worker.test_cli import CERTFLOW, wait_for
from tests.worker.timeline import T0, start


class Lines(io.StringIO):
    """A log stream that keeps each JSON line as a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.events += [json.loads(line) for line in text.splitlines() if line]
        return len(text)

    def named(self, event: str) -> list[dict[str, object]]:
        with self.lock:
            return [e for e in self.events if e["event"] == event]


class LockingHandler:
    """A webhook stand-in written as worker.md's "Writing a handler in Python" says:
    records each effect id it is given; on the ``lock_at``-th call another connection
    takes every write of the database (``Backend.write_lock_held``) for ``hold``
    seconds before the handler returns, so the acknowledgement that follows meets it."""

    name = "webhook"

    def __init__(self, backend: Backend, lock_at: int, hold: float) -> None:
        self.backend, self.lock_at, self.hold = backend, lock_at, hold
        self.calls: list[str] = []
        self.released = threading.Event()

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        self.calls.append(stored.id)
        if len(self.calls) == self.lock_at:
            taken = threading.Event()
            # Its own thread: an SQLite connection stays in the thread that opened it.
            threading.Thread(target=self._hold, args=(taken,), daemon=True).start()
            assert taken.wait(30), "the other connection did not get the lock"

    def _hold(self, taken: threading.Event) -> None:
        with self.backend.write_lock_held():
            taken.set()
            time.sleep(self.hold)
        self.released.set()


def quick_store(backend: Backend) -> SqlStore:
    """The worker's store, waiting 0.2 s for a lock (not 5 s): ``retrying`` gives up
    after about 4 s instead of 40."""
    options = {"create": False, "busy_timeout": 0.2, "retry_backoff": timedelta(seconds=30)}
    if isinstance(backend, PostgresBackend):
        return PostgresStore(backend.url, schema=backend.schema, **options)  # type: ignore[arg-type]
    return SqliteStore(backend.target, **options)  # type: ignore[arg-type]


def clock_from(instant: datetime) -> Callable[[], datetime]:
    """The real clock's progress, from ``instant`` on."""
    began = time.monotonic()
    return lambda: instant + timedelta(seconds=time.monotonic() - began)


def pending(backend: Backend) -> int:
    """Effects still to deliver (neither acknowledged, superseded nor dead), read
    through the standard driver."""
    [(count,)] = backend.query(
        "SELECT COUNT(*) FROM outbox WHERE acked_at IS NULL AND superseded_at IS NULL "
        "AND dead_at IS NULL"
    )
    return int(count)


def test_a_busy_database_during_the_loop_is_logged_and_retried(
    backend: Backend, tmp_path: Path
) -> None:
    """Another connection holds every write for 7 s, taken while the 5th effect is being
    delivered: its acknowledgement (with those of any effects the webhook's lane
    delivered meanwhile) fails past the retries, the loop logs it (``unacknowledged``,
    ``store_unavailable``), pauses, acknowledges it once the lock is gone
    (``acknowledged``) and delivers the rest. Each effect reaches the handler exactly
    once."""
    with backend.open() as setup:
        start(setup)
        setup.apply_all("r", [cf.Enroll(f"e{i}") for i in range(30)], T0 + timedelta(hours=2))
        expected = sorted(e.id for e in setup.effects("r"))
    assert len(expected) == 31
    config = make_config(tmp_path, webhook_url="http://127.0.0.1:9/unused", worker=(
        'poll_interval = "1s"\nbatch = 4'
    ))  # fmt: skip
    handler = LockingHandler(backend, lock_at=5, hold=7.0)
    log = Lines()
    opened: list[Worker] = []
    ready = threading.Event()

    def work() -> None:  # the store is used in the thread that opened it
        with quick_store(backend) as store:
            opened.append(
                Worker(store, config, {"webhook": handler}, log=EventLog("json", stream=log))
            )
            ready.set()
            opened[0].run(clock_from(T0 + timedelta(hours=3)))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        # Done when every effect is acknowledged, the lock is gone and each late
        # acknowledgement is logged (whether any was owed depends on the lanes' timing).
        wait_for(
            lambda: (
                pending(backend) == 0
                and handler.released.is_set()
                and len(log.named("acknowledged")) == len(log.named("unacknowledged"))
            ),
            seconds=90,
        )
    finally:
        if opened:
            opened[0].stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert handler.released.is_set()
    assert sorted(handler.calls) == expected
    assert Counter(handler.calls).most_common(1)[0][1] == 1  # exactly once each
    # Acknowledgements met the lock: those of the effects whose delivery finished while
    # it was held (the loop acknowledges what has finished together, so which ones
    # depends on the lane's timing and the load).
    unacknowledged = log.named("unacknowledged")
    owed = [str(e["effect"]) for e in unacknowledged]
    assert set(owed) <= set(handler.calls)
    assert len(set(owed)) == len(owed)
    assert all("delivered but not acknowledged" in str(e["error"]) for e in unacknowledged)
    unavailable = log.named("store_unavailable")
    assert unavailable
    assert unavailable[0]["retry_in_s"] == 1.0
    # Each back-off before it was logged too, with the error naming the database.
    retries = log.named("store_retry")
    assert len(retries) >= 7
    location = backend.target if backend.name == "sqlite" else backend.target.split("@")[-1]
    assert all(location in str(e["error"]) for e in retries), retries[0]
    assert [e["effect"] for e in log.named("acknowledged")] == owed  # each once, when it could
    order = [e["event"] for e in log.events]
    if owed:  # an acknowledgement met the lock: owed first, paid once the lock was gone
        assert order.index("unacknowledged") < order.index("store_unavailable")
        assert order.index("store_unavailable") < order.index("acknowledged")
    with backend.open(create=False) as check:
        stored = {e.id: e for e in check.effects("r", include_acknowledged=True)}
        assert {e.status for e in stored.values()} == {"acknowledged"}
        # Not failures: delivered, acknowledged late.
        assert [stored[i].failures for i in owed] == [0] * len(owed)
    backend.check_consistent("r")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_postgresql_restart_while_two_workers_deliver(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    """Two ``certflow worker`` processes drain 600 pushes (and what their first tick
    adds) from one PostgreSQL database
    through a webhook that takes 10 ms an answer; the server is restarted (fast
    shutdown: every connection cut) once 100 have arrived. Each worker logs the lost
    connection, reconnects and carries on, and exits 0 on SIGTERM; every effect ends
    acknowledged and reached the webhook at least once (docs/worker.md: a connection
    cut while a lease committed leaves its effects to the lease, and one cut after a
    handler succeeded may have them delivered again)."""
    assert isinstance(backend, PostgresBackend)
    with backend.open() as setup:
        start(setup)
        for first in range(0, 599, 200):
            enrol = [cf.Enroll(f"e{i}") for i in range(first, min(first + 200, 599))]
            setup.apply_all("r", enrol, T0 + timedelta(hours=2))
    path = tmp_path / "worker.toml"
    # A lease of 10 s: what a cut connection leaves leased is taken over in a test's time.
    path.write_text(
        config_text(tmp_path, webhook_url=webhook.url, worker='poll_interval = "1s"\nbatch = 10')
        .replace('lease = "5m"', 'lease = "10s"')
    )  # fmt: skip
    webhook.mode, webhook.hang = "hang", 0.01
    # Logs to files: a pipe nobody reads until the end would fill and stop the worker.
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    args = ["worker", "--db", backend.url, "--config", str(path), "--log-format", "json"]
    workers = []
    for log in logs:
        with log.open("w") as sink:
            workers.append(subprocess.Popen([*CERTFLOW, *args], stdout=sink, stderr=sink))
    try:
        wait_for(lambda: len(webhook.requests) >= 100, seconds=120)
        backend.server.restart()
        restarted = len(webhook.requests)
        assert restarted < 600  # the restart came while they delivered
        wait_for(lambda: pending(backend) == 0, seconds=240)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(60)
    events = [[json.loads(line) for line in log.read_text().splitlines()] for log in logs]
    assert [p.returncode for p in workers] == [0, 0], [e[-5:] for e in events]
    for mine in events:
        names = [e["event"] for e in mine]
        assert (names[0], names[-1]) == ("started", "stopped")
        # It met the cut connection and said so, naming the database and the cause...
        noticed = [n for n, e in enumerate(mine) if e["event"] == "store_retry"]
        assert noticed, names[-20:]
        # (the server's goodbye, a refused connection, or a connection lost mid-commit,
        # depending on what the worker was doing when the server went down)
        cause = str(mine[noticed[0]]["error"])
        assert any(
            said in cause
            for said in ("terminating connection", "cannot connect", "connection was lost")
        ), cause
        assert backend.url.rsplit("/", 1)[1] in str(mine[noticed[0]]["error"])
        # ... and went on delivering.
        assert "delivery" in names[noticed[-1] :]
    with backend.open(create=False) as check:
        everything = check.effects("r", include_acknowledged=True)
    # The loop follows the real clock, months past the timeline's start: its tick runs
    # the rollout to its end, which supersedes what had not been delivered by then.
    assert {e.status for e in everything} <= {"acknowledged", "superseded"}
    stored = [e for e in everything if e.status == "acknowledged"]
    assert len(stored) >= 600
    delivered = Counter(webhook.ids())
    assert sorted(delivered) == sorted(e.id for e in stored)  # none lost, none foreign
    again = sum(n - 1 for n in delivered.values())
    # A second delivery follows a lease the cut left behind: the attempts say so.
    assert sum(e.attempts - 1 for e in stored) >= again
    backend.check_consistent("r")
    print(f"restart after {restarted} of {len(stored)} deliveries; delivered again: {again}")
