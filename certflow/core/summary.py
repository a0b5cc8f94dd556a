"""The "view details" page of a rollout: counts, timeline and every device, lazily."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import attrs

from certflow.core.evaluator import advance
from certflow.core.rollout import DeviceRecord, DeviceState, Rollout, RolloutState, unpack_counts

__all__ = ["Summary", "summarize"]


@attrs.frozen
class Summary:
    """A rollout as an administrator sees it at ``now``.

    Counts and the timeline are computed at once (O(1) in the fleet size); the device
    list is read lazily through :meth:`devices`, which pages with ``offset``/``limit``.
    """

    state: RolloutState
    now: datetime
    counts: dict[DeviceState, int]
    in_scope: int
    percent_complete: float
    started_at: datetime | None
    next_checkpoint: datetime | None
    deadline: datetime | None
    manual_extension_available: bool
    manual_extension_opens_at: datetime | None
    manual_extensions: int
    restart_required: bool
    rollout: Rollout = attrs.field(repr=False, eq=False)

    def devices(
        self, offset: int = 0, limit: int | None = None, state: DeviceState | None = None
    ) -> Iterator[DeviceRecord]:
        """Device records in creation order, optionally of one ``state``, paged."""
        taken = 0
        skipped = 0
        for record in self.rollout.devices():
            if state is not None and record.state is not state:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if limit is not None and taken >= limit:
                return
            taken += 1
            yield record


def summarize(rollout: Rollout, now: datetime) -> Summary:
    """The view-details summary of ``rollout`` as advanced to ``now`` (pure)."""
    rollout = advance(rollout, now).rollout
    plan, phase = rollout.plan, rollout.phase
    counts = unpack_counts(rollout.fleet.counts)
    in_scope = len(rollout.fleet.codes) - counts[DeviceState.REMOVED]
    trusted = counts[DeviceState.INSTALLED]
    percent = 100.0 if in_scope == 0 else 100.0 * trusted / in_scope
    running = phase.state in (RolloutState.DISTRIBUTING, RolloutState.EXTENDED)
    next_checkpoint = deadline = opens = None
    available = False
    if phase.started_at is not None and running:
        policy = plan.policy
        next_checkpoint = (
            phase.started_at + policy.checkpoints[phase.checkpoints_done] + phase.extension
        )
        deadline = phase.started_at + policy.deadline + phase.extension
        opens = phase.started_at + policy.manual_extension_opens
        available = now >= opens and plan.new_not_after >= deadline + policy.manual_extension
    return Summary(
        state=phase.state,
        now=now,
        counts=counts,
        in_scope=in_scope,
        percent_complete=percent,
        started_at=phase.started_at,
        next_checkpoint=next_checkpoint,
        deadline=deadline,
        manual_extension_available=available,
        manual_extension_opens_at=opens,
        manual_extensions=phase.manual_extensions,
        restart_required=phase.restart_required,
        rollout=rollout,
    )
