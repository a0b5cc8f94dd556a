"""The examples run as a host runs them: a real process, a real database file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import certflow
from certflow.store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent


def test_the_embedded_host_runs_a_rollout_to_its_end_with_workers_a_scheduler_and_a_drainer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "host" / "x.db"
    command = [
        sys.executable,
        "examples/embedded_host.py",
        "--devices",
        "200",
        "--workers",
        "2",
        "--db",
        str(db),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Traceback" not in done.stderr

    # The output says how the rollout ended, and where the database is.
    ended = re.search(r"^rollout 'mdm-2026': (\w+), ", out, flags=re.MULTILINE)
    assert ended is not None, out
    assert ended[1] in ("imported", "forced")
    assert f"database: {db.resolve()}" in out
    assert "effects pending: 0" in out
    # A failing handler left its effect pending, and it was delivered again.
    assert "FAILED (mail server down), stays pending" in out
    assert "(delivered again, same id)" in out

    with SqliteStore(db, create=False) as store:
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


def test_the_embedded_host_is_deterministic_given_its_seed(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        db = tmp_path / f"{run}.db"
        done = subprocess.run(
            [sys.executable, "examples/embedded_host.py", "--devices", "60", "--db", str(db)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outputs.append(done.stdout.replace(str(db.resolve()), "DB"))
    assert outputs[0] == outputs[1]
