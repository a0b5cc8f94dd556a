"""The rollout value: an immutable snapshot of one certificate import and its fleet.

A :class:`Rollout` never changes; :func:`certflow.advance` and :func:`certflow.apply`
return new ones. Its parts:

* ``plan``: the facts fixed at creation (certificates, kind, policy);
* ``phase``: the rollout machine's state and timeline;
* ``fleet``: every device's state, stored so that changing one device is O(1) and
  shares everything else with the previous version (see :mod:`certflow.core._vector`);
* ``clock``: the last instant the rollout has seen.

A device's state lives in one 32-bit code: ``attempts << 4 | initial_push << 3 | state``
where ``state`` indexes :data:`DEVICE_STATES`, ``attempts`` counts pushes of the root and
``initial_push`` marks a device whose latest push was the one at distribution start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import attrs
import immutables

from certflow.core._vector import CodeVector, Root
from certflow.core.errors import UnknownDevice
from certflow.core.machines import DEVICE_MACHINE, ROLLOUT_MACHINE
from certflow.core.policy import CertificateKind, Policy

__all__ = ["DeviceRecord", "DeviceState", "Phase", "Plan", "Rollout", "RolloutState"]


class RolloutState(StrEnum):
    """The rollout machine's states; values are the spec's names."""

    PENDING = "pending"
    DISTRIBUTING = "distributing"
    EXTENDED = "extended"
    IMPORTED = "imported"
    FORCED = "forced"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the rollout has ended in this state."""
        return self.value in ROLLOUT_MACHINE.terminal


class DeviceState(StrEnum):
    """The device sub-machine's states; values are the spec's names."""

    PENDING = "pending"
    PUSHED = "pushed"
    INSTALLED = "installed"
    FAILED = "failed"
    REMOVED = "removed"
    REENROLL_REQUIRED = "reenroll_required"


# The enums must be the declarations' states, in the declarations' order: the codes
# index this tuple.
assert tuple(RolloutState) == ROLLOUT_MACHINE.states
assert tuple(DeviceState) == DEVICE_MACHINE.states
DEVICE_STATES: tuple[DeviceState, ...] = tuple(DeviceState)
STATE_INDEX = {state: index for index, state in enumerate(DEVICE_STATES)}
PENDING, PUSHED, INSTALLED, FAILED, REMOVED, REENROLL = range(6)
STATE_MASK = 0b111
INITIAL_PUSH = 0b1000
ATTEMPT_SHIFT = 4
ONE_ATTEMPT = 1 << ATTEMPT_SHIFT

# Per-state device counts packed in one int, COUNT_BITS bits a state, so that a device
# event updates all of them with one addition (see ``COUNT_DELTA``).
COUNT_BITS = 40
COUNT_MASK = (1 << COUNT_BITS) - 1
COUNT_UNIT = tuple(1 << (COUNT_BITS * s) for s in range(len(DEVICE_STATES)))
COUNT_DELTA = tuple(
    tuple(COUNT_UNIT[new] - COUNT_UNIT[old] for new in range(len(DEVICE_STATES)))
    for old in range(len(DEVICE_STATES))
)


def unpack_counts(packed: int) -> dict[DeviceState, int]:
    """The per-state device counts held in a packed count integer."""
    return {
        state: (packed >> (COUNT_BITS * index)) & COUNT_MASK
        for index, state in enumerate(DEVICE_STATES)
    }


@attrs.frozen
class Plan:
    """The facts a rollout was created from; they never change."""

    kind: CertificateKind
    policy: Policy
    existing_not_after: datetime
    new_not_before: datetime
    new_not_after: datetime
    root_publicly_trusted: bool
    created_at: datetime


