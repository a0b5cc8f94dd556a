"""The Monte Carlo runner: seed order whatever the workers, the table is the runs'."""

from __future__ import annotations

import json

import pytest

from certflow import InvalidInput
from certflow.sim.fleet import simulate
from certflow.sim.models import AdminPolicy, DeviceModel, Setup
from certflow.sim.sweep import SweepTable, sweep

SETUP = Setup(
    devices=200, model=DeviceModel(failure_probability=0.1), admin=AdminPolicy(retry_every=3)
)


@pytest.fixture(scope="module")
def table() -> SweepTable:
    return sweep(SETUP, 20, seed=100, workers=2, progress=False)


def test_rows_are_the_runs_in_seed_order_whatever_the_workers(table: SweepTable) -> None:
    assert [row.seed for row in table.rows] == list(range(100, 120))
    alone = sweep(SETUP, 20, seed=100, workers=1, progress=False)
    assert alone.rows == table.rows
    assert table.rows[3] == simulate(SETUP, 103).outcome


def test_the_summary_is_the_rows(table: SweepTable) -> None:
    summary = table.summary()
    assert summary["runs"] == len(table) == 20
    assert sum(table.import_day_shares().values()) == pytest.approx(1.0)
    forced = sum(1 for row in table.rows if row.forced)
    assert summary["forced_share"] == forced / 20
    reenrol = sorted(table.reenrollments)
    assert summary["reenrollment_p5"] >= reenrol[0]
    assert summary["reenrollment_p95"] <= reenrol[-1]
    assert summary["reenrollment_mean"] == sum(reenrol) / 20
    assert json.loads(json.dumps(table.as_dict()))["rows"][0]["seed"] == 100
    assert "20 runs of 200 devices" in str(table)
    html = table._repr_html_()
    assert html.count("<tr>") == 11
    assert "10 more runs" in html


def test_progress_is_reported_and_no_bar_when_asked_for_none(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[int] = []
    sweep(SETUP, 5, workers=1, progress=False, on_progress=seen.append)
    assert seen[-1] == 5
    assert seen == sorted(seen)
    assert capsys.readouterr().err == ""


def test_a_bar_shows_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    sweep(Setup(devices=50), 3, workers=1, progress=True)
    assert "3/3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"runs": 0}, "runs"),
        ({"runs": 2, "seed": 1.5}, "seed"),
        ({"runs": 2, "workers": 0}, "workers"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        sweep(SETUP, **kwargs)  # type: ignore[arg-type]
