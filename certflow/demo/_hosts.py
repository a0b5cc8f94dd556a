"""Where the demo's rollout lives: the :class:`Host` protocol the story reads and moves
it through, and its two hosts, :class:`InMemory` (the pure functions on a
:class:`~certflow.Rollout` value) and :class:`Stored` (a store's transactions and outbox).

Only :class:`Stored` knows the store; the story sees a :class:`Host`.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from certflow.core import commands as c
from certflow.core.effects import Effect
from certflow.core.evaluator import advance, apply, apply_all
from certflow.core.plan import DeviceState, RolloutState
from certflow.core.preview import Preview, preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import loads
from certflow.core.summary import Overview, summarize
from certflow.store import SqlStore, drain


class Host(Protocol):
    """Where the simulated rollout lives: what the simulation reads and does to it."""

    def state(self) -> RolloutState: ...
    def device_state(self, device_id: str) -> DeviceState: ...
    def counts(self) -> dict[DeviceState, int]: ...
    def device_count(self) -> int: ...
    def overview(self, now: datetime) -> Overview: ...
    def advance(self, now: datetime) -> Sequence[Effect]: ...
    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]: ...
    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]: ...
    def preview(self, command: c.Command, now: datetime) -> Preview: ...
    def rollout(self) -> Rollout: ...


class InMemory:
    """The rollout as a value, moved by the pure functions."""

    def __init__(self, rollout: Rollout) -> None:
        self._rollout = rollout

    def state(self) -> RolloutState:
        return self._rollout.state

    def device_state(self, device_id: str) -> DeviceState:
        return self._rollout.device_state(device_id)

    def counts(self) -> dict[DeviceState, int]:
        return self._rollout.counts()

    def device_count(self) -> int:
        return self._rollout.device_count

    def overview(self, now: datetime) -> Overview:
        return summarize(self._rollout, now)

    def advance(self, now: datetime) -> Sequence[Effect]:
        self._rollout, effects = advance(self._rollout, now)
        return effects

    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]:
        self._rollout, effects = apply(self._rollout, command, now)
        return effects

    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]:
        self._rollout, effects = apply_all(self._rollout, commands, now)
        return effects

    def preview(self, command: c.Command, now: datetime) -> Preview:
        return preview(self._rollout, command, now)

    def rollout(self) -> Rollout:
        return self._rollout


_EFFECT_TYPES: tuple[type, ...] = typing.get_args(Effect)  # every kind of effect


class Stored:
    """The rollout in a store: each step is a transaction, and the effects come back
    through the outbox, delivered by :func:`~certflow.store.drain` and acknowledged."""

    def __init__(self, store: SqlStore, name: str, rollout: Rollout) -> None:
        self.store = store
        self.name = name
        self.delivered = 0
        store.create(name, rollout)

    def _delivered(self, now: datetime) -> list[Effect]:
        performed: list[Effect] = []

        def handle(effect_id: str, effect: Effect) -> None:
            performed.append(effect)

        report = drain(self.store, dict.fromkeys(_EFFECT_TYPES, handle), now, rollout=self.name)
        if report.failed or report.unhandled:
            raise RuntimeError(f"the demo's outbox did not drain: {report}")
        self.delivered += len(report.delivered)
        return performed

    def state(self) -> RolloutState:
        return self.store.info(self.name).state

    def device_state(self, device_id: str) -> DeviceState:
        return self.store.device(self.name, device_id).state

    def counts(self) -> dict[DeviceState, int]:
        return dict(self.store.info(self.name).counts)

    def device_count(self) -> int:
        return self.store.info(self.name).devices

    def overview(self, now: datetime) -> Overview:
        return self.store.overview(self.name, now)

    def advance(self, now: datetime) -> Sequence[Effect]:
        self.store.tick(now)  # as a scheduler would: only when something is due
        return self._delivered(now)

    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]:
        self.store.apply(self.name, command, now)
        return self._delivered(now)

    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]:
        self.store.apply_all(self.name, commands, now)
        return self._delivered(now)

    def preview(self, command: c.Command, now: datetime) -> Preview:
        return self.store.preview(self.name, command, now)

    def rollout(self) -> Rollout:
        return loads(self.store.dumps(self.name))
