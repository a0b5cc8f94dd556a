"""Durable rollouts: a store, its journal and its outbox (``docs/store.md``).

:class:`SqliteStore` is the embedded default: one file, nothing to install or start,
safe for several processes on one machine. It is a second driver of the same
declarations as the in-memory evaluator: device reports read and write O(1) rows, the
fleet-wide transitions are ``UPDATE`` statements generated from the declarations, and
the journal replays through the in-memory evaluator to the stored rollout.

    from certflow.store import open_store
    store = open_store("rollouts.db")
    store.create("mdm-2026", certflow.new_rollout(...))
    store.execute("mdm-2026", certflow.DistributeRoot(), now)
    store.tick(now)                       # a scheduler: sleep until store.next_due()
    drain(store, {certflow.PushRoot: push}, now)   # an effect drainer
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from certflow.core.errors import InvalidInput
from certflow.store._drain import DrainReport, Handler, drain, retrying
from certflow.store._errors import StoreBusy, StoreError, UnknownRollout
from certflow.store._model import DeviceRow, JournalEntry, RolloutInfo, Store, StoredEffect
from certflow.store._schema import SCHEMA_VERSION
from certflow.store._sql import check_rollout_name
from certflow.store._sqlite import SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "DeviceRow",
    "DrainReport",
    "Handler",
    "JournalEntry",
    "RolloutInfo",
    "SqliteStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoredEffect",
    "UnknownRollout",
    "check_rollout_name",
    "drain",
    "open_store",
    "retrying",
]


def _without_password(url: str) -> str:
    """``url`` with its password replaced, so that no message ever shows one."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_store(target: str | os.PathLike[str], *, create: bool = True) -> SqliteStore:
    """The store at ``target``: a file path (or ``sqlite:///path``) opens SQLite.

    ``create=False`` refuses a missing database instead of creating one.
    """
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            f"{_without_password(text)}: PostgreSQL databases are not supported by this "
            "certflow yet; use a file path"
        )
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise InvalidInput(f"database {text!r}: unknown URL scheme; give a file path")
    return SqliteStore(text, create=create)
