"""Deliveries of different handlers, independent of each other: one lane per handler.

A lane is a queue and a thread of its own that runs one handler, one effect at a time,
in the order the effects were leased. A webhook that hangs until its timeout holds up
only the webhook's lane: the e-mails behind it in the lease go out through the SMTP
lane meanwhile. An effect routed to several handlers is given to each of their lanes
and is finished when every lane has reported on it.

Everything the store does stays on the loop's thread (an SQLite connection belongs to
the thread that opened it, and one connection is one transaction at a time): the lanes
never lease, acknowledge or record; they report each attempt on one queue that the
loop's thread reads (:meth:`Lanes.collect`). A handler that reads the store (the
e-mail's attachment lists the devices) is given a :class:`LoopStore`, whose calls the
loop's thread runs while it waits for the lanes' reports.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import attrs

from certflow.store import Store, StoredEffect
from certflow.worker._deliver import Attempt, attempt, delivered_by, skipped
from certflow.worker._payload import Handler

__all__ = ["InFlight", "Job", "Lanes", "LoopStore"]

# Set in each lane's thread: a store call from there is run by the loop's thread.
_in_lane = threading.local()


class _StoreCall:
    """One store method called by a handler in a lane, run by the loop's thread."""

    def __init__(self, method: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.method, self.args, self.kwargs = method, args, kwargs
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            result = self.method(*self.args, **self.kwargs)
            # An iterator would read the connection later, from the lane's thread.
            if isinstance(result, Iterator):
                result = iter(list(result))
            self.result = result
        except BaseException as error:  # handed to the handler that called, as raised
            self.error = error
        finally:
            self.done.set()

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class LoopStore:
    """The store as a handler in a lane sees it: the worker's own store, each method
    call of which is run by the loop's thread (the handler's thread waits for it). Called
    from any other thread, it is the store itself."""

    def __init__(self, store: Store, events: queue.SimpleQueue[object]) -> None:
        self._store = store
        self._events = events

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value) or not getattr(_in_lane, "active", False):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            request = _StoreCall(value, args, kwargs)
            self._events.put(request)
            return request.wait()

        return call


@attrs.frozen
class Job:
    """One handler's part of one leased effect, as its lane takes it."""

    lane: str  # the handler's name in the routes
    stored: StoredEffect
    handler: Handler
    now: datetime  # the instant of the pass that leased it: what the handler is given
    leased: float  # when it was leased, on the monotonic clock


@attrs.frozen
class _Report:
    """A lane's word on one job: its attempt, or why it was not begun."""

    job: Job
    attempt: Attempt | None
    not_begun: str | None = None


@attrs.define
class InFlight:
    """A leased effect given to its lanes: what each of its handlers did so far."""

    stored: StoredEffect
    route: tuple[str, ...]  # the handlers' names, in route order
    before: frozenset[str]  # those that had succeeded on an earlier attempt
    attempts: dict[str, Attempt] = attrs.Factory(dict)
    not_begun: dict[str, str] = attrs.Factory(dict)
    waiting: int = 0

    @property
    def whole(self) -> bool:
        """Whether every handler of its route has now succeeded for it."""
        return self.waiting == 0 and not self.not_begun and not self.errors

    @property
    def done(self) -> set[str]:
        """The handlers that have succeeded for it, on this attempt or before."""
        now = {n for n, a in self.attempts.items() if a.outcome == "delivered"}
        return set(self.before) | now

    @property
    def errors(self) -> list[tuple[str, str]]:
        """Each handler that failed on this attempt, and why, in route order."""
        return [
            (n, str(self.attempts[n].error))
            for n in self.route
            if n in self.attempts and self.attempts[n].outcome == "failed"
        ]

    @property
    def ordered(self) -> tuple[Attempt, ...]:
        """The attempts made (or skipped), in route order."""
        return tuple(self.attempts[n] for n in self.route if n in self.attempts)


