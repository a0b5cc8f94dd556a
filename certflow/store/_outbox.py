"""The outbox: the effects each journal entry queued, read, leased to a drainer,
acknowledged once performed, or given back after a failed delivery (to be tried again
after a back-off, or dead after too many failures, until revived); and the effects the
end of a rollout supersedes. Each public function but :func:`supersede` is the
:class:`~certflow.store.SqlStore` method of its name (documented there), the store
first."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from certflow.core.effects import Effect
from certflow.core.errors import InvalidInput
from certflow.core.instants import require_utc
from certflow.core.serialization import decode_effect
from certflow.store._driver import Driver
from certflow.store._inputs import MOST, can_store, is_count
from certflow.store._model import StoredEffect

__all__ = [
    "DELIVERABLE",
    "acknowledge",
    "backoff",
    "effects",
    "lease",
    "record_failure",
    "revive",
    "stored_effect",
    "supersede",
]

# An effect id's numbers, exactly as the store spells them.
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,17})$")
# What a StoredEffect is made of, in _stored's order (after the rollout's name).
_COLUMNS = (
    "o.seq, o.position, o.body, o.acked_at, o.failures, o.last_error, o.attempts, "
    "o.last_attempt_at, o.next_attempt_at, o.dead_at, o.superseded_at"
)
#: An outbox row a drainer may deliver: not acknowledged, superseded or dead.
DELIVERABLE = "o.acked_at IS NULL AND o.superseded_at IS NULL AND o.dead_at IS NULL"
_DEAD = "o.acked_at IS NULL AND o.superseded_at IS NULL AND o.dead_at IS NOT NULL"


def effects(
    store: Driver,
    name: str | None,
    include_acknowledged: bool,
    due_by: datetime | None,
    dead: bool = False,
) -> list[StoredEffect]:
    if dead and include_acknowledged:
        raise InvalidInput("give dead=True or include_acknowledged=True, not both")
    where = [] if include_acknowledged else [_DEAD if dead else DELIVERABLE]
    params: list[Any] = []
    if due_by is not None:
        where.append("o.due_at <= ?")
        params.append(store._put(require_utc("due_by", due_by)))
    with store._transaction(write=False):
        if name is not None:
            where.append("o.rollout = ?")
            params.append(store._row(name).id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = store._q(
            f"SELECT r.name, {_COLUMNS} "
            f"FROM {store._outbox} o JOIN rollouts r ON r.id = o.rollout {clause} "
            "ORDER BY r.name, o.seq, o.position",
            params,
        ).fetchall()
    return [_stored(store, *found) for found in rows]


def _stored(
    store: Driver, name: str, seq: int, position: int, body: str, *record: Any
) -> StoredEffect:
    return stored_effect(store, name, seq, position, decode_effect(json.loads(body)), record)


def stored_effect(
    store: Driver, name: str, seq: int, position: int, effect: Effect, record: Sequence[Any]
) -> StoredEffect:
    """The outbox row ``name:seq:position`` holding ``effect``, with its delivery
    ``record`` as the database returned it (instants in the backend's type): acked,
    failures, error, attempts, last attempt, next attempt, dead, superseded."""
    acked, failures, error, attempts, last_attempt, next_attempt, dead, superseded = record
    get = store._get
    return StoredEffect(
        f"{name}:{seq}:{position}",
        name,
        effect,
        get(acked),
        failures,
        error,
        attempts,
        get(last_attempt),
        get(next_attempt),
        get(dead),
        get(superseded),
    )


def lease(
    store: Driver,
    name: str | None,
    now: datetime,
    duration: timedelta,
    kinds: Iterable[str] | None,
    limit: int | None,
) -> list[StoredEffect]:
    at = require_utc("now", now)
    if not isinstance(duration, timedelta) or duration <= timedelta(0):
        raise InvalidInput(f"duration must be a positive timedelta, got {duration!r}")
    if limit is not None and not is_count(limit):
        raise InvalidInput(f"limit must be a positive number up to {MOST}, got {limit!r}")
    put = store._put(at)
    # Neither superseded nor dead, due, not leased by another drainer, and past the
    # back-off of its last failure.
    where = [
        DELIVERABLE,
        "o.due_at <= ?",
        "(o.leased_until IS NULL OR o.leased_until <= ?)",
        "(o.next_attempt_at IS NULL OR o.next_attempt_at <= ?)",
    ]
    params: list[Any] = [put, put, put]
    # A kind no database can store names no stored effect.
    wanted = None if kinds is None else sorted(k for k in set(kinds) if can_store(k))
    if wanted is not None:
        if not wanted:
            return []
        where.append(f"o.kind IN ({', '.join('?' * len(wanted))})")
        params += wanted
    with store._transaction(write=True):
        if name is not None:
            where.append("o.rollout = ?")
            params.append(store._row(name).id)
        rows = store._q(
            f"SELECT o.rollout, {_COLUMNS} "
            # In the order they fell due, across rollouts (outbox_by_due, schema 6).
            f"FROM outbox o WHERE {' AND '.join(where)} "
            "ORDER BY o.due_at, o.rollout, o.seq, o.position"
            + ("" if limit is None else f" LIMIT {limit}")
            + store._skip_locked,
            params,
        ).fetchall()
        if rows:
            # A lease starts a delivery: it counts as an attempt, at `now`.
            store._many(
                "UPDATE outbox SET leased_until = ?, attempts = attempts + 1, "
                "last_attempt_at = ? WHERE rollout = ? AND seq = ? AND position = ?",
                [(store._put(at + duration), put, r, s, p) for r, s, p, *_ in rows],
            )
        ids = sorted({r[0] for r in rows})
        names: dict[int, str] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            names.update(store._q(f"SELECT id, name FROM rollouts WHERE id IN ({marks})", ids))
    # In the lease's order: the order they fell due.
    return [
        attrs.evolve(_stored(store, names[r], *rest), attempts=rest[6] + 1, last_attempt_at=at)
        for r, *rest in rows
    ]


def _locate(store: Driver, effect_id: str) -> tuple[int, int, int]:
    """The key of effect ``effect_id``, or :class:`InvalidInput` if there is none."""
    name, _, rest = str(effect_id).partition(":")
    seq, _, position = rest.partition(":")
    found = None
    # Exactly as the store spells ids: ASCII digits, no leading zeros, within 64 bits.
    if _NUMBER.match(seq) and _NUMBER.match(position) and can_store(name):
        row = store._q("SELECT id FROM rollouts WHERE name = ?", (name,)).fetchone()
        if row is not None:
            found = store._q(
                "SELECT rollout, seq, position FROM outbox WHERE rollout = ? AND seq = ? "
                "AND position = ?",
                (row[0], int(seq), int(position)),
            ).fetchone()
    if found is None:
        raise InvalidInput(f"{store._where}: no effect with id {effect_id!r}")
    return int(found[0]), int(found[1]), int(found[2])


def acknowledge(store: Driver, effect_ids: Iterable[str], now: datetime) -> int:
    at = store._put(require_utc("now", now))
    ids = list(effect_ids)
    acknowledged = 0
    with store._transaction(write=True):
        keys = [_locate(store, effect_id) for effect_id in ids]
        for key in keys:
            acknowledged += store._q(
                "UPDATE outbox SET acked_at = ? WHERE rollout = ? AND seq = ? "
                "AND position = ? AND acked_at IS NULL",
                (at, *key),
            ).rowcount
    return acknowledged


def backoff(store: Driver, failures: int) -> timedelta:
    """How long a drainer waits after an effect's ``failures``-th failed delivery:
    ``retry_backoff`` doubled for each failure before it, at most
    ``retry_backoff_limit``."""
    first, limit = store.retry_backoff, store.retry_backoff_limit
    # 2 ** 40 first delays exceed any limit a timedelta holds; stop doubling before.
    return min(first * (1 << min(max(failures - 1, 0), 40)), limit)


def record_failure(store: Driver, effect_id: str, error: str, now: datetime | None) -> StoredEffect:
    text = str(error)[:2000].encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")
    given = None if now is None else require_utc("now", now)
    with store._transaction(write=True):
        key = _locate(store, effect_id)
        found = store._q(
            f"SELECT {_COLUMNS} FROM outbox o WHERE o.rollout = ? AND o.seq = ? AND o.position = ?",
            key,
        ).fetchone()
        current = _stored(store, effect_id.partition(":")[0], *found)
        if current.status != "pending":
            return current  # delivered, moot or dead already: nothing to retry
        failures = current.failures + 1
        # The failure's instant: the caller's, else the attempt's (its lease), else
        # when the effect fell due.
        at = given or current.last_attempt_at or current.due_at
        dead = failures >= store.max_attempts
        retry = None if dead else at + backoff(store, failures)
        store._q(
            "UPDATE outbox SET failures = ?, last_error = ?, leased_until = NULL, "
            "next_attempt_at = ?, dead_at = ? WHERE rollout = ? AND seq = ? AND position = ?",
            (
                failures,
                text,
                None if retry is None else store._put(retry),
                store._put(at) if dead else None,
                *key,
            ),
        )
    return attrs.evolve(
        current,
        failures=failures,
        last_error=text,
        next_attempt_at=retry,
        dead_at=at if dead else None,
    )


def revive(store: Driver, effect_ids: Iterable[str]) -> int:
    ids = list(effect_ids)
    revived = 0
    with store._transaction(write=True):
        keys = [_locate(store, effect_id) for effect_id in ids]
        for effect_id, key in zip(ids, keys, strict=True):
            acked, superseded = store._q(
                "SELECT acked_at, superseded_at FROM outbox WHERE rollout = ? AND seq = ? "
                "AND position = ?",
                key,
            ).fetchone()
            if acked is not None or superseded is not None:
                # Refused before anything changes: the whole call does nothing.
                status = "acknowledged" if acked is not None else "superseded"
                raise InvalidInput(
                    f"{store._where}: effect {effect_id!r} is {status}; only a dead effect "
                    "can be revived"
                )
        for key in dict.fromkeys(keys):
            # Revived: pending again, with max_attempts more tries (attempts and the
            # last error stay, for the record).
            revived += store._q(
                "UPDATE outbox SET dead_at = NULL, failures = 0, next_attempt_at = NULL, "
                "leased_until = NULL WHERE rollout = ? AND seq = ? AND position = ? "
                "AND dead_at IS NOT NULL",
                key,
            ).rowcount
    return revived


def supersede(
    store: Driver, rollout: int, before_seq: int, kinds: Iterable[str], at: datetime
) -> int:
    """Mark the undelivered effects of ``kinds`` (class names) that rollout ``rollout``'s
    journal entries before ``before_seq`` queued as superseded at ``at``, inside the open
    write transaction (through the pending index: the rollout's unacknowledged effects
    only). Returns how many."""
    wanted = sorted(set(kinds))
    if not wanted:
        return 0
    return store._q(
        "UPDATE outbox SET superseded_at = ?, leased_until = NULL WHERE rollout = ? "
        "AND seq < ? AND acked_at IS NULL AND superseded_at IS NULL "
        f"AND kind IN ({', '.join('?' * len(wanted))})",
        (store._put(at), rollout, before_seq, *wanted),
    ).rowcount
