"""The console's page reads: the journal and the outbox as the History and Effects pages
show them, without decoding every device id.

A rollout's creation entry holds the whole fleet (every device id), a batch entry every
command of the batch, and a push every device it targets: at a million devices,
decoding them in Python took half a second for a page that shows a count. These reads
let the database count and slice the lists in its own JSON functions (SQLite's
``json_*``, PostgreSQL's ``json`` operators), so that what travels to Python and is
decoded is a count, the first ids and the small rest of the body, whatever the fleet.
The database still parses a big body to count it (in C: a tenth of a second at a million
devices on SQLite), so each store keeps the summaries it made: an entry and an effect's
body never change once written, and a page read again reads only the page's keys and
the effects' delivery records.
:func:`journal_page` and :func:`effect_summaries` are
:class:`~certflow.store.SqlStore`'s methods of those names (documented there), the
store first.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from datetime import datetime
from typing import Any, Generic, TypeVar

import attrs

from certflow.core.commands import Command
from certflow.core.effects import Effect
from certflow.core.errors import InvalidInput
from certflow.core.plan import DeviceState, RolloutState
from certflow.core.serialization import decode_command, decode_effect
from certflow.store._driver import Driver
from certflow.store._errors import StoreError
from certflow.store._inputs import is_count
from certflow.store._journal import FIRST_IDS
from certflow.store._model import StoredEffect
from certflow.store._outbox import stored_effect

__all__ = ["EffectSummary", "EntrySummary", "effect_summaries", "journal_page"]

#: Journal entries on a page when the caller names no limit.
JOURNAL_PAGE = 100
#: Device ids an effect summary keeps when the caller names no number.
SHOWN = 3


@attrs.frozen
class EntrySummary:
    """One journal entry as a page lists it (:meth:`SqlStore.journal_page`).

    ``kind``, ``seq``, ``at`` and ``state`` are the entry's (see
    :class:`~certflow.store.JournalEntry`); ``effects`` is how many effects it emitted.
    ``devices`` is the created rollout's device count (a ``create`` entry; else
    ``None``). ``commands`` holds a ``command`` entry's command (a batch's are not
    decoded: ``command_count`` says how many it holds, ``command_kinds`` how many of
    each command class, by class name). ``counts`` is the number of devices in each
    state after the entry (``None`` for an entry written before schema 7, which kept no
    summary).
    """

    rollout: str
    seq: int
    at: datetime
    kind: str
    state: RolloutState
    effects: int
    devices: int | None = None
    commands: tuple[Command, ...] = ()
    command_count: int = 0
    command_kinds: dict[str, int] = attrs.field(factory=dict)
    counts: dict[DeviceState, int] | None = None


@attrs.frozen
class EffectSummary:
    """One effect in the outbox as a page lists it (:meth:`SqlStore.effect_summaries`).

    ``stored`` is the effect as :meth:`SqlStore.effects` gives it, except that the
    device list of an effect that names devices holds only its first ids; ``devices``
    is that list's full length (``None`` for an effect that names no device).
    """

    stored: StoredEffect
    devices: int | None


def _sqlite(store: Driver) -> bool:
    # The two backends spell their JSON functions differently; the SQLite store's
    # driver errors are sqlite3's (the module is the standard library's, always there).
    return issubclass(getattr(store, "_driver_error", Exception), sqlite3.Error)


# The journal: each entry's state, effect count and size of its list (the creation's
# devices, a batch's commands) computed in SQL; the body itself travels only for the
# small entries (one command, or the passing of time); a batch's command classes are
# counted in SQL.
_JOURNAL_SQLITE = """
SELECT seq, at, kind,
  CASE WHEN kind IN ('create', 'batch') THEN NULL ELSE body END,
  CASE kind WHEN 'create' THEN json_extract(body, '$.phase.state')
            ELSE json_extract(body, '$.state') END,
  CASE kind WHEN 'create' THEN 0 ELSE json_extract(body, '$.effects') END,
  CASE kind WHEN 'create' THEN json_array_length(body, '$.devices.ids')
            WHEN 'batch' THEN json_array_length(body, '$.commands') END,
  CASE kind WHEN 'batch' THEN (
    SELECT json_group_object(t, n) FROM (
      SELECT json_extract(value, '$.type') AS t, count(*) AS n
      FROM json_each(j.body, '$.commands') GROUP BY t)) END
