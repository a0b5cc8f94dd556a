"""Shared fixtures for the store's tests: the `backend` fixture (both backends, real
databases, no mocks) and helpers for the SQLite files themselves."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

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
