"""Each handler in a lane of its own (certflow/worker/_lanes.py; docs/worker.md,
Guarantees: "a slow or failing handler delays only its own effects"), against the real
SMTP server (aiosmtpd) and a webhook receiver that hangs, on both backends.

The SMTP handler reads the store (a notice's attachment lists the devices) from its
lane's thread; an SQLite connection refuses any thread but its own, so every e-mail
delivered here is also a store read that the loop's thread ran for the lane.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import Store, StoredEffect
from certflow.worker import Config, EventLog, Worker, effect_id_of, open_worker_store
from tests.backends import Backend
from tests.worker.helpers import make_config
from tests.worker.servers import SmtpServer, WebhookServer
from tests.worker.timeline import day, start

# After the first notice of rollouts a, b and c: per rollout a push (due T0), a timeout
# (T0 + 6 h) and a notice (day 6), leased in that order of due instants.
NOW = day(6) + timedelta(hours=1)
ROLLOUTS = ("a", "b", "c")


def quiet() -> EventLog:
    return EventLog("text", stream=open("/dev/null", "w"))


def clock_from(instant: datetime) -> Callable[[], datetime]:
    """The real clock's progress, from ``instant`` on."""
    began = time.monotonic()
    return lambda: instant + timedelta(seconds=time.monotonic() - began)


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``condition()`` held (polled every 10 ms); fails past ``seconds``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > seconds:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)
    return time.monotonic() - began


class Running:
    """``Worker.run`` in a thread of its own (which opens the store, as the command
    does), stopped at the end of the block; ``began``: when the loop started, on the
    monotonic clock."""

    def __init__(self, backend: Backend, config: Config, clock: Callable[[], datetime]) -> None:
        self.backend, self.config, self.clock = backend, config, clock
        self.ready = threading.Event()
        self.workers: list[Worker] = []
        self.began = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open_worker_store(self.backend.target, self.config.worker) as store:
            self.workers.append(Worker(store, self.config, log=quiet()))
            self.began = time.monotonic()
            self.ready.set()
            try:
                self.workers[0].run(self.clock)
            finally:
                self.workers[0].close()

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.workers[0].stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture
def three(backend: Backend) -> Backend:
    with backend.open() as setup:
        for name in ROLLOUTS:
            start(setup, name)
    return backend


def test_a_hanging_webhook_does_not_hold_up_the_emails_behind_it(
    three: Backend, tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer
) -> None:
    """The webhook takes every effect but the notices and never answers within its 5 s
    timeout; the notices go by e-mail only. Leased four at a time in due order, the six
    webhook effects come first and fill the webhook's lane; the notices are leased for
    the SMTP lane all the same and mailed within 2 s, while the webhook's first request
    still hangs. Stopping then finishes that request (its failure recorded) and leaves
    the webhook effects not begun to their leases."""
    config = make_config(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes='"Notify" = ["smtp"]\n"*" = ["webhook"]',
        worker="batch = 4", webhook_timeout="5s",
    )  # fmt: skip
    webhook.mode, webhook.hang = "hang", 30.0
    with Running(three, config, clock_from(NOW)) as running:
        took = wait_for(lambda: len(smtp_server.messages) == 3, seconds=30)
        waited = time.monotonic() - running.began
        assert len(webhook.requests) == 1  # the first push, still unanswered
    # Far below one webhook timeout.
    assert took < 2.0, took
    assert waited < 2.0, waited
    mailed = sorted(str(effect_id_of(m["Message-ID"])) for m in smtp_server.messages)
    assert mailed == ["a:4:1", "b:4:1", "c:4:1"]
    with three.open(create=False) as check:
        stored = {e.id: e for e in check.effects(include_acknowledged=True)}
    assert {i for i, e in stored.items() if e.status == "acknowledged"} == set(mailed)
    first = stored["a:2:0"]
    assert (first.failures, first.last_error) == (1, f"webhook: {webhook.url}: no answer within 5s")
    # Leased (an attempt) but never begun: no failure, left for the lease to run out;
    # the last two timeouts were never leased (the webhook's lane was full).
    others = [stored[i] for i in ("b:2:0", "c:2:0", "a:4:0", "b:4:0", "c:4:0")]
    assert [(e.attempts, e.failures, e.status) for e in others] == [
        (1, 0, "pending"), (1, 0, "pending"), (1, 0, "pending"),
        (0, 0, "pending"), (0, 0, "pending"),
    ]  # fmt: skip


