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
* :func:`_transition` makes a device action's declared writes on one device (the
  compiled :class:`~certflow.core.interpreter.DeviceAction`: count the attempt, keep a
  reason, start the wait, emit the push); the fleet-wide loops make the same writes in
  bulk (one acknowledgement timer for the initial push of a whole fleet, not one per
  device);
* :class:`Draft` is also the :class:`~certflow.core.interpreter.DevicePort` of the
  interpreter's device commands; :func:`run_commands` is the batch path, whose hot loop
  inlines the table lookup for rows without actions and hands every other command to
  the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import immutables

from certflow.core._fleet import (
    ATTEMPT_SHIFT,
    AWAITING,
    COUNT_DELTA,
    COUNT_UNIT,
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
    unpack_counts,
)
from certflow.core._vector import (
    CHUNK_BITS,
    CHUNK_MASK,
    MID_MASK,
    ROOT_SHIFT,
    CodeVector,
    Transient,
    set_code,
)
from certflow.core.effects import Effect, PushRoot
from certflow.core.interpreter import (
    IGNORED,
    Compiled,
    DeviceAction,
    DeviceTable,
    FleetMove,
    FleetResult,
    Turn,
    device_command,
    timeout_reason,
)
from certflow.core.policy import Policy

__all__ = ["Draft", "one_event", "run_commands"]

_CLEAR = ~(STATE_MASK | INITIAL_PUSH)


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
        #: Whether a device fact changed (a state, attempts, a reason, a new device):
        #: a command that changes none is a no-op.
        self.changed = False
        self.wait_span = compiled.wait_span(policy)
        self.timeout_reason = timeout_reason(compiled, policy)

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

    def transition(
        self,
        device: int,
        device_id: str,
        dest: int,
        calls: tuple[DeviceAction, ...],
        command: Any,
        run: Turn,
    ) -> None:
        """Move the device at index ``device`` to ``dest``, making the writes of ``calls``."""
        code = self.codes()[device]
        known = run.plan.identity  # the root a push names
        root = None if known is None else known.root.fingerprint
        _transition(self, device, code, dest, calls, command, run.now, run.effects, root)

    def locate(self, device_id: str) -> int | None:
        """The index of a device, or ``None`` if the fleet does not know it."""
        found = self.base.roster.positions.get(device_id)
        return self.extra_positions.get(device_id) if found is None else found

    def device_id(self, index: int) -> str:
        """The id of the device at ``index``."""
        ids = self.base.roster.ids
        return ids[index] if index < len(ids) else self.extra_ids[index]

    # --- DevicePort --------------------------------------------------------------------

    def state_of(self, device: int) -> int:
        """The state index of the device at index ``device``."""
        return (self.transient or self.vector)[device] & STATE_MASK

    def add(self, device_id: str) -> int:
        """Append a device new to the rollout, in the initial state; its index."""
        index = self.size
        self.changed = True
        code = self.compiled.device_states.index(self.compiled.rules.device.initial)
        self.codes().append(code)
        self.size += 1
        self.extra_ids = self.extra_ids.set(index, device_id)
        self.extra_positions = self.extra_positions.set(device_id, index)
        self.counts += COUNT_UNIT[code & KEY_MASK]
        return index

    def schedule(self, timeout: Timeout) -> None:
        """Start an acknowledgement timer."""
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
                live = code & KEY_MASK == AWAITING and code >> ATTEMPT_SHIFT == timeout.attempt
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

    def state_counts(self) -> dict[str, int]:
        """How many devices are in each state, by name."""
        return {state.value: n for state, n in unpack_counts(self.counts).items()}

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
        if move.selection == "due":
            return self._time_out(move, now)
        if move.pushes:  # validation: a fleet-wide push takes no other device action
            return self._push_all(move, now)
        if any(move.calls):
            return self._move_each(move, now)
        return self._move_all(move)

    def _move_all(self, move: FleetMove) -> FleetResult:
        """Every device in a source state moves; no device action runs."""
        dest = move.dest
        moved: list[int] = []
        # A device moved into pushed without a push is not waiting on the first push.
        unmark = tuple(~INITIAL_PUSH if target == AWAITING else -1 for target in dest)

        def convert(chunk: Any, base: int) -> Any:
            out = chunk
            for offset, code in enumerate(chunk):
                target = dest[code & STATE_MASK]
                if target >= 0:
                    if out is chunk:
                        out = chunk[:]
                    out[offset] = ((code & ~STATE_MASK) | target) & unmark[code & STATE_MASK]
                    moved.append(base + offset)
            return out

        before = self.counts
        self.vector = self._frozen().map_chunks(convert)
        self.counts += _move_delta(before, dest, ())
        self.changed = self.changed or bool(moved)
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
                target = dest[code & STATE_MASK]
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
        self.changed = self.changed or bool(by_attempt)
        ack = self.wait_span
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
        if source == AWAITING:
            delta -= initial_pending(before) * INITIAL_UNIT  # they all leave or re-push
        if marked and target == AWAITING:
            delta += moved * INITIAL_UNIT
    return delta


