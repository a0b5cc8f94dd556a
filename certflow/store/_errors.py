"""The store's errors: every one a :class:`~certflow.core.errors.CertflowError`."""

from __future__ import annotations

import re
from urllib.parse import unquote

from certflow.core.errors import CertflowError

__all__ = [
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "UnknownRollout",
    "secrets_of",
    "without_password",
]


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
    """``url`` with its password (in the authority, or as a ``password`` parameter)
    replaced by ``***``, so that no message or log line ever shows one.

    libpq reads a password up to the ``@`` before the host, whatever it holds (``#``,
    ``?`` and ``/`` included), so the authority ends at the last ``@``: when in doubt,
    this hides more than the password, never less.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    head, question, query = rest.partition("?")
    if question:
        pairs = [
            "password=***" if unquote(pair.partition("=")[0]).strip() == "password" else pair
            for pair in query.split("&")
        ]
        rest = f"{head}?{'&'.join(pairs)}"
    return f"{scheme}://{rest}"


def secrets_of(url: str) -> list[str]:
    """Every spelling of ``url``'s password that a message could echo (as written and
    percent-decoded), longest first, for scrubbing text that quotes the URL."""
    found: set[str] = set()
    _, separator, rest = url.partition("://")
    if separator:
        at = rest.rfind("@")
        if at >= 0 and ":" in rest[:at]:
            found.add(rest[:at].partition(":")[2])
        for pair in rest.partition("?")[2].split("&"):
            key, _, value = pair.partition("=")
            if unquote(key).strip() == "password":
                found.add(value)
    found |= {unquote(s) for s in found}
    # libpq may stop reading a password at a delimiter it holds ('?', '/', '#', ...) and
    # quote the rest: its pieces are secrets too.
    found |= {p for s in list(found) for p in re.split(r"[?/#&=@:]", s) if len(p) >= 3}
    return sorted((s for s in found if s), key=len, reverse=True)
