"""The hindcast: the forecast's tail, fitted on the data as they stood half their reach
before ``now``, asked how many of the first pushes then waiting answer since, against
the answers that came. A tail of the right form foresees those days; one that a changed
behaviour outruns (answers that stop) does not, and the forecast then says it is
unreliable."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

import certflow as cf
from certflow.sim import _journal
from certflow.sim._hindcast import EARLIEST, LEAST, PRIOR, Hindcast, hindcast
from certflow.sim.fleet import simulate
from certflow.sim.forecast import forecast
from certflow.sim.models import AdminPolicy, DeviceModel, Setup
from tests.core.strategies import DAY, HOUR, T0, build

DEVICES = 2_000
NOW = T0 + 6 * DAY + HOUR


def _history(
    now: timedelta,
    *,
    quiet_last_day: bool,
    devices: int = DEVICES,
    seed: int = 7,
    heavy: bool = False,
) -> tuple[cf.Rollout, dict[str, list[datetime]], dict[str, list[datetime]]]:
    """``devices`` pushed at T0, answering after exponential waits (mean 3 days: a
    constant hazard, a Weibull of shape 1), or ``heavy`` ones (Lomax, shape 1.1, scale
    12 h); with ``quiet_last_day`` no answer comes in the last day before ``T0 + now``
    (the devices went quiet)."""
    rng = np.random.default_rng(seed)
    if heavy:
        waits = 12 * 3600 * (np.power(1 - rng.random(devices), -1 / 1.1) - 1)
    else:
        waits = rng.exponential(3 * 86400, devices)
    ids = [f"d{i}" for i in range(devices)]
    rollout = cf.apply(build(ids, at=T0 - DAY), cf.DistributeRoot(), T0).rollout
    end = T0 + now
    cut = end - DAY if quiet_last_day else end
    answers = sorted(
        (T0 + timedelta(seconds=float(w)), device)
        for device, w in zip(ids, waits, strict=True)
        if T0 + timedelta(seconds=float(w)) <= cut
    )
    by_hour: dict[datetime, list[cf.Command]] = {}
    for at, device in answers:
        hour = at.replace(minute=0, second=0, microsecond=0) + HOUR
        by_hour.setdefault(hour, []).append(cf.DeviceInstalled(device))
    for hour, commands in sorted(by_hour.items()):
        rollout = cf.apply_all(rollout, commands, hour).rollout
    pushes: dict[str, list[datetime]] = {device: [T0] for device in ids}
    reports: dict[str, list[datetime]] = {}
    for at, device in answers:
        hour = at.replace(minute=0, second=0, microsecond=0) + HOUR
        reports[device] = [hour]
    return rollout, pushes, reports


GRID = 24 * 30


def _hindcast(
    rollout: cf.Rollout,
    now: datetime,
    pushes: dict[str, list[datetime]],
    reports: dict[str, list[datetime]],
) -> Hindcast | None:
    """The hindcast of the journal read at ``now``, as the forecast makes it."""
    return hindcast(_journal.read(rollout, now, pushes, reports), T0, now, GRID)


def test_a_tail_of_the_right_form_foresees_the_days_since() -> None:
    rollout, pushes, reports = _history(NOW - T0, quiet_last_day=False)
    checked = _hindcast(rollout, NOW, pushes, reports)
    assert checked is not None
    # Half the data's reach back, but not before day 4 (where a fit is first trusted).
    assert checked.at == T0 + EARLIEST
    assert checked.devices > 500
    # Of those waiting then, the answers of the 2 days and an hour since at a constant
    # hazard of 1/3 a day: about 1 - e^-0.68, 49 %; what came inside the range allowed.
    share = 1 - math.exp(-((NOW - checked.at) / DAY) / 3)
    assert abs(checked.answered / checked.devices - share) < 0.06
    assert checked.low <= checked.answered <= checked.high
    assert not checked.missed


def test_answers_that_stop_on_the_last_day_are_a_miss_and_mark_the_forecast() -> None:
    rollout, pushes, reports = _history(NOW - T0, quiet_last_day=True)
    checked = _hindcast(rollout, NOW, pushes, reports)
    assert checked is not None
    # The answers of the first day and an hour only (about 29 %), where the tail foresaw
    # those of the whole span (about 49 %).
    share = 1 - math.exp(-((NOW - DAY - checked.at) / DAY) / 3)
    assert abs(checked.answered / checked.devices - share) < 0.06
    assert checked.missed
    assert checked.answered < checked.low
    result = forecast(rollout, NOW, pushes, reports, runs=40, seed=3)
    assert not result.tail.reliable
    assert result.tail.caution is not None
    assert "the tail did not foresee the days since" in result.tail.caution
    assert result.tail.hindcast is not None
    assert result.tail.hindcast["missed"] is True
    assert result.as_dict()["reliable"] is False


def test_the_forecast_carries_a_hindcast_that_passed() -> None:
    rollout, pushes, reports = _history(NOW - T0, quiet_last_day=False)
    result = forecast(rollout, NOW, pushes, reports, runs=40, seed=3)
    assert result.tail.hindcast is not None
    assert result.tail.hindcast["missed"] is False
    assert result.tail.hindcast["answered"] > 0
    assert "did not foresee" not in (result.tail.caution or "")


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_the_forms_are_weighed_by_how_well_each_foresaw_the_days_since(seed: int) -> None:
    # Waits of a constant hazard: the Weibull of shape 1 foresaw them best and weighs
    # most. Lomax waits, on day 10: the Lomax forms foresaw them, and weigh most. Half
    # of every weight is given equally, so no form is ever ruled out.
    def weights(now: datetime, heavy: bool) -> dict[str, float]:
        rollout, pushes, reports = _history(now - T0, quiet_last_day=False, seed=seed, heavy=heavy)
        checked = _hindcast(rollout, now, pushes, reports)
        assert checked is not None
        assert sum(checked.weights.values()) == pytest.approx(1)
        assert min(checked.weights.values()) >= PRIOR / len(checked.weights) - 1e-12
        assert checked.as_dict()["weights"] == checked.weights
        return checked.weights

    constant = weights(NOW, heavy=False)
    assert max(constant, key=constant.__getitem__) == "1"
    heavy = weights(NOW + 4 * DAY, heavy=True)
    lomax = heavy["lomax 24h"] + heavy["lomax 2h"]
    assert lomax > 0.5
    assert min(heavy["lomax 24h"], heavy["lomax 2h"]) > max(heavy["1"], heavy["2"])


@pytest.mark.parametrize(
    ("now", "devices"),
    [(4 * DAY + 23 * HOUR, DEVICES), (6 * DAY + HOUR, LEAST - 1)],
    ids=["less than a day after the earliest hindcast", "too few devices waiting"],
)
def test_no_hindcast_where_the_data_cannot_tell(now: timedelta, devices: int) -> None:
    rollout, pushes, reports = _history(now, quiet_last_day=False, devices=devices)
    assert _hindcast(rollout, T0 + now, pushes, reports) is None


def test_the_journal_before_a_span_is_the_journal_read_then() -> None:
    """``Journal.before`` (numpy on the journal read now) gives every push made by the
    earlier instant the wait and the answer that reading the journal then gives."""
    setup = Setup(
        devices=300,
        model=DeviceModel(online_chance=0.4, failure_probability=0.3, never_answer=0.05),
        admin=AdminPolicy(retry_every=2),
    )
    snap = simulate(setup, 5, snapshot_at=6 * DAY + HOUR).snapshot
    assert snap is not None
    now_journal = _journal.read(snap.rollout, snap.now, snap.pushes, snap.reports)
    for span in (DAY, 2 * DAY + 7 * HOUR):
        then = snap.now - span
        pushes = {d: [p for p in ps if p <= then] for d, ps in snap.pushes.items()}
        pushes = {d: ps for d, ps in pushes.items() if ps}
        reports = {d: [r for r in snap.reports.get(d, ()) if r <= then] for d in pushes}
        reports = {d: rs for d, rs in reports.items() if rs}
        read_then = _journal.read(snap.rollout, then, pushes, reports)
        derived = now_journal.before(span.total_seconds())

        def pushes_of(journal: _journal.Journal) -> list[tuple[str, float, bool, bool]]:
            return sorted(
                (journal.ids[d], round(float(w), 3), bool(a), bool(f))
                for d, w, a, f in zip(
                    journal.device, journal.waits, journal.answered, journal.first, strict=True
                )
            )

        assert pushes_of(derived) == pushes_of(read_then)
        assert len(pushes_of(derived)) > 300  # the retries are in it
        assert 0 < int(derived.answered.sum()) < int(now_journal.answered.sum())
