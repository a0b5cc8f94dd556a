"""The store benchmark keeps running (a smoke run on a small fleet; nothing is timed here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_store_benchmark_runs_on_a_small_fleet_and_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_store.py", "--sizes", "2000", "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for row in (
        "create and persist",
        "distribute (fleet-wide)",
        "one report in its own transaction: median",
        "reports in one batch (execute_many)",
        "summary (overview)",
        "a page of 50 failed devices",
        "cold process: open and serve the first report",
        "tick across day 21: forced import (1,600 not installed)",
        "database size per device",
        "naive store / certflow, same 1,000 reports",
    ):
        assert row in done.stdout, row
    assert list(tmp_path.iterdir()) == []  # the databases are removed
