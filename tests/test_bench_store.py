"""The store benchmark keeps running (smoke runs on small fleets; nothing is timed here):
on SQLite and PostgreSQL side by side, and on SQLite alone, with a note that says why,
where the PostgreSQL rows are skipped."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_POSTGRES, postgres_required

ROOT = Path(__file__).resolve().parent.parent
# The rows of each backend at every size.
ROWS = (
    "create and persist",
    "distribute (fleet-wide)",
    "one report in its own transaction: median",
    "one report in its own transaction: p99",
    "reports in one batch (execute_many)",
    "summary (overview)",
    "a page of 50 failed devices, first page",
    "cold process: open and serve the first report",
    "tick across day 21: forced import",
    "database size per device, distributing",
    "database size per device, after the whole run above",
)


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_store.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


def rows_of(impl: str, stdout: str) -> list[str]:
    """The metrics of ``impl``'s rows, in the order printed."""
    return re.findall(rf"^[\d,]+ +{re.escape(impl)} +(\S.*?)  ", stdout, re.MULTILINE)


def has_every_row(metrics: list[str]) -> bool:
    return all(any(row in m for m in metrics) for row in ROWS)


def test_the_store_benchmark_runs_both_backends_side_by_side_with_their_ratios() -> None:
    # Not pytest's tmp_path: as root the server runs as the postgres user, which cannot
    # pass through pytest's private (0700) folders; this one it may pass through.
    folder = Path(tempfile.mkdtemp(prefix="certflow-bench-test-"))
    folder.chmod(0o711)
    try:
        done = bench("--sizes", "2000", "--dir", str(folder))
        assert list(folder.iterdir()) == []  # the databases and the server's folder go
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = done.stdout
    sqlite = rows_of("certflow-sqlite", out)
    assert has_every_row(sqlite), sqlite
    assert "tick across day 21: forced import (1,600 not installed)" in out
    assert "naive store / certflow, same 1,000 reports" in out
    skipped = re.search(r"^PostgreSQL rows skipped: (.*)$", out, re.MULTILINE)
    if skipped:
        if postgres_required():
            pytest.fail(f"{REQUIRE_POSTGRES}=1, yet the benchmark skipped PostgreSQL: {out}")
        pytest.skip(f"PostgreSQL rows skipped: {skipped[1]}")
    postgresql = rows_of("certflow-postgresql", out)
    assert postgresql == sqlite  # the same rows, in the same order
    # Each PostgreSQL row follows its SQLite row, then their ratio; every timed row and
    # the sizes have one.
    ratios = re.findall(
        r"^[\d,]+ +certflow-sqlite +(\S.*?)  .*\n(?: +note: .*\n)?"
        r"[\d,]+ +certflow-postgresql +(\S.*?)  .*\n(?: +note: .*\n)?"
        r"[\d,]+ +ratio +postgresql / sqlite +[\d.]+x",
        out,
        re.MULTILINE,
    )
    assert [a for a, b in ratios if a == b] == sqlite
    assert "fsync=on, synchronous_commit=off, full_page_writes=on" in out
    assert "What a commit promises." in out
    assert re.search(rf"data folder {re.escape(str(folder))}/certflow-bench-\S+/certflow-pg-", out)


@pytest.mark.parametrize("why", ["--no-postgresql", "no server"])
def test_without_postgresql_the_sqlite_rows_still_print_after_a_note(
    why: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    args = ["--sizes", "100", "--no-compare", "--dir", str(tmp_path / "db")]
    if why == "--no-postgresql":
        args.append("--no-postgresql")
        note = "PostgreSQL rows skipped: --no-postgresql"
    else:
        (tmp_path / "empty").mkdir()
        env["CERTFLOW_PG_BINDIR"] = str(tmp_path / "empty")
        note = f"PostgreSQL rows skipped: CERTFLOW_PG_BINDIR={tmp_path / 'empty'}: no initdb"
    (tmp_path / "db").mkdir()
    out = bench(*args, env=env).stdout
    assert note in out
    assert has_every_row(rows_of("certflow-sqlite", out))
    assert "certflow-postgresql" not in out
    assert "postgresql / sqlite" not in out
    assert list((tmp_path / "db").iterdir()) == []
