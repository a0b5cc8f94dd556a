"""Python's cyclic garbage collector paused while a large batch runs.

A batch of a million device commands makes millions of objects that live until its
transaction ends (each device row it holds, its list of values, each command's journal
form). None of them is part of a reference cycle: reference counting frees them all.
But the cyclic collector runs every few hundred allocations, and as the objects pile
up its full passes walk all of them again and again: on a million-device report file
that was a quarter of the batch's CPU time (3.4 s of 12), and it finds nothing.

So :func:`paused` disables the collector for the batch, and enables it again when the
last batch running in the process ends, if it was enabled when the first began (a host
that disabled it keeps it so). Meanwhile other threads' cyclic garbage waits for the
next collection, seconds later; nothing else changes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LARGE", "paused"]

#: The batch size from which the collector is paused: below it, a batch makes too few
#: objects for the collector's passes to matter.
LARGE = 10_000

_lock = threading.Lock()
_running = 0  # batches running with the collector paused, in every thread
_restore = False  # whether the first of them found it enabled


@contextmanager
def paused(size: int) -> Iterator[None]:
    """The collector disabled while the block runs, if ``size`` is :data:`LARGE` or more."""
    global _running, _restore
    if size < LARGE:
        yield
        return
    with _lock:
        if _running == 0:
            _restore = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _restore:
                gc.enable()
