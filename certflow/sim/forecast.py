"""A forecast for a live rollout: when will it import, how many devices will it cut off,
and would one manual extension help?

:func:`forecast` takes a distributing rollout, the instant ``now``, and what the host
has seen so far as plain mappings (device id -> the instants it was pushed, device id ->
the instants its reports came in; a store's journal supplies them). It then:

1. **fits the wait for an answer** (:mod:`certflow.sim._cure`): the Kaplan-Meier curve
   of first pushes where the data are, and past the longest answered wait a
   mixture-cure Weibull tail fitted to every push, answered or censored. A device still
   waiting beyond the data is censored, not "never"; :class:`Tail` says where the data
   end and how many waiting devices rest on the tail alone. The failure share is the
   share of answers that failed. A Poisson bootstrap over devices refits all of it, and
   each simulated future uses one replicate: the fit's uncertainty reaches the intervals;
2. **draws the futures** (:mod:`certflow.sim._futures`): every device still able to move
   answers (or not) as its replicate says, bulk retries on the administrator's calendar;
3. **lets the engine decide** what each future does: the decision instants come from the
   timeline, the extension from :func:`certflow.preview` of ``ExtendManually``, and the
   import, whether forced and whom it cuts off from replays through the evaluator;
4. **tabulates** both branches (as it is, with one manual extension) from the same
   futures, and **recommends** extending or not, with the re-enrolments it saves
   (paired, future by future) and the constraints that bound an extension.

Enrolments and unenrolments after ``now`` are not forecast.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import numpy as np

from certflow.core import commands as c
from certflow.core import timeline
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.evaluator import DEFAULT, advance
from certflow.core.instants import require_aware, show
from certflow.core.preview import preview
from certflow.core.rollout import Rollout
from certflow.sim import _cure, _futures, _journal
from certflow.sim._hindcast import hindcast
from certflow.sim._host import DAY
from certflow.sim._verdict import Advice, Tail, advise, constraints, judge, tail_of
from certflow.sim.models import AdminPolicy

__all__ = ["Branch", "CheckpointChance", "Forecast", "Survival", "fit", "forecast"]

_HOUR = timedelta(hours=1)
_REPLICATES = 40  # bootstrap curves; each future uses one, in turn


@attrs.frozen
class Survival:
    """A Kaplan-Meier curve of the wait (seconds) from a push to its answer.

    ``survival[i]`` is the estimated chance that a push is still unanswered just after
    ``times[i]`` (the distinct observed waits, ascending). ``answered`` and
    ``censored`` count the observations. The forecast draws from
    :mod:`certflow.sim._cure`'s curve, which follows this one within the data and
    models the tail after it; this one is the data alone.
    """

    times: tuple[float, ...]
    survival: tuple[float, ...]
    answered: int
    censored: int
    failure_probability: float

    def at(self, seconds: float) -> float:
        """The chance that a push is still unanswered after ``seconds``."""
        index = int(np.searchsorted(np.asarray(self.times), seconds, side="right"))
        return 1.0 if index == 0 else self.survival[index - 1]

    def median(self) -> float | None:
        """The median wait in seconds, or ``None`` if the curve stays above one half."""
        for time, value in zip(self.times, self.survival, strict=True):
            if value <= 0.5:
                return time
        return None


def _survival(journal: _journal.Journal) -> Survival:
    times, curve = _journal.kaplan_meier(journal.waits, journal.answered)
    return Survival(
        times=tuple(times.tolist()),
        survival=tuple(curve.tolist()),
        answered=int(journal.answered.sum()),
        censored=int((~journal.answered).sum()),
        failure_probability=journal.failure_probability,
    )


def fit(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
) -> Survival:
    """The Kaplan-Meier curve of the wait from a push to its answer, and the failure share.

    The ``k``-th report of a device answers its ``k``-th push; its last push without a
    report is censored at ``now``. Raises :class:`~certflow.InvalidInput` naming the
    device for a report before its push, more reports than pushes, an instant after
    ``now`` or a device the rollout does not know.
    """
    return _survival(_journal.read(rollout, now, pushes, reports))


@attrs.frozen
class CheckpointChance:
    """The chance that the import happens at checkpoint ``number`` (1-based), at ``at``."""

    number: int
    at: datetime
    probability: float
    final: bool


@attrs.frozen
class Branch:
    """What the simulated futures of one choice (extend or not) say.

    ``checkpoints``: each coming checkpoint with the chance that the import happens
    there; ``other``: the chance of an import elsewhere (the existing certificate's
    expiry, the administrator's import now) or none. Cut-offs are the devices a forced
    import leaves needing re-enrolment (zero when the import is not forced): their mean,
    and the ``level`` interval. ``import_day_*``: days from t0 to the import (mean and
    interval; futures without an import leave it out). ``after_expiry``: the chance that
    the server still runs the existing certificate after it expired.
    """

    extended: bool
    checkpoints: tuple[CheckpointChance, ...]
    other: float
    forced_probability: float
    cutoff_mean: float
    cutoff_low: int
    cutoff_high: int
    import_day_mean: float | None
    import_day_low: float | None
    import_day_high: float | None
    after_expiry: float
    cutoffs: tuple[int, ...] = attrs.field(repr=False)
    import_days: tuple[float | None, ...] = attrs.field(repr=False)

    def __str__(self) -> str:
        lines = ["with one manual extension" if self.extended else "as it is"]
        for chance in self.checkpoints:
            final = " (deadline)" if chance.final else ""
            lines.append(
                f"  checkpoint {chance.number}{final} {show(chance.at)}: "
                f"import {chance.probability:.0%}"
            )
        if self.other:
            lines.append(f"  elsewhere (expiry, import now) or none: {self.other:.0%}")
        lines.append(
            f"  forced {self.forced_probability:.0%}; devices cut off: "
            f"{self.cutoff_mean:,.1f} expected, {self.cutoff_low:,}-{self.cutoff_high:,}"
        )
        if self.import_day_mean is not None:
            lines.append(
                f"  import on day {self.import_day_mean:.1f} expected, "
                f"{self.import_day_low:g}-{self.import_day_high:g}"
            )
        if self.after_expiry:
            lines.append(
                f"  imports after the existing certificate expired: {self.after_expiry:.0%}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (instants as ISO 8601)."""
        return {
            "extended": self.extended,
            "checkpoints": [
                {
                    "number": k.number,
                    "at": k.at.isoformat(),
                    "probability": k.probability,
                    "final": k.final,
                }
                for k in self.checkpoints
            ],
            "other": self.other,
            "forced_probability": self.forced_probability,
            "cutoff_mean": self.cutoff_mean,
            "cutoff_low": self.cutoff_low,
            "cutoff_high": self.cutoff_high,
            "import_day_mean": self.import_day_mean,
            "import_day_low": self.import_day_low,
            "import_day_high": self.import_day_high,
            "after_expiry": self.after_expiry,
        }


@attrs.frozen
class Forecast:
    """The forecast at ``now``: the data's curve, where it ends (``tail``), both
    branches, what bounds an extension (``constraints``) and the ``advice``.

    ``extended`` is ``None`` when no manual extension can be made any more (the
    rollout is not running, or the engine refuses it: ``advice`` says why).
    """

    now: datetime
    runs: int
    level: float
    fit: Survival
    tail: Tail
    as_is: Branch
    extended: Branch | None
    constraints: tuple[str, ...]
    advice: Advice

    def __str__(self) -> str:
        median = self.fit.median()
        waited = "-" if median is None else f"{median / 3600:.1f} h"
        head = (
            f"forecast at {show(self.now)} from {self.runs} simulated futures "
            f"({self.level:.0%} intervals); median wait for an answer {waited}, "
            f"failure share {self.fit.failure_probability:.1%}"
        )
        parts = [head, str(self.tail)]
        if self.tail.caution is not None:
            parts.append(f"unreliable: {self.tail.caution}")
        parts.append(str(self.as_is))
        if self.extended is not None:
            parts.append(str(self.extended))
        parts += [f"constraint: {text}" for text in self.constraints]
        parts.append(str(self.advice))
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return "<pre>" + str(self).replace("&", "&amp;").replace("<", "&lt;") + "</pre>"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (instants as ISO 8601)."""
        return {
            "now": self.now.isoformat(),
            "runs": self.runs,
            "level": self.level,
            "reliable": self.tail.reliable,
            "failure_probability": self.fit.failure_probability,
            "answered": self.fit.answered,
            "censored": self.fit.censored,
            "tail": self.tail.as_dict(),
            "as_is": self.as_is.as_dict(),
            "extended": None if self.extended is None else self.extended.as_dict(),
            "constraints": list(self.constraints),
            "recommendation": self.advice.as_dict(),
        }


def _quantile(values: Sequence[float], q: float) -> float:
    # The order statistic at rank ceil(q * n) (1-based): an inclusive, conservative bound.
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def _coming(rollout: Rollout, extended: Rollout | None = None) -> list[tuple[int, datetime]]:
    """The checkpoints ``rollout`` has still to evaluate: (number from 1, instant), as
    the timeline places them. ``extended`` is a later extension's preview (the rollout
    at that instant, extended): the checkpoints still ahead of it are where its timeline
    has moved them; those it evaluated before it extends stay where they were."""
    coming: list[tuple[int, datetime]] = []
    for number in range(rollout.phase.checkpoints_done, len(rollout.plan.policy.checkpoints)):
        source = rollout
        if extended is not None and number >= extended.phase.checkpoints_done:
            source = extended  # still ahead when it extends: the extension moved it
        at = timeline.checkpoint_at(source.plan, source.phase, number)
        if at is not None:
            coming.append((number + 1, at))
    return coming


@attrs.frozen
class _Plan:
    """One branch to tabulate: its start, the checkpoints the timeline gives it, its
    schedule of events as steps."""

    extended: bool
    coming: list[tuple[int, datetime]]
    schedule: _futures.Schedule


def _steps(clock: _futures.Clock, at: datetime) -> int:
    # A decision falls on the host's first step at or after it.
    return math.ceil((at - clock.t0) / clock.step)


def _schedule(
    clock: _futures.Clock,
    start: Rollout,
    coming: list[tuple[int, datetime]],
    admin: AdminPolicy,
    extend_at: int | None,
    end: int,
) -> _futures.Schedule:
    decisions = {_steps(clock, at) for _, at in coming}
    expiry = start.plan.existing_not_after
    if clock.now < expiry and _steps(clock, expiry) < end:
        decisions.add(_steps(clock, expiry))
    per_day = DAY // clock.step
    reviews: tuple[int, ...] = ()
    if admin.import_now_at is not None:
        first_day = max(admin.import_now_from, clock.now_step // per_day)
        reviews = tuple(
            r
            for day in range(first_day, end // per_day + 1)
            if clock.now_step < (r := day * per_day + admin.review_at // clock.step) <= end
        )
    return _futures.Schedule(
        start=start,
        decisions=tuple(sorted(d for d in decisions if clock.now_step < d <= end)),
        import_reviews=reviews,
        threshold=admin.import_now_at,
        extend_at=extend_at,
        end=end,
    )


def forecast(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
    *,
    admin: AdminPolicy | None = None,
    runs: int = 200,
    level: float = 0.9,
    seed: int = 0,
    step: timedelta = _HOUR,
) -> Forecast:
    """Forecast the rest of a distributing ``rollout`` from what happened up to ``now``.

    ``pushes``/``reports``: device id -> instants (see :func:`fit`). ``admin``: what the
    administrator will do from now on (default: nothing; its ``extend_on_day`` is
    ignored, the branches decide that). ``runs`` simulated futures, seeded with
    ``seed``, each read by both branches; ``level`` the intervals' coverage; ``step``
    how often reports are ingested. The extended branch extends at ``now`` if allowed,
    else at the first review from the day extension opens.
    """
    now = require_aware("now", now)
    if not isinstance(rollout, Rollout):
        raise InvalidInput(f"rollout must be a Rollout, got {type(rollout).__name__}")
    if type(runs) is not int or runs < 1:
        raise InvalidInput(f"runs must be a whole number >= 1, got {runs!r}")
    if not isinstance(level, float | int) or not 0 < level < 1:
        raise InvalidInput(f"level must lie in (0, 1), got {level!r}")
    if not isinstance(step, timedelta) or not timedelta(0) < step <= DAY or DAY % step:
        raise InvalidInput(f"step must be a timedelta that divides a day, got {step!r}")
    admin = admin or AdminPolicy()
    if not isinstance(admin, AdminPolicy):
        raise InvalidInput(f"admin must be an AdminPolicy, got {admin!r}")
    rollout = advance(rollout, now).rollout
    if not rollout.state.running:
        raise InvalidInput(
            f"only a distributing rollout can be forecast; this one is {rollout.state.value}"
        )
    t0 = rollout.phase.started_at
    if t0 is None:  # a running rollout has started
        raise InvalidInput("the rollout has not started distributing")
    journal = _journal.read(rollout, now, pushes, reports)
    movers = _journal.movers(journal, rollout)

    # The branches, as the engine gives them: extend at once if it takes it, else at
    # the first review from the day extension opens if it will take it then.
    refusal: CommandRefused | None = None
    at_once = preview(rollout, c.ExtendManually(), now)
    branches: list[tuple[bool, Rollout, list[tuple[int, datetime]], datetime | None]] = [
        (False, rollout, _coming(rollout), None)
    ]
    if at_once.rollout is not None:
        branches.append((True, at_once.rollout, _coming(at_once.rollout), None))
    else:
        refusal = at_once.refusal
        opens = timeline.extension_opens(rollout.plan, rollout.phase)
        if opens is not None and opens > now:
            day = math.ceil((opens - t0) / DAY)
            review = t0 + day * DAY + admin.review_at
            later = preview(rollout, c.ExtendManually(), review)
            if later.rollout is not None:
                refusal = None
                branches.append((True, rollout, _coming(rollout, later.rollout), review))
            else:
                refusal = later.refusal
    last = max(at for _, _, coming, _ in branches for _, at in coming)
    retries = _retry_days(admin, t0, now, last, step)
    retry_taken = bool(retries) and _retry_allowed(rollout, t0 + retries[0] * step)
    clock = _futures.Clock(t0, step, now, (now - t0) // step, retries if retry_taken else ())
    end = _steps(clock, last)
    plans = [
        _Plan(
            extended,
            coming,
            _schedule(clock, start, coming, admin, None if at is None else _steps(clock, at), end),
        )
        for extended, start, coming, at in branches
    ]

    grid_hours = math.ceil((last - t0) / _HOUR) + 24
    rng = np.random.default_rng([seed, 0x5EED])
    points, curves = _cure.bootstrap(journal.observations(), _REPLICATES, grid_hours, rng)
    checked = hindcast(journal, t0, now, grid_hours, seed)
    chosen = _by_weight(curves, len(points), runs, None if checked is None else checked.weights)
    results = _run(movers, chosen, clock, plans, runs, seed, retry_taken)
    built = [
        _tabulate(plan, outcomes, t0, level, rollout.plan.existing_not_after)
        for plan, outcomes in zip(plans, results, strict=True)
    ]
    as_is = built[0]
    extended = built[1] if len(built) > 1 else None
    answered_first = journal.waits[journal.answered & journal.first]
    longest = float(answered_first.max()) if len(answered_first) else 0.0
    tail = judge(tail_of(points, curves, movers, longest), built, level, checked)
    named = constraints(rollout, refusal)
    advice = advise(as_is, extended, refusal, movers, retry_taken, level)
    return Forecast(now, runs, level, _survival(journal), tail, as_is, extended, named, advice)


def _by_weight(
    curves: list[_cure.Curve], shapes: int, runs: int, weights: dict[str, float] | None
) -> list[_cure.Curve]:
    """The curve of each future: replicate ``i`` has tail form ``i % shapes``; each form
    takes its ``weights`` share of the futures (the hindcast's, equal without one), its
    replicates in turn."""
    if weights is None:
        return [curves[run % len(curves)] for run in range(runs)]
    share = np.array(list(weights.values()))
    # Stratified: future r takes the shape whose cumulative weight holds (r + 0.5) / runs.
    picks = np.searchsorted(np.cumsum(share / share.sum()), (np.arange(runs) + 0.5) / runs)
    picks = np.minimum(picks, shapes - 1)
    seen = [0] * shapes
    out = []
    for k in picks.tolist():
        mine = curves[k::shapes]
        out.append(mine[seen[k] % len(mine)])
        seen[k] += 1
    return out


def _retry_days(
    admin: AdminPolicy, t0: datetime, now: datetime, last: datetime, step: timedelta
) -> tuple[int, ...]:
    """The steps of the administrator's bulk retries after ``now``, up to ``last``."""
    if admin.retry_every is None:
        return ()
    per_day = DAY // step
    out = []
    day = admin.retry_from
    while t0 + day * DAY <= last:
        at = day * per_day + admin.review_at // step
        if t0 + at * step > now:
            out.append(at)
        day += admin.retry_every
    return tuple(out)


def _retry_allowed(rollout: Rollout, at: datetime) -> bool:
    # The certificate kind's guard decides; a refusal for another reason (nobody
    # failed yet) does not forbid later retries.
    refusal = DEFAULT.refusal(rollout, c.RetryAllFailed(), at)
    return refusal is None or refusal.reason != "kind_allows_retry"


def _run(
    movers: _futures.Movers,
    curves: list[_cure.Curve],
    clock: _futures.Clock,
    plans: list[_Plan],
    runs: int,
    seed: int,
    retry: bool,
) -> list[list[_futures.Outcome]]:
    """Every future, drawn once and read by each branch: the engine replays the first
    future of each pattern, and every future of a pattern whose count disagrees."""

    def future(run: int) -> _futures.Future:
        curve = curves[run]
        return _futures.draw(movers, curve, clock, np.random.default_rng([seed, run]))

    results: list[list[_futures.Outcome]] = []
    futures = [future(run) for run in range(runs)]
    for plan in plans:
        schedule = plan.schedule
        decided: dict[bytes, _futures.Outcome | None] = {}
        outcomes: list[_futures.Outcome] = []
        for drawn in futures:
            key = _futures.pattern(movers, drawn, schedule)
            if key not in decided:
                decided[key] = _checked(movers, drawn, schedule, clock, retry)
            engine = decided[key]
            if engine is None:  # the draws do not model this rollout: the engine decides
                outcomes.append(_futures.replay(movers, drawn, schedule, clock, retry))
                continue
            outcomes.append(_count(movers, drawn, engine, clock))
        results.append(outcomes)
    return results


def _cutoffs_at(
    movers: _futures.Movers,
    drawn: _futures.Future,
    outcome: _futures.Outcome,
    clock: _futures.Clock,
) -> int:
    if outcome.import_at is None:
        return 0
    index = math.ceil((outcome.import_at - clock.t0) / clock.step)
    return int(_futures.untrusting(movers, drawn, [index], after=not outcome.at_decision)[0])


def _checked(
    movers: _futures.Movers,
    drawn: _futures.Future,
    schedule: _futures.Schedule,
    clock: _futures.Clock,
    retry: bool,
) -> _futures.Outcome | None:
    """The engine's outcome of a pattern's first future, if the draws agree with it on
    whom the import cuts off; ``None`` if they do not."""
    try:
        engine = _futures.replay(movers, drawn, schedule, clock, retry)
    except CommandRefused:
        return None
    if engine.import_at is not None and engine.cutoffs != _cutoffs_at(movers, drawn, engine, clock):
        return None
    return engine


def _count(
    movers: _futures.Movers,
    drawn: _futures.Future,
    engine: _futures.Outcome,
    clock: _futures.Clock,
) -> _futures.Outcome:
    # The pattern fixes the engine's decision; the devices it cuts off are this
    # future's own count then.
    cut = _cutoffs_at(movers, drawn, engine, clock) if engine.cutoffs or engine.forced else 0
    return attrs.evolve(engine, cutoffs=cut)


def _tabulate(
    plan: _Plan,
    outcomes: list[_futures.Outcome],
    t0: datetime,
    level: float,
    expiry: datetime,
) -> Branch:
    runs = len(outcomes)
    final = max((n for n, _ in plan.coming), default=0)
    imports: Counter[datetime | None] = Counter(o.import_at for o in outcomes)
    cutoffs = [o.cutoffs for o in outcomes]
    days = [None if o.import_at is None else (o.import_at - t0) / DAY for o in outcomes]
    known = [d for d in days if d is not None]
    tail = (1 - level) / 2
    return Branch(
        extended=plan.extended,
        checkpoints=tuple(
            CheckpointChance(number, at, imports[at] / runs, number == final)
            for number, at in plan.coming
        ),
        other=1 - sum(imports[at] for _, at in plan.coming) / runs,
        forced_probability=sum(o.forced for o in outcomes) / runs,
        cutoff_mean=statistics.fmean(cutoffs),
        cutoff_low=int(_quantile(cutoffs, tail)),
        cutoff_high=int(_quantile(cutoffs, 1 - tail)),
        import_day_mean=statistics.fmean(known) if known else None,
        import_day_low=_quantile(known, tail) if known else None,
        import_day_high=_quantile(known, 1 - tail) if known else None,
        after_expiry=sum(o.import_at is not None and o.import_at > expiry for o in outcomes) / runs,
        cutoffs=tuple(cutoffs),
        import_days=tuple(days),
    )