FROM journal j WHERE rollout = ? AND seq IN ({seqs})
"""
_JOURNAL_POSTGRES = """
SELECT seq, at, kind,
  CASE WHEN kind IN ('create', 'batch') THEN NULL ELSE body END,
  CASE kind WHEN 'create' THEN body::json -> 'phase' ->> 'state'
            ELSE body::json ->> 'state' END,
  CASE kind WHEN 'create' THEN 0 ELSE (body::json ->> 'effects')::bigint END,
  CASE kind WHEN 'create' THEN json_array_length(body::json -> 'devices' -> 'ids')
            WHEN 'batch' THEN json_array_length(body::json -> 'commands') END,
  CASE kind WHEN 'batch' THEN (
    SELECT json_object_agg(t, n)::text FROM (
      SELECT c ->> 'type' AS t, count(*) AS n
      FROM json_array_elements(j.body::json -> 'commands') AS c GROUP BY t) AS k) END
FROM journal j WHERE rollout = ? AND seq IN ({seqs})
"""


def journal_page(store: Driver, name: str, before: int | None, limit: int) -> list[EntrySummary]:
    if before is not None and not is_count(before):
        raise InvalidInput(f"before: a journal sequence number, not {before!r}")
    if not is_count(limit) or limit < 1:
        raise InvalidInput(f"limit: a positive number of entries, not {limit!r}")
    # seq is a positive 64-bit integer: "before the largest" is every entry.
    bound = 2**63 - 1 if before is None else before
    sql = _JOURNAL_SQLITE if _sqlite(store) else _JOURNAL_POSTGRES
    known = _cache(store).entries
    with store._transaction(write=False):
        row = store._row(name)
        # The page from the summaries written with the entries (schema 7), which never
        # touches the journal's rows (SQLite reads a big one whole, whatever is asked).
        summarized = store._q(
            f"SELECT seq, at, kind, summary FROM {store._summary_tables[0]} AS s "
            "WHERE rollout = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (row.id, bound, limit),
        ).fetchall()
        keys = [(seq, at, kind) for seq, at, kind, _ in summarized]
        for seq, at, kind, summary in summarized:
            if known.get((row.id, seq, kind)) is None:
                known.put((row.id, seq, kind), _summarized(store, seq, at, kind, summary))
        # The entries written before schema 7 have none, and come before every one that
        # has: the rest of the page is theirs, summarized from their bodies.
        lowest = keys[-1][0] if keys else bound
        if len(keys) < limit and lowest > 1:
            keys += store._q(
                "SELECT seq, at, kind FROM journal WHERE rollout = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?",
                (row.id, lowest, limit - len(keys)),
            ).fetchall()
        missing = [seq for seq, at, kind in keys if known.get((row.id, seq, kind)) is None]
        if missing:
            found = store._q(sql.format(seqs=_marks(missing)), (row.id, *missing)).fetchall()
            for columns in found:
                known.put((row.id, columns[0], columns[2]), _entry(store, *columns))
    return [
        attrs.evolve(summary, rollout=name)
        for seq, _, kind in keys
        if (summary := known.get((row.id, seq, kind))) is not None
    ]


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


def _summarized(store: Driver, seq: int, at: Any, kind: str, summary: str) -> EntrySummary:
    data = json.loads(summary)
    entry = _entry(
        store,
        seq,
        at,
        kind,
        json.dumps({"command": data["command"]}) if "command" in data else None,
        data["state"],
        data["effects"],
        data.get("devices", data.get("commands")),
        json.dumps(data["kinds"]) if "kinds" in data else None,
    )
    # Every state, as Rollout.counts() gives them (the row keeps those it has seen).
    counts = {state: int(data["counts"].get(state.value, 0)) for state in DeviceState}
    return attrs.evolve(entry, counts=counts)


def _entry(
    store: Driver,
    seq: int,
    at: Any,
    kind: str,
    body: str | None,
    state: str,
    effects: Any,
    size: int | None,
    kinds: str | None,
) -> EntrySummary:
    instant = store._get(at)
    if instant is None:  # pragma: no cover - the column is NOT NULL
        raise StoreError(f"{store._where}: journal entry {seq} has no instant")
    commands: tuple[Command, ...] = ()
    if body is not None:
        # As the journal's read takes them: an entry of one command, in either spelling.
        data = json.loads(body)
        listed = data.get("commands") or ([data["command"]] if "command" in data else [])
        commands = tuple(decode_command(x) for x in listed)
    counted = {str(k): int(n) for k, n in json.loads(kinds).items()} if kinds else {}
    return EntrySummary(
        "",  # the rollout's name when it is read (a rename keeps the summary)
        int(seq),
        instant,
        kind,
        RolloutState(state),
        int(effects or 0),
        devices=int(size) if kind == "create" and size is not None else None,
        commands=commands,
        command_count=int(size) if kind == "batch" and size is not None else len(commands),
        command_kinds=counted,
    )


# The outbox: an effect that names devices travels without its list (removed in SQL),
# with the list's length and its first ids beside it.
_EFFECTS_SQLITE = """
SELECT seq, position,
  CASE WHEN size IS NULL THEN body ELSE json_remove(body, '$.device_ids') END,
  size,
  CASE WHEN size IS NOT NULL THEN (
    SELECT json_group_array(value) FROM (
      SELECT value FROM json_each(body, '$.device_ids') LIMIT ?)) END