def test_an_effect_of_two_handlers_is_acknowledged_once_both_succeeded(
    three: Backend, tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer
) -> None:
    """The notices go to the SMTP server and the webhook, each in its own lane. With the
    webhook hanging past its timeout, each notice is mailed and its failure recorded
    with the SMTP handler's success ("delivered by smtp; "); once the webhook answers,
    the retry posts each notice and does not mail it again."""
    config = make_config(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes='"Notify" = ["smtp", "webhook"]',
    )  # fmt: skip
    webhook.mode, webhook.hang = "hang", 1.5
    with open_worker_store(three.target, config.worker) as store:
        worker = Worker(store, config, log=quiet())
        report = worker.run_pass(NOW)
        assert sorted((d.stored.id, d.status) for d in report.deliveries) == [
            ("a:4:1", "failed"), ("b:4:1", "failed"), ("c:4:1", "failed"),
        ]  # fmt: skip
        for delivery in report.deliveries:
            assert [(a.handler, a.outcome) for a in delivery.attempts] == [
                ("smtp", "delivered"), ("webhook", "failed"),
            ]  # fmt: skip
        assert len(smtp_server.messages) == 3
        notices = [e for e in store.effects() if isinstance(e.effect, cf.Notify)]
        assert len(notices) == 3
        for pending in notices:
            assert str(pending.last_error).startswith("delivered by smtp; webhook: ")
        webhook.mode = "ok"
        again = worker.run_pass(NOW + timedelta(seconds=30))
        assert sorted(again.delivered) == ["a:4:1", "b:4:1", "c:4:1"]
        for delivery in again.deliveries:
            assert [(a.handler, a.outcome) for a in delivery.attempts] == [
                ("smtp", "skipped"), ("webhook", "delivered"),
            ]  # fmt: skip
        assert len(smtp_server.messages) == 3  # not mailed again
        assert sorted(webhook.ids()) == sorted(["a:4:1", "b:4:1", "c:4:1"] * 2)
        assert not [e for e in store.effects() if isinstance(e.effect, cf.Notify)]
        worker.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_stop_records_what_one_handler_of_an_effect_did(
    three: Backend, tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer
) -> None:
    """Stopped while the webhook's lane is busy with the first push: the push finishes
    and is acknowledged; the notices, already mailed by the SMTP lane but not yet begun
    by the webhook's, are recorded as delivered by smtp (so a later worker only posts
    them); the rest, begun by no handler, wait for their leases."""
    config = make_config(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes='"Notify" = ["smtp", "webhook"]\n"*" = ["webhook"]',
        webhook_timeout="5s",
    )  # fmt: skip
    webhook.mode, webhook.hang = "hang", 3.0  # within its timeout: a success
    with Running(three, config, clock_from(NOW)):
        wait_for(lambda: len(smtp_server.messages) == 3, seconds=30)
        assert len(webhook.requests) == 1
    with three.open(create=False) as check:
        stored = {e.id: e for e in check.effects(include_acknowledged=True)}
    assert [i for i, e in stored.items() if e.status == "acknowledged"] == ["a:2:0"]
    assert webhook.ids() == ["a:2:0"]
    for notice in ("a:4:1", "b:4:1", "c:4:1"):
        assert stored[notice].last_error == (
            "delivered by smtp; webhook: not begun: the worker stopped first"
        )
    assert [stored[i].failures for i in ("b:2:0", "c:2:0", "a:4:0")] == [0, 0, 0]
    webhook.mode = "ok"
    with open_worker_store(three.target, config.worker) as store:
        worker = Worker(store, config, log=quiet())
        worker.run_pass(NOW + timedelta(minutes=10))  # past the leases and the back-off
        assert store.effects() == []
        worker.close()
    assert len(smtp_server.messages) == 3
    assert sorted(webhook.ids()) == sorted(stored)  # each once


def test_an_effect_superseded_while_its_lane_holds_it_is_never_delivered(
    three: Backend, tmp_path: Path, webhook: WebhookServer
) -> None:
    """The webhook's lane holds the pushes of b and c (leased, queued) behind a's, whose
    request hangs; b and c are cancelled meanwhile, which supersedes their pushes in the
    store. Once a's request is answered, the lane skips the superseded pushes: they are
    never posted, and stay superseded (not failed)."""
    config = make_config(
        tmp_path, webhook_url=webhook.url, routes='"*" = ["webhook"]',
        worker="batch = 4", webhook_timeout="5s",
    )  # fmt: skip
    webhook.mode, webhook.hang = "hang", 2.0  # within its timeout: a success
    clock = clock_from(NOW)
    with Running(three, config, clock):
        wait_for(lambda: len(webhook.requests) == 1, seconds=30)
        with three.open(create=False) as other:
            for name in ("b", "c"):
                other.apply(name, cf.Cancel(), clock())
        webhook.mode = "ok"
        wait_for(lambda: "a:4:0" in webhook.ids(), seconds=30)
    posted = webhook.ids()
    assert posted[:2] == ["a:2:0", "a:4:0"]
    assert not {"b:2:0", "c:2:0"} & set(posted)
    with three.open(create=False) as check:
        stored = {e.id: e for e in check.effects(include_acknowledged=True)}
    for push in ("b:2:0", "c:2:0"):
        assert (stored[push].status, stored[push].failures) == ("superseded", 0)


class Interrupted(BaseException):
    """Not an Exception: what the lane itself catches (the handler's failure path
    catches only Exception)."""


def test_a_base_exception_s_text_is_recorded_redacted(three: Backend, tmp_path: Path) -> None:
    """A handler interrupted by a BaseException that quotes the webhook's secret: the
    failure recorded in the store shows ``***`` in its place."""
    config = make_config(tmp_path, webhook_url="http://127.0.0.1:9/unused")
    secret = config.webhook.secret.decode() if config.webhook is not None else ""
    assert secret

    class Quoting:
        name = "webhook"

        def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
            raise Interrupted(f"gave up with secret={secret}")

    handler = Quoting()
    with open_worker_store(three.target, config.worker) as store:
        log = EventLog("text", secrets=config.secrets, stream=io.StringIO())
        worker = Worker(store, config, {"webhook": handler}, log=log)
        report = worker.run_pass(NOW)
        worker.close()
        errors = [e.last_error for e in store.effects() if e.failures]
    assert report.deliveries
    assert errors
    for error in errors:
        assert secret not in str(error)
        assert "secret=***" in str(error)
