"""``certflow simulate``: the main job of ``make demo``, and Monte Carlo sweeps."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from certflow.cli._app import EXIT_OK, main

_CHART_FORMATS = (".png", ".svg")


@main.command()
@click.option(
    "--devices", type=click.IntRange(min=1), default=10_000, show_default=True, help="Fleet size."
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Random seed of the fleet's behaviour (the first seed of a sweep).",
)
@click.option("--quiet", is_flag=True, help="Print one result line instead of the timeline.")
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=None,
    help="Monte Carlo sweep: this many modelled runs (seeds SEED, SEED+1, ...) on every "
    "core, summarised as a table; the administrator bulk-retries every 3 days and "
    "extends on day 6 if the fleet is not complete.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also draw a chart to this .png or .svg file: device states per day (one run), "
    "or import days and re-enrolments (a sweep).",
)
def simulate(
    devices: int, seed: int, quiet: bool, runs: int | None, as_json: bool, chart: Path | None
) -> int:
    """Simulate a rollout over a fleet, day by day, through the real evaluator.

    The main job of `make demo`: a seeded, reproducible run that prints the timeline
    (notices, checkpoints, the extension, retries, the import) and the final view-details
    summary. With --runs, a sweep of many runs of a modelled fleet instead. See
    docs/simulation.md.
    """
    if chart is not None and chart.suffix.lower() not in _CHART_FORMATS:
        raise click.BadParameter(f"{str(chart)!r} must end in .png or .svg", param_hint="'--chart'")
    if runs is not None:
        _sweep(devices, seed, runs, as_json=as_json, chart=chart)
    elif as_json:
        _json(devices, seed, chart)
    else:
        _report(devices, seed, quiet=quiet, chart=chart)
    return EXIT_OK


def _report(devices: int, seed: int, *, quiet: bool, chart: Path | None) -> None:
    """Run the simulation on stdout and, unless ``quiet``, end with the wall time."""
    from certflow.sim import run  # keeps `certflow --help` fast

    began = time.perf_counter()
    result = run(devices, seed, sys.stdout, quiet=quiet)
    elapsed = time.perf_counter() - began
    if chart is not None:
        _draw_run(result, chart)
    if not quiet:
        # Wall time goes last and only here, so that run()'s text stays reproducible.
        days = (result.summary.now - result.rollout.plan.created_at) / timedelta(days=1)
        click.echo(f"\nsimulated {days:.1f} days of {result.devices:,} devices in {elapsed:.2f} s")
        if chart is not None:
            click.echo(f"chart: {chart}")


def _draw_run(result: Any, path: Path) -> None:
    from certflow.sim.chart import save, states_chart

    figure = states_chart(
        result.trace,
        result.effects,
        result.rollout.plan.created_at,
        title=f"Device states per day: {result.devices:,} devices, seed {result.seed}",
    )
    save(figure, path)


def _json(devices: int, seed: int, chart: Path | None) -> None:
    from certflow.sim import run

    result = run(devices, seed, io.StringIO(), quiet=True)
    if chart is not None:
        _draw_run(result, chart)
    summary = result.summary
    document = {
        "devices": result.devices,
        "seed": result.seed,
        "state": summary.state.value,
        "import_day": result.import_day,
        "forced": result.forced,
        "reenrollment_required": result.reenrollment_required,
        "reenrolled": result.reenrolled,
        "notices": result.notices,
        "checkpoints_postponed": result.checkpoints_postponed,
        "manual_extensions": result.manual_extensions,
        "bulk_retries": result.bulk_retries,
        "retried_pushes": result.retried_pushes,
        "enrolled": result.enrolled,
        "unenrolled": result.unenrolled,
        "server_restarted": result.server_restarted,
        "percent_complete": summary.percent_complete,
        "counts": {state.value: n for state, n in summary.counts.items()},
    }
    click.echo(json.dumps(document, indent=2))


def _sweep(devices: int, seed: int, runs: int, *, as_json: bool, chart: Path | None) -> None:
    from certflow.sim import AdminPolicy, Setup, sweep

    setup = Setup(devices=devices, admin=AdminPolicy(retry_every=3, extend_on_day=6))
    began = time.perf_counter()
    table = sweep(setup, runs, seed)
    elapsed = time.perf_counter() - began
    if chart is not None:
        from certflow.sim.chart import save, sweep_chart

        save(sweep_chart({"retries every 3 days, extension on day 6": table}), chart)
    if as_json:
        click.echo(json.dumps(table.as_dict(), indent=2))
        return
    click.echo(str(table))
    workers = min(os.cpu_count() or 1, runs)
    click.echo(
        f"\nswept {runs:,} runs of {devices:,} devices in {elapsed:.2f} s ({workers} processes)"
    )
    if chart is not None:
        click.echo(f"chart: {chart}")
