"""The exceptions certflow raises. Every one derives from :class:`CertflowError`."""

from __future__ import annotations


class CertflowError(Exception):
    """Base class of every error certflow raises on purpose."""


class InvalidInput(CertflowError, ValueError):
    """An argument is malformed: a naive datetime, a duplicate device id, a bad policy."""


class TimeWentBackwards(InvalidInput):
    """An instant earlier than the last one the rollout has seen."""


class UnknownDevice(CertflowError, KeyError):
    """A command names a device the rollout does not know."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CommandRefused(CertflowError):
    """A command is not allowed now; the message says why and what would allow it."""


class SerializationError(CertflowError, ValueError):
    """Text that is not a serialised rollout, or one of an unknown or newer schema."""
