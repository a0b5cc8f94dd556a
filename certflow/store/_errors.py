"""The store's errors: every one a :class:`~certflow.core.errors.CertflowError`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from certflow.core.errors import CertflowError

__all__ = ["StoreBusy", "StoreError", "StoreUnavailable", "UnknownRollout", "without_password"]


class StoreError(CertflowError):
    """The database cannot be used: missing, corrupt, newer, read-only, unreachable.

    The message names the database (a path, or a URL without its password) and the
    problem; nothing was changed.
    """


class StoreBusy(StoreError):
    """The database could not take the command now: another writer held it past the
    busy timeout, or changed it at the same moment. Nothing was changed.

    Safe to retry: :func:`certflow.store.retrying` does so with a back-off.
    """


class StoreUnavailable(StoreBusy):
    """The database server could not be reached, or the connection was lost before the
    command committed. Nothing was changed, so this too is safe to retry (a server that
    restarts is back within seconds); the store reconnects on its next command.
    """


class UnknownRollout(StoreError, KeyError):
    """The store has no rollout of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def without_password(url: str) -> str:
    """``url`` with its password (in the authority or as a ``password=`` parameter)
    replaced by ``***``, so that no message or log line ever shows one."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<database URL that cannot be parsed>"
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join(
        "password=***" if pair.partition("=")[0] == "password" else pair
        for pair in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))
