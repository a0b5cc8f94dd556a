"""Shared fixtures and checks for the store's tests (real SQLite files, no mocks)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import certflow as cf
from certflow.store import SqliteStore
from tests.backends import backend as backend  # the fixture: both backends, in turn


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a fresh folder (the file does not exist yet)."""
    return tmp_path / "certflow.db"


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """``sql`` run on the file through the standard library, not through the store."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (not recursive) and its bytes: a before/after snapshot."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def check_consistent(path: Path, name: str) -> None:
    """What must hold of a rollout at any moment, checked on the file itself and then
    through a freshly opened store:

    - ``PRAGMA integrity_check`` is ``ok``;
    - the per-state counts of the rollout row equal a recount of its device rows;
    - the journal is numbered 1..seq without gaps, and each entry's effects are in the
      outbox at positions 0..n-1;
    - replaying the journal gives the stored rollout (the same ``dumps``).
    """
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    [(rollout_id, counts, size, seq)] = query(
        path, "SELECT id, counts, size, seq FROM rollouts WHERE name = ?", name
    )
    recount = dict(
        query(
            path, "SELECT state, COUNT(*) FROM devices WHERE rollout = ? GROUP BY state", rollout_id
        )
    )
    assert {k: v for k, v in json.loads(counts).items() if v} == recount
    assert sum(recount.values()) == size
    journal = query(
        path, "SELECT seq, body FROM journal WHERE rollout = ? ORDER BY seq", rollout_id
    )
    assert [s for s, _ in journal] == list(range(1, seq + 1))
    outbox = query(
        path,
        "SELECT seq, position FROM outbox WHERE rollout = ? ORDER BY seq, position",
        rollout_id,
    )
    expected = [(s, p) for s, body in journal[1:] for p in range(json.loads(body)["effects"])]
    assert outbox == expected
    with SqliteStore(path, create=False) as store:
        assert store.dumps(name) == cf.dumps(store.replay(name))


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the store's tables, in key order: a before/after snapshot."""
    keys = {
        "certflow_schema": "version",
        "rollouts": "id",
        "devices": "rollout, idx",
        "journal": "rollout, seq",
        "outbox": "rollout, seq, position",
    }
    return {t: query(path, f"SELECT * FROM {t} ORDER BY {k}") for t, k in keys.items()}


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding ``path``'s write lock until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
