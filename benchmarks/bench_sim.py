"""Benchmark of the simulator: one huge rollout, and a Monte Carlo sweep on every core.

Run ``python benchmarks/bench_sim.py`` (part of ``make bench``); ``--quick`` for a smoke
run (100,000 devices, a 100-run sweep). Prints one table: what, measured, target, met.
``docs/benchmarks.md`` holds a full run.

Method: wall time (``time.perf_counter``) of whole calls, as a user waits for them:

* **one rollout**: ``certflow.sim.simulate`` of a fleet with the default device model
  and bulk retries every 3 days, to its import (21 days): device ids, the rollout, every
  draw, every ``apply_all`` batch; the best of ``--repeat`` runs (default 1 at 1M);
* **single 10,000-device run**: the median of 20 seeds, in this process;
* **sweep**: ``certflow.sim.sweep`` of ``--runs`` runs (seeds 0..) of a 10,000-device
  fleet, the same administrator, on every core (``os.cpu_count()`` processes), once,
  pool start-up included.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

from certflow.sim import AdminPolicy, Setup, simulate, sweep

ADMIN = AdminPolicy(retry_every=3)


def _time(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 devices, 100 runs")
    parser.add_argument("--devices", type=int, default=None, help="fleet of the one rollout")
    parser.add_argument("--runs", type=int, default=None, help="runs of the sweep")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the big rollout")
    args = parser.parse_args(argv)
    big = args.devices or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (100 if args.quick else 1_000)
    cores = os.cpu_count() or 1
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"certflow.sim benchmark: Python {platform.python_version()} on {platform.machine()}, "
        f"{cores} cores; load average at start (1, 5, 15 min): {load}"
    )
    rows: list[tuple[str, str, str, str]] = []

    times = []
    outcome = None
    for _ in range(args.repeat):
        began = time.perf_counter()
        outcome = simulate(Setup(devices=big, admin=ADMIN), 1).outcome
        times.append(time.perf_counter() - began)
    best = min(times)
    target = "≤ 60 s" if big == 1_000_000 else "-"
    met = ("yes" if best <= 60 else "NO") if big == 1_000_000 else "-"
    rows.append(
        (
            f"one {big:,}-device rollout to its import (day {outcome.import_day:g})"
            if outcome
            else "one rollout",
            f"{best:.2f} s",
            target,
            met,
        )
    )
    print(f"... {big:,} devices done: {outcome}", file=sys.stderr, flush=True)

    small = Setup(devices=10_000, admin=ADMIN)
    singles = [_time(functools.partial(simulate, small, seed)) for seed in range(20)]
    rows.append(
        (
            "one 10,000-device rollout, median of 20",
            f"{statistics.median(singles) * 1000:.1f} ms",
            "-",
            "-",
        )
    )

    began = time.perf_counter()
    table = sweep(small, runs, 0, progress=False)
    elapsed = time.perf_counter() - began
    target = "≤ 60 s" if runs == 1_000 else "-"
    met = ("yes" if elapsed <= 60 else "NO") if runs == 1_000 else "-"
    rows.append(
        (
            f"sweep: {runs:,} runs of 10,000 devices on {cores} processes",
            f"{elapsed:.1f} s",
            target,
            met,
        )
    )
    rows.append(("sweep throughput", f"{runs / elapsed:.1f} runs/s", "-", "-"))
    print(
        f"... sweep done: {table.summary()['reenrollment_mean']:.1f} re-enrolments per run",
        file=sys.stderr,
        flush=True,
    )

    print()
    print("| what | measured | target | met |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
