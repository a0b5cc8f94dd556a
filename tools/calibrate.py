"""Calibration of the forecast (issue 21): true histories from a generator of its own,
forecast at decision days, then run to the end; how often the stated intervals cover.

Run ``python tools/calibrate.py`` (``--help`` for the grid). Device behaviour is drawn
here, with numpy, independently of :mod:`certflow.sim` (whose simulator the forecast
shares its assumptions with); the rollout is certflow's engine, driven by a host of this
script's own (hourly ingestion, a daily review 1 h into each day), as a server would.

* behaviours (``--behaviours``): ``quick`` (log-normal, median 3 h), ``slow`` (log-normal,
  median 2 days), ``heavy`` (Lomax/Pareto II, shape 1.1, scale 12 h: a long tail),
  ``workdays`` (quick, but answers only on Monday to Friday, 08:00-18:00 UTC); every one
  also has a share that never answers (2 %), churn (0.5 % unenrol in days 0.5-12) and
  failures that need a retry (10 % of answers fail);
* administrator policies (``--policies``): ``none`` (no retries), ``bulk`` (bulk retry
  every 3 days from day 1), ``extend`` (bulk retries and one manual extension on day 6);
* decision days (``--days``): the snapshot 1 h into the day, after the review; each
  history is forecast at every decision day it reaches still distributing;
* fleets (``--fleets``) and ``--histories`` per cell.

For each cell it prints the empirical coverage of the 80 % and 90 % intervals of the
devices cut off and of the import day, the mean absolute error of their expected values,
and the mean interval width; ``--json`` writes every row, ``--chart`` draws the coverage.
The truth compared is the branch the administrator took: with ``extend`` before day 6,
the forecast's extended branch; otherwise as it is. Seeds are fixed: a run is repeatable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from certflow import (
    Command,
    DeviceFailed,
    DeviceInstalled,
    DistributeRoot,
    ExtendManually,
    PushRoot,
    Rollout,
    Unenroll,
    advance,
    apply,
    apply_all,
    new_rollout,
    preview,
)
from certflow.core.commands import RetryAllFailed
from certflow.core.effects import ImportCertificate, ReenrollmentRequired
from certflow.core.errors import CommandRefused
from certflow.sim import AdminPolicy, forecast

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # a Wednesday
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
NEVER_SHARE = 0.02
CHURN_SHARE = 0.005
FAILURE = 0.10
BEHAVIOURS = ("quick", "slow", "heavy", "workdays")
POLICIES = ("none", "bulk", "extend")


def _waits(behaviour: str, n: int, rng: np.random.Generator, pushed: datetime) -> np.ndarray:
    """Seconds from a push to its answer for ``n`` devices of one behaviour."""
    if behaviour == "quick":
        return 3 * 3600 * np.exp(rng.normal(0, 1.0, n))
    if behaviour == "slow":
        return 48 * 3600 * np.exp(rng.normal(0, 1.0, n))
    if behaviour == "heavy":
        return 12 * 3600 * (np.power(1 - rng.random(n), -1 / 1.1) - 1)
    if behaviour == "workdays":
        quick = 3 * 3600 * np.exp(rng.normal(0, 1.0, n))
        return np.array([_next_working(pushed, w) for w in quick])
    raise ValueError(behaviour)


def _next_working(pushed: datetime, wait: float) -> float:
    """The wait until the first working moment at or after ``pushed + wait``."""
    at = pushed + timedelta(seconds=float(wait))
    while at.weekday() >= 5 or not 8 <= at.hour < 18:
        at = (at + HOUR).replace(minute=0, second=0, microsecond=0)
        if at.weekday() < 5 and at.hour == 8:
            break
    return (at - pushed).total_seconds()


class History:
    """One true history: certflow's engine, this script's host and devices."""

    def __init__(self, devices: int, behaviour: str, policy: str, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.behaviour = behaviour
        self.policy = policy
        self.ids = [f"d{i:06d}" for i in range(devices)]
        never = self.rng.random(devices) < NEVER_SHARE
        self.never = {d for d, v in zip(self.ids, never, strict=True) if v}
        churn = max(1, round(CHURN_SHARE * devices)) if devices >= 200 else 0
        leaving = self.rng.choice(devices, size=churn, replace=False)
        self.unenrol: dict[int, list[str]] = {}
        for index in leaving.tolist():
            step = int(self.rng.uniform(12, 12 * 24))
            self.unenrol.setdefault(step, []).append(self.ids[index])
        rollout = new_rollout(
            self.ids,
            existing_not_after=T0 + 40 * DAY,
            new_not_before=T0 - DAY,
            new_not_after=T0 + 400 * DAY,
            root_publicly_trusted=False,
            created_at=T0,
        )
        self.rollout = rollout
        self.gone: set[str] = set()
        self.due: dict[int, list[tuple[str, bool]]] = {}
        self.pushes: dict[str, list[datetime]] = {}
        self.reports: dict[str, list[datetime]] = {}
        self.import_at: datetime | None = None
        self.cutoffs = 0
        self.step = 0
        self._perform(self._apply(DistributeRoot(), T0))

    def _apply(self, command: Command, at: datetime) -> Sequence[object]:
        step = apply(self.rollout, command, at)
        self.rollout = step.rollout
        return step.effects

    def _perform(self, effects: Sequence[object]) -> None:
        for effect in effects:
            if isinstance(effect, PushRoot):
                ids = [d for d in effect.device_ids if d not in self.gone]
                at = effect.due_at
                waits = _waits(self.behaviour, len(ids), self.rng, at)
                fails = self.rng.random(len(ids)) < FAILURE
                for d, wait, fail in zip(ids, waits.tolist(), fails.tolist(), strict=True):
                    self.pushes.setdefault(d, []).append(at)
                    if d in self.never:
                        continue
                    due = math.ceil(((at - T0).total_seconds() + wait) / 3600)
                    self.due.setdefault(max(due, self.step + 1), []).append((d, fail))
            elif isinstance(effect, ImportCertificate) and self.import_at is None:
                self.import_at = effect.due_at
            elif isinstance(effect, ReenrollmentRequired):
                self.cutoffs += len(effect.device_ids)

    def run_until(self, step: int) -> None:
        """Hour by hour to ``step`` (inclusive), or the end of the rollout."""
        while self.step < step and not self.rollout.state.terminal:
            self.step += 1
            at = T0 + self.step * HOUR
            moved = advance(self.rollout, at)
            self.rollout = moved.rollout
            self._perform(moved.effects)
            if self.rollout.state.terminal:
                break
            batch: list[Command] = []
            for d in self.unenrol.pop(self.step, []):
                self.gone.add(d)
                batch.append(Unenroll(d))
            for d, fail in self.due.pop(self.step, []):
                if d in self.gone:
                    continue
                batch.append(
                    DeviceFailed(d, "user declined profile") if fail else DeviceInstalled(d)
                )
                self.reports.setdefault(d, []).append(at)
            if batch:
                done = apply_all(self.rollout, batch, at)
                self.rollout = done.rollout
                self._perform(done.effects)
            day, into = divmod(self.step, 24)
            if into == 1 and day >= 1 and not self.rollout.state.terminal:
                self._review(day, at)

    def _review(self, day: int, at: datetime) -> None:
        if self.policy == "extend" and day == 6:
            with contextlib.suppress(CommandRefused):  # past day 6 only if it still can
                self._perform(self._apply(ExtendManually(), at))
        if self.policy in ("bulk", "extend") and (day - 1) % 3 == 0:
            retry = preview(self.rollout, RetryAllFailed(), at)
            if retry.rollout is not None:
                self.rollout = retry.rollout
                self._perform(retry.effects)


def _rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def one(args: tuple[int, str, str, tuple[int, ...], int, int]) -> list[dict[str, Any]]:
    """One history, forecast at every decision day it reaches still distributing."""
    devices, behaviour, policy, days, seed, runs = args
    history = History(devices, behaviour, policy, seed)
    snaps: list[
        tuple[int, Rollout, datetime, dict[str, list[datetime]], dict[str, list[datetime]]]
    ] = []
    for day in days:
        history.run_until(day * 24 + 1)
        if not history.rollout.state.running:
            break
        now = T0 + (day * 24 + 1) * HOUR
        snaps.append(
            (
                day,
                history.rollout,
                now,
                {d: list(p) for d, p in history.pushes.items()},
                {d: list(r) for d, r in history.reports.items()},
            )
        )
    history.run_until(60 * 24)
    truth_day = None if history.import_at is None else (history.import_at - T0) / DAY
    rows = []
    admin = AdminPolicy(retry_every=3) if policy != "none" else AdminPolicy()
    for day, rollout, now, pushes, reports in snaps:
        began = time.perf_counter()
        result = forecast(rollout, now, pushes, reports, admin=admin, runs=runs, seed=seed)
        spent = time.perf_counter() - began
        branch = result.extended if policy == "extend" and day < 6 else result.as_is
        if branch is None:
            continue
        days_known = [d for d in branch.import_days if d is not None]
        row: dict[str, Any] = {
            "devices": devices,
            "behaviour": behaviour,
            "policy": policy,
            "day": day,
            "seed": seed,
            "truth_cutoffs": history.cutoffs,
            "truth_day": truth_day,
            "mean_cutoffs": branch.cutoff_mean,
            "mean_day": branch.import_day_mean,
            "beyond": result.tail.beyond,
            "unsettled": result.tail.unsettled,
            "horizon_days": result.tail.horizon_days,
            "waiting": result.tail.waiting,
            "reliable": result.tail.reliable,
            "spread": result.tail.spread,
            "evidence": result.tail.evidence,
            "seconds": spent,
        }
        for level in (0.8, 0.9):
            tail = (1 - level) / 2
            low, high = _rank(branch.cutoffs, tail), _rank(branch.cutoffs, 1 - tail)
            row[f"cut{int(level * 100)}"] = [low, high]
            if days_known and truth_day is not None:
                dl, dh = _rank(days_known, tail), _rank(days_known, 1 - tail)
                row[f"day{int(level * 100)}"] = [dl, dh]
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per cell: coverage of each interval, mean absolute error, mean width."""
    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["devices"], row["behaviour"], row["policy"], row["day"]), []).append(
            row
        )
    out = []
    for key in sorted(cells):
        group = cells[key]
        n = len(group)

        def cover(name: str, truth: str, group: list[dict[str, Any]] = group) -> float | None:
            known = [r for r in group if name in r and r[truth] is not None]
            if not known:
                return None
            return float(sum(r[name][0] <= r[truth] <= r[name][1] for r in known) / len(known))

        trusted = [r for r in group if r.get("reliable", True)]

        days = [r for r in group if r["truth_day"] is not None and r["mean_day"] is not None]
        out.append(
            {
                "devices": key[0],
                "behaviour": key[1],
                "policy": key[2],
                "day": key[3],
                "histories": n,
                "cut80": cover("cut80", "truth_cutoffs"),
                "cut90": cover("cut90", "truth_cutoffs"),
                # The share of forecasts that said they are unreliable, and the coverage
                # of those that did not.
                "flagged": 1 - len(trusted) / n,
                "cut80_reliable": cover("cut80", "truth_cutoffs", trusted),
                "cut90_reliable": cover("cut90", "truth_cutoffs", trusted),
                "day80": cover("day80", "truth_day"),
                "day90": cover("day90", "truth_day"),
                "mae_cut": sum(abs(r["mean_cutoffs"] - r["truth_cutoffs"]) for r in group) / n,
                "mae_day": (
                    sum(abs(r["mean_day"] - r["truth_day"]) for r in days) / len(days)
                    if days
                    else None
                ),
                "width90": sum(r["cut90"][1] - r["cut90"][0] for r in group) / n,
                "truth_mean": sum(r["truth_cutoffs"] for r in group) / n,
                "seconds": sum(r["seconds"] for r in group) / n,
            }
        )
    return out