class _Lane:
    """One handler's queue and thread."""

    def __init__(
        self,
        name: str,
        events: queue.SimpleQueue[object],
        run: Callable[[Job], Attempt],
        refuse: Callable[[Job], str | None],
        redact: Callable[[str], str],
    ) -> None:
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.events, self.run, self.refuse, self.redact = events, run, refuse, redact
        # Jobs given and not yet reported on: kept by the loop's thread alone.
        self.load = 0
        # A daemon: a handler hung past its own timeout does not keep the process alive.
        self.thread = threading.Thread(target=self._work, name=f"certflow-{name}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        _in_lane.active = True
        while (job := self.jobs.get()) is not None:
            reason = self.refuse(job)
            if reason is not None:
                self.events.put(_Report(job, None, reason))
                continue
            try:
                done = self.run(job)
            except BaseException as error:  # the lane must report every job, whatever it met
                # Recorded in the store and logged: its text may quote a secret.
                text = self.redact(f"{type(error).__name__}: {error}")
                done = Attempt(
                    job.stored.id, job.stored.rollout, type(job.stored.effect).__name__,
                    job.handler.name, "failed", 0.0, text,
                )  # fmt: skip
            self.events.put(_Report(job, done))


class Lanes:
    """The lanes of one worker, by handler name, and the effects they hold.

    Every method is called by the loop's thread; the lanes' threads only run handlers
    and report. ``capacity``: how many jobs a lane holds (queued and running) before the
    worker leases no more effects for it. ``refuse(job)``: checked by the lane when it
    takes a job; a reason not to begin it (the worker stops, or the effect's lease
    might run out before the handler's timeout), or ``None``.
    """

    def __init__(
        self,
        store: Store,
        capacity: int,
        refuse: Callable[[Job], str | None],
        *,
        redact: Callable[[str], str],
    ) -> None:
        self.events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.store = cast(Store, LoopStore(store, self.events))  # duck-typed: any method
        self.capacity = max(1, capacity)
        self.refuse = refuse
        self.redact = redact
        self.lanes: dict[str, _Lane] = {}
        self.flying: dict[str, InFlight] = {}
        #: Effects every lane has reported on, to be acknowledged or recorded.
        self.finished: list[InFlight] = []

    def _run(self, job: Job) -> Attempt:
        return attempt(job.handler, job.stored, self.store, job.now, redact=self.redact)

    def _lane(self, name: str) -> _Lane:
        if name not in self.lanes:
            self.lanes[name] = _Lane(name, self.events, self._run, self.refuse, self.redact)
        return self.lanes[name]

    def room(self, name: str) -> int:
        """How many more jobs lane ``name`` takes."""
        lane = self.lanes.get(name)
        return self.capacity - (0 if lane is None else lane.load)

    @property
    def busy(self) -> bool:
        """Whether any effect is still with its lanes."""
        return bool(self.flying)

    def give(
        self,
        stored: StoredEffect,
        route: Sequence[tuple[str, Handler]],
        now: datetime,
        leased: float,
    ) -> None:
        """Give leased ``stored`` to the lanes of its route's handlers (by route name),
        but those that succeeded for it before: they are skipped."""
        before = delivered_by(stored)
        flight = InFlight(stored, tuple(h.name for _, h in route), before)
        for name, handler in route:
            if handler.name in before:
                flight.attempts[handler.name] = skipped(stored, handler.name)
                continue
            flight.waiting += 1
            lane = self._lane(name)
            lane.load += 1
            lane.jobs.put(Job(name, stored, handler, now, leased))
        if flight.waiting:
            self.flying[stored.id] = flight
        else:
            self.finished.append(flight)

    def wake(self) -> None:
        """Have :meth:`collect` return now (safe in a signal handler: a SimpleQueue's
        ``put`` is reentrant)."""
        self.events.put(None)

    def collect(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the lanes: run the store calls their
        handlers make, and move each effect every lane has reported on to
        :attr:`finished`; then take whatever else has arrived, without waiting."""
        if timeout <= 0 and self.events.empty():
            return  # the idle pass's case, without raising queue.Empty
        try:
            event = self.events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return
        while True:
            if isinstance(event, _StoreCall):
                event.run()
            elif isinstance(event, _Report):
                self._reported(event)
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return

    def _reported(self, report: _Report) -> None:
        job = report.job
        self.lanes[job.lane].load -= 1
        flight = self.flying[job.stored.id]
        name = job.handler.name
        if report.attempt is not None:
            flight.attempts[name] = report.attempt
        else:
            flight.not_begun[name] = str(report.not_begun)
        flight.waiting -= 1
        if flight.waiting == 0:
            del self.flying[job.stored.id]
            self.finished.append(flight)

    def close(self, wait: float) -> None:
        """End the lanes' threads once their queues are done (at most ``wait`` seconds
        each: a handler still running past it is left to its daemon thread)."""
        for lane in self.lanes.values():
            lane.jobs.put(None)
        ends = time.monotonic() + wait
        for lane in self.lanes.values():
            lane.thread.join(max(ends - time.monotonic(), 0.0))
        self.lanes = {}
