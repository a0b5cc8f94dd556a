"""The wait for an answer, fitted honestly about its tail: the forecast's survival model.

A push's wait is observed (answered) or censored (still waiting at ``now``). Within the
waits seen, the Kaplan-Meier estimate of *first* pushes is the curve (it is the data);
beyond the longest answered wait the data say nothing, so the curve goes on as a
**mixture-cure Weibull** model fitted by maximum likelihood to every push: a share
``cure`` of devices never answers, the others wait ``Weibull(shape, scale)`` or a Lomax
(the data cannot tell the form from the share, so the bootstrap varies it: :data:`FORMS`,
and the forecast weighs the forms by how well each foresaw the recent days,
:mod:`certflow.sim._hindcast`). A device
still waiting beyond the data is then censored, not "never": the fitted tail says how
likely it is still to answer, and when.

A push of a device that has answered before (a retry) cannot be one of the devices that
never answer: it contributes to the Weibull part only, and draws its wait from the
answerers' curve (the first-push curve above its floor).

The fit's own uncertainty is a **Poisson bootstrap over devices**: each replicate weighs
every device by a Poisson(1) draw, refits the Kaplan-Meier curve, the cure model and the
failure share, and a forecast gives each simulated future one replicate's curve. Waits
are binned by the hour (reports are ingested hourly), so a refit costs the number of
hours seen, not the number of devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import numpy as np
import numpy.typing as npt

from certflow.sim._host import Floats

Ints = npt.NDArray[np.int64]

BIN = 3600.0  # seconds: waits are counted per hour
# The tail is fitted to the second half of the waits seen (left-truncated there): what
# the hazard of answering has become, not the first hours' rush, is what goes on after
# the data. On that window a Weibull hazard with a share that never answers. A free
# shape is confounded with the share there (a falling hazard and a share that never
# answers explain the same survivors), so the data cannot choose it: the point fit
# takes a constant hazard (shape 1), and the bootstrap's replicates take in turn a
# constant, a falling (0.5) and a rising (2) one, and the Lomax forms below. The form
# is then part of the fit's uncertainty and reaches the intervals: with shape 1 alone,
# a stated 80 % covered the calibration's slow and heavy-tailed fleets of 100 only
# 53-77 % (docs/forecast.md).
WINDOW = 0.5


@attrs.frozen
class Form:
    """A tail's form: a Weibull of ``shape`` (a hazard as ``t^(shape - 1)``), or, with
    ``lomax`` hours, a Lomax (a hazard as ``1 / (lomax + t)``: falling as ``1 / t``,
    faster than any Weibull's; devices that answer ever more rarely, yet do)."""

    shape: float = 1.0
    lomax: float = 0.0

    @property
    def key(self) -> str:
        """Its name in the forecast's output: the Weibull's shape, or "lomax 24h"."""
        return f"lomax {self.lomax:g}h" if self.lomax else f"{self.shape:g}"


def label(key: str) -> str:
    """A form's :attr:`Form.key` in a sentence: "shape 0.5", "lomax 24h"."""
    return key if key.startswith("lomax") else f"shape {key}"


# The three Weibull shapes do not reach a heavy tail's: on the calibration's Lomax
# fleets of 10,000 (shape 1.1, scale 12 h, no retries) every one of them foresaw on day 6
# 80-370 of the 390-440 answers still to come (docs/forecast.md). So two Lomax forms
# join them: one with a day's scale, and one near a power law (2 h).
FORMS = (Form(1.0), Form(0.5), Form(2.0), Form(0.0, 24.0), Form(0.0, 2.0))
# Devices answer on a daily cycle (they come online during the day, and answer within
# hours). Fitted hour by hour, a constant hazard reads the quiet hours before ``now``
# as a hazard dying out, and so a share that never answers: on synthetic fleets online
# on 15 % of days with 1 % never answering, observed for 6 days, it found 15-20 % (30
# fleets of 1,000); fitted on whole days of wait, 0 %. So from two days of data on, the
# tail is fitted on days.
DAILY_FROM = 48


@attrs.frozen
class Observations:
    """The pushes so far, binned by the hour of their wait.

    Per push: ``bins`` (wait // 1 h), ``answered``, ``first`` (the device's first push,
    so it may be one that never answers), ``device`` (its unit, for the bootstrap).
    Per unit (``devices`` of them: alike devices pushed once, or one device pushed more
    often): ``size`` (how many devices), ``answers`` and ``failures`` of each device
    (for the failure share). ``ages``: per push, the hours since it was made (``None``:
    a push's wait ends at ``now`` when it is unanswered, and nothing is known of the
    answered ones' ages), for the fit on whole days (:func:`_counts`).
    """

    bins: Ints
    answered: npt.NDArray[np.bool_]
    first: npt.NDArray[np.bool_]
    device: Ints
    devices: int
    size: Floats
    answers: Floats
    failures: Floats
    ages: Ints | None = None


@attrs.frozen
class CureModel:
    """A mixture-cure model: ``S(t) = cure + (1 - cure) A(t)`` for a first push (``t`` in
    hours); a retry waits ``A(t)``. For a positive ``shape``, ``A`` is a Weibull's,
    ``exp(-(t / scale)^shape)``; for a Lomax :class:`Form`, ``(1 + t / lomax)^(-1 /
    scale)``."""

    cure: float
    form: Form
    scale: float

    def first(self, hours: Floats) -> Floats:
        """The chance that a first push is still unanswered after ``hours``."""
        return self.cure + (1 - self.cure) * self.answerer(hours)

    def answerer(self, hours: Floats) -> Floats:
        """The chance that a device which answers has not answered after ``hours``."""
        return np.exp(self.log_answerer(hours))

    def log_answerer(self, hours: Floats) -> Floats:
        """The log of :meth:`answerer` (a fast hazard's far tail stays finite here)."""
        return _log_survival(np.maximum(hours, 0.0), self.form, self.scale, 1.0)


def _log_survival(t: Floats, form: Form, scale: float, unit: float) -> Floats:
    # ``t`` and a Weibull's ``scale`` in ``unit`` hours; a Lomax's ``scale`` is 1 / rate.
    if form.lomax:
        out: Floats = -np.log1p(t * unit / form.lomax) / scale
        return out
    with np.errstate(over="ignore"):  # a far tail goes to -inf, as it should
        weibull: Floats = -np.power(t / scale, form.shape)
    return weibull


@attrs.frozen
class Curve:
    """One fitted curve of a first push's survival on an hourly grid, for drawing waits.

    ``hours`` (0, 1, 2, ...) and ``survival`` at each (piecewise linear in between; the
    Kaplan-Meier part up to ``horizon`` hours, the cure model's tail after it); beyond
    the grid's end a wait is "not before the forecast ends". ``floor`` is the share that
    never answers (the curve's limit). ``failure`` is the chance that an answer fails.
    ``evidence``: the first pushes answered in the window the tail was fitted on.
    """

    hours: Floats
    survival: Floats
    floor: float
    failure: float
    model: CureModel
    horizon: float
    evidence: float

    def residual(self, waited: Floats, first: npt.NDArray[np.bool_], uniform: Floats) -> Floats:
        """Seconds still to wait, given ``waited`` seconds already (``inf``: not within
        the grid). A first push follows the curve; any other push (a retry of a device
        that answered before) the answerers' part of it, above ``floor``."""
        hours = waited / BIN
        at = np.interp(hours, self.hours, self.survival, right=float(self.survival[-1]))
        low = np.where(first, 0.0, self.floor)
        # Conditional on no answer yet: the answer comes when the curve falls to
        # at * u for a first push; for an answerer, measured above the floor.
        target = low + (at - low) * uniform
        reached = target >= self.survival[-1]
        # np.interp wants increasing x: the curve's negation is (weakly) increasing.
        when = np.interp(-target, -self.survival, self.hours)
        out: Floats = np.full(len(waited), np.inf)
        out[reached] = np.maximum((when[reached] - hours[reached]) * BIN, 1.0)
        return out


def _cure_nll(
    theta: Floats,
    first_answered: Floats,
    first_censored: Floats,
    later_answered: Floats,
    later_censored: Floats,
    skip: int,
    form: Form,
    unit: float,
) -> float:
    """Negative log-likelihood of the cure model on binned pushes (counts per hour),
    left-truncated at hour ``skip``: only the pushes still unanswered then count, each
    conditioned on having waited that long (the counts before ``skip`` are zero).

    An answer in hour ``j`` is interval-censored to ``[j, j + 1)``; a censored push
    waited at least ``j`` hours (the bin's start, so no push is credited a wait it did
    not have). ``theta``: the share that never answers (logit) and the scale (log)."""
    cure = 1 / (1 + math.exp(-min(max(float(theta[0]), -30.0), 30.0)))
    scale = math.exp(min(max(float(theta[1]), -10.0), 15.0))
    edges = np.arange(len(first_answered) + 1, dtype=float)
    with np.errstate(under="ignore"):  # a far tail underflows to 0, as it should
        s = np.exp(_log_survival(edges, form, scale, unit))
    mass = np.maximum(s[:-1] - s[1:], 1e-300)
    lower = s[:-1]
    tiny = 1e-300
    total = float(first_answered @ (np.log(mass) + math.log(max(1 - cure, tiny))))
    total += float(first_censored @ np.log(np.maximum(cure + (1 - cure) * lower, tiny)))
    total += float(later_answered @ np.log(mass))
    total += float(later_censored @ np.log(np.maximum(lower, tiny)))
    total -= float(first_answered.sum() + first_censored.sum()) * math.log(
        max(cure + (1 - cure) * s[skip], tiny)
    )
    total -= float(later_answered.sum() + later_censored.sum()) * math.log(max(s[skip], tiny))
    return -total


def _nelder_mead(
    f: Callable[[Floats], float], start: Floats, step: float = 0.5, iterations: int = 300
) -> Floats:
    """Minimise ``f`` from ``start`` (Nelder and Mead's simplex; three parameters need no
    gradient, and numpy alone keeps ``import certflow`` light)."""
    n = len(start)
    simplex = [start.copy()] + [start + step * np.eye(n)[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) < 1e-7 * (1 + abs(values[0])):
            break
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        reflected = centroid + (centroid - worst)
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - worst)
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (worst - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                anchor = simplex[0]
                simplex = [anchor + 0.5 * (x - anchor) for x in simplex]
                values = [f(x) for x in simplex]
    best: Floats = np.asarray(simplex[int(np.argmin(values))], dtype=float)
    return best


def _fit_model(
    counts: tuple[Floats, Floats, Floats, Floats],
    start: Floats,
    skip: int,
    form: Form,
    unit: float,
) -> CureModel:
    kept = np.arange(len(counts[0])) >= skip
    fa, fc, la, lc = (np.where(kept, k, 0.0) for k in counts)
    theta = _nelder_mead(lambda t: _cure_nll(t, fa, fc, la, lc, skip, form, unit), start)
    # Bounded so that a degenerate replicate (no answer at all) stays finite.
    theta = np.clip(theta, [-12.0, -5.0], [12.0, 12.0])
    return CureModel(
        cure=float(1 / (1 + math.exp(-theta[0]))),
        form=form,
        scale=float(math.exp(theta[1])),
    )


def _coarsen(counts: Floats, unit: int) -> Floats:
    """Counts per hour summed into counts per ``unit`` hours (the last one partial)."""
    padded = np.concatenate([counts, np.zeros(-len(counts) % unit)])
    out: Floats = padded.reshape(-1, unit).sum(axis=1)
    return out


def _km(answered: Floats, censored: Floats) -> Floats:
    """Kaplan-Meier survival at the end of each hour (answers leave before the censored
    of the same hour, the usual convention)."""
    at_risk = (
        answered.sum()
        + censored.sum()
        - np.concatenate(([0.0], np.cumsum(answered + censored)[:-1]))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1 - answered / np.maximum(at_risk, 1e-300), 1.0)
    survival: Floats = np.cumprod(factor).astype(float)
    return survival


def _counts(obs: Observations, weights: Floats, size: int, unit: int = 1) -> tuple[Floats, ...]:
    """Answered and censored first and later pushes, weighted, per hour of wait.

    With ``unit`` hours (a day) and the pushes' ``ages``, each push is seen for whole
    units only: one made 6 days and 13 hours ago is censored at 6 days, its answer
    after that unseen. Otherwise a unit's hours after ``now`` would be counted as waited
    (a censored push "waited at least" its unit's start) while the answers of the hours
    before it are counted: the fit, with a partial unit's answers and none of its
    survivors, read the late hazard too high (the calibration's heavy-tailed fleets of
    10,000: a hindcast over a week expected 330-580 answers, by form, where 240-290 came)."""
    push_weight = weights[obs.device]
    bins, answered_at = obs.bins, obs.answered
    if unit > 1 and obs.ages is not None:
        seen = obs.ages // unit * unit
        answered_at = answered_at & (bins < seen)
        bins = np.where(answered_at, bins, np.minimum(bins, seen))
    out: list[Floats] = []
    for answered in (True, False):
        for first in (True, False):
            chosen = (answered_at == answered) & (obs.first == first)
            counted = np.bincount(bins[chosen], weights=push_weight[chosen], minlength=size)
            out.append(counted[:size].astype(float))
    first_answered, later_answered, first_censored, later_censored = out
    return first_answered, first_censored, later_answered, later_censored


def fit_curve(
    obs: Observations,
    weights: Floats,
    grid_hours: int,
    start: Floats | None = None,
    form: Form = FORMS[0],
    rng: np.random.Generator | None = None,
) -> Curve:
    """The curve for one set of unit weights (``obs.size``: the data as they are), its
    tail of ``form`` fitted by maximum likelihood. With ``rng`` (a bootstrap
    replicate) the share of the survivors at the horizon that never answer is drawn
    about the fitted one (:func:`_survivors_cured`)."""
    size = int(obs.bins.max()) + 1 if len(obs.bins) else 1
    first_answered, first_censored, later_answered, later_censored = _counts(obs, weights, size)
    answered_bins = np.flatnonzero(first_answered > 0)
    # The Kaplan-Meier part ends with the last hour in which a first push was answered:
    # after it the data hold no answer, only survivors, and the model takes over.
    horizon = int(answered_bins[-1]) + 1 if len(answered_bins) else 0
    counts = (first_answered, first_censored, later_answered, later_censored)
    # Past two days of data the tail is fitted on whole days (:data:`DAILY_FROM`).
    unit = 24 if horizon >= DAILY_FROM else 1
    if unit > 1:
        whole = _counts(obs, weights, size, unit)
        counts = (
            _coarsen(whole[0], unit),
            _coarsen(whole[1], unit),
            _coarsen(whole[2], unit),
            _coarsen(whole[3], unit),
        )
    skip = int(-(-horizon // unit) * WINDOW)
    begin = np.array([0.0, 3.0]) if start is None else start
    # A Weibull's scale is in hours, so the fit's unit converts it; a Lomax's is not.
    per_unit = 0.0 if form.lomax else math.log(unit)
    fitted = _fit_model(counts, begin - np.array([0.0, per_unit]), skip, form, unit)
    model = CureModel(fitted.cure, form, fitted.scale * math.exp(per_unit))
    evidence = float(first_answered[skip * unit : horizon].sum())
    km = _km(first_answered, first_censored)[:horizon]
    hours = np.arange(max(grid_hours, horizon) + 1, dtype=float)
    survival = np.empty(len(hours))
    survival[0] = 1.0
    survival[1 : horizon + 1] = km
    tail_hours = hours[horizon + 1 :]
    level = survival[horizon]
    base = float(model.first(np.array([float(horizon)]))[0])
    # Of the first pushes unanswered at the horizon, the share that never answers.
    cured = min(max(model.cure / max(base, 1e-300), 0.0), 1.0)
    if rng is not None:
        cured = _survivors_cured(cured, evidence, rng)
    # The answerers still waiting at the horizon go on with the model's hazard: their
    # survival from there, in logs so that a fast hazard does not underflow to 0/0.
    with np.errstate(under="ignore"):
        onward = np.exp(
            model.log_answerer(tail_hours) - model.log_answerer(np.array([float(horizon)]))
        )
    survival[horizon + 1 :] = level * (cured + (1 - cured) * onward)
    floor = level * cured
    answers = float(weights @ obs.answers)
    failures = float(weights @ obs.failures)
    return Curve(
        hours=hours,
        survival=np.minimum.accumulate(survival),
        floor=min(floor, float(survival[-1])),
        failure=failures / answers if answers else 0.0,
        model=model,
        horizon=float(horizon),
        evidence=evidence,
    )


def _survivors_cured(cured: float, evidence: float, rng: np.random.Generator) -> float:
    """One replicate's share, among the first pushes still unanswered at the horizon,
    of those that never answer, about the fitted share ``cured``.

    No answer after the horizon is in the data: this share is the tail model's
    extrapolation from the ``evidence`` answers of its window, and a bootstrap over
    devices refits nearly the same value each time. It is drawn instead from a Beta
    distribution with ``cured`` as its mean and as many observations as ``evidence``
    (plus Jeffreys' half on each side): wide on a few answers, negligible at a large
    fleet's thousands. In the calibration's fleets of 100 (30 histories a cell, before
    the tail was fitted on days), varying the shape took the slow fleets' day-3
    coverage of a stated 80 % from 60-77 % to 77-80 %, and this draw moved it a few
    points more (77-83 %), within the noise of 30 histories (docs/forecast.md)."""
    return float(rng.beta(evidence * cured + 0.5, evidence * (1 - cured) + 0.5))


def _theta(model: CureModel) -> Floats:
    # The fit's parameters as the simplex sees them (logit share, log scale).
    cure = min(max(model.cure, 1e-6), 1 - 1e-6)
    return np.array([math.log(cure / (1 - cure)), math.log(model.scale)])


def bootstrap(
    obs: Observations, replicates: int, grid_hours: int, rng: np.random.Generator
) -> tuple[list[Curve], list[Curve]]:
    """The curves of the data, one per tail form of :data:`FORMS` (the first is the
    point fit), and ``replicates`` curves of Poisson-reweighted devices, replicate ``i``
    with the tail form ``FORMS[i % len(FORMS)]`` (refit from the data's estimate of
    that form, which it is near) and its share that never answers drawn about the
    fit (:func:`_survivors_cured`)."""
    points = [fit_curve(obs, obs.size, grid_hours, form=form) for form in FORMS]
    starts = [_theta(point.model) for point in points]
    curves = []
    for i in range(replicates):
        k = i % len(FORMS)
        weights = rng.poisson(obs.size).astype(float)
        curves.append(fit_curve(obs, weights, grid_hours, starts[k], FORMS[k], rng=rng))
    return points, curves
