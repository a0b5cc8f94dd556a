"""The demo's seeded run in memory, shared by the story's tests and the hosts' tests."""

from __future__ import annotations

import io

import pytest

from certflow.demo import SimulationResult, run

DEVICES = 500


@pytest.fixture(scope="module")
def simulated() -> tuple[SimulationResult, str]:
    """The default scenario over ``DEVICES`` devices, seed 7, in memory, and its text."""
    out = io.StringIO()
    result = run(devices=DEVICES, seed=7, out=out)
    return result, out.getvalue()
