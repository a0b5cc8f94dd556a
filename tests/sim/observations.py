"""Observations for the survival model's tests, built from waits drawn from a known law."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from certflow.sim import _cure


def first_pushes(
    wait: npt.NDArray[np.float64], hours: int, *, ages: bool = True
) -> _cure.Observations:
    """One first push per device, made ``hours`` ago, waiting ``wait`` hours each (``inf``:
    never); without ``ages`` the fit sees the waits only, not how long ago each push was."""
    n = len(wait)
    answered = wait < hours
    return _cure.Observations(
        bins=np.floor(np.minimum(wait, hours)).astype(np.int64),
        answered=answered,
        first=np.ones(n, dtype=bool),
        device=np.arange(n, dtype=np.int64),
        devices=n,
        size=np.ones(n),
        answers=answered.astype(float),
        failures=np.zeros(n),
        ages=np.full(n, hours, dtype=np.int64) if ages else None,
    )
