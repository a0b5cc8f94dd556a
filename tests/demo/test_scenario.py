"""A demo scenario refuses knobs no fleet could have."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from certflow.demo import Scenario


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"share_offline": -0.1}, "shares must lie in"),
        ({"share_churn": 1.5}, "shares must lie in"),
        ({"share_offline": 0.6, "share_flaky": 0.5}, "sum to at most 1"),
        ({"start": datetime(2026, 7, 1, 9, 0)}, "timezone-aware"),
        ({"step": timedelta(0)}, "step must be positive"),
    ],
)
def test_a_scenario_no_fleet_could_have_is_refused(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario(**knobs)  # type: ignore[arg-type]


def test_the_default_scenario_is_the_one_make_demo_runs() -> None:
    scenario = Scenario()
    assert scenario.start.isoformat() == "2026-07-01T09:00:00+00:00"
    assert scenario.step == timedelta(hours=1)
