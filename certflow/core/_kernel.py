"""The in-memory device kernel: device transitions over the fleet's code tree.

Theory of operation
-------------------
Every device transition, for one device or for the whole fleet, is read from the
interpreter's compiled tables (:class:`~certflow.core.interpreter.DeviceTable` and
:class:`~certflow.core.interpreter.FleetMove`); nothing here knows which state goes
where. What lives here is how the in-memory driver *stores* a transition:

* :class:`Draft` is a mutable working copy of a :class:`~certflow.core._fleet.Fleet`
  (a transient of the code tree, the counts, and the roster's maps). It is the
  :class:`~certflow.core.interpreter.FleetPort` the rollout interpreter moves the fleet
  through, and :meth:`Draft.freeze` gives the next immutable fleet;
* :data:`DEVICE_ACTIONS` implements the device machine's actions on one device;
  the fleet-wide loops implement ``push_root`` and ``record_timeout`` in bulk (one
  acknowledgement timer for the initial push of a whole fleet, not one per device);
* :func:`step` applies one device command through its table, for the single-event
  path and the batch path alike (:func:`run_commands`), whose hot loop inlines the
  table lookup for rows without actions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import immutables

from certflow.core._fleet import (
    ATTEMPT_SHIFT,
    COUNT_DELTA,
    COUNT_UNIT,
    DEVICE_STATES,
    INITIAL_PUSH,
    INITIAL_UNIT,
    KEY_MASK,
    ONE_ATTEMPT,
    STATE_MASK,
    STATE_UNIT,
    Fleet,
    Timeout,
    count_of,
    initial_pending,
    state_count,
)
from certflow.core._registry import Registry
from certflow.core._vector import CodeVector, Transient
from certflow.core.effects import Effect, PushRoot
from certflow.core.interpreter import (
    IGNORED,
    REFUSED,
    Compiled,
    DeviceTable,
    FleetMove,
    FleetResult,
    device_refusal,
    timeout_reason,
    unknown_device,
)
from certflow.core.machines import RULES, Call
from certflow.core.plan import DeviceState
from certflow.core.policy import Policy

__all__ = ["DEVICE_ACTIONS", "Draft", "run_commands", "step"]

_CLEAR = ~(STATE_MASK | INITIAL_PUSH)
_PUSHED = DEVICE_STATES.index(DeviceState.PUSHED)


class Draft:
    """A mutable working copy of a fleet; :meth:`freeze` returns the new fleet.

    The fleet it starts from is never modified: the code tree copies what it writes,
    and the roster's maps are persistent.
    """

    def __init__(self, fleet: Fleet, compiled: Compiled, policy: Policy) -> None:
        self.base = fleet
        self.compiled = compiled
        self.policy = policy
        self.vector = fleet.codes
        self.transient: Transient | None = None
        self.counts = fleet.counts
        roster = fleet.roster
        self.reasons = roster.reasons
        self.timeouts = roster.timeouts
        self.head = roster.timeouts_head
        self.tail = roster.timeouts_tail
        self.extra_ids = roster.extra_ids
        self.extra_positions = roster.extra_positions
        self.size = fleet.size

    # --- storage -------------------------------------------------------------------------

    def codes(self) -> Transient:
        """The code tree, open for writing."""
        if self.transient is None:
            self.transient = self.vector.transient()
        return self.transient

    def _frozen(self) -> CodeVector:
        if self.transient is not None:
            self.vector = self.transient.freeze()
            self.transient = None
        return self.vector

    def locate(self, device_id: str) -> int | None:
        """The index of a device, or ``None`` if the fleet does not know it."""
        found = self.base.roster.positions.get(device_id)
        return self.extra_positions.get(device_id) if found is None else found

    def device_id(self, index: int) -> str:
        """The id of the device at ``index``."""
        ids = self.base.roster.ids
        return ids[index] if index < len(ids) else self.extra_ids[index]

    def add(self, device_id: str, code: int) -> int:
        """Append a device new to the rollout, in state ``code``; its index."""
        index = self.size
        self.codes().append(code)
        self.size += 1
        self.extra_ids = self.extra_ids.set(index, device_id)
        self.extra_positions = self.extra_positions.set(device_id, index)
        self.counts += COUNT_UNIT[code & KEY_MASK]
        return index

    def schedule(self, timeout: Timeout) -> None:
        """Start an acknowledgement timer (none when the policy has no timeout)."""
        if self.policy.ack_timeout is None:
            return
        self.timeouts = self.timeouts.set(self.tail, timeout)
        self.tail += 1

    def prune(self) -> None:
        """Drop answered acknowledgement timers from the head of the queue.

        Afterwards the head (if any) is a push still waiting for its answer, so the
        queue's head is the next instant an acknowledgement timeout does anything. Every
        timer is dropped at most once, so this is amortised O(1) per event.
        """
        codes: Transient | CodeVector = self.transient or self.vector
        while self.head != self.tail:
            timeout = self.timeouts[self.head]
            if timeout.initial:
                live = initial_pending(self.counts) > 0
            else:
                code = codes[timeout.first]
                live = code & KEY_MASK == _PUSHED and code >> ATTEMPT_SHIFT == timeout.attempt
            if live:
                return
            self.timeouts = self.timeouts.delete(self.head)
            self.head += 1

    def freeze(self, phase_due: datetime | None) -> Fleet:
        """The fleet as this draft has made it, with the phase's next timer instant."""
        self.prune()
        roster = self.base.roster._replace(
            phase_due=phase_due,
            reasons=self.reasons,
            timeouts=self.timeouts,
            timeouts_head=self.head,
            timeouts_tail=self.tail,
            extra_ids=self.extra_ids,
            extra_positions=self.extra_positions,
        )
        vector = self._frozen()
        return Fleet(vector.root, len(vector), self.counts, roster)

    # --- FleetPort -------------------------------------------------------------------------

    def untrusting(self) -> int:
        """In-scope devices that do not trust the root."""
        return count_of(self.counts, self.compiled.untrusting_states)

    def next_timeout(self) -> datetime | None:
        """When the earliest pending push times out."""
        return None if self.head == self.tail else self.timeouts[self.head].due

    def drop_timeouts(self) -> None:
        """Forget every pending acknowledgement timer."""
        self.timeouts = immutables.Map()
        self.head = self.tail = 0

    def drop_timeouts_due(self, due: datetime) -> None:
        """Forget the acknowledgement timers that fell due at ``due``."""
        while self.head != self.tail and self.timeouts[self.head].due <= due:
            self.timeouts = self.timeouts.delete(self.head)
            self.head += 1

    def move(self, move: FleetMove, now: datetime) -> FleetResult:
        """Apply a fleet-wide move (see :class:`~certflow.core.interpreter.FleetMove`)."""
        names = {call.name for calls in move.calls for call in calls}
        if move.selection == "due":
            return self._time_out(move, now)
        if "push_root" in names:
            return self._push_all(move, now)
        if names:
            return self._move_each(move, now)
        return self._move_all(move)

    def _move_all(self, move: FleetMove) -> FleetResult:
        """Every device in a source state moves; no device action runs."""
        dest = move.dest
        moved: list[int] = []
        # A device moved into pushed without a push is not waiting on the first push.
        unmark = tuple(~INITIAL_PUSH if target == _PUSHED else -1 for target in dest)

        def convert(chunk: Any, base: int) -> Any:
            out = chunk
            for offset, code in enumerate(chunk):
                target = dest[code & 7]
                if target >= 0:
                    if out is chunk:
                        out = chunk[:]
                    out[offset] = ((code & ~STATE_MASK) | target) & unmark[code & 7]
                    moved.append(base + offset)
            return out

        before = self.counts
        self.vector = self._frozen().map_chunks(convert)
        self.counts += _move_delta(before, dest, ())
        return FleetResult(ids=self._ids(moved))

    def _push_all(self, move: FleetMove, now: datetime) -> FleetResult:
        """Every device in a source state is pushed the root once more."""
        dest = move.dest
        by_attempt: dict[int, list[int]] = {}
        # A fleet-wide first push of many devices gets one timer for all of them (the
        # devices carry INITIAL_PUSH), unless such a timer is already pending.
        ranged = not any(t.initial for t in self._pending())
        mark = INITIAL_PUSH if ranged else 0

        def convert(chunk: Any, base: int) -> Any:
            out = chunk
            group: list[int] = []
            current = -1  # the attempt number `group` collects (pushes come in runs)
            for offset, code in enumerate(chunk):
                target = dest[code & 7]
                if target >= 0:
                    if out is chunk:
                        out = chunk[:]
                    new = ((code + ONE_ATTEMPT) & _CLEAR) | target
                    out[offset] = new | mark
                    attempt = new >> ATTEMPT_SHIFT
                    if attempt != current:
                        group = by_attempt.setdefault(attempt, [])
                        current = attempt
                    group.append(base + offset)
            return out

        before = self.counts
        self.vector = self._frozen().map_chunks(convert)
        self.counts += _move_delta(before, dest, dest if ranged else ())
        ack = self.policy.ack_timeout
        if ranged and any(attempt != 1 for attempt in by_attempt):
            # Not a first push after all: no shared timer; clear the marks again.
            draft = self.codes()
            for indices in by_attempt.values():
                for index in indices:
                    code = draft[index]
                    draft[index] = code & ~INITIAL_PUSH
                    self.counts += COUNT_DELTA[code & KEY_MASK][code & STATE_MASK]
            ranged = False
        if ack is not None and by_attempt:
            if ranged:
                self.schedule(Timeout(now + ack, 0, self.size, 1, True))
            else:
                for attempt in sorted(by_attempt):
                    for index in by_attempt[attempt]:
                        self.schedule(Timeout(now + ack, index, index + 1, attempt, False))
        return FleetResult(pushes={a: self._ids(ix) for a, ix in by_attempt.items()})

    def _move_each(self, move: FleetMove, now: datetime) -> FleetResult:
        """Every device in a source state moves, its device actions run one by one."""
        moved = [i for i, code in enumerate(self._frozen()) if move.dest[code & STATE_MASK] >= 0]
        effects: list[Effect] = []
        for index in moved:
            code = self.codes()[index]
            _transition(self, index, code, move.dest[code & STATE_MASK],
                        move.calls[code & STATE_MASK], None, now, effects)  # fmt: skip
        return FleetResult(ids=self._ids(moved))

    def _time_out(self, move: FleetMove, due: datetime) -> FleetResult:
        """The devices whose latest push timed out at ``due`` move (their timers pop)."""
        draft = self.codes()
        timed_out: list[int] = []
        queue = self.timeouts.mutate()
        while self.head != self.tail and queue[self.head].due == due:
            timeout = queue.pop(self.head)
            self.head += 1
            # The latest push of a device is the initial one (flag set) or the one whose
            # attempt number matches; anything else was answered or pushed again since.
            flag = INITIAL_PUSH if timeout.initial else 0
            for index in range(timeout.first, timeout.last):
                code = draft[index]
                source = code & STATE_MASK
                target = move.dest[source]
                if (
                    target >= 0
                    and code >> ATTEMPT_SHIFT == timeout.attempt
                    and code & INITIAL_PUSH == flag
                ):
                    _transition(self, index, code, target, move.calls[source], None, due, [])
                    timed_out.append(index)
        self.timeouts = queue.finish()
        timed_out.sort()
        return FleetResult(ids=self._ids(timed_out))

    def _pending(self) -> list[Timeout]:
        return [self.timeouts[i] for i in range(self.head, self.tail)]

    def _ids(self, indices: list[int]) -> list[str]:
        ids = self.base.roster.ids
        if not indices or indices[-1] < len(ids):
            return list(map(ids.__getitem__, indices))
        return [self.device_id(i) for i in indices]


