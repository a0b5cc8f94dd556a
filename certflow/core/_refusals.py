"""The refusals every driver raises, built in one place: a failed guard (its hint, with
its facts, and when it will hold), a state without a row, a device that the rollout does
not know, a device state without a row. Pure; :mod:`certflow.core.interpreter` raises
them.

Each refusal carries its hint as data (``hint``, with the API's command names) and ends
its message with it, so a front end words the hint without reading it out of the text.
A hint that sends the administrator to another command of the rollout machine says where
that command is allowed, from the declarations' rows (never a list of states written by
hand, which a changed row would leave wrong).
"""

from __future__ import annotations

import re

from certflow.core import guards as g
from certflow.core._compiled import Compiled, DeviceTable
from certflow.core.errors import CommandRefused, UnknownDevice
from certflow.core.machines import MachineSpec
from certflow.core.plan import RolloutState

__all__ = ["device_refusal", "guard_refusal", "state_refusal", "unknown_device"]

#: The hint of a device that the rollout does not know.
UNKNOWN_HINT = "send Enroll first if it just enrolled"


def guard_refusal(
    machine: MachineSpec,
    name: str,
    situation: g.Situation,
    command: str,
    *,
    prefix: str = "",
    device_id: str | None = None,
) -> CommandRefused:
    """The refusal of a failed guard: its hint, with its facts, and when it will hold."""
    declared = machine.guard(name)
    hint = g.explain(declared, situation)
    return CommandRefused(
        f"{prefix or command} refused: {hint}",
        command=command,
        state=situation.phase.state.value,
        reason=name,
        allowed_at=g.allowed_at(declared, situation),
        device_id=device_id,
        hint=hint,
    )


def state_refusal(
    state: RolloutState,
    command: str,
    hint: str,
    *,
    prefix: str = "",
    device_id: str | None = None,
    machine: MachineSpec | None = None,
) -> CommandRefused:
    """The refusal of a command that the rollout's state has no row or gate for. With the
    rollout ``machine``, a hint naming another of its commands says where that applies."""
    ended = " (the rollout has ended)" if state.terminal else ""
    if machine is not None:
        hint = where(machine, hint)
    return CommandRefused(
        f"{prefix or command} refused: the rollout is {state.value}{ended}; {hint}",
        command=command,
        state=state.value,
        reason="rollout_state",
        device_id=device_id,
        hint=hint or None,
    )


def where(machine: MachineSpec, hint: str) -> str:
    """``hint``, each command of ``machine`` it names followed by the states in which the
    declarations give that command a row: ``use ImportNow (allowed while distributing or
    extended)``. (Only the rollout's own commands reach here, one at a time: the device
    commands' gates refuse without it.)"""
    for trigger in machine.triggers:
        states = machine.sources(trigger.name) if trigger.command else ()
        if states:
            named = re.compile(rf"\b{trigger.command}\b")
            hint = named.sub(f"{trigger.command} (allowed while {_either(states)})", hint, 1)
    return hint


def _either(states: tuple[str, ...]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return states[0] if len(states) == 1 else f"{', '.join(states[:-1])} or {states[-1]}"


def unknown_device(device_id: str) -> UnknownDevice:
    """A device command names a device the rollout does not know (and does not enrol it)."""
    return UnknownDevice(
        f"unknown device {device_id!r}: it is not in this rollout ({UNKNOWN_HINT})",
        device_id=device_id,
        hint=UNKNOWN_HINT,
    )


def device_refusal(
    compiled: Compiled, table: DeviceTable, device_id: str, source: int, command: object
) -> CommandRefused:
    """A device's state has no row for the command's trigger."""
    device = compiled.rules.device
    state = device.states[source]
    phrase = device.trigger(table.trigger).phrase
    return CommandRefused(
        f"device {device_id!r} cannot {phrase}: it is {state.name}; {state.hint}",
        command=type(command).__name__,
        reason="device_state",
        device_id=device_id,
        device_state=state.name,
        hint=state.hint or None,
    )
