"""The tail checked against the data's recent days: a hindcast.

The forecast's tail (:mod:`certflow.sim._cure`) extrapolates past the longest answered
wait, and a tail of the wrong form (a Weibull read into a log-normal or a Lomax wait, a
hazard that stops at weekends) shows at a large fleet as bias, not as width: its
intervals are narrow and wrong (``docs/forecast.md``, the calibration). The data can
say so. The tail is fitted again on the data as they stood at an earlier instant (half
the data's reach back, at least a day), under each tail form, and asked how many of the
first pushes then still waiting answer by ``now``; the answers that came are counted.
When the count lies outside what the fit allows (under each tail form, and under all
but the outer tenth of the fit's bootstrap replicates on either side: the expectation
give or take :data:`Z` standard deviations of the devices' own chances), the tail did
not foresee the days since, and the forecast, which rests on the same kind of tail, is marked
unreliable. Within the range, the forms that foresaw the days since best take the larger
share of the forecast's futures (half of the futures are shared equally).

Limits: the earlier fit had less data than the forecast's, so a tail that would have
been right with more can fail the test (the calibration counts how often a forecast
that covered was marked); the devices pushed again since are left out (their wait
restarted); fewer than :data:`LEAST` devices at risk tell nothing and are not tested.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import attrs
import numpy as np

from certflow.sim import _cure, _journal
from certflow.sim._cure import BIN, WINDOW, Curve
from certflow.sim._host import Floats
from certflow.sim._verdict import TAIL_DAYS

__all__ = ["Hindcast", "hindcast"]

#: How far back the hindcast stands: this share of the data's reach (``now`` minus the
#: distribution's start), and at least :data:`SPAN` (one daily cycle).
REACH = 0.5
SPAN = timedelta(days=1)
#: Standard deviations of the devices' own chances allowed either way (two-sided 99.5 %).
Z = 2.81
#: And a share of the expectation, for the fit's own uncertainty: none. With a tenth,
#: half of the calibration's misses (heavy-tailed waits, working days) passed.
SLACK = 0.0
#: The earliest instant a hindcast stands at, from the distribution's start: where the
#: tail is first fitted on :data:`~certflow.sim._verdict.TAIL_DAYS` of waits.
EARLIEST = timedelta(days=TAIL_DAYS / WINDOW)
#: Devices at risk below which the answers since tell nothing.
LEAST = 30
#: The share of the futures given to the tail forms equally, whatever the hindcast says.
PRIOR = 0.5
#: Bootstrap fits of the earlier data (the forecast's own number).
REPLICATES = 40


@attrs.frozen
class Hindcast:
    """The tail's forecast of the days since ``at``, made from the data as they stood
    then: ``devices`` first pushes still waiting then (not pushed again since),
    ``answered`` of them answered by ``now``, ``expected`` per tail form (answers,
    expected) with ``low``-``high`` the range every shape allows; ``missed``: the
    answers lie outside it. ``weights``: each tail form's share of the forecast's
    futures (:func:`_weights`)."""

    at: datetime
    devices: int
    answered: int
    expected: dict[str, float]
    low: float
    high: float
    weights: dict[str, float] = attrs.field(factory=dict)

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
            "weights": self.weights,
        }

    def __str__(self) -> str:
        shapes = ", ".join(f"{n:.1f} ({_cure.label(k)})" for k, n in self.expected.items())
        return (
            f"fitted on the data as they stood at {self.at:%Y-%m-%d %H:%M} UTC, the tail "
            f"foresaw {self.low:.0f}-{self.high:.0f} answers since from the "
            f"{self.devices:,} first pushes then waiting ({shapes}); {self.answered:,} came"
        )


def hindcast(
    journal: _journal.Journal, t0: datetime, now: datetime, grid_hours: int, seed: int = 0
) -> Hindcast | None:
    """The :class:`Hindcast` of the days before ``now`` (:data:`REACH` of the data's
    reach from ``t0``, at least :data:`SPAN`, from no earlier than :data:`EARLIEST`), from
    ``journal`` (read at ``now``); ``None`` when there is no such span, or too few
    devices were waiting then (:data:`LEAST`)."""
    # As far back as REACH says, but not so far that the earlier fit would itself have
    # been too early to trust (its tail on fewer than TAIL_DAYS of waits).
    span = min(max(SPAN, (now - t0) * REACH), now - t0 - EARLIEST)
    if span < SPAN:
        return None
    seconds = span.total_seconds()
    earlier = journal.before(seconds)
    # At risk: a device's only push, made by then and unanswered then (a device pushed
    # again since restarted its wait); it came if it is answered by now.
    once = np.bincount(journal.device, minlength=journal.devices)[journal.device] == 1
    made = journal.ages >= seconds
    at_risk = once & made & ~(journal.answered & (journal.waits <= journal.ages - seconds))
    if int(at_risk.sum()) < LEAST:
        return None
    waits: Floats = journal.ages[at_risk] - seconds
    came = int(journal.answered[at_risk].sum())
    # The fit as the forecast makes it, then: a curve per tail form and the bootstrap's
    # (the fit's own uncertainty, which a few devices at risk make wide).
    rng = np.random.default_rng([seed, 0x41D])
    shapes, replicates = _cure.bootstrap(earlier.observations(), REPLICATES, grid_hours, rng)
    ranges = []
    for curve in (*shapes, *replicates):
        chances = _within(curve, waits, seconds)
        mean = float(chances.sum())
        noise = Z * math.sqrt(float((chances * (1 - chances)).sum())) + SLACK * mean
        ranges.append((mean - noise, mean + noise))
    lows = sorted(low for low, _ in ranges)
    highs = sorted(high for _, high in ranges)
    # Every shape's range, and all but the outer tenth of the bootstrap's on each side.
    cut = len(replicates) // 10
    low = min(min(lo for lo, _ in ranges[: len(shapes)]), lows[cut])
    high = max(max(hi for _, hi in ranges[: len(shapes)]), highs[len(highs) - 1 - cut])
    expected = {c.model.form.key: float(_within(c, waits, seconds).sum()) for c in shapes}
    weights = _weights(shapes, replicates, ranges, came)
    return Hindcast(now - span, len(waits), came, expected, max(low, 0.0), high, weights)


def _weights(
    shapes: list[Curve],
    replicates: list[Curve],
    ranges: list[tuple[float, float]],
    came: int,
) -> dict[str, float]:
    """Each tail form's weight in the forecast's futures: how well it foresaw the answers
    that came (the normal likelihood of ``came`` under that shape's fits: their mean, and
    the devices' own noise plus the spread between the fits), mixed with equal weights by
    :data:`PRIOR` so that no shape is ever ruled out by one hindcast."""
    centres = [(low + high) / 2 for low, high in ranges]
    noises = [(high - low) / (2 * Z) for low, high in ranges]
    scores = []
    for k in range(len(shapes)):
        # The shape's point fit and its replicates (replicate i has shape i % len).
        mine = [k] + [len(shapes) + i for i in range(k, len(replicates), len(shapes))]
        mean = float(np.mean([centres[i] for i in mine]))
        spread = float(np.var([centres[i] for i in mine]))
        noise = float(np.mean([noises[i] ** 2 for i in mine]))
        variance = max(noise + spread, 1.0)
        scores.append(-0.5 * (came - mean) ** 2 / variance - 0.5 * math.log(variance))
    top = max(scores)
    likelihood = np.exp(np.array(scores) - top)
    posterior = likelihood / likelihood.sum()
    mixed = (1 - PRIOR) * posterior + PRIOR / len(shapes)
    return {c.model.form.key: float(w) for c, w in zip(shapes, mixed, strict=True)}


def _within(curve: Curve, waited: Floats, span: float) -> Floats:
    """Each first push's chance of an answer within ``span`` seconds, having waited
    ``waited`` seconds unanswered: one minus the curve's conditional survival."""
    start = np.interp(waited / BIN, curve.hours, curve.survival)
    end = np.interp((waited + span) / BIN, curve.hours, curve.survival)
    chance: Floats = np.clip(np.where(start > 0, 1 - end / np.maximum(start, 1e-300), 0.0), 0, 1)
    return chance