# --- Device actions ------------------------------------------------------------------------


def _transition(
    draft: Draft,
    index: int,
    code: int,
    dest: int,
    calls: tuple[DeviceAction, ...],
    command: Any,
    now: datetime,
    effects: list[Effect],
    root: str | None = None,
) -> None:
    """Move one device to state ``dest`` and make its device actions' declared writes
    (a push names ``root``, the fingerprint of the root pushed)."""
    new = (code & ~STATE_MASK) | dest
    for act in calls:
        if act.counts:
            new += ONE_ATTEMPT
        if act.reason:
            reason = command.reason if act.reason == "command" else draft.timeout_reason
            draft.reasons = draft.reasons.set(index, reason)
        if act.starts_wait:
            # This push is the device's own latest one, not the fleet's first push.
            new &= ~INITIAL_PUSH
            span = draft.wait_span
            if span is not None:
                draft.schedule(Timeout(now + span, index, index + 1, new >> ATTEMPT_SHIFT, False))
        if act.pushes:
            effects.append(PushRoot((draft.device_id(index),), new >> ATTEMPT_SHIFT, now, root))
    draft.codes()[index] = new
    draft.counts += COUNT_DELTA[code & KEY_MASK][new & KEY_MASK]
    draft.changed = True


# --- Device commands -------------------------------------------------------------------------


def run_commands(draft: Draft, run: Turn, table: DeviceTable, commands: Iterable[Any]) -> None:
    """Apply a run of device commands of one type, in order: the batch path.

    Rows without actions are applied inline (the hot loop: one table lookup and one
    write per report); every other case goes through the interpreter's
    :func:`~certflow.core.interpreter.device_command`, whose order of checks this
    loop keeps: a fast row needs a known device and a gate without guards.
    """
    fast = table.fast
    locate = draft.base.roster.positions.get
    if not table.allowed or table.guards:
        for command in commands:
            device_command(run, draft, table, command)
        return
    codes = draft.codes()
    owned, own = codes.owned, codes.own
    left = [0] * (KEY_MASK + 1)  # devices that left each count key by a fast row
    state_mask, key_mask = STATE_MASK, KEY_MASK
    for command in commands:
        index = locate(command.device_id)
        if index is None:
            device_command(run, draft, table, command)
            continue
        chunk, offset = owned.get(index >> CHUNK_BITS), index & CHUNK_MASK
        if chunk is None:
            chunk = own(index >> CHUNK_BITS)
        code = chunk[offset]
        source = code & state_mask
        dest = fast[source]
        if dest >= 0:
            chunk[offset] = code - source + dest
            left[code & key_mask] += 1
        elif dest != IGNORED:
            device_command(run, draft, table, command)
    if any(left):
        draft.changed = True
        draft.counts += sum(
            n * COUNT_DELTA[k][k - (k & STATE_MASK) + fast[k & STATE_MASK]]
            for k, n in enumerate(left)
            if n
        )


_tuple_new = tuple.__new__
_INITIAL_KEY = AWAITING | INITIAL_PUSH


def one_event(fleet: Fleet, dests: tuple[int, ...], index: int) -> Fleet | None:
    """The single-event hot path: the device at ``index`` moves by ``dests`` (a table's
    ``fast`` row, no actions), when nothing needs the general path.

    Returns the new fleet; ``fleet`` itself for a declared duplicate (nothing changes);
    ``None`` when the general path must decide (a row with actions, a refusal, or an
    answer that ends the timer at the head of the queue, which the general path prunes).
    """
    root = fleet.root
    code = root[index >> ROOT_SHIFT][(index >> CHUNK_BITS) & MID_MASK][index & CHUNK_MASK]
    key = code & KEY_MASK  # state and initial-push mark: the counts' key
    source = key & STATE_MASK
    dest = dests[source]
    if dest < 0:
        return fleet if dest == IGNORED else None
    roster = fleet.roster
    head = roster.timeouts_head
    if head != roster.timeouts_tail:
        timeout = roster.timeouts[head]
        if timeout.first == index or (
            timeout.initial and key == _INITIAL_KEY and initial_pending(fleet.counts) == 1
        ):
            return None
    return _tuple_new(
        Fleet,
        (
            set_code(root, index, code - source + dest),
            fleet.size,
            fleet.counts + COUNT_DELTA[key][key - source + dest],
            roster,
        ),
    )
