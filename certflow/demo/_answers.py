"""Whether the rollout would take a device's report now: :class:`Answers`, the engine's
answer, kept per state where no guard decides it."""

from __future__ import annotations

from datetime import datetime

from certflow.core import commands as c
from certflow.core.machines import RULES, Rules
from certflow.core.plan import DeviceState, RolloutState
from certflow.demo._hosts import Host


def decided_per_state(rules: Rules = RULES) -> frozenset[str]:
    """The device commands that no guard decides (no guarded row, no guarded gate): the
    rollout's state and the device's alone decide whether such a command is taken."""
    guarded = {row.trigger for row in rules.device.transitions if row.guards}
    guarded |= {g.trigger for state in rules.rollout.states for g in state.gates if g.guards}
    return frozenset(
        trigger.command
        for trigger in rules.device.triggers
        if trigger.command is not None and trigger.name not in guarded
    )


class Answers:
    """Whether the rollout would take a device's report now: the engine's answer.

    The host previews the very report (:func:`certflow.preview`, or the store's own
    :meth:`~certflow.store.SqlStore.preview`, which runs it and rolls it back). For a
    report that no guard decides, the answer is kept for that kind of report from a
    device in that state while the rollout is in that state (what decides it, by the
    declarations), so a whole run previews a few dozen reports, not every one.
    """

    def __init__(self, host: Host, rules: Rules = RULES) -> None:
        self.host = host
        self.per_state = decided_per_state(rules)
        self.known: dict[tuple[RolloutState, DeviceState, type], bool] = {}

    def taken(self, command: c.DeviceCommand, state: RolloutState, now: datetime) -> bool:
        """Whether ``command`` would be taken at ``now`` by the rollout, in ``state``."""
        kind = type(command)
        if kind.__name__ not in self.per_state:
            return self.host.preview(command, now).accepted
        key = (state, self.host.device_state(command.device_id), kind)
        known = self.known.get(key)
        if known is None:
            known = self.known[key] = self.host.preview(command, now).accepted
        return known
