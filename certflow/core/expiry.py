"""What an administrator must be told about the existing certificate's expiry.

The rule itself is declared (the ``expiry`` timer and its rows in
:mod:`certflow.core.machines`); this module only words what it means for one rollout at
one instant, for every front end alike (the view details carry these lines): a rollout
whose existing certificate expires before the first checkpoint of a distribution
started now (or has expired already), a deadline that lies past the expiry, and an
expiry that has passed while the rollout still runs.
"""

from __future__ import annotations

from datetime import datetime

from certflow.core import timeline
from certflow.core.instants import show
from certflow.core.plan import Phase, Plan, RolloutState
from certflow.core.policy import ImportRule

__all__ = ["expiry_warnings"]


def expiry_warnings(plan: Plan, phase: Phase, now: datetime) -> tuple[str, ...]:
    """The warnings about the existing certificate's expiry for a rollout at ``now``."""
    expiry = plan.existing_not_after
    if phase.state.terminal:
        return ()
    shown = show(expiry)
    passed = expiry <= now
    either = plan.policy.import_rule is ImportRule.DISTRIBUTED_OR_EXPIRED
    if phase.state is RolloutState.PENDING:
        first = now + plan.policy.checkpoints[0]
        if passed:
            return (
                f"the existing certificate expired on {shown}: until the new one is "
                "imported, the server's devices cannot be managed",
            )
        if expiry < first:
            then = (
                "the import will happen then, whatever the fleet's state"
                if either
                else "the first checkpoint will find it expired"
            )
            return (
                f"the existing certificate expires on {shown}, before the first checkpoint "
                f"({show(first)}) of a distribution started now: {then}",
            )
        return ()
    found: list[str] = []
    if passed:
        found.append(
            f"the existing certificate expired on {shown}: until the new one is imported, "
            "the server's devices cannot be managed"
        )
    deadline = timeline.deadline(plan, phase)
    if deadline is not None and not passed and deadline > expiry:
        then = (
            "the import will happen at the expiry"
            if either
            else "it is served expired from then until the import"
        )
        found.append(
            f"the deadline {show(deadline)} lies past the existing certificate's expiry "
            f"({shown}): {then}"
        )
    return tuple(found)
