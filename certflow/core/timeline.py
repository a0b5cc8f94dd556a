"""The timeline of a rollout: every instant the rules speak of, computed in one place.

Day N is ``t0 + N x 24h`` of exact elapsed time (t0: distribution start). The policy
gives the offsets; manual extensions move every later checkpoint and the deadline. The
evaluator's timers, the guards' hints, the summary and serialization all read these
functions; none of them recomputes an instant.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certflow.core.plan import Phase, Plan

__all__ = [
    "checkpoint_at",
    "deadline",
    "deadline_if_started",
    "extension_opens",
    "moved_deadline",
    "next_checkpoint",
    "next_checkpoint_is_final",
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


def next_notice(plan: Plan, phase: Phase) -> datetime | None:
    """When the next checkpoint will be announced; ``None`` once it has been."""
    checkpoint = next_checkpoint(plan, phase)
    if checkpoint is None or phase.notified_for == checkpoint:
        return None
    return checkpoint - plan.policy.notice_before


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