def markdown(cells: list[dict[str, Any]]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f}"

    lines = [
        "| fleet | behaviour | policy | day | n | cut 80 % | cut 90 % | flagged % "
        "| cut 80 % reliable | cut 90 % reliable | day 80 % | day 90 % "
        "| MAE cut | MAE day | width 90 % | truth mean |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        mae_day = "-" if c["mae_day"] is None else f"{c['mae_day']:.2f}"
        lines.append(
            f"| {c['devices']:,} | {c['behaviour']} | {c['policy']} | {c['day']} | "
            f"{c['histories']} | {pct(c['cut80'])} | {pct(c['cut90'])} | {pct(c['flagged'])} | "
            f"{pct(c['cut80_reliable'])} | {pct(c['cut90_reliable'])} | {pct(c['day80'])} | "
            f"{pct(c['day90'])} | {c['mae_cut']:.1f} | {mae_day} | {c['width90']:.1f} | "
            f"{c['truth_mean']:.1f} |"
        )
    return "\n".join(lines)


def chart(cells: list[dict[str, Any]], path: str) -> None:
    """Coverage per cell, a row of charts per fleet size: filled, the forecasts not marked
    unreliable; hollow, a cell whose every forecast is marked (refused), at the coverage
    of all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fleets = sorted({c["devices"] for c in cells})
    figure, grid = plt.subplots(
        len(fleets), 2, figsize=(11, 4 * len(fleets)), sharey=True, squeeze=False
    )
    for fleet, axes in zip(fleets, grid, strict=True):
        for ax, level in zip(axes, (80, 90), strict=True):
            _coverage(ax, [c for c in cells if c["devices"] == fleet], level)
            ax.set_title(f"{fleet:,} devices: devices cut off, {level} % intervals")
        axes[0].set_ylabel("coverage (%): filled unmarked, hollow all marked")
    grid[0][0].legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _coverage(ax: Any, cells: list[dict[str, Any]], level: int) -> None:
    for behaviour, marker in zip(BEHAVIOURS, "osD^", strict=True):
        mine = [c for c in cells if c["behaviour"] == behaviour]
        kept = [c for c in mine if c[f"cut{level}_reliable"] is not None]
        refused = [
            c for c in mine if c[f"cut{level}_reliable"] is None and c[f"cut{level}"] is not None
        ]
        shown = ax.scatter(
            [c["day"] + 0.25 * POLICIES.index(c["policy"]) for c in kept],
            [100 * c[f"cut{level}_reliable"] for c in kept],
            marker=marker,
            label=behaviour,
            alpha=0.75,
        )
        ax.scatter(
            [c["day"] + 0.25 * POLICIES.index(c["policy"]) for c in refused],
            [100 * c[f"cut{level}"] for c in refused],
            marker=marker,
            facecolors="none",
            edgecolors=shown.get_facecolor(),
            alpha=0.75,
        )
    ax.axhspan(level - 5, level + 5, color="0.9", zorder=0)
    ax.axhline(level, color="0.5", lw=0.8)
    ax.set_xlabel("decision day (policies none, bulk, extend side by side)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", default="100,10000,100000")
    parser.add_argument("--behaviours", default=",".join(BEHAVIOURS))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--days", default="3,6,13,20")
    parser.add_argument("--histories", type=int, default=200, help="per cell")
    parser.add_argument(
        "--first", type=int, default=0, help="the first history's number (to extend a run)"
    )
    parser.add_argument("--runs", type=int, default=200, help="futures per forecast")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="write every row here")
    parser.add_argument("--chart", help="draw the coverage here (PNG)")
    parser.add_argument(
        "--from-json", help="tabulate and draw the rows of an earlier --json, running nothing"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        return _report(_load(args.from_json.split(",")), args.json, args.chart)
    days = tuple(int(d) for d in args.days.split(","))
    jobs = [
        (int(fleet), behaviour, policy, days, 1_000_003 * k + 17, args.runs)
        for fleet in args.fleets.split(",")
        for behaviour in args.behaviours.split(",")
        for policy in args.policies.split(",")
        for k in range(args.first, args.first + args.histories)
    ]
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for found in pool.map(one, jobs, chunksize=4):
            rows.extend(found)
    _report(rows, args.json, args.chart)
    print(f"\n{len(jobs)} histories, {len(rows)} forecasts in {time.perf_counter() - began:.0f} s")
    return 0


def _load(names: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        with open(name, encoding="utf-8") as source:
            rows.extend(json.load(source)["rows"])
    return rows


def _report(rows: list[dict[str, Any]], json_path: str | None, chart_path: str | None) -> int:
    cells = table(rows)
    print(markdown(cells))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump({"rows": rows, "cells": cells}, out, indent=1)
    if chart_path:
        chart(cells, chart_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
