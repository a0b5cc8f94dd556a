"""The in-memory fleet: every device of a rollout, stored so that one change is O(1).

A device's state lives in one 32-bit code: ``attempts << 4 | initial_push << 3 | state``
where ``state`` indexes the device machine's states, ``attempts`` counts pushes of the
root and ``initial_push`` marks a device whose latest push was the fleet-wide push at
distribution start (one acknowledgement timer covers all of those). The codes live in
the copy-on-write tree of :mod:`certflow.core._vector`. Counts are packed in one int so
that a device event updates them with one addition (``COUNT_DELTA``): one per state,
and the devices still waiting on the fleet-wide first push (:func:`initial_pending`).

This layout is private to the in-memory driver; nothing outside the core reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

import immutables

from certflow.core._vector import CodeVector, Root
from certflow.core.errors import UnknownDevice
from certflow.core.plan import DeviceState

DEVICE_STATES: tuple[DeviceState, ...] = tuple(DeviceState)
STATE_MASK = 0b111
INITIAL_PUSH = 0b1000
ATTEMPT_SHIFT = 4
ONE_ATTEMPT = 1 << ATTEMPT_SHIFT

# Device counts packed in one int, COUNT_BITS bits a slot: one slot per device state
# (at most 8), and one more for the devices whose latest push is the fleet-wide first
# push and still unanswered (state pushed with the initial-push mark). The tables are
# indexed by a device's count key, its state and mark (``code & KEY_MASK``), so a device
# event updates every slot with one addition.
KEY_MASK = STATE_MASK | INITIAL_PUSH
COUNT_BITS = 40
COUNT_MASK = (1 << COUNT_BITS) - 1
_PUSHED = DEVICE_STATES.index(DeviceState.PUSHED)
_PENDING = DEVICE_STATES.index(DeviceState.PENDING)
_INSTALLED = DEVICE_STATES.index(DeviceState.INSTALLED)
#: The state in which a device awaits its push's acknowledgement: the one state the
#: first-push mark and its count slot are kept for (Rules.validate holds every wait to it).
AWAITING = _PUSHED
_STATE_NAMES = tuple(state.value for state in DEVICE_STATES)
_INITIAL_SLOT = STATE_MASK + 1
INITIAL_PENDING_SHIFT = COUNT_BITS * _INITIAL_SLOT
STATE_UNIT = tuple(1 << (COUNT_BITS * state) for state in range(STATE_MASK + 1))
INITIAL_UNIT = 1 << INITIAL_PENDING_SHIFT
COUNT_UNIT = tuple(
    STATE_UNIT[key & STATE_MASK] + (INITIAL_UNIT if key == _PUSHED | INITIAL_PUSH else 0)
    for key in range(KEY_MASK + 1)
)
COUNT_DELTA = tuple(
    tuple(COUNT_UNIT[new] - COUNT_UNIT[old] for new in range(KEY_MASK + 1))
    for old in range(KEY_MASK + 1)
)


def state_of(code: int) -> DeviceState:
    """The device state a code holds."""
    return DEVICE_STATES[code & STATE_MASK]


def attempts_of(code: int) -> int:
    """The push attempts a code holds."""
    return code >> ATTEMPT_SHIFT


def decode_all(codes: list[int]) -> tuple[list[str], list[int]]:
    """Every code's state name and attempts, in order (what serialisation writes)."""
    states, mask, shift = _STATE_NAMES, STATE_MASK, ATTEMPT_SHIFT
    return [states[code & mask] for code in codes], [code >> shift for code in codes]


def encode(state: int, attempts: int) -> int:
    """The code of a device in state index ``state`` after ``attempts`` pushes, unmarked."""
    return (attempts << ATTEMPT_SHIFT) | state


def first_push(code: int) -> int:
    """``code`` marked as awaiting the fleet-wide first push's acknowledgement."""
    return code | INITIAL_PUSH


def fact(code: int) -> int:
    """``code`` without the first-push mark: what two equal rollouts share (the mark is
    a storage choice of the timer queue)."""
    return code & ~INITIAL_PUSH


def count_codes(codes: list[int]) -> int:
    """The packed counts of a fleet of ``codes``."""
    return sum(COUNT_UNIT[code & KEY_MASK] for code in codes)


