"""Simulations of certificate rollouts, always driven through the real evaluator.

* :mod:`certflow.sim.models`: device behaviour, administrator policies, a setup;
* :mod:`certflow.sim.fleet`: one modelled rollout to its import (:func:`simulate`);
* :mod:`certflow.sim.sweep`: many seeded runs on every core, as a table (:func:`sweep`);
* :mod:`certflow.sim.forecast`: the rest of a live rollout from its journal so far
  (:func:`forecast`).

Nothing here is part of the pure core: the randomness and the simulated clock live
here, and a rollout only ever sees commands and instants through
:func:`certflow.advance`, :func:`certflow.apply` and :func:`certflow.apply_all`. It is a
library over the core alone: the seeded story ``make demo`` prints is an application
on top of it, :mod:`certflow.demo`.
"""

import warnings
from typing import Any

from certflow.sim.fleet import Outcome, Simulation, Snapshot, Trace, simulate
from certflow.sim.forecast import Forecast, Survival, fit, forecast
from certflow.sim.models import FAILURE_REASONS, AdminPolicy, DeviceModel, Setup
from certflow.sim.sweep import SweepTable, sweep

__all__ = [
    "FAILURE_REASONS",
    "AdminPolicy",
    "DeviceModel",
    "Forecast",
    "Outcome",
    "Setup",
    "Simulation",
    "Snapshot",
    "Survival",
    "SweepTable",
    "Trace",
    "fit",
    "forecast",
    "simulate",
    "sweep",
]


def __getattr__(name: str) -> Any:
    if name == "Run":
        warnings.warn(
            "certflow.sim.Run is deprecated and will be removed in certflow 0.3: it is "
            "certflow.sim.Simulation",
            DeprecationWarning,
            stacklevel=2,
        )
        return Simulation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
