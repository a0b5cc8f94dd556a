"""A forecast for a live rollout: when will it import, and how many devices will be cut off?

:func:`forecast` takes a distributing rollout, the instant ``now``, and what the host
has seen so far as plain mappings (device id -> the instants it was pushed, device id ->
the instants its reports came in; a store's journal supplies them). It then:

1. **fits the time to answer a push** with a Kaplan-Meier estimate (:func:`fit`): each
   answered push is an observed wait (report minus push); a push without an answer yet
   is *censored* at ``now`` (the device has waited at least that long). The failure
   probability is the share of answers that were failures (what each device answered
   is read from its record in the rollout: every answer was a failure but the last one
   of a device that trusts the root now, as the device machine declares its states;
   an unenrolled device, out of scope, is left out);
2. **simulates the rest** ``runs`` times through the real evaluator (the same host as
   :mod:`certflow.sim.fleet`): a device still waiting answers after a wait drawn from
   the fitted curve *given* the wait so far (or never, past the curve's end); still
   waiting means in a state that awaits an answer, as the device machine declares its
   wait. A device pushed again (bulk retry by the
   :class:`~certflow.sim.models.AdminPolicy`) has answered before, so it draws a fresh
   wait from the curve above its floor (the floor is the share that never answers: a
   cure-model reading of the plateau);
3. **tabulates**, for the rollout as it is and with one manual extension: the
   probability of the import at each coming checkpoint, and the expected number and a
   ``level`` interval (equal-tailed quantiles of the runs) of the devices cut off. The
   extension is the engine's: :func:`certflow.preview` of ``ExtendManually`` at the
   instant the branch extends says whether it would be taken and gives the extended
   rollout, whose timeline (:mod:`certflow.core.timeline`) places the checkpoints it
   moved.

The Kaplan-Meier curve ends at the longest wait seen: a device still waiting beyond it is
assumed never to answer (the data say nothing about later answers). This overstates the
cut-offs when devices are routinely offline for longer than the rollout has run.
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

from certflow.core import timeline
from certflow.core.commands import ExtendManually
from certflow.core.errors import CertflowError, InvalidInput
from certflow.core.evaluator import DEFAULT, advance
from certflow.core.instants import require_aware, show
from certflow.core.preview import preview
from certflow.core.rollout import Rollout
from certflow.sim._host import DAY, Answers, Floats, Host, Responder
from certflow.sim.models import AdminPolicy

__all__ = ["Branch", "CheckpointChance", "Forecast", "Survival", "fit", "forecast"]

_HOUR = timedelta(hours=1)


@attrs.frozen
class Survival:
    """A Kaplan-Meier curve of the wait (seconds) from a push to its answer.

    ``survival[i]`` is the estimated chance that a push is still unanswered just after
    ``times[i]`` (the distinct observed waits, ascending). ``answered`` and
    ``censored`` count the observations.
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

    def responder(self, waiting: Mapping[str, float] | None = None) -> Responder:
        """Draw answers from this curve; devices in ``waiting`` (id -> seconds waited so
        far) draw the rest of their wait given that they have not answered yet."""
        times = np.asarray(self.times, dtype=float)
        # Decreasing, so search its negation; the tail beyond the last time is "never".
        negated = -np.asarray(self.survival, dtype=float)
        failure = self.failure_probability
        before = dict(waiting or {})

        def answer(ids: Sequence[str], rng: np.random.Generator) -> Answers:
            n = len(ids)
            waited = np.fromiter((before.pop(d, -1.0) for d in ids), dtype=float, count=n)
            # A push answered before (a retry) comes from a device that answers: it
            # draws above the curve's floor, the share that never answers.
            fresh = waited < 0
            floor = self.survival[-1] if self.survival else 0.0
            low = np.where(fresh, floor, 0.0)
            start = np.ones(n)
            if len(times):
                index = np.searchsorted(times, np.maximum(waited, 0.0), side="right")
                has = (index > 0) & ~fresh
                start[has] = -negated[index[has] - 1]
            target = low + rng.random(n) * (start - low)
            # The first time the curve is at or below the target.
            found = np.searchsorted(negated, -target, side="left")
            delays: Floats = np.full(n, np.inf)
            hit = found < len(times)
            delays[hit] = np.maximum(times[found[hit]] - np.maximum(waited[hit], 0.0), 1.0)
            fails = rng.random(n) < failure
            return delays, fails

        return answer


