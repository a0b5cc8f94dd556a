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
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

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
from certflow.worker._deliver import Delivery, Retry, Unacknowledged, failure_record
from certflow.worker._exec import ExecHandler
from certflow.worker._lanes import InFlight, Job, Lanes
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


class _Stop(threading.Event):
    """A worker's stop event: setting it also wakes the loop while it waits for its
    lanes, so a stop is seen at once rather than at the next report."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake()


class Worker:
    """Keeps a store's time and delivers its effects through ``handlers`` (by name, as
    the routes name them; by default those ``config`` sets up).

    Each handler runs in a lane of its own (a queue and a thread, :mod:`._lanes`), one
    effect at a time in lease order, so a slow or failing handler delays only the
    effects routed to it; the store is used by the thread that runs the passes alone.

    ``stop`` (a :class:`threading.Event`) asks the worker to stop: the deliveries in
    progress finish and are acknowledged, then :meth:`run` and :meth:`run_pass`
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
        self.kinds = sorted(k for k in EFFECT_KINDS if config.route(k))
        # Read by every pass, so worked out once.
        self._routes = {k: config.route(k) for k in self.kinds}
        self._names = sorted({n for route in self._routes.values() for n in route})
        missing = set(self._names) - set(self.handlers)
        if missing:
            raise InvalidInput(f"no handler named {', '.join(sorted(missing))} was given")
        # The earliest retry this worker's failures asked for: the loop wakes for it.
        self._next_retry: datetime | None = None
        # Deliveries whose handlers all succeeded while the database could not take the
        # acknowledgement: owed, and made first thing in the next pass (acknowledging
        # twice is harmless, so this holds even if another worker took the effect over).
        self.unacknowledged: list[Delivery] = []
        timeouts = [s.timeout for s in (config.smtp, config.webhook, config.exec) if s is not None]
        # A delivery begun later than this into its lease might outlast the lease, and
        # another worker would take the effect over meanwhile: it is left for then.
        self._margin = max([*timeouts, timedelta(seconds=1)])
        self._closing = False
        # The instant of the latest pass: what close() records the last deliveries at.
        self._now: datetime | None = None
        # A lane holds up to one batch: enough to keep its handler busy while the loop
        # leases the next, few enough that a hanging handler does not sit on many
        # leases (each waits at most its predecessors' timeouts).
        self.lanes = Lanes(store, config.worker.batch, self._refuse, redact=self.log.redact)
        self.stop: threading.Event = _Stop(self.lanes.wake)

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

    def _refuse(self, job: Job) -> str | None:
        """Why a lane should not begin ``job`` now (called in the lane's thread)."""
        if self.stop.is_set() or self._closing:
            return "the worker stopped first"
        elapsed = timedelta(seconds=time.monotonic() - job.leased)
        if elapsed + self._margin > self.config.worker.lease:
            return "its lease would have run out before the handler's timeout"
        return self._superseded(job)

    def _superseded(self, job: Job) -> str | None:
        """Why ``job``'s effect is no longer to be delivered, read now (a lane may hold a
        leased effect for minutes, and a Cancel committed meanwhile supersedes it), or
        ``None``. Called in the lane's thread: the lanes' store runs each read on the
        loop's thread."""
        store = self.lanes.store
        rollout = job.stored.rollout
        try:
            # Only the turn that ends a rollout supersedes effects: while it has not
            # ended, one O(1) read says so, and the outbox is not read.
            if not store.info(rollout).state.terminal:
                return None
            pending = {e.id for e in store.effects(rollout)}
        except Exception as error:  # a busy database: not begun, left to its lease
            return f"could not read whether it was superseded: {self.log.redact(str(error))}"
        if job.stored.id not in pending:
            return "its rollout ended: superseded (or no longer pending)"
        return None

    def run_pass(self, now: datetime, *, budget: float | None = None) -> PassReport:
        """One pass at ``now``: tick what fell due, then deliver every due effect, leased
        as the handlers' lanes have room (at most ``batch`` at a time). ``budget``
        (seconds): stop leasing after that long and return, deliveries still under way
        (``more``; the next pass carries them on, and the loop reads the clock again so
        that leases start at the real instant); ``None``: until nothing is due and every
        delivery is recorded."""
        started = time.monotonic()
        report = PassReport(now)
        self._now = now
        if self.metrics is not None:
            self.metrics.passes.inc()
        self.lanes.collect(0.0)  # what the lanes finished since the last pass
        self._acknowledge_owed(now, report)
        self._settle(now, report)
        # An index read: with nothing due the tick, which looks at every running
        # rollout, is not run.
        due = self.retry(self.store.next_due)
        if due is not None and due <= now:
            report.due = due
            self._tick(now, due, report)
        exhausted: set[str] = set()  # kinds of which nothing more is due at `now`
        while not self.stop.is_set():
            spent = time.monotonic() - started
            over = budget is not None and spent > budget
            kinds = [] if over else self._ready(exhausted)
            if kinds:
                self._lease(kinds, now, exhausted)
                self._settle(now, report)
                continue
            if not self.lanes.busy:
                report.more = over and len(exhausted) < len(self.kinds)
                break
            if over:
                report.more = True
                break
            # Bounded, so that a lane that never reports cannot hang the loop unseen.
            self.lanes.collect(1.0 if budget is None else min(budget - spent, 1.0))
            self._settle(now, report)
        if self.stop.is_set():
            self._finish(now, report)
        return report

    def _ready(self, exhausted: set[str]) -> list[str]:
        """The kinds worth leasing now: not found exhausted in this pass, and every
        handler of their route at least half free (leases come in batches, not one
        effect each time a handler finishes one)."""
        half = (self.lanes.capacity + 1) // 2
        full = {n for n in self._names if self.lanes.room(n) < half}
        return [
            k for k, route in self._routes.items() if k not in exhausted and full.isdisjoint(route)
        ]

    def _lease(self, kinds: list[str], now: datetime, exhausted: set[str]) -> None:
        """Lease what the lanes of ``kinds`` have room for, and give it to them."""
        settings = self.config.worker
        room = min(self.lanes.room(n) for k in kinds for n in self._routes[k])
        limit = min(settings.batch, room)
        found = self.retry(
            lambda: self.store.lease(now=now, duration=settings.lease, kinds=kinds, limit=limit)
        )
        leased = time.monotonic()
        if len(found) < limit:
            exhausted.update(kinds)
        for stored in found:
            route = self._routes[type(stored.effect).__name__]
            self.lanes.give(stored, [(n, self.handlers[n]) for n in route], now, leased)

    def _finish(self, now: datetime, report: PassReport) -> None:
        """Stopping: wait for the handlers at work (the lanes begin nothing more), and
        record what they did."""
        while self.lanes.busy:
            self.lanes.collect(1.0)
            self._settle(now, report)
        self._settle(now, report)
        report.more = True

    def _settle(self, now: datetime, report: PassReport, retry: Retry | None = None) -> None:
        """Record each effect every lane has reported on: one acknowledgement for those
        all of whose handlers succeeded, a failure record for each of the others. A
        database still busy past the retries leaves what is not recorded yet for the
        next pass (an acknowledgement owed, :attr:`unacknowledged`; a failure, to its
        lease) and raises :class:`~certflow.store.StoreBusy`."""
        run = retry or self.retry
        if not self.lanes.finished:
            return
        finished, self.lanes.finished = self.lanes.finished, []
        whole = [Delivery(f.stored, "delivered", f.ordered) for f in finished if f.whole]
        rest = [f for f in finished if not f.whole]
        if whole:
            try:
                run(lambda: self.store.acknowledge([d.stored.id for d in whole], now))
            except StoreBusy as error:
                self.lanes.finished = rest
                for delivery in whole:
                    # Delivered: say so, and owe the acknowledgement until the database answers.
                    self._log_attempts(delivery)
                    self.unacknowledged.append(delivery)
                    owed = Unacknowledged(delivery, error)
                    self.log.event(
                        "unacknowledged",
                        rollout=delivery.stored.rollout,
                        effect=delivery.stored.id,
                        error=str(owed),
                    )
                raise
            for delivery in whole:
                self._record(delivery, report)
        while rest:
            flight = rest.pop(0)
            try:
                recorded = self._failed(flight, now, run)
            except StoreBusy:
                self.lanes.finished = rest  # this one waits for its lease
                raise
            if recorded is not None:
                self._record(recorded, report)

    def _failed(self, flight: InFlight, now: datetime, retry: Retry) -> Delivery | None:
        """Record the failure of an effect not all of whose handlers succeeded. One a
        handler did not begin (the worker stopped, or its lease had no room left) is
        recorded only if another handler succeeded for it meanwhile, so that it is not
        run again; otherwise it waits for its lease to run out, as if never leased."""
        errors = flight.errors
        done = flight.done
        if not errors:
            if done == flight.before:
                return None
            errors = [(n, f"not begun: {why}") for n, why in flight.not_begun.items()]
        record = failure_record(done, errors)
        effect_id = flight.stored.id
        after = retry(lambda: self.store.record_failure(effect_id, record, now=now))
        status: Literal["failed", "dead"] = "dead" if after.status == "dead" else "failed"
        return Delivery(flight.stored, status, flight.ordered, after.next_attempt_at)

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

    def _record(self, delivery: Delivery, report: PassReport) -> None:
        """Log, count and report a delivery the store has recorded."""
        stored = delivery.stored
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
        report.deliveries.append(delivery)

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
                self._pause(pause)
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

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (or until stopped), running meanwhile the store calls of the
        handlers still at work."""
        ends = time.monotonic() + seconds
        while not self.stop.is_set() and (left := ends - time.monotonic()) > 0:
            self.lanes.collect(left)

    def close(self) -> None:
        """Finish the deliveries under way (the lanes begin nothing more; each handler
        at work runs to its end or its timeout), record them with one try each (a busy
        database leaves them to their leases), end the lanes, and close the handlers
        that hold connections. The store is the caller's, and still open."""
        self._closing = True
        wait = self._margin.total_seconds() + 1.0
        ends = time.monotonic() + wait
        try:
            while self.lanes.busy and time.monotonic() < ends:
                self.lanes.collect(ends - time.monotonic())
            if self._now is not None:
                self._settle(self._now, PassReport(self._now), retry=lambda operation: operation())
        except StoreBusy:
            pass  # the effects not recorded are delivered again after their leases
        self.lanes.close(wait)
        self._closing = False  # a worker run again after close() starts new lanes
        for handler in self.handlers.values():
            closer = getattr(handler, "close", None)
            if callable(closer):
                closer()
