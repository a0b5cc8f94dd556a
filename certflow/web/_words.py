"""The console's words: how its buttons spell the commands, and how values read.

Sentences about effects and refusals are :mod:`certflow.core.wording`'s (the one
rendering module); the console only gives it its own names for the commands, the
labels of its buttons, so that a refusal's hint points at the button to press.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from certflow.core.commands import Command
from certflow.core.effects import Effect
from certflow.core.errors import CommandRefused, UnknownDevice
from certflow.core.instants import show
from certflow.core.plan import DeviceState
from certflow.core.wording import DEVICE, SHOWN, describe_effect, describe_refusal

__all__ = [
    "BUTTONS",
    "SHOWN",
    "STATE_COLOURS",
    "WEB_NAMES",
    "command_text",
    "effect_text",
    "refusal_text",
    "summary_text",
    "when",
]

#: The label of the console's button (or page) for each command.
BUTTONS: dict[str, str] = {
    "DistributeRoot": "Distribute Root Certificate",
    "ProceedToImport": "Proceed to Import",
    "ImportNow": "Import now",
    "ExtendManually": "Extend",
    "Cancel": "Cancel rollout",
    "RetryAllFailed": "Retry all failed",
    "ServerRestarted": "Server restarted",
    "DeviceInstalled": "a report that DEVICE installed the root",
    "DeviceFailed": "a report that DEVICE failed",
    "Retry": "Retry of DEVICE",
    "Enroll": "the enrolment of DEVICE",
    "Unenroll": "the removal of DEVICE",
    "Reenrolled": "the re-enrolment of DEVICE",
}

#: The words certflow.core.wording puts in the console's sentences: a button in quotes.
WEB_NAMES: dict[str, str] = {
    name: (f"“{label}”" if not label.startswith(("a ", "the ")) else label)
    for name, label in BUTTONS.items()
}

#: A device state's colour: the same as the states chart's layers
#: (:func:`certflow.sim.chart.states_chart`), so a colour means one thing on every page.
STATE_COLOURS: dict[DeviceState, str] = {
    DeviceState.INSTALLED: "#4c9a2a",
    DeviceState.PUSHED: "#f2c14e",
    DeviceState.PENDING: "#b0b7bf",
    DeviceState.FAILED: "#e4572e",
    DeviceState.REENROLL_REQUIRED: "#8e2c8e",
    DeviceState.REMOVED: "#5b6770",
}


def when(instant: datetime | None) -> str:
    """An instant as administrators read it everywhere in certflow, or a dash."""
    return "-" if instant is None else show(instant)


def effect_text(effect: Effect) -> str:
    """One effect in certflow's words, naming the console's buttons."""
    return describe_effect(effect, names=WEB_NAMES)


class _Cut(tuple[str, ...]):
    """The first ids of a device list with the whole list's length: what a store's
    effect summary keeps of it, read by the wording as the list itself (it names the
    first ``SHOWN`` ids and counts the rest, which it never reads)."""

    whole: int

    def __new__(cls, first: tuple[str, ...], whole: int) -> _Cut:
        cut = super().__new__(cls, first)
        cut.whole = whole
        return cut

    def __len__(self) -> int:
        return self.whole


def summary_text(effect: Effect, devices: int | None) -> str:
    """The words of :func:`effect_text` for an effect whose device list holds only its
    first ids (at least ``SHOWN``: a store's ``effect_summaries``) of ``devices``."""
    ids: tuple[str, ...] | None = getattr(effect, "device_ids", None)
    if devices is None or ids is None or len(ids) == devices:
        return effect_text(effect)
    if len(ids) < min(SHOWN, devices):
        raise ValueError(f"{len(ids)} ids of {devices}: the words name the first {SHOWN}")
    return effect_text(attrs.evolve(effect, device_ids=_Cut(ids, devices)))  # type: ignore[arg-type]


def refusal_text(error: CommandRefused | UnknownDevice, device_id: str | None = None) -> str:
    """Why the engine refused a command and what would allow it, naming the buttons."""
    return describe_refusal(error, names=WEB_NAMES, device_id=device_id)


def command_text(command: Command) -> str:
    """A command as the history lists it: its button, and the device it names."""
    name = type(command).__name__
    label = BUTTONS[name]
    device = getattr(command, "device_id", None)
    if device is not None and DEVICE in label:
        label = label.replace(DEVICE, device)
    reason = getattr(command, "reason", "")
    if reason:
        label += f" ({reason})"
    return label[0].upper() + label[1:]
