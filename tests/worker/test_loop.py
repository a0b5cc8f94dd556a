"""The worker's passes (certflow/worker/_loop.py) on both backends, against the real
SMTP and webhook servers: a 21-day timeline delivered exactly once when nothing fails
and at least once when something does, back-off and dead letters from the configuration,
the SMTP server down then back, a webhook that hangs then recovers, and two workers on
one database."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import SqlStore
from certflow.worker import Config, EventLog, Worker, effect_id_of, open_worker_store
from tests.backends import Backend
from tests.core.strategies import build
from tests.worker.helpers import make_config
from tests.worker.servers import SmtpServer, WebhookServer
from tests.worker.timeline import T0, TIMELINE, day, start

ROUTES = '"Notify" = ["smtp", "webhook"]\n"*" = ["webhook"]'


def worker(backend: Backend, config: Config) -> tuple[SqlStore, Worker]:
    store = open_worker_store(backend.target, config.worker)
    return store, Worker(store, config, log=EventLog("text", secrets=config.secrets))


def every_effect(store: SqlStore) -> list[str]:
    return [e.id for e in store.effects("r", include_acknowledged=True)]


def test_a_21_day_timeline_is_delivered_exactly_once(
    backend: Backend, tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer
) -> None:
    config = make_config(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes=ROUTES,
    )  # fmt: skip
    with backend.open() as setup:
        start(setup)
    store, runner = worker(backend, config)
    with store:
        for now in TIMELINE:
            runner.run_pass(now)
            # Never delivered before its due instant.
            assert all(b["due_at"] <= now.isoformat() for b in webhook.bodies())
        everything = store.effects("r", include_acknowledged=True)
        statuses = Counter(e.status for e in everything)
        assert statuses == {"acknowledged": len(everything)}  # nothing superseded: delivered first
        kinds = Counter(type(e.effect).__name__ for e in everything)
        assert kinds == {
            "PushRoot": 1, "AcknowledgementTimedOut": 1, "Notify": 3, "ImportPostponed": 2,
            "ImportCertificate": 1, "ReenrollmentRequired": 1, "RestartRequired": 1,
        }  # fmt: skip
        assert sorted(webhook.ids()) == sorted(e.id for e in everything)  # each once
        mailed = [effect_id_of(m["Message-ID"]) for m in smtp_server.messages]
        notices = [e.id for e in everything if isinstance(e.effect, cf.Notify)]
        assert mailed == notices
        assert all(e.acked_at is not None and e.acked_at >= e.due_at for e in everything)
        runner.close()


def test_with_failures_every_effect_is_delivered_at_least_once(
    backend: Backend, tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer
) -> None:
    config = make_config(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes=ROUTES,
    )  # fmt: skip
    with backend.open() as setup:
        start(setup)
    store, runner = worker(backend, config)
    with store:
        # The MDM answers 500 for the first push and the first notice; the SMTP server
        # is down for the first notice's day.
        webhook.fail_ids = {"r:2:0", "r:5:0"}
        for now in TIMELINE:
            if now == day(6):
                smtp_server.stop()
            runner.run_pass(now)
            if now == T0:
                webhook.fail_ids.discard("r:2:0")
            if now == day(6):
                smtp_server.start()
                webhook.fail_ids.discard("r:5:0")
        everything = store.effects("r", include_acknowledged=True)
        assert {e.status for e in everything} == {"acknowledged"}
        seen = Counter(webhook.ids())
        assert set(seen) == {e.id for e in everything}
        assert (seen["r:2:0"], seen["r:5:0"]) == (2, 2)  # failed first, delivered later
        first = store.effects("r", include_acknowledged=True)[0]
        assert (first.failures, first.attempts) == (1, 2)
        assert "answered HTTP 500" in str(first.last_error)
        notices = [e.id for e in everything if isinstance(e.effect, cf.Notify)]
        mailed = [str(effect_id_of(m["Message-ID"])) for m in smtp_server.messages]
        assert sorted(mailed) == sorted(notices)  # every notice mailed once: SMTP retried
        runner.close()


def test_back_off_and_dead_letters_follow_the_configuration(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url, worker="max_attempts = 3")
    with backend.open() as setup:
        setup.create("r", build(1))
        setup.apply("r", cf.DistributeRoot(), T0)
    store, runner = worker(backend, config)
    webhook.mode = "500"
    with store:
        steps = [(T0, 1), (T0 + timedelta(seconds=29), 1), (T0 + timedelta(seconds=30), 2),
                 (T0 + timedelta(seconds=89), 2), (T0 + timedelta(seconds=90), 3),
                 (T0 + timedelta(hours=5), 3)]  # fmt: skip
        for now, attempts in steps:
            runner.run_pass(now)
            assert len(webhook.requests) == attempts, now
        [dead] = store.effects("r", dead=True)
        assert (dead.failures, dead.dead_at) == (3, T0 + timedelta(seconds=90))
        # Back-off: 30 s, then doubled: 60 s.
        assert runner.next_wakeup(T0 + timedelta(seconds=90)) <= T0 + timedelta(seconds=150)
        store.revive([dead.id])
        webhook.mode = "ok"
        assert runner.run_pass(T0 + timedelta(hours=5)).delivered == [dead.id]
        assert store.effects("r") == []
        runner.close()


def test_a_hanging_webhook_then_recovering(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url)
    with backend.open() as setup:
        start(setup)
    store, runner = worker(backend, config)
    with store:
        webhook.mode, webhook.hang = "hang", 2.0
        report = runner.run_pass(T0)
        assert [d.status for d in report.deliveries] == ["failed"]
        [pending] = store.effects("r")
        assert pending.last_error == f"webhook: {webhook.url}: no answer within 1s"
        webhook.mode = "ok"
        assert runner.run_pass(T0 + timedelta(seconds=30)).delivered == ["r:2:0"]
        runner.close()


def test_two_workers_on_one_database_deliver_each_effect_once(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url, worker="batch = 5")
    with backend.open() as setup:
        start(setup)
        setup.apply_all("r", [cf.Enroll(f"e{i}") for i in range(120)], T0 + timedelta(hours=2))
    passes: list[list[str]] = []

    def work() -> None:
        store, runner = worker(backend, config)
        with store:
            passes.append(runner.run_pass(T0 + timedelta(hours=3)).delivered)
            runner.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with backend.open() as check:
        everything = [e.id for e in check.effects("r", include_acknowledged=True)]
        assert check.effects("r") == []
    assert len(everything) == 121
    assert sorted(webhook.ids()) == sorted(everything)  # each exactly once
    assert sorted(passes[0] + passes[1]) == sorted(everything)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_stop_finishes_the_delivery_in_progress(
    backend: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url, worker="batch = 50")
    with backend.open() as setup:
        start(setup)
        setup.apply_all("r", [cf.Enroll(f"e{i}") for i in range(20)], T0 + timedelta(hours=2))
    store, runner = worker(backend, config)
    with store:
        webhook.mode, webhook.hang = "hang", 0.3  # each delivery takes 0.3 s (< timeout)
        threading.Timer(0.45, runner.stop.set).start()
        report = runner.run_pass(T0 + timedelta(hours=3))
        assert report.more
        assert report.delivered == webhook.ids()  # what was begun finished, acknowledged
        assert 1 <= len(report.delivered) < 21
        acknowledged = {e.id for e in store.effects("r", include_acknowledged=True) if e.acked_at}
        assert acknowledged == set(report.delivered)
        runner.close()
