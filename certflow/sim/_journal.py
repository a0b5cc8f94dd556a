"""What the host has seen so far, read once for the forecast: every push's wait.

The ``k``-th report of a device answers its ``k``-th push: an answered push is an
observed wait (report minus push), a push without a report yet is *censored* at ``now``
(the device has waited at least that long). What each answer was is read from the
rollout: every answer was a failure but the last one of a device that trusts the root
now (the declared meaning of its state); an unenrolled device, out of scope, says
nothing of its answers.

A million devices are read in bulk: the instants are few and repeated (pushes come at
t0 and at the retries, reports at the host's steps), so each distinct instant is
checked and converted once, and the waits are numpy arithmetic on offsets. Only when
the bulk read finds an input at fault does a loop over the devices run, to name it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from itertools import chain, filterfalse, repeat

import attrs
import numpy as np
import numpy.typing as npt

from certflow.core.errors import CertflowError, InvalidInput
from certflow.core.evaluator import DEFAULT
from certflow.core.instants import require_aware
from certflow.core.plan import DeviceState
from certflow.core.rollout import Rollout
from certflow.sim._cure import BIN, Observations
from certflow.sim._futures import Movers

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


@attrs.frozen
class Journal:
    """Every push: its wait in seconds, whether answered, whether the device's first;
    per device of ``pushes`` (``ids``, in their order): its state (numbered), pushes and reports
    counted, the seconds since its last push, its answers and failures in scope."""

    waits: Floats
    answered: Bools
    first: Bools
    device: npt.NDArray[np.int64]
    devices: int
    answers: Floats
    failures: Floats
    ids: list[str] = attrs.field(repr=False, eq=False)
    states: npt.NDArray[np.int8] = attrs.field(repr=False, eq=False)
    pushed: npt.NDArray[np.int64] = attrs.field(repr=False, eq=False)
    reported: npt.NDArray[np.int64] = attrs.field(repr=False, eq=False)
    since_last: Floats = attrs.field(repr=False, eq=False)
    #: Per push: the seconds from it to ``now``.
    ages: Floats = attrs.field(repr=False, eq=False, factory=lambda: np.zeros(0))

    def before(self, span: float) -> Journal:
        """The pushes as they stood ``span`` seconds before ``now``: those made by then,
        each answered if its answer came by then, else still waiting then (its wait
        until then). The per-device answers and failures stay those of ``now`` (they
        give the failure share, which no survival curve reads)."""
        kept = self.ages >= span
        waited = self.ages[kept] - span
        answered = self.answered[kept] & (self.waits[kept] <= waited)
        waits = np.where(answered, self.waits[kept], waited)
        return attrs.evolve(
            self,
            waits=waits,
            answered=answered,
            first=self.first[kept],
            device=self.device[kept],
            ages=waited,
        )

    @property
    def failure_probability(self) -> float:
        total = float(self.answers.sum())
        return float(self.failures.sum()) / total if total else 0.0

    def observations(self) -> Observations:
        """The pushes binned by the hour, for the cure model and its bootstrap.

        Devices pushed once whose push fell in the same hour with the same outcome are
        one *unit* of that many devices: a sum of Poisson(1) weights is Poisson of the
        count, so the bootstrap draws one number per unit, not one per device (a
        million devices make a few hundred units). A device pushed more than once is
        a unit of its own."""
        bins = (self.waits // BIN).astype(np.int64)
        ages = (self.ages // BIN).astype(np.int64)
        per_device = np.bincount(self.device, minlength=self.devices)
        once = per_device[self.device] == 1
        single = self.device[once]
        key = (bins[once] * 2 + self.answered[once]) * 4
        key = (
            key + self.failures[single].astype(np.int64) * 2 + self.answers[single].astype(np.int64)
        )
        key = key * (int(ages.max(initial=0)) + 1) + ages[once]
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        chosen = np.flatnonzero(once)[first]
        many = np.flatnonzero(~once)
        many_devices, many_unit = np.unique(self.device[many], return_inverse=True)
        units = len(chosen) + len(many_devices)
        unit_devices = np.concatenate([self.device[chosen], many_devices])
        return Observations(
            bins=np.concatenate([bins[chosen], bins[many]]),
            answered=np.concatenate([self.answered[chosen], self.answered[many]]),
            first=np.concatenate([self.first[chosen], self.first[many]]),
            device=np.concatenate(
                [np.arange(len(chosen)), len(chosen) + many_unit.reshape(-1)]
            ).astype(np.int64),
            devices=units,
            size=np.concatenate([counts, np.ones(len(many_devices), dtype=np.int64)]).astype(float),
            answers=self.answers[unit_devices],
            failures=self.failures[unit_devices],
            ages=np.concatenate([ages[chosen], ages[many]]),
        )


_MICRO = timedelta(microseconds=1)


class _Distinct(dict[object, int]):
    """Numbers each distinct key on first sight (``map(d.__getitem__, ...)`` stays in C
    for keys already seen, nearly all of them)."""

    def __missing__(self, key: object) -> int:
        number = self[key] = len(self)
        return number


def _offsets(instants: Iterable[object], count: int, now: datetime) -> Ints | None:
    """Microseconds from ``now`` to each instant (negative: before it), converting each
    distinct instant once; ``None`` if one is not an aware datetime or comes after now."""
    distinct = _Distinct()
    try:
        codes = np.fromiter(map(distinct.__getitem__, instants), np.int64, count=count)
    except TypeError:  # an unhashable value: not an instant
        return None
    values = np.empty(len(distinct), dtype=np.int64)
    for t, k in distinct.items():
        if not isinstance(t, datetime) or t.utcoffset() is None or t > now:
            return None
        values[k] = (t - now) // _MICRO
    out: Ints = values[codes]
    return out


# Each device state's number in the journal, and per number what the forecast asks of
# it: in scope, trusting the root (a state's answer is then its last one, installed).
_STATES = tuple(DeviceState)
_NUMBER = {state: number for number, state in enumerate(_STATES)}
_IN_SCOPE = np.array([s.in_scope for s in _STATES], dtype=bool)
_TRUSTS = np.array([s.trusts for s in _STATES], dtype=np.int64)


def _bulk(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
) -> Journal | None:
    """The journal read with numpy; ``None`` if an input is at fault (then the loop of
    :func:`_name_fault` says which)."""
    if not reports.keys() <= pushes.keys():
        return None
    ids = list(pushes)
    try:
        states = np.fromiter(
            map(_NUMBER.__getitem__, map(rollout.device_state, ids)), np.int8, count=len(ids)
        )
    except CertflowError:
        return None
    answers_of = list(map(reports.get, ids, repeat(())))
    pushed = np.fromiter(map(len, pushes.values()), np.int64, count=len(ids))
    reported = np.fromiter(map(len, answers_of), np.int64, count=len(ids))
    if (reported > pushed).any():
        return None
    total, total_reports = int(pushed.sum()), int(reported.sum())
    push_at = _offsets(chain.from_iterable(pushes.values()), total, now)
    report_at = _offsets(chain.from_iterable(answers_of), total_reports, now)
    if push_at is None or report_at is None:
        return None
    device = np.repeat(np.arange(len(ids), dtype=np.int64), pushed)
    starts = np.cumsum(pushed) - pushed
    k = np.arange(total, dtype=np.int64) - starts[device]  # the push's rank in its device
    answered = k < reported[device]
    # The k-th report of a device answers its k-th push.
    report_starts = np.cumsum(reported) - reported
    answer = report_at[(report_starts[device] + k)[answered]]
    if (answer < push_at[answered]).any():
        return None
    waits = -push_at.astype(float)
    waits[answered] = answer - push_at[answered]
    counted = (reported > 0) & _IN_SCOPE[states]
    trusts = _TRUSTS[states]
    has = pushed > 0
    since_last = np.zeros(len(ids))
    since_last[has] = -push_at[(starts + pushed - 1)[has]] / 1e6
    return Journal(
        waits=waits / 1e6,
        answered=answered,
        first=k == 0,
        device=device,
        devices=len(ids),
        answers=np.where(counted, reported, 0).astype(float),
        failures=np.where(counted, reported - trusts, 0).astype(float),
        ids=ids,
        states=states,
        pushed=pushed,
        reported=reported,
        since_last=since_last,
        ages=-push_at / 1e6,
    )


def read(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
) -> Journal:
    """Read the journal; raises :class:`~certflow.InvalidInput` naming the device for a
    report before its push, more reports than pushes, an instant after ``now`` or a
    device the rollout does not know."""
    now = require_aware("now", now)
    journal = _bulk(rollout, now, pushes, reports)
    if journal is None:
        _name_fault(rollout, now, pushes, reports)
        # The bulk read refuses exactly what the loop names; this is a safeguard.
        raise InvalidInput("the pushes and reports are not a journal of this rollout")
    return journal


def _name_fault(
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
) -> None:
    """Raise :class:`~certflow.InvalidInput` naming the first device at fault."""
    for device_id in reports:
        if device_id not in pushes:
            raise InvalidInput(f"device {device_id!r} has reports but no push")
    for device_id, pushed in pushes.items():
        reported = reports.get(device_id, ())
        try:
            rollout.device_state(device_id)
        except CertflowError:
            raise InvalidInput(f"device {device_id!r} is not in this rollout") from None
        if len(reported) > len(pushed):
            raise InvalidInput(
                f"device {device_id!r} has {len(reported)} reports for {len(pushed)} pushes; "
                "each report answers one push"
            )
        for k, push in enumerate(pushed):
            push = require_aware(f"push of {device_id!r}", push)
            if push > now:
                raise InvalidInput(f"push of {device_id!r} at {push.isoformat()} is after now")
            if k < len(reported):
                report = require_aware(f"report of {device_id!r}", reported[k])
                if not push <= report <= now:
                    raise InvalidInput(
                        f"report {k + 1} of {device_id!r} at {report.isoformat()} is not "
                        f"between its push ({push.isoformat()}) and now"
                    )


def kaplan_meier(waits: Floats, answered: Bools) -> tuple[Floats, Floats]:
    """The Kaplan-Meier curve: the distinct answered waits and the survival just after
    each (answers at a wait leave before the censored at that wait)."""
    if not len(waits):
        return np.zeros(0), np.zeros(0)
    times, inverse = np.unique(waits, return_inverse=True)
    events = np.bincount(inverse, weights=answered.astype(float), minlength=len(times))
    leaving = np.bincount(inverse, minlength=len(times)).astype(float)
    at_risk = len(waits) - np.concatenate(([0.0], np.cumsum(leaving)[:-1]))
    factor = 1 - events / at_risk
    has = events > 0
    return times[has], np.cumprod(factor)[has]


# Per device state, what it means for the futures: 0 out of scope, 1 awaiting an
# answer, 2 failed (pushed again by a bulk retry), 3 in scope and not moving, 4 trusting.
_AWAITING = DEFAULT.rules.device.awaiting
# The states a bulk retry pushes again: the device rows its fleet-wide move fires.
_RETRIED = frozenset(DEFAULT.rules.fired_rows("retry_failed"))
_KIND = np.array(
    [
        0
        if not s.in_scope
        else 4
        if s.trusts
        else 1
        if s.value in _AWAITING
        else 2
        if s.value in _RETRIED
        else 3
        for s in _STATES
    ],
    dtype=np.int8,
)


def _unanswered(device_id: str) -> InvalidInput:
    return InvalidInput(
        f"device {device_id!r} awaits an answer but pushes holds no unanswered push for it"
    )


def movers(journal: Journal, rollout: Rollout) -> Movers:
    """The devices that can still move at ``now`` (awaiting an answer or failed), in
    the rollout's order, and the in-scope devices that will not."""
    kind = _KIND[journal.states]
    bad = (kind == 1) & (journal.pushed <= journal.reported)
    if bad.any():
        raise _unanswered(journal.ids[int(np.flatnonzero(bad)[0])])
    # Devices never pushed (pending, trusted from the start): looked up one by one, as
    # they are few once distribution has begun.
    unpushed = list(filterfalse(set(journal.ids).__contains__, rollout.device_ids()))
    unpushed_kind = _KIND[[_NUMBER[rollout.device_state(d)] for d in unpushed]]
    if (unpushed_kind == 1).any():
        raise _unanswered(unpushed[int(np.flatnonzero(unpushed_kind == 1)[0])])
    moving = np.flatnonzero((kind == 1) | (kind == 2))
    facts = {
        journal.ids[i]: (
            float(journal.since_last[i]) if kind[i] == 1 else 0.0,
            bool(kind[i] == 1 and journal.reported[i] == 0),
            bool(kind[i] == 2),
        )
        for i in moving.tolist()
    }
    for i in np.flatnonzero(unpushed_kind == 2).tolist():
        facts[unpushed[i]] = (0.0, False, True)
    # The rollout's order, not the mapping's: the same seed draws the same futures.
    ids = list(filter(facts.__contains__, rollout.device_ids())) if facts else []
    rows = [facts[d] for d in ids]
    return Movers(
        ids=tuple(ids),
        waited=np.asarray([r[0] for r in rows], dtype=float),
        first=np.asarray([r[1] for r in rows], dtype=bool),
        failed=np.asarray([r[2] for r in rows], dtype=bool),
        static=int((kind == 3).sum() + (unpushed_kind == 3).sum()),
        in_scope=int((kind != 0).sum() + (unpushed_kind != 0).sum()),
    )
