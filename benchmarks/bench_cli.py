"""Benchmark of the command line's start-up (issue 18, item 7): ``certflow --version``
and ``certflow rollout report NAME DEVICE installed`` each in at most 0.25 s on a quiet
machine; ``import certflow.cli`` and the interpreter's own start-up for comparison.

Run ``python benchmarks/bench_cli.py`` (part of ``make bench``; ``--repeat N``, default
15). Each case is a new process, as a shell script runs it: the wall time from its start
to its exit, the median of ``--repeat`` runs, after one untimed run (Python's bytecode
cache, the page cache). The cases take turns, round after round, so a change in the
machine's load falls on all of them alike. Beside the wall time, the median CPU time of
the process (user + system): a loaded machine lengthens the wall time by the waits for a
core, much less the CPU time, which is close to what a quiet machine's wall time is.

``rollout report`` reports one more device each run (the same work every time) on a
SQLite rollout of 1,000 devices, distributing, in a temporary folder; ``--now`` is
given, so the rollout's clock is the same for every run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common import DAY, T0, Row, make_ids, pending_rollout, render, seconds

import certflow as cf
from certflow.store import SqliteStore

TARGET = 0.25
DEVICES = 1_000
NOW = (T0 + DAY).isoformat()
# What the installed `certflow` script runs (the console script of pyproject.toml).
CERTFLOW = "import sys; from certflow.cli import main; sys.exit(main())"


def _certflow(*args: str) -> list[str]:
    return [sys.executable, "-c", CERTFLOW, *args]


def _run(argv: Sequence[str]) -> tuple[float, float]:
    """Run ``argv`` once: its wall time and its CPU time (user + system), in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _rollout(folder: Path, ids: list[str]) -> Path:
    """A distributing rollout ``r`` of the devices ``ids`` in a new SQLite file."""
    path = folder / "bench.db"
    with SqliteStore(path) as store:
        store.create("r", pending_rollout(ids))
        store.apply("r", cf.DistributeRoot(), T0)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs of each case")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    print(
        f"certflow start-up benchmark: Python {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} cores; load average at start (1, 5, 15 "
        f"min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        devices = make_ids(max(DEVICES, repeat + 1))
        db = str(_rollout(Path(folder), devices))
        ids = iter(devices)  # a device not reported yet, for each run

        def report() -> list[str]:
            device = next(ids)
            return _certflow(
                "rollout", "report", "r", device, "installed", "--db", db, "--now", NOW
            )

        cases: dict[str, tuple[Callable[[], list[str]], float | None]] = {
            "python -c pass": (lambda: [sys.executable, "-c", "pass"], None),
            "import certflow.cli": (
                lambda: [sys.executable, "-c", "import certflow.cli"],
                None,
            ),
            "certflow --version": (lambda: _certflow("--version"), TARGET),
            "certflow rollout report r DEVICE installed": (report, TARGET),
        }
        for make, _ in cases.values():  # untimed: bytecode and page caches
            _run(make())
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, (make, _) in cases.items():
                wall, cpu = _run(make())
                walls[name].append(wall)
                cpus[name].append(cpu)
    rows = []
    for name, (_, target) in cases.items():
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        rows.append(
            Row(
                size=repeat,
                impl="new process",
                metric=name,
                value=seconds(wall),
                target="-" if target is None else f"<= {seconds(target)} (quiet machine)",
                met=None if target is None else wall <= target,
                note=f"CPU {seconds(cpu)}; wall fastest {seconds(min(walls[name]))}, "
                f"slowest {seconds(max(walls[name]))}",
                amount=wall,
            )
        )
    print(f"Median wall time of {repeat} runs each (size: runs)")
    print(render(rows))
    print(f"Load average at end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
