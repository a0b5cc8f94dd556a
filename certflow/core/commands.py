"""What the administrator and the fleet tell a rollout: frozen value classes.

Pass one to :func:`certflow.apply` with the instant it happened. A device command
refuses a device id that is not a non-empty string, and ``DeviceFailed`` a reason that
is not a string, when it is built (:class:`~certflow.errors.InvalidInput`).
"""

from __future__ import annotations

from typing import Any

import attrs

from certflow.core.errors import InvalidInput

__all__ = [
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
]


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