FROM (SELECT o.seq, o.position, o.body,
        json_array_length(o.body, '$.device_ids') AS size
      FROM outbox o WHERE o.rollout = ? AND o.seq IN ({seqs}){unsummarized}) AS o
"""
_EFFECTS_POSTGRES = """
SELECT o.seq, o.position,
  CASE WHEN n.size IS NULL THEN o.body ELSE (o.body::jsonb - 'device_ids')::text END,
  n.size,
  CASE WHEN n.size IS NOT NULL THEN (
    SELECT coalesce(json_agg(e ORDER BY i), '[]')::text
    FROM json_array_elements(o.body::json -> 'device_ids') WITH ORDINALITY AS t(e, i)
    WHERE i <= ?) END
FROM outbox o
  CROSS JOIN LATERAL (SELECT json_array_length(o.body::json -> 'device_ids') AS size) n
WHERE o.rollout = ? AND o.seq IN ({seqs}){unsummarized}
"""
# The effects written with a summary (schema 7) are read from it, unless a page names
# more ids than it keeps.
_UNSUMMARIZED = (
    " AND NOT EXISTS (SELECT 1 FROM {summaries} s "
    "WHERE s.rollout = o.rollout AND s.seq = o.seq AND s.position = o.position)"
)
# What a StoredEffect is made of besides its body, in StoredEffect's order.
_COLUMNS = (
    "o.acked_at, o.failures, o.last_error, o.attempts, "
    "o.last_attempt_at, o.next_attempt_at, o.dead_at, o.superseded_at"
)


def effect_summaries(store: Driver, name: str, shown: int) -> list[EffectSummary]:
    if shown != 0 and not is_count(shown):
        raise InvalidInput(f"shown: a number of device ids, not {shown!r}")
    sql = _EFFECTS_SQLITE if _sqlite(store) else _EFFECTS_POSTGRES
    known = _cache(store).effects
    with store._transaction(write=False):
        rollout = store._row(name).id
        # The delivery record of every effect (it changes: read each time), without the
        # bodies; then the bodies' summaries this store has not made yet (a body never
        # changes once written).
        rows = store._q(
            f"SELECT o.seq, o.position, o.kind, {_COLUMNS} FROM {store._outbox} o "
            "WHERE o.rollout = ? ORDER BY o.seq, o.position",
            (rollout,),
        ).fetchall()
        missing = sorted(
            {
                seq
                for seq, position, kind, *_ in rows
                if (rollout, seq, position, kind, shown) not in known
            }
        )
        unsummarized = ""
        if missing and shown <= FIRST_IDS:
            summaries = store._summary_tables[1]
            unsummarized = _UNSUMMARIZED.format(summaries=summaries)
            for seq, position, summary in store._q(
                f"SELECT seq, position, summary FROM {summaries} AS s "
                f"WHERE rollout = ? AND seq IN ({_marks(missing)})",
                (rollout, *missing),
            ).fetchall():
                data = json.loads(summary)
                listed = int(data.pop("device_count"))
                data["device_ids"] = data["device_ids"][:shown]
                effect = decode_effect(data)
                known.put((rollout, seq, position, type(effect).__name__, shown), (effect, listed))
        if missing:
            found = store._q(
                sql.format(seqs=_marks(missing), unsummarized=unsummarized),
                (shown, rollout, *missing),
            ).fetchall()
            for seq, position, body, size, first in found:
                effect, count = _cut(body, size, first)
                known.put((rollout, seq, position, type(effect).__name__, shown), (effect, count))
    return [_summary(store, name, rollout, shown, known, *columns) for columns in rows]


def _cut(body: str, size: int | None, first: str | None) -> tuple[Effect, int | None]:
    data = json.loads(body)
    if size is not None:
        data["device_ids"] = json.loads(first or "[]")
    return decode_effect(data), None if size is None else int(size)


def _summary(
    store: Driver,
    name: str,
    rollout: int,
    shown: int,
    known: _Kept[Any],
    seq: int,
    position: int,
    kind: str,
    *record: Any,
) -> EffectSummary:
    kept = known.get((rollout, seq, position, kind, shown))
    if kept is None:  # pragma: no cover - only if the row vanished between two reads
        raise StoreError(f"{store._where}: effect {name}:{seq}:{position} has no body")
    effect, count = kept
    return EffectSummary(stored_effect(store, name, seq, position, effect, record), count)


# --- the summaries each store keeps ------------------------------------------------------

#: Summaries a store keeps of each kind (the oldest are forgotten first): a page's worth
#: of entries and effects of many rollouts, a few hundred bytes each.
KEPT = 20_000

T = TypeVar("T")


class _Kept(Generic[T]):
    """Summaries by key, the first made forgotten first beyond ``KEPT``.

    A journal entry and an outbox row's body are written once and never changed, so
    their summary, made once (the database parses the body: at a million devices, a
    tenth of a second), stays true; the key holds the row's kind, so that a row of
    another database under the same key (a store reopened on a restored copy) is not
    mistaken for it.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], T] = {}

    def get(self, key: tuple[Any, ...]) -> T | None:
        return self._kept.get(key)

    def __contains__(self, key: tuple[Any, ...]) -> bool:
        return key in self._kept

    def put(self, key: tuple[Any, ...], value: T) -> None:
        self._kept[key] = value
        while len(self._kept) > KEPT:
            del self._kept[next(iter(self._kept))]


@attrs.define
class _Caches:
    entries: _Kept[EntrySummary] = attrs.field(factory=_Kept)
    effects: _Kept[tuple[Effect, int | None]] = attrs.field(factory=_Kept)


_CACHES: weakref.WeakKeyDictionary[Driver, _Caches] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def _cache(store: Driver) -> _Caches:
    # A store is used by one thread at a time, but the console runs several stores.
    with _GUARD:
        found = _CACHES.get(store)
        if found is None:
            found = _CACHES[store] = _Caches()
        return found
