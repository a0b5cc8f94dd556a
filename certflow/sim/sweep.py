"""Monte Carlo: many seeded runs of one setup, on every core, as one table.

:func:`sweep` runs :func:`certflow.sim.fleet.simulate` for seeds ``seed``,
``seed + 1``, ... in worker processes (``concurrent.futures.ProcessPoolExecutor``, one
per core by default) and returns a :class:`SweepTable` in seed order, so the table
does not depend on the number of workers. A progress bar (tqdm) shows on a terminal
(standard error is a TTY) and never otherwise.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import attrs

from certflow.core.errors import InvalidInput
from certflow.sim.fleet import Outcome, simulate
from certflow.sim.models import Setup

__all__ = ["SweepTable", "sweep"]

_COLUMNS = (
    ("seed", "seed"),
    ("import_day", "import day"),
    ("forced", "forced"),
    ("reenrollment_required", "re-enrolment"),
    ("notices", "notices"),
    ("manual_extensions", "extensions"),
    ("bulk_retries", "bulk retries"),
)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(q * 100) - 1]


@attrs.frozen
class SweepTable:
    """One row (:class:`~certflow.sim.fleet.Outcome`) per run, in seed order."""

    setup: Setup
    rows: tuple[Outcome, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def import_days(self) -> list[float]:
        """The import day of every run that imported."""
        return [row.import_day for row in self.rows if row.import_day is not None]

    @property
    def reenrollments(self) -> list[int]:
        """Devices needing re-enrolment, per run."""
        return [row.reenrollment_required for row in self.rows]

    def import_day_shares(self) -> dict[float | None, float]:
        """Share of runs per import day (``None``: no import), by day."""
        counts = Counter(row.import_day for row in self.rows)
        total = len(self.rows)
        return {
            day: counts[day] / total
            for day in sorted(counts, key=lambda d: (d is None, d if d is not None else 0.0))
        }

    def summary(self) -> dict[str, Any]:
        """The distribution in a few figures (JSON-ready)."""
        reenrol = self.reenrollments
        forced = [row for row in self.rows if row.forced]
        return {
            "runs": len(self.rows),
            "devices": self.setup.devices,
            "import_day_shares": {
                ("none" if day is None else f"{day:g}"): share
                for day, share in self.import_day_shares().items()
            },
            "forced_share": len(forced) / len(self.rows),
            "imported_share": sum(1 for r in self.rows if r.forced is False) / len(self.rows),
            "reenrollment_mean": statistics.fmean(reenrol),
            "reenrollment_p5": _quantile(reenrol, 0.05),
            "reenrollment_p50": _quantile(reenrol, 0.50),
            "reenrollment_p95": _quantile(reenrol, 0.95),
            "notices_mean": statistics.fmean(row.notices for row in self.rows),
        }

    def as_dict(self) -> dict[str, Any]:
        """Summary and every row, JSON-ready."""
        return {"summary": self.summary(), "rows": [row.as_dict() for row in self.rows]}

    def __str__(self) -> str:
        s = self.summary()
        days = ", ".join(f"day {day}: {share:.1%}" for day, share in s["import_day_shares"].items())
        return "\n".join(
            [
                f"{s['runs']:,} runs of {s['devices']:,} devices",
                f"import: {days}",
                f"imported {s['imported_share']:.1%}, forced {s['forced_share']:.1%}",
                f"re-enrolment: mean {s['reenrollment_mean']:,.1f}, 5-95% "
                f"{s['reenrollment_p5']:,.0f}-{s['reenrollment_p95']:,.0f}, "
                f"median {s['reenrollment_p50']:,.0f}",
                f"notices per run: {s['notices_mean']:.2f}",
            ]
        )

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{title}</th>" for _, title in _COLUMNS)
        shown = self.rows[:10]
        body = "".join(
            "<tr>"
            + "".join(f"<td>{_cell(getattr(row, name))}</td>" for name, _ in _COLUMNS)
            + "</tr>"
            for row in shown
        )
        more = (
            f"<p>... {len(self.rows) - len(shown):,} more runs</p>" if len(self.rows) > 10 else ""
        )
        summary = str(self).replace("\n", "<br>")
        return f"<p>{summary}</p><table><tr>{head}</tr>{body}</table>{more}"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _chunk(setup: Setup, seeds: Sequence[int]) -> list[Outcome]:
    return [simulate(setup, seed).outcome for seed in seeds]


def sweep(
    setup: Setup,
    runs: int,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SweepTable:
    """Run ``setup`` with seeds ``seed .. seed + runs - 1`` and tabulate the outcomes.

    ``workers``: processes (default: every core; 1 runs in this process). ``progress``:
    show a bar (default: when standard error is a terminal). ``on_progress`` is called
    with the number of runs done so far after each chunk.
    """
    if type(runs) is not int or runs < 1:
        raise InvalidInput(f"runs must be a whole number >= 1, got {runs!r}")
    if type(seed) is not int:
        raise InvalidInput(f"seed must be an int, got {seed!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if type(workers) is not int or workers < 1:
        raise InvalidInput(f"workers must be a whole number >= 1, got {workers!r}")
    if progress is None:
        progress = sys.stderr.isatty()
    seeds = list(range(seed, seed + runs))
    # Chunks amortise the per-task pickling; several per worker keep the bar moving
    # and the cores busy until the end.
    size = max(1, min(50, runs // (workers * 8) or 1))
    chunks = [seeds[i : i + size] for i in range(0, runs, size)]
    results: dict[int, list[Outcome]] = {}
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=runs, unit="run", file=sys.stderr, desc="sweep")
    done = 0

    def finished(index: int, outcomes: list[Outcome]) -> None:
        nonlocal done
        results[index] = outcomes
        done += len(outcomes)
        if bar is not None:
            bar.update(len(outcomes))
        if on_progress is not None:
            on_progress(done)

    try:
        if workers == 1 or len(chunks) == 1:
            for index, chunk in enumerate(chunks):
                finished(index, _chunk(setup, chunk))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                futures = {pool.submit(_chunk, setup, chunk): i for i, chunk in enumerate(chunks)}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    finally:
        if bar is not None:
            bar.close()
    rows = tuple(row for index in range(len(chunks)) for row in results[index])
    return SweepTable(setup, rows)
