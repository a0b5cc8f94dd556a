"""Durable rollouts: a store, its journal and its outbox (``docs/store.md``).

:class:`SqliteStore` is the embedded default: one file, nothing to install or start,
safe for several processes on one machine. :class:`PostgresStore` (the
``certflow[postgresql]`` extra) serves hosts with several server nodes. Each is a
second driver of the same declarations as the in-memory evaluator: device reports read
and write O(1) rows, the fleet-wide transitions are ``UPDATE`` statements generated from
the declarations, and the journal replays through the in-memory evaluator to the stored rollout.

    from certflow.store import open_store
    store = open_store("rollouts.db")
    store.create("mdm-2026", certflow.new_rollout(...))
    store.apply("mdm-2026", certflow.DistributeRoot(), now)
    store.tick(now)                       # a scheduler: sleep until store.next_due()
    drain(store, {certflow.PushRoot: push}, now)   # an effect drainer
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from certflow.core.errors import InvalidInput
from certflow.core.plan import DeviceRecord
from certflow.store._drain import DrainReport, Handler, drain, retrying
from certflow.store._errors import (
    StoreBusy,
    StoreError,
    StoreUnavailable,
    UnknownRollout,
    without_password,
)
from certflow.store._model import (
    Applied,
    JournalEntry,
    Refused,
    RolloutInfo,
    Store,
    StoredEffect,
    View,
)
from certflow.store._schema import SCHEMA_VERSION
from certflow.store._sql import SqlStore, check_rollout_name
from certflow.store._sqlite import SqliteStore
from certflow.store._summaries import EffectSummary, EntrySummary

if TYPE_CHECKING:
    from certflow.store._postgres import PostgresStore

__all__ = [
    "SCHEMA_VERSION",
    "Applied",
    "DrainReport",
    "EffectSummary",
    "EntrySummary",
    "Handler",
    "JournalEntry",
    "PostgresStore",
    "Refused",
    "RolloutInfo",
    "SqlStore",
    "SqliteStore",
    "Store",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "StoredEffect",
    "UnknownRollout",
    "View",
    "check_rollout_name",
    "drain",
    "open_store",
    "retrying",
    "without_password",
]


def __getattr__(name: str) -> Any:
    # PostgreSQL is an optional extra (psycopg): imported when first named, so that the
    # SQLite default needs nothing more.
    if name == "PostgresStore":
        from certflow.store._postgres import PostgresStore

        return PostgresStore
    if name == "DeviceRow":
        warnings.warn(
            "certflow.store.DeviceRow is deprecated and will be removed in certflow 0.3: a "
            "store's device is a certflow.DeviceRecord, as a rollout's is",
            DeprecationWarning,
            stacklevel=2,
        )
        return DeviceRecord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(
    target: str | os.PathLike[str],
    *,
    create: bool = True,
    read_only: bool = False,
    clock_skew: timedelta = timedelta(0),
) -> SqlStore:
    """The store at ``target``: a ``postgresql://`` (or ``postgres://``) URL opens
    PostgreSQL (the ``certflow[postgresql]`` extra); a file path, or ``sqlite:///path``,
    opens SQLite.

    ``create=False`` refuses a missing database instead of creating one. ``read_only``
    opens an existing database only to read it (nothing is created, migrated or
    written; see ``docs/store.md``). ``clock_skew``: as the stores take it.
    """
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        from certflow.store._postgres import PostgresStore

        return PostgresStore(text, create=create, read_only=read_only, clock_skew=clock_skew)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise InvalidInput(
            f"database {without_password(text)!r}: unknown URL scheme; give a file path or a "
            "postgresql:// URL"
        )
    return SqliteStore(text, create=create, read_only=read_only, clock_skew=clock_skew)
