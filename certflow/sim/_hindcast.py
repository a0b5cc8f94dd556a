"""The tail checked against the data's last day: a hindcast.

The forecast's tail (:mod:`certflow.sim._cure`) extrapolates past the longest answered
wait, and a tail of the wrong form (a Weibull read into a log-normal or a Lomax wait, a
hazard that stops at weekends) shows at a large fleet as bias, not as width: its
intervals are narrow and wrong (``docs/forecast.md``, the calibration). The data can
say so. The tail is fitted again on the data as they stood a day before ``now``, under
each tail shape, and asked how many of the first pushes then still waiting answer within
that day; the answers that came are counted. When the count lies outside what every
shape allows (its expectation give or take :data:`Z` standard deviations of the
devices' own chances, and :data:`SLACK` of it), the tail did not foresee the last day,
and the forecast, which rests on the same tail, is marked unreliable.

Limits: one day is the test, so a tail that fits that day but not the next passes; the
devices pushed again within the day are left out (their wait restarted); fewer than
:data:`LEAST` devices at risk tell nothing and are not tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import numpy as np

from certflow.core.rollout import Rollout
from certflow.sim import _cure, _journal
from certflow.sim._cure import BIN, DAILY_FROM, SHAPES, Curve
from certflow.sim._host import Floats

__all__ = ["Hindcast", "hindcast"]

#: How far back the hindcast stands: one daily cycle.
SPAN = timedelta(days=1)
#: Standard deviations of the devices' own chances allowed either way (two-sided 99.5 %).
Z = 2.81
#: And a share of the expectation, for the fit's own uncertainty.
SLACK = 0.1
#: Devices at risk below which a day's answers tell nothing.
LEAST = 30


@attrs.frozen
class Hindcast:
    """The tail's forecast of the last day, made from the data a day before ``now``
    (``at``): ``devices`` first pushes still waiting then (not pushed again since),
    ``answered`` of them answered by ``now``, ``expected`` per tail shape (answers,
    expected) with ``low``-``high`` the range every shape allows; ``missed``: the
    answers lie outside it."""

    at: datetime
    devices: int
    answered: int
    expected: dict[str, float]
    low: float
    high: float

    @property
    def missed(self) -> bool:
        return not self.low <= self.answered <= self.high

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "devices": self.devices,
            "answered": self.answered,
            "expected": self.expected,
            "low": self.low,
            "high": self.high,
            "missed": self.missed,
        }

    def __str__(self) -> str:
        shapes = ", ".join(f"{n:.1f} (shape {k})" for k, n in self.expected.items())
        return (
            f"fitted on the data of a day before ({self.at:%Y-%m-%d %H:%M} UTC), the tail "
            f"foresaw {self.low:.0f}-{self.high:.0f} answers within the day from the "
            f"{self.devices:,} first pushes then waiting ({shapes}); {self.answered:,} came"
        )


def hindcast(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
    grid_hours: int,
) -> Hindcast | None:
    """The :class:`Hindcast` of the last day before ``now``; ``None`` when the data a
    day before are too short for a tail fitted on days (:data:`~certflow.sim._cure.DAILY_FROM`),
    or too few devices were waiting then (:data:`LEAST`)."""
    t0 = rollout.phase.started_at
    then = now - SPAN
    if t0 is None or then - t0 < timedelta(hours=DAILY_FROM):
        return None
    before: dict[str, list[datetime]] = {}
    earlier: dict[str, list[datetime]] = {}
    waited: list[float] = []
    came: list[bool] = []
    for device, instants in pushes.items():
        kept = [at for at in instants if at <= then]
        if not kept:
            continue
        answers = reports.get(device, ())
        seen = [at for at in answers if at <= then]
        before[device] = kept
        if seen:
            earlier[device] = seen
        # A first push still waiting then, and not pushed again since: at risk.
        if len(instants) == 1 and not seen:
            waited.append((then - kept[0]).total_seconds())
            came.append(len(answers) > 0)
    if len(waited) < LEAST:
        return None
    journal = _journal.read(rollout, then, before, earlier)
    observations = journal.observations()
    shapes = [
        _cure.fit_curve(observations, observations.size, grid_hours, shape=shape)
        for shape in SHAPES
    ]
    waits: Floats = np.asarray(waited, dtype=float)
    chances = [_within(curve, waits, SPAN.total_seconds()) for curve in shapes]
    expected = {f"{c.model.shape:g}": float(p.sum()) for c, p in zip(shapes, chances, strict=True)}
    spreads = [Z * math.sqrt(float((p * (1 - p)).sum())) for p in chances]
    low = min(e - s - SLACK * e for e, s in zip(expected.values(), spreads, strict=True))
    high = max(e + s + SLACK * e for e, s in zip(expected.values(), spreads, strict=True))
    return Hindcast(then, len(waits), int(sum(came)), expected, max(low, 0.0), high)


def _within(curve: Curve, waited: Floats, span: float) -> Floats:
    """Each first push's chance of an answer within ``span`` seconds, having waited
    ``waited`` seconds unanswered: one minus the curve's conditional survival."""
    start = np.interp(waited / BIN, curve.hours, curve.survival)
    end = np.interp((waited + span) / BIN, curve.hours, curve.survival)
    chance: Floats = np.clip(np.where(start > 0, 1 - end / np.maximum(start, 1e-300), 0.0), 0, 1)
    return chance
