"""The worker's loop: tick every rollout with something due, deliver every due effect,
sleep until the next due instant (at most ``poll_interval``), repeat; or one pass.

This is the one place of the library that reads the clock: once per pass, and the
instant is passed down to the store and the handlers. Durations (how long a handler
took, how long a batch has been leased) are measured on the monotonic clock.

A pass with nothing due costs two index reads and a lease that finds nothing, however
many rollouts the store holds: the store's ``next_due()`` says whether anything fell
due, and only then does the pass tick (the store's ``tick`` looks at every running
rollout). While a backlog drains, the loop's passes are short (:data:`PASS_BUDGET`), so
a timer that falls due meanwhile is ticked within about that long.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import attrs

from certflow.core.errors import InvalidInput
from certflow.store import (
    SqliteStore,
    SqlStore,
    StoreBusy,
    StoredEffect,
    retrying,
    without_password,
)
from certflow.worker._config import EFFECT_KINDS, Config, WorkerSettings
from certflow.worker._deliver import Delivery, Unacknowledged, deliver
from certflow.worker._exec import ExecHandler
from certflow.worker._log import EventLog
from certflow.worker._metrics import Metrics
from certflow.worker._payload import Handler
from certflow.worker._smtp import SmtpHandler
from certflow.worker._webhook import WebhookHandler

__all__ = ["PassReport", "Worker", "build_handlers", "open_worker_store", "real_clock"]

T = TypeVar("T")

#: How far behind a rollout's clock the worker's real clock may read (another process
#: that read its clock a moment later may have advanced the rollout first): as the
#: command line allows.
REAL_CLOCK_SKEW = timedelta(seconds=5)

#: Seconds a pass of the loop leases new batches for before it ends and the next pass
#: reads the clock again: a timer that falls due while a backlog drains is ticked
#: within about this long plus one batch's deliveries (the lag metric says how late).
PASS_BUDGET = 0.5

#: The longest pause after the database was found busy or unreachable (a PostgreSQL
#: restart), before the loop tries again; shorter when ``poll_interval`` is.
UNAVAILABLE_PAUSE = timedelta(seconds=5)


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
    """What one pass did: the earliest instant due when it began (``due``; ``None`` when
    nothing was, and then it did not tick), the effects the tick placed in the outbox,
    the deliveries, and whether it stopped with due effects left (``more``: a bounded
    pass ran out of time, or a stop was asked)."""

    now: datetime
    ticked: list[StoredEffect] = attrs.Factory(list)
    deliveries: list[Delivery] = attrs.Factory(list)
    more: bool = False
    due: datetime | None = None

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
        # Deliveries whose handlers all succeeded while the database could not take the
        # acknowledgement: owed, and made first thing in the next pass (acknowledging
        # twice is harmless, so this holds even if another worker took the effect over).
        self.unacknowledged: list[Delivery] = []
        # The effects of a batch that this worker leased (at that monotonic instant) and
        # had not begun when the database failed the pass: the next pass delivers them
        # while the lease has room, rather than leave them until the lease runs out.
        self.held: tuple[list[StoredEffect], float] | None = None
        timeouts = [s.timeout for s in (config.smtp, config.webhook, config.exec) if s is not None]
        # A delivery begun later than this into its lease might outlast the lease, and
        # another worker would take the effect over meanwhile: it is left for then.
        self._margin = max([*timeouts, timedelta(seconds=1)])

    def retry(self, operation: Callable[[], T]) -> T:
        """``operation()`` (a store call) through :func:`~certflow.store.retrying`, each
        back-off logged (``store_retry``: the error, the pause): a restarted database
        that answers again within the retries is seen in the log too."""
        failed: list[StoreBusy] = []

        def attempt() -> T:
            try:
                return operation()
            except StoreBusy as error:
                failed.append(error)
                raise

        def pause(seconds: float) -> None:
            self.log.event("store_retry", error=str(failed[-1]), retry_in_s=seconds)
            time.sleep(seconds)

        return retrying(attempt, sleep=pause)

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
        self._acknowledge_owed(now, report)
        # An index read: with nothing due the tick, which looks at every running
        # rollout, is not run.
        due = self.retry(self.store.next_due)
        if due is not None and due <= now:
            report.due = due
            self._tick(now, due, report)
        settings = self.config.worker
        while not self.stop.is_set():
            if budget is not None and time.monotonic() - started > budget:
                report.more = True
                break
            if self.held:  # what a pass given up had leased and not begun
                (batch, leased), self.held = self.held, None
                full = True  # more may be due behind them
            else:
                batch = self.retry(
                    lambda: self.store.lease(
                        now=now, duration=settings.lease, kinds=self.kinds, limit=settings.batch
                    )
                )
                if not batch:
                    break
                leased = time.monotonic()
                full = len(batch) == settings.batch
            for n, stored in enumerate(batch):
                elapsed = timedelta(seconds=time.monotonic() - leased)
                if self.stop.is_set() or elapsed + self._margin > settings.lease:
                    report.more = True
                    break
                # Should the database fail this delivery's record, the pass is given up
                # and the rest of the batch, still leased to this worker, kept for the next.
                self.held = (batch[n + 1 :], leased)
                report.deliveries.append(self._deliver(stored, now))
            self.held = None
            if not full:
                break
        report.more = report.more or self.stop.is_set()
        return report

    def _acknowledge_owed(self, now: datetime, report: PassReport) -> None:
        if not self.unacknowledged:
            return
        owed = self.unacknowledged
        self.retry(lambda: self.store.acknowledge([d.stored.id for d in owed], now))
        self.unacknowledged = []
        report.deliveries += owed
        for delivery in owed:
            self.log.event(
                "acknowledged", rollout=delivery.stored.rollout, effect=delivery.stored.id
            )
            if self.metrics is not None:
                self.metrics.acknowledged.inc()

    def _tick(self, now: datetime, due: datetime, report: PassReport) -> None:
        began = time.perf_counter()
        ticked = self.retry(lambda: self.store.tick(now))
        report.ticked = list(ticked)
        if not ticked.changed:
            return
        # How late after the earliest due instant the tick ran (another worker may have
        # ticked it meanwhile: then nothing changed here and nothing is measured).
        lag = (now - due).total_seconds()
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
        try:
            delivery = deliver(
                self.store,
                stored,
                self.handlers_for(stored),
                now,
                redact=self.log.redact,
                retry=self.retry,
            )
        except Unacknowledged as owed:
            # Delivered: say so, and owe the acknowledgement until the database answers.
            self._log_attempts(owed.delivery)
            self.unacknowledged.append(owed.delivery)
            self.log.event(
                "unacknowledged", rollout=stored.rollout, effect=stored.id, error=str(owed)
            )
            raise
        self._log_attempts(delivery)
        if delivery.status == "dead":
            self.log.event(
                "dead", rollout=stored.rollout, effect=stored.id, kind=type(stored.effect).__name__
            )
        if self.metrics is not None:
            if delivery.status == "delivered":
                self.metrics.acknowledged.inc()
            elif delivery.status == "dead":
                self.metrics.dead.inc()
        retry = delivery.retry_at
        if retry is not None and (self._next_retry is None or retry < self._next_retry):
            self._next_retry = retry
        return delivery

    def _log_attempts(self, delivery: Delivery) -> None:
        stored = delivery.stored
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

    def next_wakeup(self, now: datetime) -> datetime:
        """When the loop passes next: the store's next due instant or this worker's next
        retry, at most ``poll_interval`` after ``now`` (effects other processes queue,
        and their retries, are found by then)."""
        wake = now + self.config.worker.poll_interval
        for due in (self.retry(self.store.next_due), self._next_retry):
            if due is not None and due < wake:
                wake = due
        if self._next_retry is not None and self._next_retry <= now:
            self._next_retry = None
        return max(wake, now)

    @property
    def pass_budget(self) -> float:
        """Seconds each pass of :meth:`run` and :meth:`once` leases new batches for:
        :data:`PASS_BUDGET`, or less with a short lease."""
        return min(PASS_BUDGET, self.config.worker.lease.total_seconds() / 2)

    def run(self, clock: Callable[[], datetime] = real_clock) -> None:
        """Pass after pass until :attr:`stop` is set, each at ``clock()``; a pass that left
        due effects is followed at once by the next, otherwise the worker sleeps until
        :meth:`next_wakeup`. A database busy or unreachable past
        :func:`~certflow.store.retrying`'s attempts (a PostgreSQL restart) gives the pass
        up: logged (``store_unavailable``), and tried again after a pause; what a
        handler delivered meanwhile is acknowledged once the database answers."""
        pause = min(UNAVAILABLE_PAUSE, self.config.worker.poll_interval).total_seconds()
        while not self.stop.is_set():
            try:
                now = clock()
                report = self.run_pass(now, budget=self.pass_budget)
                if report.more:
                    continue
                wake = self.next_wakeup(now)
            except StoreBusy as error:
                self.log.event("store_unavailable", error=str(error), retry_in_s=pause)
                self.stop.wait(pause)
                continue
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
        while not self.stop.is_set():
            reports.append(self.run_pass(clock(), budget=self.pass_budget))
            if not reports[-1].more:
                break
        return reports

    def close(self) -> None:
        """Close the handlers that hold connections (the store is the caller's)."""
        for handler in self.handlers.values():
            closer = getattr(handler, "close", None)
            if callable(closer):
                closer()
