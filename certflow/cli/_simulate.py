"""``certflow simulate``: the main job of ``make demo``."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

import click

from certflow.cli._app import EXIT_OK, main


@main.command()
@click.option(
    "--devices", type=click.IntRange(min=1), default=10_000, show_default=True, help="Fleet size."
)
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Random seed of the fleet's behaviour."
)
@click.option("--quiet", is_flag=True, help="Print one result line instead of the timeline.")
def simulate(devices: int, seed: int, quiet: bool) -> int:
    """Simulate a rollout over a fleet, day by day, through the real evaluator.

    The main job of `make demo`: a seeded, reproducible run that prints the timeline
    (notices, checkpoints, the extension, retries, the import) and the final view-details
    summary. See docs/simulation.md.
    """
    _report(devices, seed, quiet=quiet)
    return EXIT_OK


def _report(devices: int, seed: int, *, quiet: bool) -> None:
    """Run the simulation on stdout and, unless ``quiet``, end with the wall time."""
    from certflow.sim import run  # keeps `certflow --help` fast

    began = time.perf_counter()
    result = run(devices, seed, sys.stdout, quiet=quiet)
    elapsed = time.perf_counter() - began
    if not quiet:
        # Wall time goes last and only here, so that run()'s text stays reproducible.
        days = (result.summary.now - result.rollout.plan.created_at) / timedelta(days=1)
        click.echo(f"\nsimulated {days:.1f} days of {result.devices:,} devices in {elapsed:.2f} s")
