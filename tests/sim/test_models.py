"""The simulation's knobs check their fields and name the one that is wrong."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from certflow import InvalidInput
from certflow.sim.models import AdminPolicy, DeviceModel, Setup

# Values of the wrong type, as untyped callers (notebooks, JSON) pass them.
WRONG: Any = "fast"
HALF: Any = 2.5


def test_the_defaults_are_valid_and_passive() -> None:
    setup = Setup()
    assert setup.devices == 10_000
    assert setup.admin == AdminPolicy()
    assert (setup.admin.retry_every, setup.admin.extend_on_day, setup.admin.import_now_at) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: DeviceModel(online_chance=0), "DeviceModel.online_chance"),
        (lambda: DeviceModel(online_chance=1.5), "DeviceModel.online_chance"),
        (lambda: DeviceModel(failure_probability=-0.1), "DeviceModel.failure_probability"),
        (lambda: DeviceModel(never_answer=True), "DeviceModel.never_answer"),
        (lambda: DeviceModel(churn=2), "DeviceModel.churn"),
        (lambda: DeviceModel(install_median=timedelta(0)), "DeviceModel.install_median"),
        (lambda: DeviceModel(install_sigma=-1), "DeviceModel.install_sigma"),
        (lambda: AdminPolicy(retry_every=0), "AdminPolicy.retry_every"),
        (lambda: AdminPolicy(extend_on_day=HALF), "AdminPolicy.extend_on_day"),
        (lambda: AdminPolicy(retry_from=0), "AdminPolicy.retry_from"),
        (lambda: AdminPolicy(import_now_at=101), "AdminPolicy.import_now_at"),
        (lambda: AdminPolicy(extend_below=-1), "AdminPolicy.extend_below"),
        (lambda: AdminPolicy(review_at=timedelta(days=1)), "AdminPolicy.review_at"),
        (lambda: Setup(devices=0), "Setup.devices"),
        (lambda: Setup(model=WRONG), "Setup.model"),
        (lambda: Setup(start=datetime(2026, 7, 1)), "Setup.start"),
        (lambda: Setup(step=timedelta(hours=5)), "Setup.step"),
        (
            lambda: Setup(step=timedelta(hours=2), admin=AdminPolicy(review_at=timedelta(hours=1))),
            "Setup.step",
        ),
        (lambda: Setup(existing_expires_after=WRONG), "Setup.existing_expires_after"),
    ],
)
def test_bad_input_is_refused_naming_the_field(build: Any, named: str) -> None:
    with pytest.raises(InvalidInput, match=named.replace(".", r"\.")):
        build()
