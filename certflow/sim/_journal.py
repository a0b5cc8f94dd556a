"""What the host has seen so far, read once for the forecast: every push's wait.

The ``k``-th report of a device answers its ``k``-th push: an answered push is an
observed wait (report minus push), a push without a report yet is *censored* at ``now``
(the device has waited at least that long). What each answer was is read from the
rollout: every answer was a failure but the last one of a device that trusts the root
now (the declared meaning of its state); an unenrolled device, out of scope, says
nothing of its answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

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


@attrs.frozen
class Journal:
    """Every push: its wait in seconds, whether answered, whether the device's first;
    per device that answered in scope, its answers and failures."""

    waits: Floats
    answered: Bools
    first: Bools
    device: npt.NDArray[np.int64]
    devices: int
    answers: Floats
    failures: Floats
    states: dict[str, DeviceState] = attrs.field(repr=False, eq=False)

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
        per_device = np.bincount(self.device, minlength=self.devices)
        once = per_device[self.device] == 1
        single = self.device[once]
        key = (bins[once] * 2 + self.answered[once]) * 4
        key = (
            key + self.failures[single].astype(np.int64) * 2 + self.answers[single].astype(np.int64)
        )
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
    for device_id in reports:
        if device_id not in pushes:
            raise InvalidInput(f"device {device_id!r} has reports but no push")
    waits: list[float] = []
    answered: list[bool] = []
    first: list[bool] = []
    device: list[int] = []
    answers: list[float] = []
    failures: list[float] = []
    states: dict[str, DeviceState] = {}
    for index, (device_id, pushed) in enumerate(pushes.items()):
        reported = reports.get(device_id, ())
        try:
            state = rollout.device_state(device_id)
        except CertflowError:
            raise InvalidInput(f"device {device_id!r} is not in this rollout") from None
        states[device_id] = state
        if len(reported) > len(pushed):
            raise InvalidInput(
                f"device {device_id!r} has {len(reported)} reports for {len(pushed)} pushes; "
                "each report answers one push"
            )
        for k, push in enumerate(pushed):
            if type(push) is not datetime or push.utcoffset() is None:  # the cheap test first
                push = require_aware(f"push of {device_id!r}", push)
            if push > now:
                raise InvalidInput(f"push of {device_id!r} at {push.isoformat()} is after now")
            if k < len(reported):
                report = reported[k]
                if type(report) is not datetime or report.utcoffset() is None:
                    report = require_aware(f"report of {device_id!r}", report)
                if not push <= report <= now:
                    raise InvalidInput(
                        f"report {k + 1} of {device_id!r} at {report.isoformat()} is not "
                        f"between its push ({push.isoformat()}) and now"
                    )
                waits.append((report - push).total_seconds())
                answered.append(True)
            else:
                waits.append((now - push).total_seconds())
                answered.append(False)
            # Only a device that has never answered may be one that never answers.
            first.append(k == 0)
            device.append(index)
        counted = bool(reported) and state.in_scope
        answers.append(len(reported) if counted else 0)
        failures.append(len(reported) - state.trusts if counted else 0)
    return Journal(
        waits=np.asarray(waits, dtype=float),
        answered=np.asarray(answered, dtype=bool),
        first=np.asarray(first, dtype=bool),
        device=np.asarray(device, dtype=np.int64),
        devices=len(pushes),
        answers=np.asarray(answers, dtype=float),
        failures=np.asarray(failures, dtype=float),
        states=states,
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


def movers(
    journal: Journal,
    rollout: Rollout,
    now: datetime,
    pushes: Mapping[str, Sequence[datetime]],
    reports: Mapping[str, Sequence[datetime]],
) -> Movers:
    """The devices that can still move at ``now`` (awaiting an answer or failed),
    and the in-scope devices that will not."""
    awaiting = DEFAULT.rules.device.awaiting
    ids: list[str] = []
    waited: list[float] = []
    first: list[bool] = []
    failed: list[bool] = []
    static = in_scope = 0
    known = journal.states
    for device_id in rollout.device_ids():
        state = known.get(device_id) or rollout.device_state(device_id)
        if not state.in_scope:
            continue
        in_scope += 1
        if state.trusts:
            continue
        if state.value in awaiting:
            pushed = pushes.get(device_id, ())
            answered = len(reports.get(device_id, ()))
            if len(pushed) <= answered:
                raise InvalidInput(
                    f"device {device_id!r} awaits an answer but pushes holds no "
                    "unanswered push for it"
                )
            ids.append(device_id)
            waited.append((now - pushed[-1]).total_seconds())
            first.append(answered == 0)
            failed.append(False)
        elif state is DeviceState.FAILED:
            ids.append(device_id)
            waited.append(0.0)
            first.append(False)
            failed.append(True)
        else:
            static += 1
    return Movers(
        ids=tuple(ids),
        waited=np.asarray(waited, dtype=float),
        first=np.asarray(first, dtype=bool),
        failed=np.asarray(failed, dtype=bool),
        static=static,
        in_scope=in_scope,
    )