def _move_delta(before: int, dest: tuple[int, ...], marked: tuple[int, ...]) -> int:
    """The count change when every device of each source state ``s`` with
    ``dest[s] >= 0`` moves there; ``marked`` says which moved devices now carry the
    initial-push mark (all of them when it is ``dest``, none when empty)."""
    delta = 0
    for source, target in enumerate(dest):
        if target < 0:
            continue
        moved = state_count(before, source)
        delta += moved * (STATE_UNIT[target] - STATE_UNIT[source])
        if source == _PUSHED:
            delta -= initial_pending(before) * INITIAL_UNIT  # they all leave or re-push
        if marked and target == _PUSHED:
            delta += moved * INITIAL_UNIT
    return delta


# --- Device actions ------------------------------------------------------------------------

# (draft, index, code after the state change, command or None, now, effects) -> new code
DeviceAction = Callable[[Draft, int, int, Any, datetime, list[Effect]], int]
DEVICE_ACTIONS: Registry[DeviceAction] = Registry("device action")
_device_action = DEVICE_ACTIONS.register


@_device_action("push_root")
def _push_root(
    draft: Draft, index: int, code: int, command: Any, now: datetime, effects: list[Effect]
) -> int:
    code = (code + ONE_ATTEMPT) & ~INITIAL_PUSH
    attempt = code >> ATTEMPT_SHIFT
    ack = draft.policy.ack_timeout
    if ack is not None:
        draft.schedule(Timeout(now + ack, index, index + 1, attempt, False))
    effects.append(PushRoot((draft.device_id(index),), attempt, now))
    return code


