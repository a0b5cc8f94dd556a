"""What the store returns, and the protocol every backend implements."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import attrs

from certflow.core.commands import Command
from certflow.core.effects import Effect
from certflow.core.errors import CommandRefused, UnknownDevice
from certflow.core.plan import DeviceRecord, DeviceState, Plan, RolloutState
from certflow.core.rollout import Rollout
from certflow.core.serialization import encode
from certflow.core.summary import Overview

__all__ = [
    "Applied",
    "JournalEntry",
    "Refused",
    "RefusedMode",
    "RolloutInfo",
    "Store",
    "StoredEffect",
    "View",
]


@attrs.frozen
class RolloutInfo:
    """One line of the rollout list."""

    name: str
    state: RolloutState
    clock: datetime
    devices: int
    counts: dict[DeviceState, int]
    percent_complete: float
    next_due: datetime | None
    #: Read at an instant past a due timer: the state, counts and progress are what a
    #: tick then would leave (``clock`` is the stored rollout's); nothing was stored.
    projected: bool = False
    #: The head of view-details at the instant read (what :meth:`SqlStore.view` would
    #: give then), which the line is made from: a list page shows it without a
    #: ``view()`` per rollout.
    overview: Overview = attrs.field(kw_only=True, repr=False)


@attrs.frozen
class View:
    """A rollout's view-details head read at an instant (:meth:`SqlStore.view`).

    ``projected``: timers fell due between the rollout's clock and that instant (the
    earliest at ``due``) and no tick has stored them, so ``overview`` is what a tick at
    that instant would leave; nothing was stored.
    """

    overview: Overview
    projected: bool = False
    due: datetime | None = None


@attrs.frozen
class StoredEffect:
    """An effect in the outbox. ``id`` is ``rollout:seq:position``: stable, unique, and
    the same every time the effect is delivered, so that a handler can deduplicate.

    Its delivery record: ``acked_at`` is the delivery instant (when the host
    acknowledged it); ``attempts`` the deliveries started (each lease), the latest at
    ``last_attempt_at``; ``failures`` the failed ones since it was last revived, the
    latest ``last_error``; ``next_attempt_at`` when a drainer may try again after a
    failure (exponential back-off); ``dead_at`` when it failed its store's
    ``max_attempts``-th time (no longer retried until revived); ``superseded_at`` when the
    end of its rollout made it moot (never delivered). See :attr:`status`.
    """

    id: str
    rollout: str
    effect: Effect
    acked_at: datetime | None
    failures: int
    last_error: str | None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    dead_at: datetime | None = None
    superseded_at: datetime | None = None

    @property
    def due_at(self) -> datetime:
        """When the effect became due."""
        return self.effect.due_at

    @property
    def status(self) -> str:
        """``acknowledged`` (delivered), ``superseded`` (moot: never delivered), ``dead``
        (failed too often: waits to be revived) or ``pending`` (to be delivered), in that
        order: an effect a drainer delivered just as its rollout ended is acknowledged."""
        if self.acked_at is not None:
            return "acknowledged"
        if self.superseded_at is not None:
            return "superseded"
        if self.dead_at is not None:
            return "dead"
        return "pending"


@attrs.frozen
class Refused:
    """A command of a batch that the rules refused, or that named a device the rollout
    does not know, and that was therefore not applied (``apply_all`` with ``refused``
    ``"skip"`` or ``"list"``): its ``position`` in the batch (from 0), the ``command``,
    and the ``error`` that the default ``refused="raise"`` would have raised."""

    position: int
    command: Command
    error: CommandRefused | UnknownDevice


#: What ``apply_all`` does with a command the rules refuse (:meth:`SqlStore.apply_all`).
RefusedMode = Literal["raise", "skip", "list"]


class Applied(list[StoredEffect]):
    """What a command, a batch, an advance or a tick did: the effects it placed in the
    outbox, in order (a list, as ever), and :attr:`changed`.

    ``changed`` is false for a no-op: a call that would emit no effect, change no device
    row and leave the rollout's state as it was (a duplicate report, enrolling an
    enrolled device, a bulk retry with nothing failed, ``ServerRestarted`` when no
    restart is required, an advance or a tick with nothing due). A no-op journals
    nothing and commits nothing, not even the rollout's clock. An empty list alone does
    not tell it: a report that installs a device changes the rollout and emits nothing.

    ``refused``: the commands of a batch that were not applied, in batch order (only
    ``apply_all`` with ``refused="skip"`` or ``"list"`` fills it; otherwise empty).
    """

    changed: bool
    refused: tuple[Refused, ...]

    def __init__(
        self,
        effects: Iterable[StoredEffect] = (),
        *,
        changed: bool = True,
        refused: Iterable[Refused] = (),
    ) -> None:
        super().__init__(effects)
        self.changed = changed
        self.refused = tuple(refused)

    def __repr__(self) -> str:
        tail = f", refused={self.refused!r}" if self.refused else ""
        return f"Applied({list.__repr__(self)}, changed={self.changed}{tail})"


@attrs.frozen
class JournalEntry:
    """One journal entry: what happened to a rollout at ``at``, and its outcome.

    ``kind`` is ``create`` (``body["rollout"]`` is the created rollout's document),
    ``advance`` (time moved the rollout), ``command`` or ``batch`` (``commands``, applied
    in order). ``state`` is the rollout's state afterwards; ``effects`` the ids of the
    effects it emitted, in order.
    """

    rollout: str
    seq: int
    at: datetime
    kind: str
    commands: tuple[Command, ...]
    state: RolloutState
    effects: tuple[str, ...]
    body: dict[str, Any] = attrs.field(repr=False, eq=False)

    def as_dict(self, *, document: bool = False) -> dict[str, Any]:
        """The entry as a JSON-ready object, one line of a JSON-lines export.

        ``document``: include the created rollout's whole document in a ``create`` entry
        (then the export alone replays the rollout; at a million devices it is tens of
        megabytes on one line).
        """
        data: dict[str, Any] = {
            "rollout": self.rollout,
            "seq": self.seq,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "commands": [encode(command) for command in self.commands],
            "state": self.state.value,
            "effects": list(self.effects),
        }
        if document and self.kind == "create":
            data["document"] = self.body
        return data


class Store(Protocol):
    """A durable home for rollouts (see ``docs/store.md``).

    Every method that changes a rollout runs in one transaction: the new state, its
    journal entry and its effects commit together or not at all. Instants passed in
    must be timezone-aware; the store keeps them in UTC.
    """

    def create(self, name: str, rollout: Rollout) -> RolloutInfo:
        """Store a rollout under a new name; its document is the journal's first entry."""

    def apply(self, name: str, command: Command, now: datetime) -> Applied:
        """Apply one command at ``now`` (timers due by then first), in one transaction;
        a no-op (``changed`` false) journals and commits nothing."""

    def apply_all(
        self,
        name: str,
        commands: Iterable[Command],
        now: datetime,
        *,
        refused: RefusedMode = "raise",
    ) -> Applied:
        """Apply commands in order at ``now`` in one transaction, refused whole (with
        ``refused="skip"``, the refused ones skipped; ``"list"``, all of them listed)."""

    def advance(self, name: str, now: datetime) -> Applied:
        """Fire what fell due by ``now`` and move the rollout's clock there."""

    def tick(self, now: datetime) -> Applied:
        """Advance every rollout with something due by ``now``, each in its own transaction."""

    def next_due(self, name: str | None = None) -> datetime | None:
        """The next instant at which time moves the rollout (or any rollout)."""

    def overview(self, name: str, now: datetime) -> Overview:
        """The head of view-details at ``now`` (projected if something fell due)."""

    def view(self, name: str, now: datetime) -> View:
        """The head of view-details at ``now``, and whether it is projected."""

    def devices(
        self,
        name: str,
        states: Sequence[DeviceState] = (),
        *,
        after: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> list[DeviceRecord]:
        """A keyset page of devices, in creation order, of the given states."""

    def rollouts(
        self, now: datetime | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[RolloutInfo]:
        """The rollouts' lines of the list by name: those after ``after``, at most ``limit``."""

    def plan(self, name: str) -> Plan:
        """The facts a rollout was created from."""

    def refusal(self, name: str, command: Command, now: datetime) -> CommandRefused | None:
        """The refusal an administrator's command would meet at ``now``, or ``None``."""

    def info(self, name: str, now: datetime | None = None) -> RolloutInfo:
        """One rollout's line of the list."""

    def journal(self, name: str) -> Iterator[JournalEntry]:
        """The journal, oldest entry first."""

    def replay(self, name: str) -> Rollout:
        """The rollout rebuilt from its journal through the in-memory evaluator."""

    def activity(self, name: str) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
        """Per device, the instants of its pushes and of the reports that answered one."""

    def dumps(self, name: str) -> str:
        """The rollout as :func:`certflow.dumps` writes it."""

    def effects(
        self,
        name: str | None = None,
        *,
        include_acknowledged: bool = False,
        due_by: datetime | None = None,
        dead: bool = False,
    ) -> list[StoredEffect]:
        """The outbox: pending effects (or all, or the dead), optionally only those due."""

    def lease(
        self,
        name: str | None = None,
        *,
        now: datetime,
        duration: timedelta = ...,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEffect]:
        """Claim pending effects due by ``now`` until ``now + duration``: other drainers
        skip them meanwhile."""

    def acknowledge(self, effect_ids: Iterable[str], now: datetime) -> int:
        """Mark effects performed; returns how many were pending."""

    def record_failure(
        self, effect_id: str, error: str, *, now: datetime | None = None
    ) -> StoredEffect:
        """Remember a failed delivery: its lease ends, and it is retried after a
        back-off, or dead after ``max_attempts`` failures."""

    def revive(self, effect_ids: Iterable[str]) -> int:
        """Make dead effects pending again; returns how many were dead."""

    def close(self) -> None:
        """Release the database."""
