"""Charts of simulated rollouts (matplotlib, object-oriented: no pyplot, no global backend).

* :func:`states_chart`: device states per day as a stacked area, with the notices,
  the postponed checkpoints and the import marked;
* :func:`sweep_chart`: the import day and the re-enrolment counts of sweeps, side by
  side, one colour per compared setup;
* :func:`forecast_chart`: a forecast's fitted wait for an answer, and the cut-offs of
  its simulated futures with and without a manual extension;
* :func:`save`: a figure to a ``.png`` or ``.svg`` file.

A :class:`matplotlib.figure.Figure` shows itself in a notebook; nothing here draws on
a screen or picks a backend, so a server or a test renders with Agg as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from certflow.core.effects import Effect, ImportCertificate, ImportPostponed, Notify
from certflow.core.errors import InvalidInput
from certflow.core.plan import DeviceState
from certflow.sim._host import DAY
from certflow.sim.fleet import Trace
from certflow.sim.forecast import Forecast
from certflow.sim.sweep import SweepTable

__all__ = ["FORMATS", "forecast_chart", "save", "states_chart", "sweep_chart"]

FORMATS = (".png", ".svg")

# Bottom to top: the trusting devices first, the ones that need work above them.
_LAYERS: tuple[tuple[DeviceState, str], ...] = (
    (DeviceState.INSTALLED, "#4c9a2a"),
    (DeviceState.PUSHED, "#f2c14e"),
    (DeviceState.PENDING, "#b0b7bf"),
    (DeviceState.FAILED, "#e4572e"),
    (DeviceState.REENROLL_REQUIRED, "#8e2c8e"),
    (DeviceState.REMOVED, "#5b6770"),
)


def states_chart(
    trace: Trace, effects: Sequence[Effect], start: datetime, *, title: str = ""
) -> Figure:
    """Device states per day as a stacked area, notices, checkpoints and import marked."""
    if not trace.days:
        raise InvalidInput("the trace is empty: simulate with trace=True")
    figure = Figure(figsize=(9, 4.8), layout="constrained")
    axes = figure.add_subplot()
    days = list(trace.days)
    present = [
        (state, colour)
        for state, colour in _LAYERS
        if any(counts.get(state, 0) for counts in trace.counts)
    ]
    axes.stackplot(
        days,
        [[counts.get(state, 0) for counts in trace.counts] for state, _ in present],
        labels=[state.value for state, _ in present],
        colors=[colour for _, colour in present],
        alpha=0.9,
    )
    top = max(sum(counts.values()) for counts in trace.counts)
    marked: set[str] = set()

    def mark(day: float, label: str, **style: object) -> None:
        shown = label if label not in marked else None
        marked.add(label)
        axes.axvline(day, label=shown, **style)  # type: ignore[arg-type]

    for effect in effects:
        day = (effect.due_at - start) / DAY
        if isinstance(effect, Notify):
            mark(day, "notice", color="#1f3b73", linestyle=":", linewidth=1.4)
        elif isinstance(effect, ImportPostponed):
            mark(
                day, "checkpoint: import postponed", color="#1f3b73", linestyle="--", linewidth=1.4
            )
        elif isinstance(effect, ImportCertificate):
            label = "forced import" if effect.forced else "import"
            mark(day, label, color="#c0392b" if effect.forced else "#1e8449", linewidth=2.4)
            axes.annotate(
                f"{label}, day {day:g}",
                xy=(day, top),
                xytext=(-6, -14),
                textcoords="offset points",
                ha="right",
                fontsize=9,
            )
    axes.set_xlim(0, days[-1] + 0.5)
    axes.set_ylim(0, top * 1.02)
    axes.set_xlabel("day (from distribution start)")
    axes.set_ylabel("devices")
    axes.set_title(title or f"Device states per day ({top:,} devices)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return figure


def sweep_chart(tables: Mapping[str, SweepTable], *, title: str = "") -> Figure:
    """Import day (share of runs) and devices needing re-enrolment, per compared setup."""
    if not tables:
        raise InvalidInput("sweep_chart needs at least one sweep")
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    days_axes, cut_axes = figure.subplots(1, 2)
    names = list(tables)
    every_day = sorted({d for t in tables.values() for d in t.import_days})
    width = 0.8 / len(names)
    # One set of whole-device bins for every setup, so their histograms line up.
    counts = [n for t in tables.values() for n in t.reenrollments]
    low, high = min(counts), max(counts)
    span = max(1, -(-(high - low + 1) // 30))
    bins = [low - 0.5 + k * span for k in range((high - low) // span + 2)]
    for k, name in enumerate(names):
        shares = tables[name].import_day_shares()
        x = [i + (k - (len(names) - 1) / 2) * width for i in range(len(every_day))]
        days_axes.bar(x, [shares.get(d, 0.0) for d in every_day], width=width, label=name)
        cut_axes.hist(tables[name].reenrollments, bins=bins, alpha=0.6, label=name)
    days_axes.set_xticks(range(len(every_day)), [f"{d:g}" for d in every_day])
    days_axes.set_xlabel("import day")
    days_axes.set_ylabel("share of runs")
    days_axes.set_title("When the import happens")
    cut_axes.set_xlabel("devices needing re-enrolment")
    cut_axes.set_ylabel("runs")
    cut_axes.set_title("Devices cut off by the import")
    cut_axes.legend(fontsize=8, frameon=False)
    runs = sum(len(t) for t in tables.values())
    figure.suptitle(title or f"{runs:,} simulated rollouts")
    return figure


def forecast_chart(result: Forecast, *, title: str = "") -> Figure:
    """The Kaplan-Meier curve of the wait for an answer, and the cut-offs per branch."""
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    curve_axes, cut_axes = figure.subplots(1, 2)
    fit = result.fit
    hours = [0.0, *(t / 3600 for t in fit.times)]
    curve_axes.step(hours, [1.0, *fit.survival], where="post", color="#1f3b73")
    curve_axes.set_xlabel("hours since the push")
    curve_axes.set_ylabel("share still unanswered")
    curve_axes.set_title(
        f"Wait for an answer (Kaplan-Meier, {fit.answered:,} answered, {fit.censored:,} waiting)"
    )
    branches = [("as it is", result.as_is)]
    if result.extended is not None:
        branches.append(("one manual extension", result.extended))
    every = [n for _, branch in branches for n in branch.cutoffs]
    low, high = min(every), max(every)
    bins = [low - 0.5 + k for k in range(high - low + 2)]
    for name, branch in branches:
        cut_axes.hist(
            branch.cutoffs, bins=bins, alpha=0.6, label=f"{name}: mean {branch.cutoff_mean:.1f}"
        )
    cut_axes.set_xlabel("devices cut off by a forced import")
    cut_axes.set_ylabel("simulated futures")
    cut_axes.set_title(f"{result.runs} futures per branch")
    cut_axes.legend(fontsize=8, frameon=False)
    if title:
        figure.suptitle(title)
    return figure


def save(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path``, a ``.png`` or ``.svg`` file (by its suffix)."""
    target = Path(path)
    if target.suffix.lower() not in FORMATS:
        raise InvalidInput(f"chart file {str(path)!r} must end in .png or .svg")
    # SVG text stays text; a fixed hash salt and no date keep the file reproducible.
    metadata: dict[str, str | None] = {"Date": None} if target.suffix.lower() == ".svg" else {}
    with matplotlib.rc_context({"svg.hashsalt": "certflow"}):
        figure.savefig(target, dpi=110, metadata=metadata)
    return target
