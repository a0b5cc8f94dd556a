"""Pages whose content takes seconds to compute (the forecast of a big fleet), served at
once from what was computed last, and computed again in the background when that is no
longer current.

A :class:`Latest` keeps, per *subject* (a rollout and the page's options), the last
result with the *key* it was computed for (what makes it current: the journal's length
and the day), and the one computation running for the subject, if any. A request looks
the subject up with its current key and gets back a :class:`Seen`: the last result, and
whether it is current, and the computation running (started by this request if none ran
and the result is not current). So a page never waits for a computation, a subject is
never computed twice at once however often its page is reloaded, and the bounded worker
(:class:`certflow.web._runner.Bounded`) still refuses work beyond its limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from certflow.web._runner import Bounded, Busy

__all__ = ["Done", "Job", "Latest", "Seen"]

T = TypeVar("T")


@dataclass(frozen=True)
class Job(Generic[T]):
    """A computation started at ``started`` for ``key``."""

    key: Hashable
    started: datetime
    future: Future[T]


@dataclass(frozen=True)
class Done(Generic[T]):
    """A computation's result, for ``key``, started at ``started``."""

    key: Hashable
    started: datetime
    result: T


@dataclass(frozen=True)
class Seen(Generic[T]):
    """What a request finds: the last result (``None`` before the first), the
    computation running (``None`` if none), and why none could be started (``busy``:
    the worker's refusal, when a result not current is shown instead)."""

    last: Done[T] | None
    running: Job[T] | None
    current: bool
    busy: str | None = None


class Latest(Generic[T]):
    """Per subject, the last result and the computation running, in ``pool``; results
    of the ``kept`` subjects seen last are kept."""

    def __init__(self, pool: Callable[[], Bounded], kept: int) -> None:
        # The pool is looked up at each start, not taken once: the console's pool is the
        # one to bound (a test may swap it).
        self._pool = pool
        self._kept = kept
        self._last: OrderedDict[Hashable, Done[T]] = OrderedDict()
        self._running: dict[Hashable, Job[T]] = {}
        self._lock = threading.Lock()

    def look(
        self, subject: Hashable, key: Hashable, now: datetime, compute: Callable[[], T]
    ) -> Seen[T]:
        """The subject's last result and running computation; ``compute`` started (at
        ``now``) if the result is not for ``key`` and nothing runs for the subject.

        A computation that failed for ``key`` raises its error here, once: the page
        says what went wrong, and the next visit tries again. :class:`Busy` if one must
        start, the pool is full, and there is no result to show meanwhile."""
        with self._lock:
            for other, done in list(self._running.items()):
                # Finished for a subject nobody looked at since: kept as its last
                # result (or its error dropped), so the running ones alone stay here.
                if other != subject and done.future.done():
                    del self._running[other]
                    self._finished(other, done, None)
            job = self._running.get(subject)
            if job is not None and job.future.done():
                del self._running[subject]
                self._finished(subject, job, key)
                job = None
            last = self._last.get(subject)
            if last is not None:
                self._last.move_to_end(subject)
            current = last is not None and last.key == key
            if current or job is not None:
                # One computation per subject: one for an older key is let finish (its
                # result is shown, then superseded), not doubled with a newer one.
                return Seen(last, job, current)
            try:
                future = self._pool().submit(compute)
            except Busy as error:
                if last is None:
                    raise
                return Seen(last, None, False, str(error))
            job = Job(key, now, future)
            self._running[subject] = job
            return Seen(last, job, False)

    def _finished(self, subject: Hashable, job: Job[T], key: Hashable) -> None:
        if job.future.cancelled():  # the console closing: nothing to keep
            return
        error = job.future.exception()
        if error is not None:
            if job.key == key:
                raise error
            return  # failed for an older journal or day: the current one is tried afresh
        self._last[subject] = Done(job.key, job.started, job.future.result())
        self._last.move_to_end(subject)
        while len(self._last) > self._kept:
            self._last.popitem(last=False)
