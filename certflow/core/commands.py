"""What the administrator and the fleet tell a rollout: frozen value classes.

Pass one to :func:`certflow.apply` with the instant it happened. A device command
refuses a device id that is not a non-empty string, and ``DeviceFailed`` a reason that
is not a string, when it is built (:class:`~certflow.errors.InvalidInput`).

A device id *new to a rollout* (in :func:`certflow.new_rollout`, or enrolled) must also
be one that every table and message can show: :data:`DEVICE_ID_RULE`, checked by
:func:`check_device_id`. The commands themselves do not hold ids to it, so that a
rollout stored before the rule, with an odd id, still opens, replays and takes that
device's reports.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

import attrs

from certflow.core.errors import InvalidInput, quoted

__all__ = [
    "DEVICE_ID_LENGTH",
    "DEVICE_ID_RULE",
    "Cancel",
    "Command",
    "DeviceCommand",
    "DeviceFailed",
    "DeviceInstalled",
    "DistributeRoot",
    "Enroll",
    "ExtendManually",
    "ImportNow",
    "ProceedToImport",
    "Reenrolled",
    "Retry",
    "RetryAllFailed",
    "ServerRestarted",
    "Unenroll",
    "check_device_id",
    "check_device_ids",
    "device_id_problem",
]

#: The longest device id, in characters (code points).
DEVICE_ID_LENGTH = 256
#: The rule for a device id new to a rollout, as messages state it.
DEVICE_ID_RULE = (
    f"1 to {DEVICE_ID_LENGTH} printable characters: no control character (a tab, a line "
    "break, NUL), no format, surrogate, private-use or unassigned character, and no "
    "separator but the space (Python's str.isprintable)"
)


def device_id_problem(value: object) -> str:
    """What is wrong with ``value`` as a new device id (:data:`DEVICE_ID_RULE`), or ``""``."""
    if type(value) is not str:
        return f"it is of type {type(value).__name__}, not text"
    if not value:
        return "it is empty"
    if len(value) > DEVICE_ID_LENGTH:
        return f"it is {len(value):,} characters long"
    if not value.isprintable():
        position, char = next((n, c) for n, c in enumerate(value, 1) if not c.isprintable())
        name = unicodedata.name(char, "")
        what = f"U+{ord(char):04X}{' ' + name if name else ''}"
        return f"character {position} is {char!r} ({what}), which is not printable"
    return ""


def check_device_id(value: object, what: str = "device id") -> str:
    """``value`` if it may be a new device id, else :class:`InvalidInput` saying why."""
    problem = device_id_problem(value)
    if problem:
        raise InvalidInput(
            f"{what} {quoted(value)} is not valid: {problem}; a {what} is {DEVICE_ID_RULE}"
        )
    return value  # type: ignore[return-value]  # device_id_problem found it is a str


def check_device_ids(ids: Iterable[object]) -> None:
    """:func:`check_device_id` for each of many ids (a fleet of a million: the common
    case, every id short and printable, is tested at C speed first)."""
    ids = tuple(ids)
    if all(type(d) is str and 0 < len(d) <= DEVICE_ID_LENGTH and d.isprintable() for d in ids):
        return
    for device in ids:
        check_device_id(device)


def _device_id(instance: Any, attribute: attrs.Attribute[str], value: object) -> None:
    if type(value) is not str or not value:
        raise InvalidInput(f"device ids must be non-empty strings, got {value!r}")


def _reason(instance: Any, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"DeviceFailed.reason must be a string, got {value!r}")


@attrs.frozen
class DistributeRoot:
    """Administrator: push the root to every in-scope device, import later (recommended)."""


@attrs.frozen
class ProceedToImport:
    """Administrator: import at once without distributing the root (from ``pending``)."""


@attrs.frozen
class ImportNow:
    """Administrator: import now, during distribution, as at the deadline."""


@attrs.frozen
class ExtendManually:
    """Administrator: move the next checkpoint and the deadline by one extension (7 days)."""


@attrs.frozen
class Cancel:
    """Administrator: abandon the rollout; the old certificate stays."""


@attrs.frozen
class RetryAllFailed:
    """Administrator: push the root again to every failed device (MDM server certs only)."""


@attrs.frozen
class ServerRestarted:
    """Host: the server restarted and now serves the imported certificate."""


@attrs.frozen
class DeviceInstalled:
    """Device: the root is in its trusted store (in ``pending``: it already trusts it)."""

    device_id: str = attrs.field(validator=_device_id)


@attrs.frozen
class DeviceFailed:
    """Device: installing the pushed root failed, for ``reason``."""

    device_id: str = attrs.field(validator=_device_id)
    reason: str = attrs.field(validator=_reason)


@attrs.frozen
class Retry:
    """Administrator: push the root again to one failed device (MDM server certs only)."""

    device_id: str = attrs.field(validator=_device_id)


@attrs.frozen
class Enroll:
    """Host: a device enrolled (or enrolled again) and is now in scope."""

    device_id: str = attrs.field(validator=_device_id)


@attrs.frozen
class Unenroll:
    """Host: a device left management and is out of scope."""

    device_id: str = attrs.field(validator=_device_id)


@attrs.frozen
class Reenrolled:
    """Host: a device that lost contact at the import enrolled again with the new trust."""

    device_id: str = attrs.field(validator=_device_id)


DeviceCommand = DeviceInstalled | DeviceFailed | Retry | Enroll | Unenroll | Reenrolled
Command = (
    DistributeRoot
    | ProceedToImport
    | ImportNow
    | ExtendManually
    | Cancel
    | RetryAllFailed
    | ServerRestarted
    | DeviceCommand
)
