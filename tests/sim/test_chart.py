"""Charts: what they draw comes from the run, and files are PNG or SVG, reproducibly."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.patches import Rectangle

from certflow import InvalidInput
from certflow.sim.chart import forecast_chart, save, states_chart, sweep_chart
from certflow.sim.fleet import Trace, simulate
from certflow.sim.forecast import forecast
from certflow.sim.models import AdminPolicy, DeviceModel, Setup
from certflow.sim.sweep import sweep

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
SETUP = Setup(devices=300, admin=AdminPolicy(retry_every=3, extend_on_day=6))


def test_the_states_chart_stacks_the_states_and_marks_notices_checkpoints_and_the_import() -> None:
    run = simulate(SETUP, 1, trace=True)
    assert run.trace is not None
    figure = states_chart(run.trace, run.effects, run.start)
    axes = figure.axes[0]
    layers = [c for c in axes.collections if isinstance(c, PolyCollection)]
    shown = axes.get_legend()
    assert shown is not None
    legend = [text.get_text() for text in shown.get_texts()]
    # Pending at the start, then pushed, installed, failed, one device unenrolled
    # (churn), and the forced import's cut-offs.
    assert legend[: len(layers)] == [
        "installed",
        "pushed",
        "pending",
        "failed",
        "reenroll_required",
        "removed",
    ]
    assert legend[len(layers) :] == ["notice", "checkpoint: import postponed", "forced import"]
    vertical = [float(np.asarray(line.get_xdata())[0]) for line in axes.get_lines()]
    assert vertical == [day for day, _ in run.timeline()]
    assert vertical[-1] == run.outcome.import_day == 28.0
    assert [t.get_text() for t in axes.texts] == ["forced import, day 28"]


def test_the_sweep_chart_has_the_import_days_and_the_cutoffs_of_each_setup() -> None:
    tables = {
        "passive": sweep(Setup(devices=200), 6, workers=1, progress=False),
        "retries": sweep(
            Setup(devices=200, admin=AdminPolicy(retry_every=3)), 6, workers=1, progress=False
        ),
    }
    figure = sweep_chart(tables)
    days, cutoffs = figure.axes
    assert [t.get_text() for t in days.get_xticklabels()] == ["21"]
    assert len(days.patches) == 2  # one bar per setup, for day 21
    assert (
        sum(p.get_height() for p in cutoffs.patches if isinstance(p, Rectangle)) == 12
    )  # every run counted once
    with pytest.raises(InvalidInput, match="at least one sweep"):
        sweep_chart({})


def test_files_are_png_or_svg_and_svg_is_reproducible(tmp_path: Path) -> None:
    run = simulate(Setup(devices=100, model=DeviceModel(churn=0.05)), 2, trace=True)
    assert run.trace is not None
    figure = states_chart(run.trace, run.effects, run.start, title="small")
    first = save(figure, tmp_path / "a.svg").read_text()
    png = save(figure, tmp_path / "a.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    second = save(
        states_chart(run.trace, run.effects, run.start, title="small"), tmp_path / "b.svg"
    )
    assert "<svg" in first
    assert first == second.read_text()
    with pytest.raises(InvalidInput, match=r"chart file '.*a\.pdf' must end in \.png or \.svg"):
        save(figure, tmp_path / "a.pdf")


def test_an_empty_trace_is_refused() -> None:
    with pytest.raises(InvalidInput, match="trace is empty"):
        states_chart(Trace((), ()), (), SETUP.start)


def test_the_forecast_chart_draws_the_fitted_curve_and_both_branches() -> None:
    setup = Setup(devices=200, admin=AdminPolicy(retry_every=3))
    run = simulate(setup, 3, snapshot_at=6 * DAY + HOUR)
    snap = run.snapshot
    assert snap is not None
    result = forecast(snap.rollout, snap.now, snap.pushes, snap.reports, admin=setup.admin, runs=20)
    figure = forecast_chart(result, title="day 6")
    curve, cutoffs = figure.axes
    line = curve.get_lines()[0]
    assert [float(y) for y in np.asarray(line.get_ydata())] == [1.0, *result.fit.survival]
    assert sum(p.get_height() for p in cutoffs.patches if isinstance(p, Rectangle)) == 40
    shown = cutoffs.get_legend()
    assert shown is not None
    assert [t.get_text() for t in shown.get_texts()] == [
        f"as it is: mean {result.as_is.cutoff_mean:.1f}",
        f"one manual extension: mean {result.extended.cutoff_mean:.1f}" if result.extended else "",
    ]
