"""The examples run as a host runs them: a real process, a real database (a file, or a
database of the PostgreSQL server the test run starts)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

import certflow
from certflow.store import open_store
from tests.backends import Backend, PostgresBackend, SqliteBackend
from tests.backends import backend as backend  # the fixture: both backends, in turn

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret"


def test_the_embedded_host_runs_a_rollout_to_its_end_with_workers_a_scheduler_and_a_drainer(
    backend: Backend,
) -> None:
    if isinstance(backend, SqliteBackend):
        db = str(backend.path.parent / "host" / "x.db")  # in a folder the example makes
        shown = str(Path(db).resolve())
    else:
        # A password in the URL (the test server ignores it) must never be printed.
        assert isinstance(backend, PostgresBackend)
        dbname = urllib.parse.urlsplit(backend.url).path.lstrip("/")
        db = backend.server.url(dbname, password=PASSWORD)
        shown = backend.server.url(dbname).replace("certflow@", "certflow:***@")
    command = [
        sys.executable,
        "examples/embedded_host.py",
        "--devices",
        "200",
        "--workers",
        "2",
        "--db",
        db,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr
    assert PASSWORD not in out + done.stderr

    # The output says how the rollout ended, and where the database is.
    ended = re.search(r"^rollout 'mdm-2026': (\w+), ", out, flags=re.MULTILINE)
    assert ended is not None, out
    assert ended[1] in ("imported", "forced")
    assert f"database: {shown}\n" in out
    assert "effects pending: 0" in out
    # A failing handler left its effect pending, and it was delivered again.
    assert "FAILED (mail server down), stays pending" in out
    assert "(delivered again, same id)" in out

    with open_store(db, create=False) as store:
        (info,) = store.rollouts()
        assert info.name == "mdm-2026"
        assert info.state.value == ended[1]
        assert info.devices == 200
        # Every effect was performed and acknowledged.
        assert store.effects("mdm-2026") == []
        every = store.effects("mdm-2026", include_acknowledged=True)
        assert every
        assert all(e.acked_at is not None for e in every)
        # The journal replays to the stored rollout.
        assert store.dumps("mdm-2026") == certflow.dumps(store.replay("mdm-2026"))
        head = store.overview("mdm-2026", info.clock)
        assert not head.restart_required
        counts = ", ".join(f"{s.value} {n}" for s, n in head.counts.items() if n)
        assert f"devices: {counts}" in out


def test_the_embedded_host_is_deterministic_given_its_seed(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    outputs = []
    for db in (backend.target, another_database(backend, request)):
        done = subprocess.run(
            [sys.executable, "examples/embedded_host.py", "--devices", "60", "--db", db],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        where = str(Path(db).resolve()) if isinstance(backend, SqliteBackend) else db
        assert f"database: {where}\n" in done.stdout
        outputs.append(done.stdout.replace(where, "DB"))
    assert outputs[0] == outputs[1]


def another_database(backend: Backend, request: pytest.FixtureRequest) -> str:
    """A second fresh database of the backend (the example's rollout has a fixed name)."""
    if isinstance(backend, SqliteBackend):
        return str(backend.path.with_name("other.db"))
    url: str = request.getfixturevalue("postgres_url")  # dropped after the test
    return url
