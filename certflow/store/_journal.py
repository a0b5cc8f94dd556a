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

__all__ = ["activity", "append", "read", "replay"]


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
    if effects:
        store._many(
            "INSERT INTO outbox (rollout, seq, position, kind, body, due_at, superseded_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    row.id,
                    row.seq,
                    position,
                    type(effect).__name__,
                    json.dumps(encode(effect), separators=(",", ":")),
                    store._put(effect.due_at),
                    store._put(ended) if position in moot else None,
                )
                for position, effect in enumerate(effects)
            ],
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
