"""The refusals every driver raises, built in one place: a failed guard (its hint, with
its facts, and when it will hold), a state without a row, a device that the rollout does
not know, a device state without a row. Pure; :mod:`certflow.core.interpreter` raises
them."""

from __future__ import annotations

from certflow.core import guards as g
from certflow.core._compiled import Compiled, DeviceTable
from certflow.core.errors import CommandRefused, UnknownDevice
from certflow.core.machines import MachineSpec
from certflow.core.plan import RolloutState

__all__ = ["device_refusal", "guard_refusal", "state_refusal", "unknown_device"]


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
    return CommandRefused(
        f"{prefix or command} refused: {g.explain(declared, situation)}",
        command=command,
        state=situation.phase.state.value,
        reason=name,
        allowed_at=g.allowed_at(declared, situation),
        device_id=device_id,
    )


def state_refusal(
    state: RolloutState, command: str, hint: str, *, prefix: str = "", device_id: str | None = None
) -> CommandRefused:
    """The refusal of a command that the rollout's state has no row or gate for."""
    ended = " (the rollout has ended)" if state.terminal else ""
    return CommandRefused(
        f"{prefix or command} refused: the rollout is {state.value}{ended}; {hint}",
        command=command,
        state=state.value,
        reason="rollout_state",
        device_id=device_id,
    )


def unknown_device(device_id: str) -> UnknownDevice:
    """A device command names a device the rollout does not know (and does not enrol it)."""
    return UnknownDevice(
        f"unknown device {device_id!r}: it is not in this rollout "
        "(send Enroll first if it just enrolled)"
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
    )