@attrs.frozen
class Phase:
    """The rollout machine's state and timeline.

    ``checkpoints_done`` counts checkpoints already evaluated; ``extension`` is the sum
    of manual extensions, which moves every later checkpoint and the deadline;
    ``notified_for`` is the checkpoint instant the last notice announced;
    ``next_due`` caches the earliest scheduled rollout event (a notice or a checkpoint)
    so that a device event need not recompute it.
    """

    state: RolloutState
    started_at: datetime | None = None
    checkpoints_done: int = 0
    extension: timedelta = timedelta(0)
    manual_extensions: int = 0
    notified_for: datetime | None = None
    ended_at: datetime | None = None
    restart_required: bool = False
    next_due: datetime | None = None


class Timeout(NamedTuple):
    """Pushes awaiting acknowledgement: devices ``first``..``last - 1`` pushed as ``attempt``.

    The one at distribution start covers the whole initial fleet and matches only devices
    still marked ``initial_push``; a retry or enrolment adds one for a single device.
    """

    due: datetime
    first: int
    last: int
    attempt: int
    initial: bool


class Roster(NamedTuple):
    """The cold part of a fleet: what changes only when devices enrol, fail or time out.

    * ``ids``/``positions``: the devices known at creation (the dict is never mutated);
    * ``extra_ids``/``extra_positions``: devices enrolled later, in persistent maps;
    * ``reasons``: the last failure reason of each device that ever failed;
    * ``timeouts``/``timeouts_head``/``timeouts_tail``: a persistent FIFO of
      :class:`Timeout` entries, in due order because instants never go backwards.
    """

    ids: tuple[str, ...]
    positions: dict[str, int]
    extra_ids: immutables.Map[int, str]
    extra_positions: immutables.Map[str, int]
    reasons: immutables.Map[int, str]
    timeouts: immutables.Map[int, Timeout]
    timeouts_head: int
    timeouts_tail: int


class Fleet(NamedTuple):
    """Every device of a rollout. Private layout; read it through :class:`Rollout`.

    The hot part, which every device event replaces, is ``root`` (the tree of codes of
    :mod:`certflow.core._vector`), ``size`` and ``counts`` (per-state counts, packed: see
    ``COUNT_DELTA``); the rest is the shared :class:`Roster`. A tuple rather than an
    attrs class because one is built for every device event and ``tuple.__new__`` is
    several times cheaper than a frozen class's ``__init__``.
    """

    root: Root
    size: int
    counts: int
    roster: Roster

    @classmethod
    def create(cls, codes: CodeVector, counts: int, **roster: Any) -> Fleet:
        """A fleet of ``codes`` whose roster has the fields ``roster``."""
        return cls(codes.root, len(codes), counts, Roster(**roster))

    def replace(
        self, *, codes: CodeVector | None = None, counts: int | None = None, **roster: Any
    ) -> Fleet:
        """This fleet with some codes, counts or roster fields replaced."""
        return Fleet(
            self.root if codes is None else codes.root,
            self.size if codes is None else len(codes),
            self.counts if counts is None else counts,
            self.roster._replace(**roster) if roster else self.roster,
        )

    @property
    def codes(self) -> CodeVector:
        """The per-device codes, in index order."""
        return CodeVector(self.root, self.size)

    @property
    def positions(self) -> dict[str, int]:
        """Index by id of the devices known at creation."""
        return self.roster.positions

    @property
    def extra_ids(self) -> immutables.Map[int, str]:
        """Ids by index of the devices enrolled since creation."""
        return self.roster.extra_ids

    @property
    def extra_positions(self) -> immutables.Map[str, int]:
        """Index by id of the devices enrolled since creation."""
        return self.roster.extra_positions

    @property
    def reasons(self) -> immutables.Map[int, str]:
        """The last failure reason by device index."""
        return self.roster.reasons

    @property
    def timeouts(self) -> immutables.Map[int, Timeout]:
        """The acknowledgement timeouts queue (see :class:`Roster`)."""
        return self.roster.timeouts

    @property
    def timeouts_head(self) -> int:
        """The queue position of the earliest pending timeout."""
        return self.roster.timeouts_head

    @property
    def timeouts_tail(self) -> int:
        """The queue position after the latest timeout."""
        return self.roster.timeouts_tail

    def locate(self, device_id: str) -> int:
        """The index of ``device_id``, or :class:`UnknownDevice`."""
        found = self.roster.positions.get(device_id)
        if found is None:
            found = self.roster.extra_positions.get(device_id)
            if found is None:
                raise UnknownDevice(
                    f"unknown device {device_id!r}: it is not in this rollout "
                    "(send Enroll first if it just enrolled)"
                )
        return found

    def device_id(self, index: int) -> str:
        """The id of the device at ``index``."""
        ids = self.roster.ids
        return ids[index] if index < len(ids) else self.roster.extra_ids[index]

    def all_ids(self) -> Iterator[str]:
        """Every device id in index order (creation, then enrolment)."""
        yield from self.roster.ids
        for index in range(len(self.roster.ids), self.size):
            yield self.roster.extra_ids[index]

    def next_timeout(self) -> Timeout | None:
        """The earliest pending acknowledgement timeout."""
        roster = self.roster
        if roster.timeouts_head == roster.timeouts_tail:
            return None
        return roster.timeouts[roster.timeouts_head]


