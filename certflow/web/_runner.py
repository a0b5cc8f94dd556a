"""The console's one store thread: every store call of every request runs there, in turn.

A certflow store belongs to the thread that opened it (a SQLite connection refuses any
other), while an ASGI server answers requests on its event loop and on worker threads
that change from call to call. So the console owns one thread for the store: it opens
the store there (from the opener the host gives) and runs each request's reads and
commands there, one at a time, never blocking the event loop. An administrator's console
serves a handful of people; one writer at a time is what the store allows anyway.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from certflow.core.errors import InvalidInput
from certflow.store import SqliteStore, SqlStore

__all__ = ["Bounded", "Busy", "StoreRunner", "StoreSource"]

T = TypeVar("T")

#: What :func:`certflow.web.create_app` takes: a function that opens the store (called
#: once, in the console's store thread), or a store object that may be used from another
#: thread than the one that opened it (a PostgresStore).
StoreSource = SqlStore | Callable[[], SqlStore]


class StoreRunner:
    """Runs functions of the store in one thread of the console's (its pages' store
    thread, or the long reads' thread: :meth:`long_reads`)."""

    def __init__(self, source: StoreSource, thread: str = "certflow-store") -> None:
        if isinstance(source, SqliteStore):
            raise InvalidInput(
                "create_app: a SqliteStore belongs to the thread that opened it, and the "
                "console serves from its own thread; pass a function that opens it, such as "
                "create_app(lambda: SqliteStore(path), ...)"
            )
        if not isinstance(source, SqlStore) and not callable(source):
            raise InvalidInput(
                f"create_app: store must be a certflow store or a function opening one, "
                f"got {source!r}"
            )
        self._source = source
        self._store: SqlStore | None = None
        self._owned = not isinstance(source, SqlStore)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread)

    def long_reads(self) -> StoreRunner:
        """A runner for reads that take seconds (the forecast's inputs at a million
        devices: the rollout and a replay of its journal), so that the pages do not wait
        behind them: a thread with a store of its own, opened by the same function when
        first used; the same runner when the console was given a store (one store is
        used by one thread at a time)."""
        if isinstance(self._source, SqlStore):
            return self
        return StoreRunner(self._source, "certflow-long-reads")

    def _opened(self) -> SqlStore:
        if self._store is None:
            source = self._source
            store = source if isinstance(source, SqlStore) else source()
            if not isinstance(store, SqlStore):
                raise InvalidInput(f"create_app: the store opener returned {store!r}, not a store")
            self._store = store
        return self._store

    def call(self, function: Callable[[SqlStore], T]) -> T:
        """``function(store)`` in the store thread, from a thread that may wait for it."""
        return self._executor.submit(lambda: function(self._opened())).result()

    async def run(self, function: Callable[[SqlStore], T]) -> T:
        """``function(store)`` in the store thread, awaited without blocking the loop."""
        future = self._executor.submit(lambda: function(self._opened()))
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Close the store the console opened (a store it was given stays the host's)."""
        with self._lock:

            def shut() -> None:
                if self._store is not None and self._owned:
                    self._store.close()
                self._store = None

            self._executor.submit(shut).result()
            self._executor.shutdown(wait=True)


class Busy(Exception):
    """A bounded worker's queue is full: the request is refused, not queued."""


class Bounded:
    """A worker thread for long computations that need no store (the forecast), apart
    from the store thread so that other pages go on meanwhile, with at most ``limit``
    of them running or waiting: a page reloaded many times refuses the extra requests
    instead of queueing minutes of work."""

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, function: Callable[[], T]) -> T:
        """``function()`` in the worker thread, awaited; :class:`Busy` if ``limit`` are
        already running or waiting."""
        return await asyncio.wrap_future(self.submit(function))

    def submit(self, function: Callable[[], T]) -> Future[T]:
        """``function()`` in the worker thread, not awaited: its future; :class:`Busy` if
        ``limit`` are already running or waiting."""
        with self._lock:
            if self._taken >= self.limit:
                raise Busy(
                    f"{self._taken} computations are already running or waiting "
                    f"(at most {self.limit}); try again when they are done"
                )
            self._taken += 1
        try:
            future = self._executor.submit(function)
        except BaseException:
            self._release()
            raise
        # Released when the computation ends, not when the request does: a browser that
        # goes away leaves its computation running (or cancels it if not yet started),
        # and the bound counts what the thread really has to do.
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        with self._lock:
            self._taken -= 1

    def close(self) -> None:
        """Stop taking work; what runs finishes."""
        self._executor.shutdown(wait=True, cancel_futures=True)
