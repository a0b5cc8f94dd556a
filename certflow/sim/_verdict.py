"""What a forecast tells the administrator beyond its numbers: where the data end, what
bounds an extension, and whether to extend.

* :class:`Tail`: the longest answered wait (the data's end), how many devices still
  waiting have waited longer (their answers rest on the fitted tail alone), the share
  that never answers with its bootstrap interval;
* :func:`constraints`: what the engine's rules bound an extension with, named;
* :func:`advise`: extend or not, the re-enrolments it saves (paired future by future)
  and why, in particular why an extension would change nothing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from certflow.core import timeline
from certflow.core.errors import CommandRefused
from certflow.core.instants import show
from certflow.core.policy import ImportRule
from certflow.core.rollout import Rollout
from certflow.sim._cure import BIN, WINDOW, Curve, label
from certflow.sim._futures import Movers
from certflow.sim._host import Floats

if TYPE_CHECKING:
    from certflow.sim._hindcast import Hindcast
    from certflow.sim.forecast import Branch


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


@attrs.frozen
class Tail:
    """Where the fit ends. ``horizon_days``: the longest wait in which a first push was
    answered (after it, the curve is the cure model's extrapolation). ``waiting``: devices
    awaiting an answer at ``now``; ``beyond``: of those, how many waited longer than the
    horizon, so that whether they answer rests on the extrapolation alone; ``answer_low``
    to ``answer_high``: the chance that such a device answers before the forecast ends,
    over the bootstrap (80 % of replicates). ``never``: the share of first pushes never
    answered, its bootstrap interval ``never_low``-``never_high`` (80 %). ``evidence``:
    the first pushes answered in the window the tail was fitted on.

    ``by_shape``: per tail form the data allow (:data:`certflow.sim._cure.FORMS`), how
    many of the ``beyond`` devices answer before the end, expected; ``spread``: the
    largest minus the smallest. ``unsettled``: of the ``beyond`` devices, those
    not yet silent for as long again as the data reach (waited under twice the
    horizon), whose answer is an open question.
    ``reliable`` and ``caution``: see :func:`judge`. ``hindcast``: the tail's forecast
    of the data's recent days made from the data before them, against the answers
    (:class:`certflow.sim._hindcast.Hindcast`; ``None`` when the data are too short).
    """

    horizon_days: float
    waiting: int
    beyond: int
    unsettled: int
    answer_low: float | None
    answer_high: float | None
    never: float
    never_low: float
    never_high: float
    replicates: int
    evidence: float
    by_shape: dict[str, float]
    spread: float
    reliable: bool = True
    caution: str | None = None
    hindcast: dict[str, Any] | None = None

    def __str__(self) -> str:
        text = (
            f"the data end at a wait of {self.horizon_days:.1f} days; {self.waiting:,} "
            f"device(s) await an answer, {self.beyond:,} of them longer than that"
        )
        if self.beyond and self.answer_low is not None:
            text += (
                f" (each answers before the end with chance {self.answer_low:.0%}-"
                f"{self.answer_high:.0%}: an extrapolation)"
            )
        return (
            f"{text}; share that never answers {self.never:.1%} "
            f"({self.never_low:.1%}-{self.never_high:.1%}, {self.replicates} bootstrap fits)"
        )

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _answers_before_end(curve: Curve, waited: Floats) -> float:
    """How many of the devices that have ``waited`` (seconds, first pushes) answer
    within the curve's grid, expected: one minus the conditional survival at its end."""
    at = np.interp(waited / BIN, curve.hours, curve.survival)
    end = float(curve.survival[-1])
    chance = np.where(at > 0, 1 - end / np.maximum(at, 1e-300), 0.0)
    return float(chance.sum())


def tail_of(
    points: Sequence[Curve], curves: Sequence[Curve], movers: Movers, longest: float
) -> Tail:
    """The :class:`Tail` of a fit: ``points`` are the data's curves, one per tail form
    (the first is the point fit), ``curves`` the bootstrap's, ``longest`` the longest
    answered wait of a first push (seconds)."""
    point = points[0]
    waiting = ~movers.failed
    horizon = longest
    # Waited at least as long as any answer took: nothing in the data says when, or
    # whether, such a device answers.
    beyond = waiting & (movers.waited >= horizon)
    answer_low = answer_high = None
    by_shape = {c.model.form.key: 0.0 for c in points}
    if beyond.any():
        typical = np.array([float(np.median(movers.waited[beyond]))])
        chances = [_answers_before_end(curve, typical) for curve in curves]
        answer_low, answer_high = _quantile(chances, 0.1), _quantile(chances, 0.9)
        by_shape = {c.model.form.key: _answers_before_end(c, movers.waited[beyond]) for c in points}
    spread = max(by_shape.values()) - min(by_shape.values())
    floors = [c.floor for c in curves] or [point.floor]
    return Tail(
        horizon_days=horizon / 86400,
        waiting=int(waiting.sum()),
        beyond=int(beyond.sum()),
        # Silent after the data end for as long again as the data reach: no tail the
        # data allow gives such a device much chance, and a fleet's devices that never
        # answer are these. Those silent for less are the open question.
        unsettled=int((beyond & (movers.waited < 2 * horizon)).sum()),
        answer_low=answer_low,
        answer_high=answer_high,
        never=point.floor,
        never_low=_quantile(floors, 0.1),
        never_high=_quantile(floors, 0.9),
        replicates=len(curves),
        evidence=point.evidence,
        by_shape=by_shape,
        spread=spread,
    )


# The least span of waits, in days, the tail may be fitted on before a forecast that
# rests on it is trusted: two daily cycles, so that the fit, on whole days, has two
# days to fit its two parameters to.
TAIL_DAYS = 2.0


def judge(
    tail: Tail, branches: Sequence[Branch], level: float, hindcast: Hindcast | None = None
) -> Tail:
    """``tail``, marked unreliable when devices whose answer is open rest on the tail
    (``Tail.unsettled``: beyond the data, but not for as long again) and

    * the tail is fitted on fewer than :data:`TAIL_DAYS` days of waits (the second half
      of the data's reach): too early to tell its shape or its share that never
      answers. In the calibration's fleets of 10,000 on day 3 every slow and
      heavy-tailed forecast missed (docs/forecast.md);
    * or a branch's interval of devices cut off is narrower than the spread of the
      ``n`` unsettled devices' answers alone, each answering with a chance of 10 % (or
      90 %) known exactly: ``2 z sqrt(0.09 n)``, with ``z`` the normal quantile of the
      level (about ``sqrt(n)`` at 90 %). Whether such a device answers is not in the
      data: an interval narrower than that claims a precision the data do not have;
    * or the tail, fitted on the data as they stood earlier, did not foresee the answers
      since (``hindcast``, :mod:`certflow.sim._hindcast`): the same kind of tail carries
      the forecast. In the calibration's fleets of 10,000 the forecasts that missed
      without a mark on day 6 were of this kind (heavy-tailed waits, answers only on
      working days).
    """
    if hindcast is not None:
        tail = attrs.evolve(tail, hindcast=hindcast.as_dict())
    if not tail.unsettled:
        return tail
    reasons = []
    if hindcast is not None and hindcast.missed:
        reasons.append(
            f"the tail did not foresee the days since {hindcast.at:%Y-%m-%d %H:%M} UTC: "
            f"{hindcast}, and the forecast rests on the same kind of tail"
        )
    window = tail.horizon_days * WINDOW
    if window < TAIL_DAYS:
        reasons.append(
            f"the tail is fitted on the waits of the last {window:.1f} day(s) of the data "
            f"(half of the {tail.horizon_days:.1f} they reach), fewer than {TAIL_DAYS:g} "
            f"daily cycles, and {tail.unsettled:,} device(s) beyond the data rest on it: "
            "too early to tell how many of them answer"
        )
    z = statistics.NormalDist().inv_cdf((1 + level) / 2)
    bound = 2 * z * math.sqrt(0.09 * tail.unsettled)
    narrow = [b for b in branches if b.cutoff_high - b.cutoff_low < bound]
    if narrow:
        shown = "; ".join(
            f"{'extended' if b.extended else 'as it is'} {b.cutoff_low:,}-{b.cutoff_high:,}"
            for b in narrow
        )
        reasons.append(
            f"{tail.unsettled:,} device(s) have waited longer than any answer seen (but not "
            f"twice as long), and the {level:.0%} interval of devices cut off ({shown}) is "
            f"narrower than {bound:.1f}, the spread their answers alone would give were each "
            "one's chance of answering known exactly (10 %): it claims a precision on "
            "devices the data say nothing of"
        )
    if not reasons:
        return tail
    shapes = ", ".join(f"{n:.1f} ({label(k)})" for k, n in tail.by_shape.items())
    caution = (
        "; ".join(reasons)
        + f". Expected answers among all {tail.beyond:,} beyond the data, by tail form: "
        + shapes
    )
    return attrs.evolve(tail, reliable=False, caution=caution)


def constraints(rollout: Rollout, refusal: CommandRefused | None) -> tuple[str, ...]:
    """The rules that bound one more manual extension, named with their instants."""
    plan, phase = rollout.plan, rollout.phase
    named = []
    moved = timeline.moved_deadline(plan, phase)
    if moved is not None:
        fits = moved <= plan.new_not_after
        named.append(
            f"an extension cannot pass the new certificate's validity (until "
            f"{show(plan.new_not_after)}): one more would move the deadline to {show(moved)}, "
            + ("within it" if fits else "past it, so the engine refuses it")
        )
    expiry = plan.existing_not_after
    if plan.policy.import_rule is ImportRule.DISTRIBUTED_OR_EXPIRED:
        named.append(
            f"under {plan.policy.import_rule.value} an extension cannot delay the import past "
            f"the existing certificate's expiry ({show(expiry)}): the expiry decides the "
            "import then, extended or not"
        )
    else:
        named.append(
            f"under {plan.policy.import_rule.value} a checkpoint imports only once the "
            f"existing certificate has expired ({show(expiry)}); an import after it leaves "
            "the server on an expired certificate until then"
        )
    if refusal is not None:
        named.append(f"the engine refuses an extension: {refusal}")
    return tuple(named)


@attrs.frozen
class Advice:
    """Whether to extend, what it saves, and why. ``saved_*``: re-enrolments an
    extension spares (as it is minus extended, future by future: expected, and the
    interval at the forecast's level); ``delay_days``: how much later the import comes,
    expected; ``reason``: the recommendation in words."""

    extend: bool
    saved_mean: float
    saved_low: int
    saved_high: int
    delay_days: float | None
    reason: str

    def __str__(self) -> str:
        return f"recommendation: {'extend' if self.extend else 'do not extend'}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def advise(
    as_is: Branch,
    extended: Branch | None,
    refusal: CommandRefused | None,
    movers: Movers,
    retry: bool,
    level: float,
) -> Advice:
    """The recommendation: extend when it spares at least one re-enrolment in
    expectation; otherwise say why it changes nothing (or cannot be made)."""
    if extended is None:
        why = str(refusal) if refusal is not None else "the rollout takes no more extension"
        return Advice(False, 0.0, 0, 0, None, f"no manual extension can be made: {why}")
    saved = [a - b for a, b in zip(as_is.cutoffs, extended.cutoffs, strict=True)]
    tail = (1 - level) / 2
    mean = sum(saved) / len(saved)
    low, high = int(_quantile(saved, tail)), int(_quantile(saved, 1 - tail))
    delays = [
        b - a
        for a, b in zip(as_is.import_days, extended.import_days, strict=True)
        if a is not None and b is not None
    ]
    delay = sum(delays) / len(delays) if delays else None
    later = "" if delay is None else f", the import {delay:.1f} days later"
    if mean >= 1:
        return Advice(
            True,
            mean,
            low,
            high,
            delay,
            f"it spares {mean:,.1f} re-enrolments expected ({low:,}-{high:,}, {level:.0%}){later}",
        )
    could = int((~movers.failed).sum()) + (int(movers.failed.sum()) if retry else 0)
    if as_is.forced_probability == 0:
        why = "no future cuts a device off as it is: there is nothing to spare"
    elif could == 0:
        failed = int(movers.failed.sum())
        why = (
            "no device left that could still answer: "
            f"{movers.static + failed:,} device(s) do not trust the root, "
            + (f"{failed:,} of them failed with no bulk retry to come, " if failed else "")
            + "and none awaits an answer"
        )
    elif delay is not None and delay <= 0:
        why = (
            "the import comes at the same instant either way (the existing certificate's "
            "expiry, or a complete fleet, decides it before the moved deadline)"
        )
    else:
        why = (
            "the devices that still answer do so before the import as it is, or not "
            "before the moved deadline either"
        )
    return Advice(
        False, mean, low, high, delay, f"it spares {mean:,.1f} re-enrolments expected: {why}"
    )
