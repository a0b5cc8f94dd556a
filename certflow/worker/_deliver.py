"""Delivering one effect through every handler its route names.

An effect is delivered (acknowledged) when every handler of its route has succeeded. A
handler that succeeded is not run again when another one failed: the failure the outbox
records (``record_failure``'s error, kept through retries, death and revival) begins
with ``delivered by NAME, NAME; `` for the handlers that had succeeded, and the next
attempt reads it back (:func:`delivered_by`). That is the outbox's own delivery record,
so it is as durable as the failure and shared by every worker of the database; no table
of the worker's own was needed. A worker killed between a handler's success and that
record runs the handler again: delivery is at least once, and handlers get the effect
id to deduplicate.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Literal, Protocol, TypeVar

import attrs

from certflow.store import Store, StoreBusy, StoredEffect, retrying
from certflow.worker._payload import DeliveryFailed, Handler

__all__ = [
    "Attempt",
    "Delivery",
    "Retry",
    "Unacknowledged",
    "attempt",
    "deliver",
    "delivered_by",
    "failure_record",
    "skipped",
]

T = TypeVar("T")


class Retry(Protocol):
    """How a store call is retried while the database is busy or unreachable:
    :func:`~certflow.store.retrying`, or the worker's, which logs each back-off."""

    def __call__(self, operation: Callable[[], T]) -> T: ...


_DELIVERED_BY = re.compile(r"^delivered by ([\w.-]+(?:, [\w.-]+)*); ")

#: What one handler's attempt came to: ``delivered``; ``failed``; ``skipped`` (it had
#: succeeded for this effect on an earlier attempt).
AttemptOutcome = Literal["delivered", "failed", "skipped"]


@attrs.frozen
class Attempt:
    """One handler's attempt at one effect: what the log line and the metrics say."""

    effect_id: str
    rollout: str
    kind: str
    handler: str
    outcome: AttemptOutcome
    seconds: float
    error: str | None = None


@attrs.frozen
class Delivery:
    """What became of one effect: ``delivered`` (acknowledged), ``failed`` (retried at
    ``retry_at``) or ``dead`` (failed its ``max_attempts``-th time), and each handler's
    attempt."""

    stored: StoredEffect
    status: Literal["delivered", "failed", "dead"]
    attempts: tuple[Attempt, ...]
    retry_at: datetime | None = None


class Unacknowledged(StoreBusy):
    """Every handler of an effect succeeded, but the database was busy or unreachable
    (past :func:`~certflow.store.retrying`'s attempts) when it was to be acknowledged.
    ``delivery`` is what was done: its acknowledgement is still owed. A
    :class:`~certflow.store.StoreBusy`, so that whoever retries those retries this."""

    def __init__(self, delivery: Delivery, error: StoreBusy) -> None:
        super().__init__(f"{delivery.stored.id} delivered but not acknowledged: {error}")
        self.delivery = delivery


def delivered_by(stored: StoredEffect) -> frozenset[str]:
    """The handlers that already succeeded for ``stored``, as its last recorded failure
    says (none for an effect that never failed)."""
    found = _DELIVERED_BY.match(stored.last_error or "")
    return frozenset() if found is None else frozenset(found[1].split(", "))


def failure_record(done: Iterable[str], errors: Sequence[tuple[str, str]]) -> str:
    """The error recorded for a failed delivery: the handlers that succeeded first (read
    back by :func:`delivered_by`), then each failed handler and why."""
    names = sorted(done)
    head = f"delivered by {', '.join(names)}; " if names else ""
    return head + " | ".join(f"{name}: {error}" for name, error in errors)


def skipped(stored: StoredEffect, name: str) -> Attempt:
    """Handler ``name``'s attempt at ``stored`` when it had already succeeded for it."""
    return Attempt(stored.id, stored.rollout, type(stored.effect).__name__, name, "skipped", 0.0)


def attempt(
    handler: Handler,
    stored: StoredEffect,
    store: Store,
    now: datetime,
    *,
    redact: Callable[[str], str] = lambda text: text,
    clock: Callable[[], float] = time.perf_counter,
) -> Attempt:
    """``handler`` run once for ``stored``: ``delivered`` if it returned, ``failed`` with
    its error (cleaned by ``redact``) if it raised. Nothing is recorded in the store."""
    kind = type(stored.effect).__name__
    started = clock()
    try:
        handler(stored, store, now)
    except Exception as error:  # any failure of a handler keeps the effect pending
        text = (
            str(error)
            if isinstance(error, DeliveryFailed)
            else (f"{type(error).__name__}: {error}")
        )
        text = redact(" ".join(text.split()) or type(error).__name__)
        return Attempt(
            stored.id, stored.rollout, kind, handler.name, "failed", clock() - started, text
        )
    return Attempt(stored.id, stored.rollout, kind, handler.name, "delivered", clock() - started)


def deliver(
    store: Store,
    stored: StoredEffect,
    handlers: Sequence[Handler],
    now: datetime,
    *,
    redact: Callable[[str], str] = lambda text: text,
    clock: Callable[[], float] = time.perf_counter,
    retry: Retry = retrying,
) -> Delivery:
    """Run each of ``handlers`` that has not yet succeeded for ``stored`` (the effect
    leased for this delivery), then acknowledge it if all of them have, or record the
    failure (back-off, or dead). Every handler runs even when one before it failed, so
    that each success is recorded. A database still busy when the effect is to be
    acknowledged raises :class:`Unacknowledged` (the delivery happened; its
    acknowledgement is owed); when the failure is to be recorded, :class:`StoreBusy`
    (the effect waits for its lease to run out, then is delivered again). ``redact``
    cleans an error of secrets before it is recorded or logged; ``clock`` times the
    attempts (a duration, never an instant); ``retry`` runs the store's calls."""
    done = set(delivered_by(stored))
    attempts: list[Attempt] = []
    errors: list[tuple[str, str]] = []
    for handler in handlers:
        if handler.name in done:
            attempts.append(skipped(stored, handler.name))
            continue
        tried = attempt(handler, stored, store, now, redact=redact, clock=clock)
        attempts.append(tried)
        if tried.outcome == "delivered":
            done.add(handler.name)
        else:
            errors.append((handler.name, str(tried.error)))
    if not errors:
        delivery = Delivery(stored, "delivered", tuple(attempts))
        try:
            retry(lambda: store.acknowledge([stored.id], now))
        except StoreBusy as error:
            raise Unacknowledged(delivery, error) from error
        return delivery
    record = failure_record(done, errors)
    after = retry(lambda: store.record_failure(stored.id, record, now=now))
    status: Literal["failed", "dead"] = "dead" if after.status == "dead" else "failed"
    return Delivery(stored, status, tuple(attempts), after.next_attempt_at)
