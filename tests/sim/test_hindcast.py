"""The hindcast: the forecast's tail, fitted on the data a day before ``now``, asked how
many of the first pushes then waiting answer within the day, against the answers that
came. A tail of the right form foresees the day; one that a changed behaviour outruns
(answers that stop) does not, and the forecast then says it is unreliable."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

import certflow as cf
from certflow.sim._hindcast import LEAST, SPAN, hindcast
from certflow.sim.forecast import forecast
from tests.core.strategies import DAY, HOUR, T0, build

DEVICES = 2_000
NOW = T0 + 6 * DAY + HOUR


def _history(
    now: timedelta, *, quiet_last_day: bool, devices: int = DEVICES, seed: int = 7
) -> tuple[cf.Rollout, dict[str, list[datetime]], dict[str, list[datetime]]]:
    """``devices`` pushed at T0, answering after exponential waits (mean 3 days: a
    constant hazard, the tail's own form); with ``quiet_last_day`` no answer comes in
    the last day before ``T0 + now`` (the devices went quiet)."""
    rng = np.random.default_rng(seed)
    waits = rng.exponential(3 * 86400, devices)
    ids = [f"d{i}" for i in range(devices)]
    rollout = cf.apply(build(ids, at=T0 - DAY), cf.DistributeRoot(), T0).rollout
    end = T0 + now
    cut = end - SPAN if quiet_last_day else end
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


def test_a_tail_of_the_right_form_foresees_the_last_day() -> None:
    rollout, pushes, reports = _history(NOW - T0, quiet_last_day=False)
    checked = hindcast(rollout, NOW, pushes, reports, GRID)
    assert checked is not None
    assert checked.at == NOW - SPAN
    assert checked.devices > 300
    # Of those waiting a day before, a day's answers at a constant hazard of 1/3 a day:
    # about 28 %; every shape's expectation near it, and what came inside the range.
    assert 0.2 * checked.devices < checked.answered < 0.36 * checked.devices
    assert checked.low <= checked.answered <= checked.high
    assert not checked.missed


def test_answers_that_stop_on_the_last_day_are_a_miss_and_mark_the_forecast() -> None:
    rollout, pushes, reports = _history(NOW - T0, quiet_last_day=True)
    checked = hindcast(rollout, NOW, pushes, reports, GRID)
    assert checked is not None
    assert checked.answered == 0
    assert checked.missed
    assert checked.low > 0
    result = forecast(rollout, NOW, pushes, reports, runs=40, seed=3)
    assert not result.tail.reliable
    assert result.tail.caution is not None
    assert "the tail did not foresee the last day" in result.tail.caution
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


@pytest.mark.parametrize(
    ("now", "devices"),
    [(2 * DAY + HOUR, DEVICES), (6 * DAY + HOUR, LEAST - 1)],
    ids=["a day before, fewer than two days of data", "too few devices waiting"],
)
def test_no_hindcast_where_the_data_cannot_tell(now: timedelta, devices: int) -> None:
    rollout, pushes, reports = _history(now, quiet_last_day=False, devices=devices)
    assert hindcast(rollout, T0 + now, pushes, reports, GRID) is None