@_device_action("keep_reason")
def _keep_reason(
    draft: Draft, index: int, code: int, command: Any, now: datetime, effects: list[Effect]
) -> int:
    draft.reasons = draft.reasons.set(index, command.reason)
    return code


@_device_action("record_timeout")
def _record_timeout(
    draft: Draft, index: int, code: int, command: Any, now: datetime, effects: list[Effect]
) -> int:
    draft.reasons = draft.reasons.set(index, timeout_reason(draft.policy))
    return code


DEVICE_ACTIONS.require_exactly((a.name for a in RULES.device.actions), "device actions")


def _transition(
    draft: Draft,
    index: int,
    code: int,
    dest: int,
    calls: tuple[Call, ...],
    command: Any,
    now: datetime,
    effects: list[Effect],
) -> None:
    """Move one device to state ``dest`` and run its device actions."""
    new = (code & ~STATE_MASK) | dest
    for invocation in calls:
        new = DEVICE_ACTIONS[invocation.name](draft, index, new, command, now, effects)
    draft.codes()[index] = new
    draft.counts += COUNT_DELTA[code & KEY_MASK][new & KEY_MASK]


# --- Device commands -------------------------------------------------------------------------


def step(
    draft: Draft,
    table: DeviceTable,
    command: Any,
    now: datetime,
    effects: list[Effect],
    gate: Callable[[DeviceTable, Any], None],
) -> None:
    """Apply one device command through its table: the general path of the kernel.

    Order of the checks: the device must be known (unless it enrols), then the rollout
    state's gate (``gate`` raises its refusal), then the device's row.
    """
    device_id = command.device_id
    index = draft.locate(device_id)
    if index is None:
        if table.enter is None:  # only the enrolment brings a device new to the rollout
            raise unknown_device(device_id)
        gate(table, command)
        target, calls = table.enter
        index = draft.add(device_id, _initial(draft))
        _transition(draft, index, draft.codes()[index], target, calls, command, now, effects)
        return
    gate(table, command)
    code = draft.codes()[index]
    source = code & STATE_MASK
    dest = table.dest[source]
    if dest == IGNORED:
        return
    if dest == REFUSED:
        raise device_refusal(draft.compiled, table, device_id, source, command)
    _transition(draft, index, code, dest, table.calls[source], command, now, effects)


