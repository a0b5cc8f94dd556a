"""The store's errors: every one a :class:`~certflow.core.errors.CertflowError`."""

from __future__ import annotations

from certflow.core.errors import CertflowError

__all__ = ["StoreBusy", "StoreError", "UnknownRollout"]


class StoreError(CertflowError):
    """The database cannot be used: missing, corrupt, newer, read-only, unreachable.

    The message names the database (a path, or a URL without its password) and the
    problem; nothing was changed.
    """


class StoreBusy(StoreError):
    """Another writer held the database past the busy timeout; nothing was changed.

    Safe to retry: :func:`certflow.store.retrying` does so with a back-off.
    """


class UnknownRollout(StoreError, KeyError):
    """The store has no rollout of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
