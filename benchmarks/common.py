"""What the benchmark scripts share: the table's rows and text, timing, a reference
loop for machine speed, and the standard fleet.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from certflow import Rollout, new_rollout

__all__ = [
    "DAY",
    "T0",
    "Row",
    "make_ids",
    "pending_rollout",
    "percentile",
    "reference_ms",
    "render",
    "seconds",
    "time_each",
]

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@attrs.frozen
class Row:
    """One line of the table. ``target``/``met`` are None where there is no target;
    ``amount`` is the measured value as a number (seconds, bytes) where two
    implementations' rows are compared by their ratio."""

    size: int
    impl: str
    metric: str
    value: str
    target: str = "-"
    met: bool | None = None
    note: str = ""
    amount: float | None = None


def seconds(value: float) -> str:
    """A duration in the unit that reads best: ``2.41 s``, ``14.3 ms``, ``61.0 µs``."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


def percentile(samples: Sequence[int], fraction: float) -> float:
    """The ``fraction`` quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])


def reference_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 3): compares machine speed.

    Shared virtual machines change speed from minute to minute; dividing a figure by
    this reference makes runs comparable.
    """
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def make_ids(n: int) -> list[str]:
    """Device ids as a list (so that the rollout builds, and pays for, its own tuple)."""
    return [f"device-{i:07d}" for i in range(n)]


def pending_rollout(ids: Sequence[str]) -> Rollout:
    """A pending rollout whose old certificate outlives the deadline (so day 21 forces)."""
    return new_rollout(
        ids,
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 396 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
    )


def time_each(call: Callable[[Any], object], args: Sequence[Any]) -> list[int]:
    """Time ``call(arg)`` once per ``arg``, each call on its own (nanoseconds)."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    for arg in args:
        start = clock()
        call(arg)
        append(clock() - start)
    return samples


def render(rows: Sequence[Row]) -> str:
    """The table as fixed-width text."""
    header = ("size", "impl", "metric", "measured", "target", "result")
    body = [
        (
            f"{r.size:,}",
            r.impl,
            r.metric,
            r.value,
            r.target,
            "-" if r.met is None else ("target met" if r.met else "MISSED"),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row, line in zip(rows, body, strict=True):
        lines.append(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        )
        if row.note:
            lines.append(" " * (widths[0] + 2) + "note: " + row.note)
    return "\n".join(lines)
