"""The worker's loop: tick every rollout with something due, deliver every due effect,
sleep until the next due instant (at most ``poll_interval``), repeat; or one pass.

This is the one place of the library that reads the clock: once per pass, and the
instant is passed down to the store and the handlers. Durations (how long a handler
took, how long a batch has been leased) are measured on the monotonic clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import attrs

from certflow.core.errors import InvalidInput
from certflow.store import SqliteStore, SqlStore, StoredEffect, retrying, without_password
from certflow.worker._config import EFFECT_KINDS, Config, WorkerSettings
from certflow.worker._deliver import Delivery, deliver
from certflow.worker._exec import ExecHandler
from certflow.worker._log import EventLog
from certflow.worker._metrics import Metrics
from certflow.worker._payload import Handler
from certflow.worker._smtp import SmtpHandler
from certflow.worker._webhook import WebhookHandler

__all__ = ["PassReport", "Worker", "build_handlers", "open_worker_store", "real_clock"]

#: How far behind a rollout's clock the worker's real clock may read (another process
#: that read its clock a moment later may have advanced the rollout first): as the
#: command line allows.
REAL_CLOCK_SKEW = timedelta(seconds=5)


def real_clock() -> datetime:
    """The current instant, in UTC: what the loop reads once per pass."""
    return datetime.now(UTC)


def open_worker_store(
    target: str | os.PathLike[str],
    settings: WorkerSettings,
    *,
    clock_skew: timedelta = timedelta(0),
) -> SqlStore:
    """The existing store at ``target`` (as :func:`certflow.store.open_store` reads it),
    with the configuration's delivery record: ``max_attempts``, and ``backoff`` doubled
    after each failure up to ``backoff_limit`` (the store's ``retry_backoff`` and
    ``retry_backoff_limit``)."""
    text = os.fspath(target)
    options = {
        "create": False,
        "clock_skew": clock_skew,
        "max_attempts": settings.max_attempts,
        "retry_backoff": settings.backoff,
        "retry_backoff_limit": max(settings.backoff_limit, settings.backoff),
    }
    if text.startswith(("postgresql://", "postgres://")):
        from certflow.store import PostgresStore

        return PostgresStore(text, **options)  # type: ignore[arg-type]
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise InvalidInput(
            f"database {without_password(text)!r}: unknown URL scheme; give a file path or a "
            "postgresql:// URL"
        )
    return SqliteStore(text, **options)  # type: ignore[arg-type]


def build_handlers(config: Config) -> dict[str, Handler]:
    """The handlers the configuration sets up, by name."""
    handlers: dict[str, Handler] = {}
    if config.smtp is not None:
        handlers["smtp"] = SmtpHandler(config.smtp)
    if config.webhook is not None:
        handlers["webhook"] = WebhookHandler(config.webhook)
    if config.exec is not None:
        handlers["exec"] = ExecHandler(config.exec)
    return handlers


@attrs.define
class PassReport:
    """What one pass did: the effects the tick placed in the outbox, the deliveries, and
    whether it stopped with due effects left (``more``: a bounded pass ran out of time,
    or a stop was asked)."""

    now: datetime
    ticked: list[StoredEffect] = attrs.Factory(list)
    deliveries: list[Delivery] = attrs.Factory(list)
    more: bool = False

    @property
    def delivered(self) -> list[str]:
        """The ids acknowledged in this pass."""
        return [d.stored.id for d in self.deliveries if d.status == "delivered"]


class Worker:
    """Keeps a store's time and delivers its effects through ``handlers`` (by name, as
    the routes name them; by default those ``config`` sets up).

    ``stop`` (a :class:`threading.Event`) asks the worker to stop: the delivery in
    progress finishes and is acknowledged, then :meth:`run` and :meth:`run_pass`
    return. Effects it had leased and not begun wait for their lease to run out
    (``lease``), then any worker takes them.
    """

    def __init__(
        self,
        store: SqlStore,
        config: Config,
        handlers: Mapping[str, Handler] | None = None,
        *,
        log: EventLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.handlers = dict(build_handlers(config) if handlers is None else handlers)
        self.log = log or EventLog(secrets=config.secrets)
        self.metrics = metrics
        self.stop = threading.Event()
        self.kinds = sorted(k for k in EFFECT_KINDS if config.route(k))
        missing = {n for k in self.kinds for n in config.route(k)} - set(self.handlers)
        if missing:
            raise InvalidInput(f"no handler named {', '.join(sorted(missing))} was given")
        # The earliest retry this worker's failures asked for: the loop wakes for it.
        self._next_retry: datetime | None = None
        timeouts = [s.timeout for s in (config.smtp, config.webhook, config.exec) if s is not None]
        # A delivery begun later than this into its lease might outlast the lease, and
        # another worker would take the effect over meanwhile: it is left for then.
        self._margin = max([*timeouts, timedelta(seconds=1)])

    def handlers_for(self, stored: StoredEffect) -> Sequence[Handler]:
        """The handlers the routes give ``stored``'s kind, in route order."""
        return [self.handlers[n] for n in self.config.route(type(stored.effect).__name__)]

    def run_pass(self, now: datetime, *, budget: float | None = None) -> PassReport:
        """One pass at ``now``: tick what fell due, then deliver every due effect, leased
        ``batch`` at a time. ``budget`` (seconds): stop leasing new batches after that
        long (the loop then reads the clock again, so that leases start at the real
        instant); ``None``: until nothing is due."""
        started = time.monotonic()
        report = PassReport(now)
        if self.metrics is not None:
            self.metrics.passes.inc()
        self._tick(now, report)
        settings = self.config.worker
        while not self.stop.is_set():
            if budget is not None and time.monotonic() - started > budget:
                report.more = True
                break
            batch = retrying(
                lambda: self.store.lease(
                    now=now, duration=settings.lease, kinds=self.kinds, limit=settings.batch
                )
            )
            if not batch:
                break
            leased = time.monotonic()
            for stored in batch:
                elapsed = timedelta(seconds=time.monotonic() - leased)
                if self.stop.is_set() or elapsed + self._margin > settings.lease:
                    report.more = True
                    break
                report.deliveries.append(self._deliver(stored, now))
            if len(batch) < settings.batch:
                break
        report.more = report.more or self.stop.is_set()
        return report

    def _tick(self, now: datetime, report: PassReport) -> None:
        began = time.perf_counter()
        ticked = retrying(lambda: self.store.tick(now))
        report.ticked = list(ticked)
        if not ticked.changed:
            return
        lag = max(((now - e.due_at).total_seconds() for e in ticked), default=0.0)
        if self.metrics is not None:
            self.metrics.ticks.inc()
            self.metrics.tick_lag.set(lag)
        rollouts = sorted({e.rollout for e in ticked})
        self.log.event(
            "tick",
            now=now.isoformat(),
            rollouts=",".join(rollouts) or "-",
            effects=len(ticked),
            lag_s=round(lag, 3),
            duration_ms=round(1000 * (time.perf_counter() - began), 2),
        )

    def _deliver(self, stored: StoredEffect, now: datetime) -> Delivery:
        delivery = deliver(
            self.store, stored, self.handlers_for(stored), now, redact=self.log.redact
        )
        for attempt in delivery.attempts:
            self.log.event(
                "delivery",
                rollout=attempt.rollout,
                effect=attempt.effect_id,
                kind=attempt.kind,
                handler=attempt.handler,
                outcome=attempt.outcome,
                duration_ms=round(1000 * attempt.seconds, 2),
                attempt=stored.attempts,
                error=attempt.error,
            )
            if self.metrics is not None:
                self.metrics.attempt(attempt)
        if delivery.status == "dead":
            self.log.event("dead", rollout=stored.rollout, effect=stored.id, kind=attempt.kind)
        if self.metrics is not None:
            if delivery.status == "delivered":
                self.metrics.acknowledged.inc()
            elif delivery.status == "dead":
                self.metrics.dead.inc()
        retry = delivery.retry_at
        if retry is not None and (self._next_retry is None or retry < self._next_retry):
            self._next_retry = retry
        return delivery

    def next_wakeup(self, now: datetime) -> datetime:
        """When the loop passes next: the store's next due instant or this worker's next
        retry, at most ``poll_interval`` after ``now`` (effects other processes queue,
        and their retries, are found by then)."""
        wake = now + self.config.worker.poll_interval
        for due in (retrying(self.store.next_due), self._next_retry):
            if due is not None and due < wake:
                wake = due
        if self._next_retry is not None and self._next_retry <= now:
            self._next_retry = None
        return max(wake, now)

    def run(self, clock: Callable[[], datetime] = real_clock) -> None:
        """Pass after pass until :attr:`stop` is set, each at ``clock()``; a pass that left
        due effects is followed at once by the next, otherwise the worker sleeps until
        :meth:`next_wakeup`."""
        budget = self.config.worker.lease.total_seconds() / 2
        while not self.stop.is_set():
            now = clock()
            report = self.run_pass(now, budget=budget)
            if report.more:
                continue
            wake = self.next_wakeup(now)
            self.stop.wait(max((wake - clock()).total_seconds(), 0.0))

    def once(
        self, now: datetime | None = None, clock: Callable[[], datetime] = real_clock
    ) -> list[PassReport]:
        """What ``--once`` does: at ``now``, one pass until nothing is due; without it,
        passes at ``clock()`` until nothing due is left (each pass's leases start at its
        own instant)."""
        if now is not None:
            return [self.run_pass(now)]
        reports = []
        budget = self.config.worker.lease.total_seconds() / 2
        while not self.stop.is_set():
            reports.append(self.run_pass(clock(), budget=budget))
            if not reports[-1].more:
                break
        return reports

    def close(self) -> None:
        """Close the handlers that hold connections (the store is the caller's)."""
        for handler in self.handlers.values():
            closer = getattr(handler, "close", None)
            if callable(closer):
                closer()
