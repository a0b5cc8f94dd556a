"""Shared fixtures for the store's tests: the `backend` fixture (both backends, real
databases, no mocks) and helpers for the SQLite files themselves, and for reading them
as a user whose permissions bind (not root)."""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import tempfile
import traceback
from collections.abc import Callable, Iterator
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


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder outside pytest's private temporary tree, so that an unprivileged user
    can reach it; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="certflow-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(folder)


def as_unprivileged(work: Callable[[], str]) -> str:
    """``work()`` in a forked process without root's power to ignore permissions: when
    the tests run as root, the child becomes ``nobody`` first. Returns what it returned
    (or its traceback)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            text = work()
        except BaseException:
            text = traceback.format_exc()
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()