def state_count(packed: int, state: int) -> int:
    """How many devices are in state ``state`` (an index)."""
    return (packed >> (COUNT_BITS * state)) & COUNT_MASK


def unpack_counts(packed: int) -> dict[DeviceState, int]:
    """The per-state device counts held in a packed count integer."""
    return {state: state_count(packed, index) for index, state in enumerate(DEVICE_STATES)}


def count_of(packed: int, states: tuple[int, ...]) -> int:
    """How many devices are in any of ``states`` (state indices)."""
    return sum(state_count(packed, s) for s in states)


def initial_pending(packed: int) -> int:
    """Devices whose latest push is the fleet-wide first push and still unanswered."""
    return (packed >> INITIAL_PENDING_SHIFT) & COUNT_MASK


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
      :class:`Timeout` entries, in due order because instants never go backwards;
    * ``phase_due``: when the earliest timer of the rollout's state that does not read
      the fleet falls due. A cache kept here, in the cold part, so that a device event
      need not recompute it or carry it separately.
    """

    ids: tuple[str, ...]
    positions: dict[str, int]
    extra_ids: immutables.Map[int, str]
    extra_positions: immutables.Map[str, int]
    reasons: immutables.Map[int, str]
    timeouts: immutables.Map[int, Timeout]
    timeouts_head: int
    timeouts_tail: int
    phase_due: datetime | None


class Fleet(NamedTuple):
    """Every device of a rollout.

    The hot part, which every device event replaces, is ``root`` (the tree of codes),
    ``size`` and ``counts``; the rest is the shared :class:`Roster`. A tuple rather than
    an attrs class because one is built for every device event and ``tuple.__new__`` is
    several times cheaper than a frozen class's ``__init__``.
    """

    root: Root
    size: int
    counts: int
    roster: Roster

    @classmethod
    def new(cls, ids: tuple[str, ...], positions: dict[str, int], trusted: list[int]) -> Fleet:
        """A new rollout's fleet: every device pending, with no push yet, except the
        devices at the indices ``trusted``, which already trust the root (installed)."""
        pending, installed = encode(_PENDING, 0), encode(_INSTALLED, 0)
        codes = CodeVector.filled(len(ids), pending)
        counts = len(ids) * COUNT_UNIT[pending]
        if trusted:
            draft = codes.transient()
            for i in trusted:
                draft[i] = installed
            codes = draft.freeze()
            counts += len(trusted) * COUNT_DELTA[pending][installed]
        return cls.create(codes, counts, ids=ids, positions=positions, **empty_roster_maps())

    @classmethod
    def create(cls, codes: CodeVector, counts: int, **roster: Any) -> Fleet:
        """A fleet of ``codes`` whose roster has the fields ``roster``."""
        return cls(codes.root, len(codes), counts, Roster(**roster))

    @property
    def codes(self) -> CodeVector:
        """The per-device codes, in index order."""
        return CodeVector(self.root, self.size)

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

    def pending_timeouts(self) -> list[Timeout]:
        """The pending timeouts, in due order."""
        roster = self.roster
        return [roster.timeouts[i] for i in range(roster.timeouts_head, roster.timeouts_tail)]

    def awaiting(self) -> dict[int, datetime]:
        """The devices whose latest push still awaits its answer: index -> when it times out.

        The canonical view of the timer queue, whatever its layout: a timer is live for a
        device still pushed by that timer's push (same attempt, same initial-push mark);
        answered or superseded entries the queue still holds are left out.
        """
        pending = self.pending_timeouts()
        codes = list(self.codes) if pending else []
        found: dict[int, datetime] = {}
        for timeout in pending:
            wanted = (timeout.attempt << ATTEMPT_SHIFT) | (INITIAL_PUSH if timeout.initial else 0)
            wanted |= _PUSHED
            for index in range(timeout.first, timeout.last):
                if codes[index] == wanted:
                    found[index] = timeout.due
        return found


def empty_roster_maps() -> dict[str, Any]:
    """The roster fields of a fleet with no enrolments, reasons or timeouts yet."""
    return {
        "extra_ids": immutables.Map(),
        "extra_positions": immutables.Map(),
        "reasons": immutables.Map(),
        "timeouts": immutables.Map(),
        "timeouts_head": 0,
        "timeouts_tail": 0,
        "phase_due": None,
    }