def _initial(draft: Draft) -> int:
    return draft.compiled.device_states.index(draft.compiled.rules.device.initial)


def run_commands(
    draft: Draft,
    table: DeviceTable,
    commands: Iterable[Any],
    now: datetime,
    effects: list[Effect],
    gate: Callable[[DeviceTable, Any], None],
) -> None:
    """Apply a run of device commands of one type, in order: the batch path.

    Rows without actions are applied inline (the hot loop: one table lookup and one
    write per report); every other case goes through :func:`step`.
    """
    fast = table.fast
    locate = draft.base.roster.positions.get
    if not table.allowed or table.guards:
        for command in commands:
            step(draft, table, command, now, effects, gate)
        return
    codes = draft.codes()
    owned, own = codes.owned, codes.own
    left = [0] * (KEY_MASK + 1)  # devices that left each count key by a fast row
    for command in commands:
        index = locate(command.device_id)
        if index is None:
            step(draft, table, command, now, effects, gate)
            continue
        chunk = owned.get(index >> 8)
        if chunk is None:
            chunk = own(index >> 8)
        offset = index & 255
        code = chunk[offset]
        source = code & 7
        dest = fast[source]
        if dest >= 0:
            chunk[offset] = code - source + dest
            left[code & 15] += 1
        elif dest != IGNORED:
            step(draft, table, command, now, effects, gate)
    draft.counts += sum(
        n * COUNT_DELTA[k][k - (k & 7) + fast[k & 7]] for k, n in enumerate(left) if n
    )
