"""What a command would do, asked of the engine itself: the preview.

A caller that must show a consequence before an action (the devices an import would cut
off, the dates an extension would set, whether a retry is allowed) asks the preview
instead of working the rule out again: the preview *runs* the command through the same
declarations as :func:`certflow.apply` and keeps the result instead of the rollout. For
the pure core that is free, since a rollout is a value; a store runs the command in a
transaction it then rolls back (:meth:`certflow.store.SqlStore.preview`), so every driver
answers with its own rows, guards and actions.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from certflow.core.commands import Command
from certflow.core.effects import Effect, ReenrollmentRequired
from certflow.core.errors import CommandRefused
from certflow.core.evaluator import DEFAULT, Evaluator
from certflow.core.rollout import Rollout
from certflow.core.summary import Overview, overview

__all__ = ["Preview", "preview"]


@attrs.frozen
class Preview:
    """What ``command`` would do at ``now``, and nothing done.

    ``refusal`` is the :class:`~certflow.core.errors.CommandRefused` the command would
    meet (then ``effects`` is empty and ``overview`` is ``None``); otherwise ``effects``
    are the effects it would emit (timers due by ``now`` first, as :func:`certflow.apply`
    runs them) and ``overview`` is the rollout's head after it: the dates an extension
    would set, the state an import would end in. ``before`` is the head just before the
    command, at the same instant (the timers due by then fired), to compare with.
    ``rollout`` is the rollout after the command (the pure core's preview only; a store
    keeps its rollout in the database). ``changes`` is false for a command the rules
    take that would change nothing (a no-op: no effect, the rollout as it was).
    """

    effects: tuple[Effect, ...]
    overview: Overview | None
    refusal: CommandRefused | None = None
    before: Overview | None = None
    rollout: Rollout | None = attrs.field(default=None, eq=False, repr=False)
    changes: bool = True

    @property
    def accepted(self) -> bool:
        """True when the rules would take the command."""
        return self.refusal is None

    @property
    def cut_off(self) -> tuple[str, ...]:
        """The devices the command would cut off: those its ``ReenrollmentRequired``
        effects name (an import while some devices do not trust the root), in order."""
        return tuple(
            device
            for effect in self.effects
            if isinstance(effect, ReenrollmentRequired)
            for device in effect.device_ids
        )


def preview(
    rollout: Rollout, command: Command, now: datetime, evaluator: Evaluator = DEFAULT
) -> Preview:
    """What ``command`` would do to ``rollout`` at ``now``: :func:`certflow.apply`'s own
    answer, kept rather than taken. Bad input (a naive ``now``, an instant before the
    rollout's clock, something that is not a command) raises as :func:`certflow.apply`
    raises, and so does a device the rollout does not know
    (:class:`~certflow.core.errors.UnknownDevice`); only
    the rules' refusal is an answer."""
    try:
        step = evaluator.apply(rollout, command, now)
    except CommandRefused as refusal:
        return Preview((), None, refusal)
    return Preview(
        tuple(step.effects),
        _head(step.rollout, evaluator, now),
        before=_head(evaluator.advance(rollout, now).rollout, evaluator, now),
        rollout=step.rollout,
        changes=step.rollout is not rollout,
    )


def _head(rollout: Rollout, evaluator: Evaluator, now: datetime) -> Overview:
    # At `now` even after a no-op, which leaves the rollout's clock where it was.
    return overview(rollout.plan, rollout.phase, rollout.counts(), now, evaluator)