def _aware(name: str, value: object) -> datetime:
    return require_aware(name, value)


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
    now = _aware("now", now)
    waits: list[float] = []
    events: list[bool] = []
    answers = failures = 0
    for device_id in reports:
        if device_id not in pushes:
            raise InvalidInput(f"device {device_id!r} has reports but no push")
    for device_id, pushed in pushes.items():
        reported = reports.get(device_id, ())
        try:
            state = rollout.device_state(device_id)
        except CertflowError:
            raise InvalidInput(f"device {device_id!r} is not in this rollout") from None
        if len(reported) > len(pushed):
            raise InvalidInput(
                f"device {device_id!r} has {len(reported)} reports for {len(pushed)} pushes; "
                "each report answers one push"
            )
        for k, push in enumerate(pushed):
            push = _aware(f"push of {device_id!r}", push)
            if push > now:
                raise InvalidInput(f"push of {device_id!r} at {push.isoformat()} is after now")
            if k < len(reported):
                report = _aware(f"report of {device_id!r}", reported[k])
                if not push <= report <= now:
                    raise InvalidInput(
                        f"report {k + 1} of {device_id!r} at {report.isoformat()} is not "
                        f"between its push ({push.isoformat()}) and now"
                    )
                waits.append((report - push).total_seconds())
                events.append(True)
            else:
                waits.append((now - push).total_seconds())
                events.append(False)
        if reported and state.in_scope:
            # Every answer was a failure but the last one of a device that trusts the
            # root now (the declared meaning of its state); an unenrolled device, out
            # of scope, says nothing of its answers.
            answers += len(reported)
            failures += len(reported) - state.trusts
    order = np.argsort(np.asarray(waits), kind="stable")
    ordered = np.asarray(waits)[order]
    observed = np.asarray(events, dtype=bool)[order]
    at_risk = len(ordered)
    times: list[float] = []
    curve: list[float] = []
    value = 1.0
    i = 0
    while i < len(ordered):
        j = i
        answered_here = 0
        while j < len(ordered) and ordered[j] == ordered[i]:
            answered_here += int(observed[j])
            j += 1
        if answered_here:
            value *= 1 - answered_here / at_risk
            times.append(float(ordered[i]))
            curve.append(value)
        at_risk -= j - i
        i = j
    return Survival(
        times=tuple(times),
        survival=tuple(curve),
        answered=int(observed.sum()),
        censored=int((~observed).sum()),
        failure_probability=failures / answers if answers else 0.0,
    )


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
    there; ``other``: the chance of an import elsewhere (the administrator's import
    now) or none. Cut-offs are the devices a forced import leaves needing re-enrolment
    (zero when the import is not forced): their mean, and the ``level`` interval.
    """

    extended: bool
    checkpoints: tuple[CheckpointChance, ...]
    other: float
    forced_probability: float
    cutoff_mean: float
    cutoff_low: int
    cutoff_high: int
    cutoffs: tuple[int, ...] = attrs.field(repr=False)

    def __str__(self) -> str:
        lines = ["with one manual extension" if self.extended else "as it is"]
        for chance in self.checkpoints:
            final = " (deadline)" if chance.final else ""
            lines.append(
                f"  checkpoint {chance.number}{final} {show(chance.at)}: "
                f"import {chance.probability:.0%}"
            )
        lines.append(
            f"  forced {self.forced_probability:.0%}; devices cut off: "
            f"{self.cutoff_mean:,.1f} expected, {self.cutoff_low:,}-{self.cutoff_high:,}"
        )
        return "\n".join(lines)


@attrs.frozen
class Forecast:
    """The forecast at ``now``: the fitted curve and the two branches.

    ``extended`` is ``None`` when no manual extension can be made any more (the
    rollout is not running or the new certificate would expire first).
    """

    now: datetime
    runs: int
    level: float
    fit: Survival
    as_is: Branch
    extended: Branch | None

    def __str__(self) -> str:
        median = self.fit.median()
        waited = "-" if median is None else f"{median / 3600:.1f} h"
        head = (
            f"forecast at {show(self.now)} from {self.runs} simulated futures "
            f"({self.level:.0%} intervals); median wait for an answer {waited}, "
            f"failure share {self.fit.failure_probability:.1%}"
        )
        parts = [head, str(self.as_is)]
        if self.extended is not None:
            parts.append(str(self.extended))
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return "<pre>" + str(self).replace("&", "&amp;").replace("<", "&lt;") + "</pre>"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (instants as ISO 8601)."""

        def branch(b: Branch | None) -> dict[str, Any] | None:
            if b is None:
                return None
            return {
                "extended": b.extended,
                "checkpoints": [
                    {
                        "number": c.number,
                        "at": c.at.isoformat(),
                        "probability": c.probability,
                        "final": c.final,
                    }
                    for c in b.checkpoints
                ],
                "other": b.other,
                "forced_probability": b.forced_probability,
                "cutoff_mean": b.cutoff_mean,
                "cutoff_low": b.cutoff_low,
                "cutoff_high": b.cutoff_high,
            }

        return {
            "now": self.now.isoformat(),
            "runs": self.runs,
            "level": self.level,
            "failure_probability": self.fit.failure_probability,
            "answered": self.fit.answered,
            "censored": self.fit.censored,
            "as_is": branch(self.as_is),
            "extended": branch(self.extended),
        }


