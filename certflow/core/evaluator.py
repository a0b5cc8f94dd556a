"""The pure evaluator: ``(rollout, now) -> (rollout', effects)``.

Theory of operation
-------------------
Time moves a rollout only at scheduled instants: a notice one day before each
checkpoint, the checkpoints themselves (the last is the deadline), and, when the policy
sets one, acknowledgement timeouts of pushes. :func:`advance` processes every instant
that fell due up to ``now``, in order, each at its own instant, so that advancing in one
jump equals advancing in any number of smaller steps. :func:`apply` first advances to
the command's instant, then applies the command. Nothing here reads a clock, performs
I/O or draws random numbers; effects are data for the host to perform.

Which transitions exist comes from :mod:`certflow.core.machines` (the derived tables below);
this module decides the guards and does the bookkeeping.

A refused command raises :class:`~certflow.core.errors.CommandRefused` saying why and what
would allow it; the rollout passed in is never modified, since values are immutable.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, NamedTuple

import attrs
import immutables

from certflow.core import commands as c
from certflow.core._vector import CHUNK_BITS, CHUNK_MASK, MID_MASK, ROOT_SHIFT, CodeVector, set_code
from certflow.core.effects import (
    AcknowledgementTimedOut,
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    ReenrollmentRequired,
    RestartRequired,
)
from certflow.core.errors import CommandRefused, InvalidInput, TimeWentBackwards
from certflow.core.instants import require_aware, show, show_span
from certflow.core.machines import DEVICE_MACHINE, ROLLOUT_MACHINE
from certflow.core.policy import CertificateKind, ImportRule, Policy
from certflow.core.rollout import (
    ATTEMPT_SHIFT,
    COUNT_DELTA,
    COUNT_UNIT,
    DEVICE_STATES,
    FAILED,
    INITIAL_PUSH,
    INSTALLED,
    ONE_ATTEMPT,
    PENDING,
    PUSHED,
    REENROLL,
    REMOVED,
    STATE_MASK,
    DeviceState,
    Fleet,
    Phase,
    Plan,
    Rollout,
    RolloutState,
    Timeout,
    unpack_counts,
)

__all__ = ["Step", "advance", "apply", "apply_all", "new_rollout"]


class Step(NamedTuple):
    """What :func:`advance` and :func:`apply` return; unpacks as ``(rollout, effects)``."""

    rollout: Rollout
    effects: tuple[Effect, ...]


# --- Tables derived from the declarations --------------------------------------------

_ROLLOUT = ROLLOUT_MACHINE.table()


def _device_table(trigger: str) -> tuple[int, ...]:
    """For one trigger: the destination state index for each source index, or -1."""
    table = DEVICE_MACHINE.table()
    names = DEVICE_MACHINE.states
    return tuple(
        names.index(table[(source, trigger)][""]) if (source, trigger) in table else -1
        for source in names
    )


DEVICE_NEXT: dict[str, tuple[int, ...]] = {t: _device_table(t) for t in DEVICE_MACHINE.triggers()}
_ON_INSTALLED = DEVICE_NEXT["report_installed"]
_ON_FAILED = DEVICE_NEXT["report_failed"]
_ON_TIMEOUT = DEVICE_NEXT["ack_timeout"]
_ON_RETRY = DEVICE_NEXT["retry"]
_ON_PUSH = DEVICE_NEXT["push"]
_ON_UNENROLL = DEVICE_NEXT["unenroll"]
_ON_ENROLL = DEVICE_NEXT["enroll"]
_ON_IMPORT = DEVICE_NEXT["import"]
_ON_REENROLLED = DEVICE_NEXT["reenrolled"]

# The hot loops spell the tree's shifts and masks as literals (a global lookup per use
# costs more than the work); they must be the tree's.
assert (ROOT_SHIFT, CHUNK_BITS, MID_MASK, CHUNK_MASK, STATE_MASK) == (14, 8, 63, 255, 7)

_RUNNING = (RolloutState.DISTRIBUTING, RolloutState.EXTENDED)
_CANCELLED = RolloutState.CANCELLED
_DEVICE_INSTALLED = c.DeviceInstalled
_IMPORTED = (RolloutState.IMPORTED, RolloutState.FORCED)
_NO_EFFECTS: tuple[Effect, ...] = ()


def _rollout_dest(state: RolloutState, trigger: str, guard: str = "") -> RolloutState | None:
    row = _ROLLOUT.get((state.value, trigger))
    if row is None or guard not in row:
        return None
    return RolloutState(row[guard])


# --- Construction ---------------------------------------------------------------------

_new = object.__new__
_set_plan = Rollout.plan.__set__  # type: ignore[attr-defined]
_set_phase = Rollout.phase.__set__  # type: ignore[attr-defined]
_set_fleet = Rollout.fleet.__set__  # type: ignore[attr-defined]
_set_clock = Rollout.clock.__set__  # type: ignore[attr-defined]
_tuple_new = tuple.__new__


def _make(plan: Plan, phase: Phase, fleet: Fleet, clock: datetime) -> Rollout:
    # The hot path builds one Rollout per device event; writing the slots directly
    # skips the frozen __init__ (same fields, same result, a third of the cost).
    rollout: Rollout = _new(Rollout)
    _set_plan(rollout, plan)
    _set_phase(rollout, phase)
    _set_fleet(rollout, fleet)
    _set_clock(rollout, clock)
    return rollout


def _with_codes(fleet: Fleet, codes: CodeVector, counts: int) -> Fleet:
    return _tuple_new(Fleet, (codes.root, len(codes), counts, fleet.roster))


def new_rollout(
    device_ids: Iterable[str],
    *,
    existing_not_after: datetime,
    new_not_before: datetime,
    new_not_after: datetime,
    root_publicly_trusted: bool,
    created_at: datetime,
    kind: CertificateKind = CertificateKind.MDM_SERVER,
    policy: Policy | None = None,
    trusted_device_ids: Iterable[str] = (),
) -> Rollout:
    """A ``pending`` rollout of a new certificate over the in-scope ``device_ids``.

    ``existing_not_after`` is the expiry of the certificate being replaced;
    ``new_not_before``/``new_not_after`` the validity of the new one, which must cover
    ``created_at`` through the deadline of a distribution started then.
    ``trusted_device_ids`` are devices known to trust the root already. Raises
    :class:`~certflow.core.errors.InvalidInput` for naive datetimes, duplicate or empty ids,
    or a certificate that would not stay valid through the deadline.
    """
    created_at = require_aware("created_at", created_at)
    existing_not_after = require_aware("existing_not_after", existing_not_after)
    new_not_before = require_aware("new_not_before", new_not_before)
    new_not_after = require_aware("new_not_after", new_not_after)
    try:
        kind = CertificateKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in CertificateKind)
        raise InvalidInput(f"unknown certificate kind {kind!r}; choose one of {choices}") from None
    if policy is None:
        policy = Policy()
    elif not isinstance(policy, Policy):
        raise InvalidInput(f"policy must be a certflow.Policy, got {type(policy).__name__}")
    if not isinstance(root_publicly_trusted, bool):
        raise InvalidInput(f"root_publicly_trusted must be a bool, got {root_publicly_trusted!r}")
    if new_not_before >= new_not_after:
        raise InvalidInput(
            f"the new certificate's validity is empty: not_before {show(new_not_before)} "
            f"is not before not_after {show(new_not_after)}"
        )
    _require_valid_through(
        new_not_before, new_not_after, created_at, created_at + policy.deadline, InvalidInput
    )

    if isinstance(device_ids, str):
        raise InvalidInput("device_ids must be an iterable of ids, not one string")
    ids = tuple(device_ids)
    index = dict(zip(ids, range(len(ids)), strict=True))
    if len(index) != len(ids):
        counted = Counter(ids)
        duplicates = [d for d, n in counted.items() if n > 1]
        shown = ", ".join(repr(d) for d in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise InvalidInput(f"duplicate device ids: {shown}{more}; each device must appear once")
    if not all(type(d) is str and d for d in ids):
        bad = next(d for d in ids if not (type(d) is str and d))
        raise InvalidInput(f"device ids must be non-empty strings, got {bad!r}")

    codes = CodeVector.filled(len(ids), PENDING)
    counts = len(ids) * COUNT_UNIT[PENDING]
    trusted = [index.get(d, -1) for d in dict.fromkeys(trusted_device_ids)]
    if -1 in trusted:
        unknown = [d for d in trusted_device_ids if d not in index]
        raise InvalidInput(f"trusted_device_ids names unknown devices: {unknown[:5]!r}")
    if trusted:
        draft = codes.transient()
        for i in trusted:
            draft[i] = INSTALLED
        codes = draft.freeze()
        counts += len(trusted) * COUNT_DELTA[PENDING][INSTALLED]

    plan = Plan(
        kind=kind,
        policy=policy,
        existing_not_after=existing_not_after,
        new_not_before=new_not_before,
        new_not_after=new_not_after,
        root_publicly_trusted=root_publicly_trusted,
        created_at=created_at,
    )
    fleet = Fleet.create(
        ids=ids,
        positions=index,
        extra_ids=immutables.Map(),
        extra_positions=immutables.Map(),
        codes=codes,
        counts=counts,
        reasons=immutables.Map(),
        timeouts=immutables.Map(),
        timeouts_head=0,
        timeouts_tail=0,
    )
    return Rollout(
        plan=plan, phase=Phase(state=RolloutState.PENDING), fleet=fleet, clock=created_at
    )


def _require_valid_through(
    not_before: datetime,
    not_after: datetime,
    start: datetime,
    deadline: datetime,
    error: type[Exception],
) -> None:
    if not_before > start:
        raise error(
            f"the new certificate is not valid yet at {show(start)}: it becomes valid at "
            f"{show(not_before)}; start at or after that instant"
        )
    if not_after < deadline:
        raise error(
            f"the new certificate expires at {show(not_after)}, before the deadline "
            f"{show(deadline)} of a distribution started at {show(start)}; "
            "get a certificate valid through the deadline"
        )


# --- Time -------------------------------------------------------------------------------


def _checkpoint_at(plan: Plan, phase: Phase) -> datetime:
    assert phase.started_at is not None
    return phase.started_at + plan.policy.checkpoints[phase.checkpoints_done] + phase.extension


def next_due_instant(plan: Plan, phase: Phase) -> datetime | None:
    """The next notice or checkpoint instant of a running rollout."""
    if phase.state not in _RUNNING:
        return None
    checkpoint = _checkpoint_at(plan, phase)
    if phase.notified_for != checkpoint:
        return checkpoint - plan.policy.notice_before
    return checkpoint


def _scheduled(plan: Plan, phase: Phase, **changes: Any) -> Phase:
    phase = attrs.evolve(phase, **changes)
    return attrs.evolve(phase, next_due=next_due_instant(plan, phase))


def _check_now(rollout: Rollout, now: datetime) -> datetime:
    if type(now) is not datetime or now.tzinfo is None:
        now = require_aware("now", now)
    if now < rollout.clock:
        raise TimeWentBackwards(
            f"now ({now.isoformat()}) is earlier than the last instant this rollout has "
            f"seen ({rollout.clock.isoformat()}); instants must never go backwards"
        )
    return now


def advance(rollout: Rollout, now: datetime) -> Step:
    """Process everything that fell due up to ``now``, in order; pure.

    Raises :class:`~certflow.core.errors.InvalidInput` for a naive ``now`` and
    :class:`~certflow.core.errors.TimeWentBackwards` for one earlier than ``rollout.clock``.
    """
    now = _check_now(rollout, now)
    effects: list[Effect] = []
    rollout = _catch_up(rollout, now, effects)
    return Step(rollout, tuple(effects))


def _catch_up(rollout: Rollout, now: datetime, effects: list[Effect]) -> Rollout:
    while True:
        phase_due = rollout.phase.next_due
        timeout = rollout.fleet.next_timeout()
        # At one instant, device timeouts go first: a checkpoint then sees them.
        if (
            timeout is not None
            and timeout.due <= now
            and (phase_due is None or timeout.due <= phase_due)
        ):
            rollout = _fire_timeouts(rollout, timeout.due, effects)
        elif phase_due is not None and phase_due <= now:
            rollout = _fire_phase_event(rollout, phase_due, effects)
        else:
            break
    if rollout.clock == now:
        return rollout
    return _make(rollout.plan, rollout.phase, rollout.fleet, now)


def _fire_phase_event(rollout: Rollout, due: datetime, effects: list[Effect]) -> Rollout:
    plan, phase = rollout.plan, rollout.phase
    checkpoint = _checkpoint_at(plan, phase)
    number = phase.checkpoints_done + 1
    final = number == len(plan.policy.checkpoints)
    if phase.notified_for != checkpoint:
        effects.append(Notify(number, checkpoint, final, due))
        phase = _scheduled(plan, phase, notified_for=checkpoint)
        return _make(plan, phase, rollout.fleet, due)
    holds = _condition_holds(rollout, checkpoint)
    trigger = "deadline" if final else "checkpoint"
    dest = _rollout_dest(phase.state, trigger, "condition_holds" if holds else "condition_fails")
    assert dest is not None, (phase.state, trigger)
    if dest in _IMPORTED:
        return _import(rollout, dest, checkpoint, effects)
    phase = _scheduled(plan, phase, state=dest, checkpoints_done=number)
    effects.append(ImportPostponed(number, _checkpoint_at(plan, phase), checkpoint))
    return _make(plan, phase, rollout.fleet, checkpoint)


def _fire_timeouts(rollout: Rollout, due: datetime, effects: list[Effect]) -> Rollout:
    """Fail every device whose latest push timed out at ``due``: one effect per instant."""
    fleet = rollout.fleet
    draft = fleet.codes.transient()
    counts = fleet.counts
    reasons = fleet.reasons.mutate()
    span = show_span(rollout.plan.policy.ack_timeout or timedelta(0))
    reason = f"no acknowledgement within {span}"
    timed_out: list[int] = []
    head = fleet.timeouts_head
    queue = fleet.timeouts.mutate()
    while head != fleet.timeouts_tail and queue[head].due == due:
        timeout = queue.pop(head)
        head += 1
        # The latest push of a device is the initial one (flag set) or the one whose
        # attempt number matches; anything else was answered or pushed again since.
        flag = INITIAL_PUSH if timeout.initial else 0
        dest = _ON_TIMEOUT[PUSHED]
        for index in range(timeout.first, timeout.last):
            code = draft[index]
            if (
                code & STATE_MASK == PUSHED
                and code >> ATTEMPT_SHIFT == timeout.attempt
                and code & INITIAL_PUSH == flag
            ):
                draft[index] = (code & ~STATE_MASK) | dest
                counts += COUNT_DELTA[PUSHED][dest]
                reasons[index] = reason
                timed_out.append(index)
    fleet = fleet.replace(
        codes=draft.freeze(),
        counts=counts,
        reasons=reasons.finish(),
        timeouts=queue.finish(),
        timeouts_head=head,
    )
    if timed_out:
        timed_out.sort()
        effects.append(AcknowledgementTimedOut(tuple(map(fleet.device_id, timed_out)), due))
    return _make(rollout.plan, rollout.phase, fleet, due)


def _schedule_timeout(fleet: Fleet, policy: Policy, timeout: Timeout) -> Fleet:
    if policy.ack_timeout is None:
        return fleet
    tail = fleet.timeouts_tail
    return fleet.replace(timeouts=fleet.timeouts.set(tail, timeout), timeouts_tail=tail + 1)


def _condition_holds(rollout: Rollout, at: datetime) -> bool:
    plan = rollout.plan
    distributed = _all_trust(rollout)
    expired = at >= plan.existing_not_after
    if plan.policy.import_rule is ImportRule.DISTRIBUTED_AND_EXPIRED:
        return distributed and expired
    return distributed or expired


def _all_trust(rollout: Rollout) -> bool:
    """Whether every in-scope device trusts the root (an empty scope does)."""
    if rollout.plan.root_publicly_trusted:
        return True
    counts = unpack_counts(rollout.fleet.counts)
    return not any(counts[DEVICE_STATES[s]] for s in (PENDING, PUSHED, FAILED, REENROLL))


# --- The import --------------------------------------------------------------------------


def _import(rollout: Rollout, dest: RolloutState, at: datetime, effects: list[Effect]) -> Rollout:
    plan, fleet = rollout.plan, rollout.fleet
    effects.append(ImportCertificate(forced=dest is RolloutState.FORCED, due_at=at))
    if not plan.root_publicly_trusted:
        stragglers: list[str] = []
        counts = fleet.counts
        moved = {s for s in range(len(DEVICE_STATES)) if _ON_IMPORT[s] >= 0}
        ids = fleet.device_id

        def convert(chunk: array[int], base: int) -> array[int]:
            out = chunk
            for offset, code in enumerate(chunk):
                if code & STATE_MASK in moved:
                    if out is chunk:
                        out = chunk[:]
                    out[offset] = (code & ~STATE_MASK) | _ON_IMPORT[code & STATE_MASK]
                    stragglers.append(ids(base + offset))
            return out

        codes = fleet.codes.map_chunks(convert)
        before = unpack_counts(counts)
        for source in moved:
            counts += before[DEVICE_STATES[source]] * COUNT_DELTA[source][_ON_IMPORT[source]]
        fleet = _with_codes(fleet, codes, counts)
        if stragglers:
            effects.append(ReenrollmentRequired(tuple(stragglers), at))
    effects.append(RestartRequired(at))
    fleet = fleet.replace(timeouts=immutables.Map(), timeouts_head=0, timeouts_tail=0)
    phase = attrs.evolve(
        rollout.phase, state=dest, ended_at=at, restart_required=True, next_due=None
    )
    return _make(plan, phase, fleet, at)


# --- Commands --------------------------------------------------------------------------

Handler = Callable[[Rollout, Any, datetime], tuple[Rollout, tuple[Effect, ...]]]


def apply(rollout: Rollout, command: c.Command, now: datetime) -> Step:
    """Advance to ``now``, then apply ``command`` at ``now``; pure.

    Effects come in the order they fell due: first what the advance emitted, then the
    command's. Raises :class:`~certflow.core.errors.CommandRefused` (why, and what would
    allow it), :class:`~certflow.core.errors.UnknownDevice`, or the errors of
    :func:`advance`; the rollout passed in is unchanged in every case.
    """
    # This is the one-device hot path, so the checks of _check_now are inlined, and so is
    # the common case of all: a device confirms the root and nothing else is due.
    if type(now) is not datetime or now.tzinfo is None or now < rollout.clock:
        now = _check_now(rollout, now)
    phase = rollout.phase
    due = phase.next_due
    fleet = rollout.fleet
    roster = fleet.roster
    head = roster.timeouts_head
    caught_up = (due is not None and due <= now) or (
        head != roster.timeouts_tail and roster.timeouts[head].due <= now
    )
    if type(command) is _DEVICE_INSTALLED and not caught_up:
        index = roster.positions.get(command.device_id)
        if index is not None:
            root = fleet.root
            code = root[index >> 14][(index >> 8) & 63][index & 255]  # see _vector.ROOT_SHIFT
            source = code & 7
            dest = _ON_INSTALLED[source]
            if dest >= 0 and phase.state is not _CANCELLED:
                fleet = _tuple_new(
                    Fleet,
                    (
                        set_code(root, index, code - source + dest),
                        fleet.size,
                        fleet.counts + COUNT_DELTA[source][dest],
                        roster,
                    ),
                )
                return _tuple_new(Step, (_make(rollout.plan, phase, fleet, now), _NO_EFFECTS))
    handler = _HANDLERS.get(type(command))
    if handler is None:
        raise InvalidInput(f"{command!r} is not a certflow command")
    if caught_up:
        effects: list[Effect] = []
        rollout = _catch_up(rollout, now, effects)
        rollout, more = handler(rollout, command, now)
        return _tuple_new(Step, (rollout, (*effects, *more)))
    return _tuple_new(Step, handler(rollout, command, now))


def _refuse_if_cancelled(rollout: Rollout, what: str) -> None:
    if rollout.phase.state is RolloutState.CANCELLED:
        raise CommandRefused(f"{what} refused: the rollout was cancelled; start a new rollout")


def _set_device(rollout: Rollout, index: int, code: int, new_code: int, now: datetime) -> Rollout:
    fleet = rollout.fleet
    counts = fleet.counts + COUNT_DELTA[code & STATE_MASK][new_code & STATE_MASK]
    root = set_code(fleet.root, index, new_code)
    return _make(
        rollout.plan,
        rollout.phase,
        _tuple_new(Fleet, (root, fleet.size, counts, fleet.roster)),
        now,
    )


def _unchanged(rollout: Rollout, now: datetime) -> tuple[Rollout, tuple[Effect, ...]]:
    if rollout.clock == now:
        return rollout, _NO_EFFECTS
    return _make(rollout.plan, rollout.phase, rollout.fleet, now), _NO_EFFECTS


def _device_installed(
    rollout: Rollout, command: c.DeviceInstalled, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    fleet = rollout.fleet
    index = fleet.positions.get(command.device_id)
    if index is None:
        index = fleet.locate(command.device_id)
    code = fleet.root[index >> ROOT_SHIFT][(index >> CHUNK_BITS) & MID_MASK][index & CHUNK_MASK]
    state = code & STATE_MASK
    dest = _ON_INSTALLED[state]
    if dest < 0 or rollout.phase.state is RolloutState.CANCELLED:
        if state == INSTALLED and rollout.phase.state is not RolloutState.CANCELLED:
            return _unchanged(rollout, now)
        _refuse_if_cancelled(rollout, f"DeviceInstalled({command.device_id!r})")
        raise CommandRefused(
            _device_refusal(command.device_id, DEVICE_STATES[state], "report the root installed")
        )
    return _set_device(rollout, index, code, (code & ~STATE_MASK) | dest, now), _NO_EFFECTS


def _device_refusal(device_id: str, state: DeviceState, action: str) -> str:
    hints = {
        "removed": "it was unenrolled; send Enroll if it came back",
        "reenroll_required": "it lost contact at the import; send Reenrolled once it re-enrolled",
        "pending": "the root has not been pushed to it yet; start the distribution first",
        "installed": "it already trusts the root",
        "pushed": "it has been pushed the root and no failure was reported",
        "failed": "its last push failed; retry it first",
    }
    return f"device {device_id!r} cannot {action}: it is {state.value}; {hints[state.value]}"


def _device_failed(
    rollout: Rollout, command: c.DeviceFailed, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    if not isinstance(command.reason, str):
        raise InvalidInput(f"DeviceFailed.reason must be a string, got {command.reason!r}")
    fleet = rollout.fleet
    index = fleet.locate(command.device_id)
    code = fleet.codes[index]
    state = code & STATE_MASK
    if rollout.phase.state not in _RUNNING:
        raise CommandRefused(
            f"DeviceFailed({command.device_id!r}) refused: the rollout is "
            f"{rollout.phase.state.value}; failures are reported while distributing"
        )
    if state == FAILED:
        return _unchanged(rollout, now)
    dest = _ON_FAILED[state]
    if dest < 0:
        raise CommandRefused(
            _device_refusal(command.device_id, DEVICE_STATES[state], "report a failure")
        )
    rollout = _set_device(rollout, index, code, (code & ~STATE_MASK) | dest, now)
    fleet = rollout.fleet.replace(reasons=rollout.fleet.reasons.set(index, command.reason))
    return _make(rollout.plan, rollout.phase, fleet, now), _NO_EFFECTS


def _require_retry(rollout: Rollout, what: str) -> None:
    if not rollout.plan.kind.retry_allowed:
        raise CommandRefused(
            f"{what} refused: retry applies only to MDM server certificates, and this rollout "
            f"replaces a {rollout.plan.kind.value} certificate"
        )
    if rollout.phase.state not in _RUNNING:
        raise CommandRefused(
            f"{what} refused: the rollout is {rollout.phase.state.value}; retries are allowed "
            "while distributing or extended"
        )


def _pushed(code: int, dest: int) -> int:
    """``code`` after one more push of the root, landing in state ``dest``."""
    return ((code + ONE_ATTEMPT) & ~(STATE_MASK | INITIAL_PUSH)) | dest


def _retry(rollout: Rollout, command: c.Retry, now: datetime) -> tuple[Rollout, tuple[Effect, ...]]:
    _require_retry(rollout, f"Retry({command.device_id!r})")
    fleet = rollout.fleet
    index = fleet.locate(command.device_id)
    code = fleet.codes[index]
    state = code & STATE_MASK
    if _ON_RETRY[state] < 0:
        raise CommandRefused(_device_refusal(command.device_id, DEVICE_STATES[state], "be retried"))
    return _push_device(rollout, index, code, _ON_RETRY[state], command.device_id, now)


def _push_device(
    rollout: Rollout, index: int, code: int, dest: int, device_id: str, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    """Push the root to one device once more: its new code, its timeout, its effect."""
    new_code = _pushed(code, dest)
    rollout = _set_device(rollout, index, code, new_code, now)
    attempt = new_code >> ATTEMPT_SHIFT
    fleet = _schedule_timeout(
        rollout.fleet, rollout.plan.policy, _single_timeout(rollout, now, index, attempt)
    )
    return _make(rollout.plan, rollout.phase, fleet, now), (PushRoot((device_id,), attempt, now),)


def _single_timeout(rollout: Rollout, now: datetime, index: int, attempt: int) -> Timeout:
    ack = rollout.plan.policy.ack_timeout or timedelta(0)
    return Timeout(now + ack, index, index + 1, attempt, False)


def _retry_all_failed(
    rollout: Rollout, command: c.RetryAllFailed, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    _require_retry(rollout, "RetryAllFailed")
    fleet = rollout.fleet
    draft = fleet.codes.transient()
    by_attempt: dict[int, list[int]] = {}
    base = 0
    for chunk in fleet.codes.chunks():
        for offset, code in enumerate(chunk):
            if code & STATE_MASK == FAILED:
                new_code = _pushed(code, _ON_RETRY[FAILED])
                draft[base + offset] = new_code
                by_attempt.setdefault(new_code >> ATTEMPT_SHIFT, []).append(base + offset)
        base += len(chunk)
    retried = sum(len(v) for v in by_attempt.values())
    if not retried:
        return _unchanged(rollout, now)
    counts = fleet.counts + retried * COUNT_DELTA[FAILED][_ON_RETRY[FAILED]]
    fleet = _with_codes(fleet, draft.freeze(), counts)
    effects: list[Effect] = []
    for attempt in sorted(by_attempt):
        indices = by_attempt[attempt]
        effects.append(PushRoot(tuple(fleet.device_id(i) for i in indices), attempt, now))
        for i in indices:
            fleet = _schedule_timeout(
                fleet, rollout.plan.policy, _single_timeout(rollout, now, i, attempt)
            )
    return _make(rollout.plan, rollout.phase, fleet, now), tuple(effects)


def _enroll(
    rollout: Rollout, command: c.Enroll, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    device_id = command.device_id
    if type(device_id) is not str or not device_id:
        raise InvalidInput(f"device ids must be non-empty strings, got {device_id!r}")
    _refuse_if_cancelled(rollout, f"Enroll({device_id!r})")
    fleet = rollout.fleet
    index = fleet.positions.get(device_id)
    if index is None:
        index = fleet.extra_positions.get(device_id)
    if index is None:
        index = len(fleet.codes)
        fleet = fleet.replace(
            extra_ids=fleet.extra_ids.set(index, device_id),
            extra_positions=fleet.extra_positions.set(device_id, index),
            codes=fleet.codes.append(PENDING),
            counts=fleet.counts + COUNT_UNIT[PENDING],
        )
        code = PENDING
    else:
        code = fleet.codes[index]
        if code & STATE_MASK != REMOVED:
            return _unchanged(rollout, now)  # already enrolled: a duplicate report
        new_code = (code & ~STATE_MASK) | _ON_ENROLL[REMOVED]
        fleet = _with_codes(
            fleet, fleet.codes.set(index, new_code), fleet.counts + COUNT_DELTA[REMOVED][PENDING]
        )
        code = new_code
    rollout = _make(rollout.plan, rollout.phase, fleet, now)
    state = rollout.phase.state
    if state in _RUNNING:
        return _push_device(rollout, index, code, _ON_PUSH[PENDING], device_id, now)
    if state in _IMPORTED:
        # Enrolling now means enrolling against the new certificate: it trusts the root.
        return _set_device(
            rollout, index, code, (code & ~STATE_MASK) | _ON_INSTALLED[PENDING], now
        ), _NO_EFFECTS
    return rollout, _NO_EFFECTS


def _unenroll(
    rollout: Rollout, command: c.Unenroll, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    fleet = rollout.fleet
    index = fleet.locate(command.device_id)
    _refuse_if_cancelled(rollout, f"Unenroll({command.device_id!r})")
    code = fleet.codes[index]
    dest = _ON_UNENROLL[code & STATE_MASK]
    if dest < 0:
        return _unchanged(rollout, now)  # already removed
    return _set_device(rollout, index, code, (code & ~STATE_MASK) | dest, now), _NO_EFFECTS


def _reenrolled(
    rollout: Rollout, command: c.Reenrolled, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    fleet = rollout.fleet
    index = fleet.locate(command.device_id)
    if rollout.phase.state not in _IMPORTED:
        raise CommandRefused(
            f"Reenrolled({command.device_id!r}) refused: the rollout is "
            f"{rollout.phase.state.value}; re-enrolment applies after the import"
        )
    code = fleet.codes[index]
    state = code & STATE_MASK
    if state == INSTALLED:
        return _unchanged(rollout, now)
    dest = _ON_REENROLLED[state]
    if dest < 0:
        raise CommandRefused(
            _device_refusal(command.device_id, DEVICE_STATES[state], "be re-enrolled")
        )
    return _set_device(rollout, index, code, (code & ~STATE_MASK) | dest, now), _NO_EFFECTS


def _refuse_state(rollout: Rollout, what: str, allowed: str) -> CommandRefused:
    state = rollout.phase.state
    ended = " (the rollout has ended)" if state.terminal else ""
    return CommandRefused(f"{what} refused: the rollout is {state.value}{ended}; {allowed}")


def _distribute_root(
    rollout: Rollout, command: c.DistributeRoot, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    dest = _rollout_dest(rollout.phase.state, "distribute_root")
    if dest is None:
        raise _refuse_state(rollout, "DistributeRoot", "distribution starts from pending")
    plan, fleet = rollout.plan, rollout.fleet
    _require_valid_through(
        plan.new_not_before, plan.new_not_after, now, now + plan.policy.deadline, CommandRefused
    )
    pushed: list[str] = []
    ids = fleet.device_id
    # Nothing is pushed while pending, so every pending device gets its first push.
    first_push = _pushed(PENDING, _ON_PUSH[PENDING]) | INITIAL_PUSH

    def convert(chunk: array[int], base: int) -> array[int]:
        out = chunk
        for offset, code in enumerate(chunk):
            if code & STATE_MASK == PENDING:
                if out is chunk:
                    out = chunk[:]
                out[offset] = first_push
                pushed.append(ids(base + offset))
        return out

    codes = fleet.codes.map_chunks(convert)
    counts = fleet.counts + len(pushed) * COUNT_DELTA[PENDING][_ON_PUSH[PENDING]]
    fleet = _with_codes(fleet, codes, counts)
    if plan.policy.ack_timeout is not None:
        fleet = _schedule_timeout(
            fleet, plan.policy, Timeout(now + plan.policy.ack_timeout, 0, len(codes), 1, True)
        )
    phase = _scheduled(plan, rollout.phase, state=dest, started_at=now)
    effects: tuple[Effect, ...] = (PushRoot(tuple(pushed), 1, now),) if pushed else _NO_EFFECTS
    return _make(plan, phase, fleet, now), effects


def _proceed_to_import(
    rollout: Rollout, command: c.ProceedToImport, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    if rollout.phase.state is not RolloutState.PENDING:
        hint = (
            "use ImportNow while distributing"
            if rollout.phase.state in _RUNNING
            else "it applies to a pending rollout"
        )
        raise _refuse_state(rollout, "ProceedToImport", hint)
    plan = rollout.plan
    _require_valid_through(plan.new_not_before, plan.new_not_after, now, now, CommandRefused)
    guard = "all_trust" if _all_trust(rollout) else "not_all_trust"
    return _import_by_command(rollout, "proceed_to_import", guard, now)


def _import_now(
    rollout: Rollout, command: c.ImportNow, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    if rollout.phase.state not in _RUNNING:
        hint = (
            "use ProceedToImport from pending"
            if rollout.phase.state is RolloutState.PENDING
            else "it applies while distributing or extended"
        )
        raise _refuse_state(rollout, "ImportNow", hint)
    guard = "condition_holds" if _condition_holds(rollout, now) else "condition_fails"
    return _import_by_command(rollout, "import_now", guard, now)


def _import_by_command(
    rollout: Rollout, trigger: str, guard: str, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    dest = _rollout_dest(rollout.phase.state, trigger, guard)
    assert dest is not None, (rollout.phase.state, trigger, guard)
    effects: list[Effect] = []
    rollout = _import(rollout, dest, now, effects)
    return rollout, tuple(effects)


def _extend_manually(
    rollout: Rollout, command: c.ExtendManually, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    phase, plan = rollout.phase, rollout.plan
    if _rollout_dest(phase.state, "extend_manually") is None:
        hint = (
            "distribute the root first"
            if phase.state is RolloutState.PENDING
            else "it applies while distributing or extended"
        )
        raise _refuse_state(rollout, "ExtendManually", hint)
    assert phase.started_at is not None
    opens = phase.started_at + plan.policy.manual_extension_opens
    if now < opens:
        day = plan.policy.manual_extension_opens / timedelta(days=1)
        raise CommandRefused(
            f"ExtendManually refused: manual extension opens on day {day:g}, {show(opens)} "
            f"({show_span(opens - now)} from now)"
        )
    deadline = phase.started_at + plan.policy.deadline + phase.extension
    moved = deadline + plan.policy.manual_extension
    if plan.new_not_after < moved:
        raise CommandRefused(
            f"ExtendManually refused: the new certificate expires at {show(plan.new_not_after)}, "
            f"before the moved deadline {show(moved)}; import by {show(deadline)} instead"
        )
    phase = _scheduled(
        plan,
        phase,
        extension=phase.extension + plan.policy.manual_extension,
        manual_extensions=phase.manual_extensions + 1,
    )
    return _make(plan, phase, rollout.fleet, now), _NO_EFFECTS


def _cancel(
    rollout: Rollout, command: c.Cancel, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    dest = _rollout_dest(rollout.phase.state, "cancel")
    if dest is None:
        raise _refuse_state(rollout, "Cancel", "only a rollout that has not ended can be cancelled")
    phase = attrs.evolve(rollout.phase, state=dest, ended_at=now, next_due=None)
    fleet = rollout.fleet.replace(timeouts=immutables.Map(), timeouts_head=0, timeouts_tail=0)
    return _make(rollout.plan, phase, fleet, now), _NO_EFFECTS


def _server_restarted(
    rollout: Rollout, command: c.ServerRestarted, now: datetime
) -> tuple[Rollout, tuple[Effect, ...]]:
    if not rollout.phase.restart_required:
        return _unchanged(rollout, now)
    phase = attrs.evolve(rollout.phase, restart_required=False)
    return _make(rollout.plan, phase, rollout.fleet, now), _NO_EFFECTS


_HANDLERS: dict[type, Handler] = {
    c.DeviceInstalled: _device_installed,
    c.DeviceFailed: _device_failed,
    c.Retry: _retry,
    c.RetryAllFailed: _retry_all_failed,
    c.Enroll: _enroll,
    c.Unenroll: _unenroll,
    c.Reenrolled: _reenrolled,
    c.DistributeRoot: _distribute_root,
    c.ProceedToImport: _proceed_to_import,
    c.ImportNow: _import_now,
    c.ExtendManually: _extend_manually,
    c.Cancel: _cancel,
    c.ServerRestarted: _server_restarted,
}


# --- The batch path ----------------------------------------------------------------------


def apply_all(rollout: Rollout, commands: Iterable[c.Command], now: datetime) -> Step:
    """Apply many commands at one instant, as :func:`apply` would one by one; pure.

    The result equals folding :func:`apply` over ``commands`` at ``now``. Runs of
    ``DeviceInstalled`` or of ``DeviceFailed`` reports while distributing take a fast
    path that writes into one draft of the fleet; other commands go through
    :func:`apply`. The batch is atomic: if any command is refused, the error propagates
    and nothing is kept.
    """
    rollout, caught_up = advance(rollout, now)
    effects: list[Effect] = list(caught_up)
    for kind, run in groupby(commands, type):
        if kind is c.DeviceInstalled and rollout.phase.state in _RUNNING:
            rollout = _apply_installed(rollout, run, now)  # type: ignore[arg-type]
        elif kind is c.DeviceFailed and rollout.phase.state in _RUNNING:
            rollout = _apply_failed(rollout, run, now)  # type: ignore[arg-type]
        else:
            for command in run:
                rollout, step = apply(rollout, command, now)
                effects.extend(step)
    return Step(rollout, tuple(effects))


def _apply_installed(
    rollout: Rollout, reports: Iterable[c.DeviceInstalled], now: datetime
) -> Rollout:
    """A run of ``DeviceInstalled`` written into one draft: the hot loop of :func:`apply_all`."""
    fleet = rollout.fleet
    draft = fleet.codes.transient()
    owned, own = draft.owned, draft.own
    position, locate = fleet.roster.positions.get, fleet.locate
    table = _ON_INSTALLED
    left = [0] * len(DEVICE_STATES)  # devices that left each state; counts settle once
    for report in reports:
        device_id = report.device_id
        index = position(device_id)
        if index is None:
            index = locate(device_id)
        chunk = owned.get(index >> 8)
        if chunk is None:
            chunk = own(index >> 8)
        offset = index & 255
        code = chunk[offset]
        source = code & 7
        dest = table[source]
        if dest < 0:
            if source == INSTALLED:
                continue  # a duplicate report
            raise CommandRefused(
                _device_refusal(device_id, DEVICE_STATES[source], "report the root installed")
            )
        chunk[offset] = code - source + dest
        left[source] += 1
    counts = fleet.counts + sum(n * COUNT_DELTA[s][table[s]] for s, n in enumerate(left) if n)
    return _make(rollout.plan, rollout.phase, _with_codes(fleet, draft.freeze(), counts), now)


def _apply_failed(rollout: Rollout, reports: Iterable[c.DeviceFailed], now: datetime) -> Rollout:
    """A run of ``DeviceFailed`` written into one draft, with their reasons."""
    fleet = rollout.fleet
    draft = fleet.codes.transient()
    reasons = fleet.roster.reasons.mutate()
    counts = fleet.counts
    for report in reports:
        if not isinstance(report.reason, str):
            raise InvalidInput(f"DeviceFailed.reason must be a string, got {report.reason!r}")
        index = fleet.locate(report.device_id)
        code = draft[index]
        source = code & STATE_MASK
        if source == FAILED:
            continue  # a duplicate report: the first reason stays
        dest = _ON_FAILED[source]
        if dest < 0:
            raise CommandRefused(
                _device_refusal(report.device_id, DEVICE_STATES[source], "report a failure")
            )
        draft[index] = code - source + dest
        counts += COUNT_DELTA[source][dest]
        reasons[index] = report.reason
    fleet = _with_codes(fleet, draft.freeze(), counts).replace(reasons=reasons.finish())
    return _make(rollout.plan, rollout.phase, fleet, now)
