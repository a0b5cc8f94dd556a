"""The journal: each command's entry (and its effects, the outbox rows) appended in the
command's transaction, read back oldest first, and folded through the in-memory
evaluator (replay, and each device's pushes and answers). :func:`read`, :func:`replay`
and :func:`activity` are :class:`~certflow.store.SqlStore`'s ``journal``, ``replay`` and
``activity`` (documented there), the store first."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from certflow.core.commands import Command
from certflow.core.effects import Effect, PushRoot
from certflow.core.plan import RolloutState
from certflow.core.rollout import Rollout
from certflow.core.serialization import decode_command, encode, loads
from certflow.store._driver import REPORTS, Driver, Row
from certflow.store._errors import StoreError
from certflow.store._model import JournalEntry, StoredEffect

__all__ = ["FIRST_IDS", "activity", "append", "effect_summary", "entry_summary", "read", "replay"]

#: Device ids an effect's summary keeps of its list (the console's pages name three).
FIRST_IDS = 20


def entry_summary(kind: str, body: dict[str, Any], counts: dict[str, int]) -> str:
    """What the console shows of a journal entry (written beside it, schema 7): its
    rollout state and effect count, the device counts after it, and the size of its list
    (a creation's devices; a batch's commands, counted by class; a single command
    itself), so that a page reads these few bytes, not a body that names every device
    of a fleet."""
    summary: dict[str, Any] = {"counts": counts}
    if kind == "create":
        summary |= {"state": body["phase"]["state"], "effects": 0}
        summary["devices"] = len(body["devices"]["ids"])
    else:
        summary |= {"state": body["state"], "effects": body["effects"]}
    if kind == "command":
        summary["command"] = body["command"]
    if kind == "batch":
        kinds: dict[str, int] = {}
        for command in body["commands"]:
            kinds[command["type"]] = kinds.get(command["type"], 0) + 1
        summary |= {"commands": len(body["commands"]), "kinds": kinds}
    return json.dumps(summary, separators=(",", ":"))


def effect_summary(data: dict[str, Any]) -> str | None:
    """An effect's encoded body with its device list cut to its first ``FIRST_IDS`` ids
    and its length beside them (written with the effect, schema 7); ``None`` for an
    effect that names no devices (its body is as small as a summary)."""
    ids = data.get("device_ids")
    if ids is None:
        return None
    cut = {**data, "device_ids": ids[:FIRST_IDS], "device_count": len(ids)}
    return json.dumps(cut, separators=(",", ":"))


def append(
    store: Driver,
    row: Row,
    at: datetime,
    kind: str,
    body: dict[str, Any],
    effects: Sequence[Effect],
    superseded: tuple[frozenset[int], datetime] | None = None,
) -> list[StoredEffect]:
    """Append one journal entry for ``row`` (its seq moves on) and its effects to the
    outbox, in the open write transaction; the effects as stored. ``superseded``: the
    positions of the effects that the end of the rollout in this very entry made moot,
    and the instant it ended."""
    moot, ended = superseded or (frozenset(), at)
    row.seq += 1
    body = {**body, "state": row.phase.state.value, "effects": len(effects)}
    text = json.dumps(body, separators=(",", ":"))
    store._committed((row.id, row.seq, text))
    store._q(
        "INSERT INTO journal (rollout, seq, at, kind, body) VALUES (?, ?, ?, ?, ?)",
        (row.id, row.seq, store._put(at), kind, text),
    )
    store._q(
        "INSERT INTO journal_summaries (rollout, seq, at, kind, summary) VALUES (?, ?, ?, ?, ?)",
        (row.id, row.seq, store._put(at), kind, entry_summary(kind, body, row.counts)),
    )
    if effects:
        rows = []
        summaries = []
        for position, effect in enumerate(effects):
            data = encode(effect)
            rows.append(
                (
                    row.id,
                    row.seq,
                    position,
                    type(effect).__name__,
                    json.dumps(data, separators=(",", ":")),
                    store._put(effect.due_at),
                    store._put(ended) if position in moot else None,
                )
            )
            summary = effect_summary(data)
            if summary is not None:
                summaries.append((row.id, row.seq, position, summary))
        store._many(
            "INSERT INTO outbox (rollout, seq, position, kind, body, due_at, superseded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if summaries:
            store._many(
                "INSERT INTO outbox_summaries (rollout, seq, position, summary) "
                "VALUES (?, ?, ?, ?)",
                summaries,
            )
    return [
        StoredEffect(
            f"{row.name}:{row.seq}:{position}",
            row.name,
            effect,
            None,
            0,
            None,
            superseded_at=ended if position in moot else None,
        )
        for position, effect in enumerate(effects)
    ]


def read(store: Driver, name: str) -> Iterator[JournalEntry]:
    with store._transaction(write=False):
        row = store._row(name)
        entries = store._q(
            "SELECT seq, at, kind, body FROM journal WHERE rollout = ? ORDER BY seq",
            (row.id,),
        ).fetchall()
    for seq, at, kind, text in entries:
        body = json.loads(text)
        if kind == "create":
            commands: tuple[Command, ...] = ()
            state = RolloutState(body["phase"]["state"])
            effects: tuple[str, ...] = ()
        else:
            listed = body.get("commands") or ([body["command"]] if "command" in body else [])
            commands = tuple(decode_command(x) for x in listed)
            state = RolloutState(body["state"])
            effects = tuple(f"{name}:{seq}:{p}" for p in range(body["effects"]))
        instant = store._get(at)
        if instant is None:  # pragma: no cover - the column is NOT NULL
            raise StoreError(f"{store._where}: journal entry {seq} has no instant")
        yield JournalEntry(name, seq, instant, kind, commands, state, effects, body)


def activity(
    store: Driver, name: str
) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
    evaluator = store._evaluator
    # A report answers a push when the device awaits one: the declared wait's states.
    awaiting = store._compiled.rules.device.awaiting
    pushes: dict[str, list[datetime]] = {}
    reports: dict[str, list[datetime]] = {}
    rollout: Rollout | None = None

    def pushed(effects: Iterable[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, PushRoot):
                for device_id in effect.device_ids:
                    pushes.setdefault(device_id, []).append(effect.due_at)

    for entry in read(store, name):
        if entry.kind == "create":
            rollout = loads(json.dumps(entry.body))
            continue
        if rollout is None:
            raise StoreError(f"{store._where}: rollout {name!r}: journal has no creation")
        step = evaluator.advance(rollout, entry.at)
        rollout = step.rollout
        pushed(step.effects)
        for command in entry.commands:
            answers = (
                isinstance(command, REPORTS)
                and rollout.device_state(command.device_id).value in awaiting
            )
            step = evaluator.apply(rollout, command, entry.at)
            rollout = step.rollout
            pushed(step.effects)
            if answers:
                reports.setdefault(command.device_id, []).append(entry.at)  # type: ignore[union-attr]
    return pushes, reports


def replay(store: Driver, name: str) -> Rollout:
    evaluator = store._evaluator
    rollout: Rollout | None = None
    for entry in read(store, name):
        if entry.kind == "create":
            rollout = loads(json.dumps(entry.body))
        elif rollout is None:
            raise StoreError(f"{store._where}: rollout {name!r}: journal has no creation")
        elif entry.kind == "advance":
            rollout = evaluator.advance(rollout, entry.at).rollout
        elif entry.kind == "command":
            rollout = evaluator.apply(rollout, entry.commands[0], entry.at).rollout
        else:
            rollout = evaluator.apply_all(rollout, entry.commands, entry.at).rollout
    if rollout is None:
        raise StoreError(f"{store._where}: rollout {name!r}: journal has no creation")
    return rollout