def _quantile(values: Sequence[int], q: float) -> int:
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


def _awaiting(rollout: Rollout, device_id: str) -> bool:
    """Whether the device's latest push still awaits its answer: its state is one of
    the device machine's declared waits."""
    return rollout.device_state(device_id).value in DEFAULT.rules.device.awaiting


def _branch(
    rollout: Rollout,
    now: datetime,
    survival: Survival,
    waiting: dict[str, float],
    admin: AdminPolicy,
    step: timedelta,
    runs: int,
    seed: int,
    level: float,
    extended: bool,
    later: Rollout | None = None,
) -> Branch:
    """The futures of ``rollout``; ``later`` is the preview of an extension the
    administrator will make at a coming review (the rollout then, extended), which
    places the checkpoints it moves."""
    t0 = rollout.phase.started_at
    if t0 is None:  # the caller checked that the rollout is distributing
        raise InvalidInput("the rollout has not started distributing")
    coming = _coming(rollout, later)
    final = len(rollout.plan.policy.checkpoints)
    imports: Counter[datetime | None] = Counter()
    cutoffs: list[int] = []
    forced = 0
    pending = [d for d in waiting if _awaiting(rollout, d)]
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        host = Host(
            rollout,
            t0,
            now,
            step,
            admin,
            survival.responder(waiting),
            rng,
            extend_anyway=later is not None,
        )
        host.schedule_answers(pending, now, host.responder(pending, rng))
        host.run()
        imports[host.import_at] += 1
        cutoffs.append(host.reenrollment_required if host.forced else 0)
        forced += bool(host.forced)
    tail = (1 - level) / 2
    return Branch(
        extended=extended,
        checkpoints=tuple(
            CheckpointChance(number, at, imports[at] / runs, number == final)
            for number, at in coming
        ),
        other=1 - sum(imports[at] for _, at in coming) / runs,
        forced_probability=forced / runs,
        cutoff_mean=statistics.fmean(cutoffs),
        cutoff_low=_quantile(cutoffs, tail),
        cutoff_high=_quantile(cutoffs, 1 - tail),
        cutoffs=tuple(cutoffs),
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
    ignored, the branches decide that). ``runs`` simulated futures per branch, seeded
    with ``seed``; ``level`` the interval's coverage; ``step`` how often reports are
    ingested. The extended branch extends at ``now`` if allowed, else at the first
    review from the day extension opens.
    """
    now = _aware("now", now)
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
    survival = fit(rollout, now, pushes, reports)
    waiting = {
        d: (now - at[-1]).total_seconds()
        for d, at in pushes.items()
        if at and len(reports.get(d, ())) < len(at)
    }
    for device_id in rollout.device_ids():
        if device_id not in waiting and _awaiting(rollout, device_id):
            raise InvalidInput(
                f"device {device_id!r} awaits an answer but pushes holds no unanswered push for it"
            )

    def branch(
        start: Rollout, policy: AdminPolicy, extended: bool, later: Rollout | None = None
    ) -> Branch:
        return _branch(
            start, now, survival, waiting, policy, step, runs, seed, level, extended, later
        )

    never = attrs.evolve(admin, extend_on_day=None)  # the branches decide the extension
    as_is = branch(rollout, never, False)
    extended: Branch | None = None
    at_once = preview(rollout, ExtendManually(), now)
    if at_once.rollout is not None:
        extended = branch(at_once.rollout, never, True)
    else:
        opens = timeline.extension_opens(rollout.plan, rollout.phase)
        t0 = rollout.phase.started_at
        if opens is not None and t0 is not None and opens > now:
            # Not open yet: extend at the first review from the day it opens, if the
            # rollout would take it then; the engine's preview of that extension says
            # so, and which checkpoints it moves where.
            day = math.ceil((opens - t0) / DAY)
            review = t0 + day * DAY + admin.review_at
            later = preview(rollout, ExtendManually(), review)
            if later.rollout is not None:
                extended = branch(
                    rollout, attrs.evolve(admin, extend_on_day=day), True, later.rollout
                )
    return Forecast(now, runs, level, survival, as_is, extended)