@attrs.frozen
class DeviceRecord:
    """One device as the "view details" page shows it."""

    device_id: str
    state: DeviceState
    attempts: int
    last_failure_reason: str | None


@attrs.frozen(eq=False)
class Rollout:
    """One import of a new server certificate: an immutable value.

    Create one with :func:`certflow.new_rollout`; move it with :func:`certflow.advance`
    and :func:`certflow.apply`. Two rollouts are equal when they hold the same facts,
    phase, clock and devices, however their storage is laid out.
    """

    plan: Plan
    phase: Phase
    fleet: Fleet
    clock: datetime

    @property
    def state(self) -> RolloutState:
        """The rollout machine's current state."""
        return self.phase.state

    @property
    def device_count(self) -> int:
        """How many devices the rollout knows, removed ones included."""
        return self.fleet.size

    def device_ids(self) -> Iterator[str]:
        """Every device id, in creation then enrolment order."""
        return self.fleet.all_ids()

    def device_state(self, device_id: str) -> DeviceState:
        """The state of one device; :class:`UnknownDevice` if the rollout does not know it."""
        return DEVICE_STATES[self.fleet.codes[self.fleet.locate(device_id)] & STATE_MASK]

    def device(self, device_id: str) -> DeviceRecord:
        """One device's state, push attempts and last failure reason."""
        index = self.fleet.locate(device_id)
        return self._record(index, device_id)

    def devices(self) -> Iterator[DeviceRecord]:
        """Every device's record, lazily, in creation then enrolment order."""
        for index, device_id in enumerate(self.fleet.all_ids()):
            yield self._record(index, device_id)

    def _record(self, index: int, device_id: str) -> DeviceRecord:
        code = self.fleet.codes[index]
        return DeviceRecord(
            device_id=device_id,
            state=DEVICE_STATES[code & STATE_MASK],
            attempts=code >> ATTEMPT_SHIFT,
            last_failure_reason=self.fleet.reasons.get(index),
        )

    def counts(self) -> dict[DeviceState, int]:
        """How many devices are in each state (O(1): the counts are kept, not recounted)."""
        return unpack_counts(self.fleet.counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rollout):
            return NotImplemented
        mine, theirs = self.fleet, other.fleet
        return (
            self.plan == other.plan
            and self.phase == other.phase
            and self.clock == other.clock
            and mine.codes == theirs.codes
            and mine.counts == theirs.counts
            and list(mine.all_ids()) == list(theirs.all_ids())
            and dict(mine.reasons) == dict(theirs.reasons)
            and _pending_timeouts(mine) == _pending_timeouts(theirs)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Rollout {self.phase.state.value} at {self.clock.isoformat()} "
            f"devices={self.device_count}>"
        )


def _pending_timeouts(fleet: Fleet) -> list[Timeout]:
    return [fleet.timeouts[i] for i in range(fleet.timeouts_head, fleet.timeouts_tail)]
