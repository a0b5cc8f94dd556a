"""The exceptions certflow raises. Every one derives from :class:`CertflowError`."""

from __future__ import annotations

from datetime import datetime

#: The most characters of an input that a message quotes; the rest is counted.
QUOTED = 60


def quoted(value: object, limit: int = QUOTED) -> str:
    """``value`` as a message quotes it (``repr``), a long string cut to its first
    ``limit`` characters and counted: ``'aaaa…'… (5,000 characters)``. An error names
    what it was given, and a 5,000-character name is not echoed back whole."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    return repr(value)


class CertflowError(Exception):
    """Base class of every error certflow raises on purpose."""


class InvalidInput(CertflowError, ValueError):
    """An argument is malformed: a naive datetime, a duplicate device id, a bad policy."""


class TimeWentBackwards(InvalidInput):
    """An instant earlier than the last one the rollout has seen."""


class UnknownDevice(CertflowError, KeyError):
    """A command names a device the rollout does not know.

    Beside the message, ``device_id`` is the device named (``None`` when the raiser did
    not say) and ``hint`` what would make it known (with the API's command names), as
    :class:`CommandRefused` carries them.
    """

    def __init__(
        self, message: str = "", *, device_id: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.hint = hint

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CommandRefused(CertflowError):
    """A command is not allowed now; the message says why and what would allow it.

    Beside the message, the refusal is data a host can act on:

    * ``command``: the command's class name (``"ExtendManually"``);
    * ``state``: the rollout's state (``"distributing"``);
    * ``reason``: ``"rollout_state"`` (the rollout's state has no row or gate for the
      command), ``"device_state"`` (the device's state has no row for it), or the name
      of the guard that failed (``"extension_open"``, ``"kind_allows_retry"``, ...; see
      ``docs/machines.md``);
    * ``allowed_at``: the instant from which the command would be allowed, when the
      refusal is only a matter of time (manual extension before day 6), else ``None``;
    * ``device_id`` and ``device_state`` for a device command, else ``None``;
    * ``hint``: what would allow the command, as the message ends with it (naming the
      API's commands: :func:`certflow.describe_refusal` words it for a front end), or
      ``None`` when the rules give none (the message holds no hint then).
    """

    def __init__(
        self,
        message: str,
        *,
        command: str = "",
        state: str = "",
        reason: str = "",
        allowed_at: datetime | None = None,
        device_id: str | None = None,
        device_state: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.state = state
        self.reason = reason
        self.allowed_at = allowed_at
        self.device_id = device_id
        self.device_state = device_state
        self.hint = hint


class SerializationError(CertflowError, ValueError):
    """Text that is not a serialised rollout, or one of an unknown or newer schema."""
