"""What a pass costs (issue 19, scale), structurally: with nothing due, a pass runs the
same statements at 10 rollouts as at 200 (no tick, which looks at every running
rollout; the next due instant from the store's indexes), and on SQLite the same number
of virtual machine instructions. While a backlog drains, the loop's passes are short,
so a timer that falls due meanwhile is ticked before the backlog is through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import certflow as cf
from certflow.store import SqliteStore, SqlStore
from certflow.worker import EventLog, Worker, open_worker_store
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build
from tests.worker.helpers import make_config
from tests.worker.servers import WebhookServer


def idle_rollouts(store: SqlStore, count: int) -> None:
    """``count`` distributing rollouts of one device each, whose push was delivered: each
    waits for its device's answer (a deadline 6 hours on) and its first notice."""
    for k in range(count):
        name = f"r{k:04d}"
        store.create(name, build(1, policy=cf.Policy(ack_timeout=6 * HOUR)))
        store.apply(name, cf.DistributeRoot(), T0)
    store.acknowledge([e.id for e in store.effects()], T0)


@contextmanager
def recorded(store: SqlStore) -> Iterator[list[str]]:
    """The statements ``store`` runs meanwhile."""
    seen: list[str] = []
    run = store._q

    def record(sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return run(sql, params)

    store._q = record  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del store._q


def idle_pass(worker: Worker, now: datetime) -> None:
    report = worker.run_pass(now)
    assert (report.due, report.ticked, report.deliveries) == (None, [], [])
    assert worker.next_wakeup(now) == T0 + 6 * HOUR  # the deadlines, from the index


def test_an_idle_pass_runs_the_same_statements_at_10_and_at_200_rollouts(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url, worker='poll_interval = "1d"')
    statements = {}
    for count in (10, 200):
        with backend.fresh() as store:
            idle_rollouts(store, count)
            worker = Worker(store, config, log=EventLog("text", stream=open("/dev/null", "w")))  # noqa: SIM115
            idle_pass(worker, T0 + HOUR)  # a first pass may prepare statements
            with recorded(store) as seen:
                idle_pass(worker, T0 + HOUR)
            statements[count] = seen
            worker.close()
    assert statements[10] == statements[200]
    # The tick's look at every running rollout is not among them.
    assert not [s for s in statements[10] if "EXISTS" in s], statements[10]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_idle_pass_does_the_same_work_at_10_and_at_200_rollouts(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    """Counted in SQLite's virtual machine instructions (a progress handler called at
    each), across the whole pass: next_due, the lease, the next wake-up."""
    config = make_config(tmp_path, webhook_url=webhook.url, worker='poll_interval = "1d"')
    work = {}
    for count in (10, 200):
        with backend.fresh() as store:
            assert isinstance(store, SqliteStore)
            idle_rollouts(store, count)
            worker = Worker(store, config, log=EventLog("text", stream=open("/dev/null", "w")))  # noqa: SIM115
            idle_pass(worker, T0 + HOUR)
            steps = 0

            def step() -> int:
                nonlocal steps
                steps += 1
                return 0

            store._db.set_progress_handler(step, 1)
            idle_pass(worker, T0 + HOUR)
            store._db.set_progress_handler(None, 1)
            work[count] = steps
            worker.close()
    assert work[10] == work[200], work
    assert work[10] > 0


def clock_from(instant: datetime) -> Callable[[], datetime]:
    """The real clock's progress, from ``instant`` on."""
    began = time.monotonic()
    return lambda: instant + timedelta(seconds=time.monotonic() - began)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_timer_due_while_a_backlog_drains_is_ticked_before_it_ends(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    """2,000 pushes due at once (at least 4 s of deliveries: the webhook takes 2 ms an
    answer), and rollout ``t`` whose device's answer is due 1 s into the drain: the loop
    ticks it while the backlog drains (its journal's instant is before hundreds of the
    pushes were acknowledged), as one long pass begun at the drain's start would not.
    (Its effect, due after the backlog's, is leased after it: the lease's order is the
    due instant's.)"""
    with backend.open() as store:
        store.create("r", build(1))
        store.apply("r", cf.DistributeRoot(), T0)
        for first in range(0, 2_000, 500):
            store.apply_all("r", [cf.Enroll(f"e{i}") for i in range(first, first + 500)], T0)
        store.create("t", build(1, at=T0 - HOUR, policy=cf.Policy(ack_timeout=HOUR)))
        store.apply("t", cf.DistributeRoot(), T0 - HOUR + timedelta(seconds=1))
        store.acknowledge([e.id for e in store.effects("t")], T0)
        deadline = store.next_due("t")
        assert deadline == T0 + timedelta(seconds=1)
        backlog = len(store.effects("r"))
    config = make_config(tmp_path, webhook_url=webhook.url, worker="batch = 20")
    # However fast the machine, the drain outlasts the deadline by seconds.
    webhook.mode, webhook.hang = "hang", 0.002
    started = threading.Event()
    ready: list[Worker] = []

    def work() -> None:
        with open_worker_store(backend.target, config.worker) as store:
            ready.append(Worker(store, config, log=EventLog("text", stream=open("/dev/null", "w"))))  # noqa: SIM115
            started.set()
            ready[0].run(clock_from(T0))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        deadline_at = time.monotonic() + 300
        while len(webhook.requests) < backlog + 1 and time.monotonic() < deadline_at:
            time.sleep(0.05)
    finally:
        ready[0].stop.set()
        thread.join(30)
    with backend.open(create=False) as check:
        pushes = check.effects("r", include_acknowledged=True)
        [tick] = [e for e in check.journal("t") if e.kind == "advance"]
        assert {e.status for e in pushes} == {"acknowledged"}
        assert [e.status for e in check.effects("t", include_acknowledged=True)][-1] == (
            "acknowledged"
        )
    assert deadline <= tick.at
    after = [e for e in pushes if e.acked_at is not None and e.acked_at > tick.at]
    assert len(after) > 100, (len(after), tick.at - deadline)
