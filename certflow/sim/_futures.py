"""Simulated futures of a live rollout: devices drawn with numpy, outcomes the engine's.

A future is what every device still to move does from ``now`` on: a device awaiting an
answer answers after the rest of its wait (drawn from one bootstrap replicate's
:class:`~certflow.sim._cure.Curve`), a failed one is pushed again at each bulk retry of
the administrator's calendar, and every answer fails with the replicate's failure share.
Those draws do not depend on whether the administrator extends, so both branches of a
forecast read the same futures (their difference is paired, run by run).

What the rollout does with a future is the engine's answer. A future is summed up by its
*pattern*: at each decision instant of the branch (the checkpoints and the existing
certificate's expiry, where the timeline puts them), whether every in-scope device
trusts the root, and at each review where the administrator would import now, whether
the threshold is met. The first future of each pattern is **replayed through the
evaluator** (:func:`certflow.apply_all` of its reports, :func:`certflow.advance` to each
decision, the administrator's commands through :func:`certflow.apply`): the engine says
when it imports, whether forced, and whom it cuts off. That count must equal the devices
the draws leave untrusting then, or the pattern's every future is replayed through the
engine instead (a rule the draws do not model, such as an acknowledgement timeout).
So a forecast costs a few replays, not one per future, and a million devices stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs
import numpy as np
import numpy.typing as npt

from certflow.core import commands as c
from certflow.core.effects import ImportCertificate, ReenrollmentRequired
from certflow.core.errors import CommandRefused
from certflow.core.evaluator import advance, apply, apply_all
from certflow.core.preview import preview
from certflow.core.rollout import Rollout
from certflow.core.summary import summarize
from certflow.sim._cure import Curve
from certflow.sim._host import REASONS, Floats

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
NEVER = np.iinfo(np.int64).max // 4  # a step no future reaches


@attrs.frozen
class Movers:
    """The devices that can still change at ``now``: awaiting an answer or failed.

    ``waited``: seconds each has waited for its latest push (awaiting ones); ``first``:
    that push is the device's first (it may be one that never answers); ``failed``:
    failed at ``now``, waiting for a retry. ``static`` counts in-scope devices that do
    not trust the root and will not move (none is pushed again), ``in_scope`` all.
    """

    ids: tuple[str, ...]
    waited: Floats
    first: Bools
    failed: Bools
    static: int
    in_scope: int


@attrs.frozen
class Clock:
    """Steps from t0 (the host ingests reports at each step): ``now_step`` is the last
    step at or before ``now``; ``retries`` the steps of the bulk retries to come."""

    t0: datetime
    step: timedelta
    now: datetime
    now_step: int
    retries: tuple[int, ...]

    def at(self, index: int) -> datetime:
        return self.t0 + index * self.step


@attrs.frozen
class Future:
    """One future's draws: each mover's step of trust (``NEVER``: not before the end),
    and every answer (mover index, step, failed) for a replay."""

    trust: Ints
    who: Ints
    when: Ints
    fails: Bools


def draw(movers: Movers, curve: Curve, clock: Clock, rng: np.random.Generator) -> Future:
    """One future of the movers, from one replicate's curve."""
    n = len(movers.ids)
    step = clock.step.total_seconds()
    base = (clock.now - clock.t0).total_seconds()
    trust = np.full(n, NEVER, dtype=np.int64)
    failed_at = np.where(movers.failed, clock.now_step, NEVER).astype(np.int64)
    who: list[Ints] = []
    when: list[Ints] = []
    fails: list[Bools] = []

    def answer(idx: Ints, pushed_at: float, waited: Floats, first: Bools, floor: int) -> None:
        delay = curve.residual(waited, first, rng.random(len(idx)))
        finite = np.isfinite(delay)
        idx, delay = idx[finite], delay[finite]
        # A report is ingested at the first step at or after it happens, after now.
        due = np.maximum(np.ceil((pushed_at + delay) / step).astype(np.int64), floor + 1)
        failed = rng.random(len(idx)) < curve.failure
        trust[idx[~failed]] = due[~failed]
        failed_at[idx[failed]] = due[failed]
        who.append(idx)
        when.append(due)
        fails.append(failed)

    waiting = np.flatnonzero(~movers.failed)
    answer(waiting, base, movers.waited[waiting], movers.first[waiting], clock.now_step)
    for retry in clock.retries:
        # Failed by the review (its reports come first): pushed again, a fresh wait.
        again = np.flatnonzero(failed_at <= retry)
        if not len(again):
            continue
        failed_at[again] = NEVER
        answer(
            again,
            retry * step,
            np.zeros(len(again)),
            np.zeros(len(again), dtype=bool),
            retry,
        )
    return Future(
        trust=trust,
        who=np.concatenate(who) if who else np.zeros(0, dtype=np.int64),
        when=np.concatenate(when) if when else np.zeros(0, dtype=np.int64),
        fails=np.concatenate(fails) if fails else np.zeros(0, dtype=bool),
    )


@attrs.frozen
class Schedule:
    """One branch's instants, as steps: ``decisions`` (where time may import: the
    checkpoints still ahead and the expiry, where the engine's timeline puts them),
    ``import_reviews`` (reviews where the administrator imports now at ``threshold``
    percent), ``extend_at`` (the review of a later extension) and ``end``."""

    start: Rollout
    decisions: tuple[int, ...]
    import_reviews: tuple[int, ...]
    threshold: float | None
    extend_at: int | None
    end: int


def untrusting(movers: Movers, future: Future, steps: Sequence[int], after: bool) -> Ints:
    """In-scope devices not trusting the root at each step: before that step's reports
    (a decision, which the host advances to first), or ``after`` them (a review)."""
    ordered = np.sort(future.trust)
    trusting = np.searchsorted(
        ordered, np.asarray(steps, dtype=np.int64), side="right" if after else "left"
    )
    left: Ints = (movers.static + len(ordered) - trusting).astype(np.int64)
    return left


def pattern(movers: Movers, future: Future, schedule: Schedule) -> bytes:
    """What the engine's outcome can depend on: completeness at each decision, and the
    administrator's threshold at each import review."""
    complete = untrusting(movers, future, schedule.decisions, after=False) == 0
    parts = [complete]
    if schedule.threshold is not None:
        left = untrusting(movers, future, schedule.import_reviews, after=True)
        share = 100.0 * (movers.in_scope - left) / max(movers.in_scope, 1)
        parts.append(share >= schedule.threshold)
    return np.concatenate(parts).tobytes()


@attrs.frozen
class Outcome:
    """What the engine did with one future: the import's instant (``None``: none by the
    end), whether forced, how many devices it cut off, and whether the instant was a
    decision (before that step's reports) or an administrator's review (after them)."""

    import_at: datetime | None
    forced: bool
    cutoffs: int
    at_decision: bool


def replay(
    movers: Movers, future: Future, schedule: Schedule, clock: Clock, retry: bool
) -> Outcome:
    """Run one future through the evaluator: its reports in batches between the events
    (decisions, retries, the extension, import reviews), the administrator's commands."""
    events = sorted(
        {*schedule.decisions, *schedule.import_reviews, schedule.end}
        | ({*clock.retries} if retry else set())
        | ({schedule.extend_at} if schedule.extend_at is not None else set())
    )
    order = np.argsort(future.when, kind="stable")
    who, when, fails = future.who[order], future.when[order], future.fails[order]
    ids = movers.ids
    rollout = schedule.start
    found: list[tuple[datetime, bool, int, bool]] = []

    def perform(effects: Sequence[object], at: datetime, decision: bool) -> None:
        cut = sum(len(e.device_ids) for e in effects if isinstance(e, ReenrollmentRequired))
        for e in effects:
            if isinstance(e, ImportCertificate):
                found.append((e.due_at, e.forced, cut, decision))

    def reports(lo: int, hi: int) -> list[c.Command]:
        a, b = np.searchsorted(when, [lo, hi], side="left")
        return [
            c.DeviceFailed(ids[d], REASONS[0]) if f else c.DeviceInstalled(ids[d])
            for d, f in zip(who[a:b].tolist(), fails[a:b].tolist(), strict=True)
        ]

    previous = clock.now_step + 1
    for event in events:
        if event <= clock.now_step:
            continue
        batch = reports(previous, event)
        if batch:
            last = int(when[np.searchsorted(when, event, side="left") - 1])
            step = apply_all(rollout, batch, clock.at(last))
            rollout = step.rollout
            perform(step.effects, clock.at(last), False)
        at = clock.at(event)
        moved = advance(rollout, at)
        rollout = moved.rollout
        perform(moved.effects, at, True)
        if rollout.state.terminal:
            break
        batch = reports(event, event + 1)
        if batch:
            step = apply_all(rollout, batch, at)
            rollout = step.rollout
            perform(step.effects, at, False)
            if rollout.state.terminal:
                break
        rollout = _administrator(rollout, schedule, clock, event, retry, perform)
        if rollout.state.terminal:
            break
        previous = event + 1
    if not found:
        return Outcome(None, False, 0, False)
    at, forced, cut, decision = found[0]
    return Outcome(at, forced, cut, decision)


def _administrator(
    rollout: Rollout,
    schedule: Schedule,
    clock: Clock,
    event: int,
    retry: bool,
    perform: Callable[[Sequence[object], datetime, bool], None],
) -> Rollout:
    """The administrator's review, in the host's order: import now (then nothing else
    that day), extend, bulk retry; each only if the engine takes it."""
    at = clock.at(event)
    if (
        event in schedule.import_reviews
        and schedule.threshold is not None
        and summarize(rollout, at).percent_complete >= schedule.threshold
    ):
        try:
            step = apply(rollout, c.ImportNow(), at)
        except CommandRefused:
            return rollout
        perform(step.effects, at, False)
        return step.rollout
    if event == schedule.extend_at:
        try:
            step = apply(rollout, c.ExtendManually(), at)
            rollout = step.rollout
            perform(step.effects, at, False)
        except CommandRefused:
            pass
    if retry and event in clock.retries:
        # The engine says whom a bulk retry pushes again (nobody when none failed).
        taken = preview(rollout, c.RetryAllFailed(), at)
        if taken.rollout is not None:
            rollout = taken.rollout
            perform(taken.effects, at, False)
    return rollout
