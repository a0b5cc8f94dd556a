"""The timeline of a rollout: every instant the rules speak of, computed in one place.

Day N is ``t0 + N x 24h`` of exact elapsed time (t0: distribution start). The policy
gives the offsets; manual extensions move every later checkpoint and the deadline. The
evaluator's timers, the guards' hints, the summary and serialization all read these
functions; none of them recomputes an instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certflow.core.plan import Phase, Plan
from certflow.core.policy import ImportRule

__all__ = [
    "checkpoint_at",
    "deadline",
    "deadline_if_started",
    "expiry_checkpoint",
    "extension_opens",
    "moved_deadline",
    "next_checkpoint",
    "next_checkpoint_is_final",
    "next_decision",
    "next_decision_is_expiry",
    "next_notice",
]

DAY = timedelta(days=1)


def checkpoint_at(plan: Plan, phase: Phase, number: int) -> datetime | None:
    """Checkpoint ``number`` (0-based) of a started rollout, extensions included."""
    if phase.started_at is None or not 0 <= number < len(plan.policy.checkpoints):
        return None
    return phase.started_at + plan.policy.checkpoints[number] + phase.extension


def next_checkpoint(plan: Plan, phase: Phase) -> datetime | None:
    """The next checkpoint of a rollout that time still moves; ``None`` otherwise."""
    if not phase.state.running:
        return None
    return checkpoint_at(plan, phase, phase.checkpoints_done)


def next_checkpoint_is_final(plan: Plan, phase: Phase) -> bool:
    """Whether the next checkpoint is the last one: the deadline."""
    return phase.checkpoints_done == len(plan.policy.checkpoints) - 1


def deadline(plan: Plan, phase: Phase) -> datetime | None:
    """The deadline (the last checkpoint) of a rollout that time still moves."""
    if not phase.state.running:
        return None
    return checkpoint_at(plan, phase, len(plan.policy.checkpoints) - 1)


def expiry_checkpoint(plan: Plan, phase: Phase) -> datetime | None:
    """The existing certificate's expiry, when it is itself a checkpoint: under the rule
    ``distributed_or_expired``, in a rollout that time still moves, strictly after t0 and
    strictly before the (possibly moved) deadline. A manual extension does not move it."""
    if plan.policy.import_rule is not ImportRule.DISTRIBUTED_OR_EXPIRED:
        return None
    end = deadline(plan, phase)
    expiry = plan.existing_not_after
    if end is None or phase.started_at is None or not phase.started_at < expiry < end:
        return None
    return expiry


def next_decision(plan: Plan, phase: Phase) -> datetime | None:
    """The next instant at which time may import: the next checkpoint, or the expiry of
    the existing certificate when it comes first (a checkpoint it pre-empts is never
    reached). At the same instant the checkpoint is the one that decides."""
    checkpoint = next_checkpoint(plan, phase)
    expiry = expiry_checkpoint(plan, phase)
    if expiry is not None and (checkpoint is None or expiry < checkpoint):
        return expiry
    return checkpoint


def next_decision_is_expiry(plan: Plan, phase: Phase) -> bool:
    """Whether the next decision is the existing certificate's expiry (not a checkpoint
    at the same instant, which decides first)."""
    expiry = expiry_checkpoint(plan, phase)
    checkpoint = next_checkpoint(plan, phase)
    return expiry is not None and (checkpoint is None or expiry < checkpoint)


def next_notice(plan: Plan, phase: Phase) -> datetime | None:
    """When the next decision (:func:`next_decision`) will be announced, ``notice_before``
    ahead; ``None`` once it has been. A decision that becomes the next one with less
    time left is announced at once by the row that made it so (``announce_if_late``)."""
    decision = next_decision(plan, phase)
    if decision is None or phase.notified_for == decision:
        return None
    return decision - plan.policy.notice_before


def extension_opens(plan: Plan, phase: Phase) -> datetime | None:
    """When manual extension opens (day 6 by default; extensions do not move it)."""
    if phase.started_at is None:
        return None
    return phase.started_at + plan.policy.manual_extension_opens


def moved_deadline(plan: Plan, phase: Phase) -> datetime | None:
    """The deadline after one more manual extension."""
    current = deadline(plan, phase)
    return None if current is None else current + plan.policy.manual_extension


def deadline_if_started(plan: Plan, at: datetime) -> datetime:
    """The deadline of a distribution started at ``at``."""
    return at + plan.policy.deadline
