"""Simulations of certificate rollouts, always driven through the real evaluator.

* :mod:`certflow.sim.demo`: the seeded story ``make demo`` prints (:func:`run`);
* :mod:`certflow.sim.models`: device behaviour, administrator policies, a setup;
* :mod:`certflow.sim.fleet`: one modelled rollout to its import (:func:`simulate`).

Nothing here is part of the pure core: the randomness and the simulated clock live
here, and a rollout only ever sees commands and instants through
:func:`certflow.advance`, :func:`certflow.apply` and :func:`certflow.apply_all`.
"""

from certflow.sim.demo import FAILURE_REASONS, Scenario, SimulationResult, format_summary, run
from certflow.sim.fleet import Outcome, Run, Snapshot, Trace, simulate
from certflow.sim.models import AdminPolicy, DeviceModel, Setup

__all__ = [
    "FAILURE_REASONS",
    "AdminPolicy",
    "DeviceModel",
    "Outcome",
    "Run",
    "Scenario",
    "Setup",
    "SimulationResult",
    "Snapshot",
    "Trace",
    "format_summary",
    "run",
    "simulate",
]
