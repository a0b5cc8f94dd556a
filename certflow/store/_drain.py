"""Delivering the outbox, and retrying a command that met a busy database."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from certflow.core.errors import CertflowError
from certflow.core.instants import require_utc
from certflow.store._errors import StoreBusy
from certflow.store._model import Store

__all__ = ["DrainReport", "Handler", "drain", "retrying"]

# Any, not Effect: a handler registered for PushRoot may be annotated with PushRoot.
Handler = Callable[[str, Any], object]
T = TypeVar("T")


@attrs.frozen
class DrainReport:
    """What one :func:`drain` did: the effects delivered and acknowledged, the ones whose
    handler failed (id and error: retried after a back-off), the ones no handler takes,
    and those of the failed that this failure made dead (no longer retried: see
    ``certflow rollout effects NAME --dead``)."""

    delivered: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    unhandled: tuple[str, ...]
    dead: tuple[str, ...] = ()


def drain(
    store: Store,
    handlers: Mapping[type, Handler],
    now: datetime,
    *,
    rollout: str | None = None,
    lease: timedelta = timedelta(minutes=5),
) -> DrainReport:
    """Run the host's handlers for the pending effects due by ``now``, in order.

    ``handlers`` maps an effect class (``certflow.PushRoot``, ...) to a function called
    with the effect's id and the effect. The effects it has handlers for are leased
    first (:meth:`Store.lease`, for ``lease``), so that another drainer running at the
    same time skips them. Each effect whose handler returns is acknowledged at once, so
    a later failure or a crash never repeats it; a handler that raises leaves its effect
    pending (its error recorded, its lease given back, retried after a back-off) and the
    others go on; an effect that fails the store's ``max_attempts``-th time is dead and no
    longer retried (:meth:`Store.revive` makes it pending again). Effects the end of
    their rollout superseded are never delivered.

    Delivery is at-least-once: a crash between a handler's return and the
    acknowledgement, or a drain that outlasts its lease, delivers that effect again,
    with the same id, so handlers deduplicate by id.
    """
    now = require_utc("now", now)
    delivered: list[str] = []
    failed: list[tuple[str, str]] = []
    dead: list[str] = []
    kinds = {kind.__name__ for kind in handlers}
    unhandled = [
        stored.id
        for stored in store.effects(rollout, due_by=now)
        if type(stored.effect).__name__ not in kinds
    ]
    claimed = retrying(lambda: store.lease(rollout, now=now, duration=lease, kinds=kinds))
    for stored in claimed:
        handler = handlers[type(stored.effect)]
        try:
            handler(stored.id, stored.effect)
        except Exception as error:  # the host's handler: any failure keeps it pending
            text = f"{type(error).__name__}: {error}"
            after = retrying(
                lambda: store.record_failure(stored.id, text, now=now)  # noqa: B023 (called now)
            )
            failed.append((stored.id, text))
            if after.status == "dead":
                dead.append(stored.id)
            continue
        retrying(lambda: store.acknowledge([stored.id], now))  # noqa: B023 (called now)
        delivered.append(stored.id)
    return DrainReport(tuple(delivered), tuple(failed), tuple(unhandled), tuple(dead))


def retrying(
    operation: Callable[[], T],
    *,
    attempts: int = 8,
    first_delay: float = 0.02,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``operation()``, retried with exponential back-off while the database is busy.

    Every store command is one transaction that either committed or changed nothing, so
    retrying after :class:`StoreBusy` never applies a command twice. Other errors
    propagate at once; the last :class:`StoreBusy` propagates after ``attempts``.
    """
    if attempts < 1:
        raise CertflowError(f"attempts must be at least 1, got {attempts}")
    delay = first_delay
    for attempt in range(attempts):
        try:
            return operation()
        except StoreBusy:
            if attempt == attempts - 1:
                raise
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover
