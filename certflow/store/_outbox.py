"""The outbox: the effects each journal entry queued, read, leased to a drainer,
acknowledged once performed, or given back after a failed delivery. Each public
function is the :class:`~certflow.store.SqlStore` method of its name (documented there),
the store first."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from certflow.core.errors import InvalidInput
from certflow.core.instants import require_utc
from certflow.core.serialization import decode_effect
from certflow.store._driver import Driver
from certflow.store._inputs import MOST, can_store, is_count
from certflow.store._model import StoredEffect

__all__ = ["acknowledge", "effects", "lease", "record_failure"]

# An effect id's numbers, exactly as the store spells them.
_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,17})$")


def effects(
    store: Driver, name: str | None, include_acknowledged: bool, due_by: datetime | None
) -> list[StoredEffect]:
    where = [] if include_acknowledged else ["o.acked_at IS NULL"]
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
            "SELECT r.name, o.seq, o.position, o.body, o.acked_at, o.failures, o.last_error "
            f"FROM outbox o JOIN rollouts r ON r.id = o.rollout {clause} "
            "ORDER BY r.name, o.seq, o.position",
            params,
        ).fetchall()
    return [_stored(store, *found) for found in rows]


def _stored(
    store: Driver,
    name: str,
    seq: int,
    position: int,
    body: str,
    acked: Any,
    failures: int,
    error: Any,
) -> StoredEffect:
    effect = decode_effect(json.loads(body))
    return StoredEffect(
        f"{name}:{seq}:{position}", name, effect, store._get(acked), failures, error
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
    where = [
        "acked_at IS NULL",
        "due_at <= ?",
        "(leased_until IS NULL OR leased_until <= ?)",
    ]
    params: list[Any] = [store._put(at), store._put(at)]
    # A kind no database can store names no stored effect.
    wanted = None if kinds is None else sorted(k for k in set(kinds) if can_store(k))
    if wanted is not None:
        if not wanted:
            return []
        where.append(f"kind IN ({', '.join('?' * len(wanted))})")
        params += wanted
    with store._transaction(write=True):
        if name is not None:
            where.append("rollout = ?")
            params.append(store._row(name).id)
        rows = store._q(
            "SELECT rollout, seq, position, body, acked_at, failures, last_error "
            f"FROM outbox WHERE {' AND '.join(where)} ORDER BY rollout, seq, position"
            + ("" if limit is None else f" LIMIT {limit}")
            + store._skip_locked,
            params,
        ).fetchall()
        if rows:
            store._many(
                "UPDATE outbox SET leased_until = ? WHERE rollout = ? AND seq = ? AND position = ?",
                [(store._put(at + duration), r, s, p) for r, s, p, *_ in rows],
            )
        ids = sorted({r[0] for r in rows})
        names: dict[int, str] = {}
        if ids:
            marks = ", ".join("?" * len(ids))
            names.update(store._q(f"SELECT id, name FROM rollouts WHERE id IN ({marks})", ids))
    claimed = [_stored(store, names[r], *rest) for r, *rest in rows]
    claimed.sort(key=lambda e: (e.rollout, _position(e.id)))
    return claimed


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


def record_failure(store: Driver, effect_id: str, error: str) -> None:
    text = str(error)[:2000].encode("utf-8", "replace").decode("utf-8").replace("\x00", "?")
    with store._transaction(write=True):
        key = _locate(store, effect_id)
        store._q(
            "UPDATE outbox SET failures = failures + 1, last_error = ?, leased_until = NULL "
            "WHERE rollout = ? AND seq = ? AND position = ? AND acked_at IS NULL",
            (text, *key),
        )


def _position(effect_id: str) -> tuple[int, int]:
    _, seq, position = effect_id.rsplit(":", 2)
    return int(seq), int(position)
