"""The forecast: a Kaplan-Meier fit that honours censoring, futures through the real
evaluator, and intervals that cover simulated truths as often as they say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certflow import (
    CertificateKind,
    Command,
    DeviceFailed,
    DeviceInstalled,
    DistributeRoot,
    ExtendManually,
    InvalidInput,
    Policy,
    Retry,
    Rollout,
    apply,
    apply_all,
    new_rollout,
    preview,
)
from certflow.core import timeline
from certflow.sim import _cure
from certflow.sim.fleet import simulate
from certflow.sim.forecast import _by_weight, fit, forecast
from certflow.sim.models import AdminPolicy, DeviceModel, Setup

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def _rollout(ids: list[str], new_not_after: datetime = T0 + 300 * DAY, **options: Any) -> Rollout:
    rollout = new_rollout(
        ids,
        existing_not_after=T0 + 40 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=new_not_after,
        root_publicly_trusted=False,
        created_at=T0,
        **options,
    )
    return apply(rollout, DistributeRoot(), T0).rollout


def _five() -> tuple[Rollout, datetime, dict[str, list[datetime]], dict[str, list[datetime]]]:
    """Waits: 1 h, 2 h (a failure), 3 h answered; 4 h and 1.5 h still waiting at now."""
    ids = ["d1", "d2", "d3", "d4"]
    rollout = _rollout(ids)
    now = T0 + 4 * HOUR
    rollout = apply(rollout, DeviceInstalled("d1"), T0 + HOUR).rollout
    rollout = apply(rollout, DeviceFailed("d2", "user declined profile"), T0 + 2 * HOUR).rollout
    # d2 is retried at now - 1.5 h and has not answered since.
    rollout = apply(rollout, Retry("d2"), now - 1.5 * HOUR).rollout
    rollout = apply(rollout, DeviceInstalled("d4"), T0 + 3 * HOUR).rollout
    pushes = {d: [T0] for d in ids}
    pushes["d2"].append(now - 1.5 * HOUR)
    reports = {"d1": [T0 + HOUR], "d2": [T0 + 2 * HOUR], "d4": [T0 + 3 * HOUR]}
    return rollout, now, pushes, reports


def test_kaplan_meier_counts_the_censored_as_at_risk_until_they_leave() -> None:
    rollout, now, pushes, reports = _five()
    curve = fit(rollout, now, pushes, reports)
    # Sorted: 1 h answered (5 at risk), 1.5 h censored, 2 h answered (3 at risk),
    # 3 h answered (2 at risk), 4 h censored. Ignoring censoring would give 0.
    assert curve.times == (3600.0, 7200.0, 10800.0)
    assert curve.survival == pytest.approx((4 / 5, 4 / 5 * 2 / 3, 4 / 5 * 2 / 3 * 1 / 2))
    assert (curve.answered, curve.censored) == (3, 2)
    assert curve.failure_probability == pytest.approx(1 / 3)  # d2's answer, of three
    assert curve.at(0) == 1.0
    assert curve.at(7199) == pytest.approx(0.8)
    assert curve.at(7200) == pytest.approx(8 / 15)
    assert curve.median() == 10800.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, r: r.update(d1=[T0 - HOUR]), "report 1 of 'd1'"),
        (lambda p, r: r.update(d1=[T0 + HOUR, T0 + 2 * HOUR]), "'d1' has 2 reports for 1 pushes"),
        (lambda p, r: p.update(ghost=[T0]), "device 'ghost' is not in this rollout"),
        (lambda p, r: r.update(lost=[T0]), "device 'lost' has reports but no push"),
        (lambda p, r: p.update(d3=[datetime(2026, 7, 1, 9)]), "push of 'd3' is a naive datetime"),
        (lambda p, r: p.update(d3=[T0 + DAY]), "push of 'd3' at .* is after now"),
    ],
)
def test_inconsistent_journals_are_refused_naming_the_device(change: Any, message: str) -> None:
    rollout, now, pushes, reports = _five()
    change(pushes, reports)
    with pytest.raises(InvalidInput, match=message):
        fit(rollout, now, pushes, reports)


def test_refusals_of_the_forecast() -> None:
    rollout, now, pushes, reports = _five()
    with pytest.raises(InvalidInput, match="runs"):
        forecast(rollout, now, pushes, reports, runs=0)
    with pytest.raises(InvalidInput, match="level"):
        forecast(rollout, now, pushes, reports, level=1.0)
    with pytest.raises(
        InvalidInput, match="'d3' awaits an answer but pushes holds no unanswered push"
    ):
        forecast(rollout, now, {d: p for d, p in pushes.items() if d != "d3"}, reports)
    pending = new_rollout(
        ["a"],
        existing_not_after=T0 + 40 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
    )
    with pytest.raises(InvalidInput, match=r"only a distributing rollout .* pending"):
        forecast(pending, T0, {}, {})


def test_a_complete_fleet_imports_at_the_next_checkpoint_for_sure() -> None:
    ids = [f"d{i}" for i in range(20)]
    rollout = _rollout(ids)
    rollout = apply_all(rollout, [DeviceInstalled(d) for d in ids], T0 + HOUR).rollout
    now = T0 + 2 * DAY
    result = forecast(rollout, now, {d: [T0] for d in ids}, {d: [T0 + HOUR] for d in ids}, runs=5)
    first = result.as_is.checkpoints[0]
    assert (first.number, first.at, first.probability) == (1, T0 + 7 * DAY, 1.0)
    assert result.as_is.forced_probability == 0.0
    assert (result.as_is.cutoff_mean, result.as_is.cutoff_low, result.as_is.cutoff_high) == (
        0,
        0,
        0,
    )
    # Manual extension opens on day 6: the extended branch extends then, moving every
    # checkpoint a week.
    assert result.extended is not None
    assert [c.at for c in result.extended.checkpoints] == [T0 + d * DAY for d in (14, 21, 28)]
    assert result.extended.checkpoints[0].probability == 1.0


def test_a_fleet_that_stopped_answering_is_forced_at_the_deadline() -> None:
    ids = [f"d{i}" for i in range(10)]
    rollout = _rollout(ids)
    rollout = apply_all(rollout, [DeviceInstalled(d) for d in ids[:6]], T0 + HOUR).rollout
    now = T0 + 6 * DAY + HOUR
    pushes = {d: [T0] for d in ids}
    reports = {d: [T0 + HOUR] for d in ids[:6]}
    result = forecast(rollout, now, pushes, reports, runs=10)
    # Six answered within the hour; the four have waited six days since: the tail
    # fitted after the data holds them for devices that never answer.
    assert [c.probability for c in result.as_is.checkpoints] == [0.0, 0.0, 1.0]
    assert result.as_is.checkpoints[-1].final
    assert (result.as_is.cutoff_low, result.as_is.cutoff_high) == (4, 4)
    assert result.extended is not None  # open now: extended at once
    assert result.extended.checkpoints[-1].at == T0 + 28 * DAY
    text = str(result)
    assert "checkpoint 3 (deadline) 2026-07-22 09:00 UTC: import 100%" in text
    assert "devices cut off: 4.0 expected, 4-4" in text
    document = json.loads(json.dumps(result.as_dict()))
    assert document["as_is"]["cutoff_high"] == 4
    assert document["extended"]["checkpoints"][0]["at"] == (T0 + 14 * DAY).isoformat()
    assert result._repr_html_().startswith("<pre>forecast at ")


def test_no_extended_branch_when_the_certificate_would_expire_first() -> None:
    ids = ["a", "b"]
    rollout = _rollout(ids, new_not_after=T0 + 25 * DAY)
    now = T0 + 6 * DAY + HOUR
    result = forecast(rollout, now, {d: [T0] for d in ids}, {}, runs=3)
    assert result.extended is None


# Coverage. A fleet whose behaviour is known runs to its import; at day 6 + 1 h its
# snapshot (the rollout and every push and report so far) is forecast, and the truth is
# the number the real run cut off. Devices are online on 85 % of days (the tail beyond
# the waits seen is tested in test_forecast_tail.py, and calibrated by tools/calibrate.py).
# 30 fleets at level 0.8: if the intervals had exactly 80 % coverage, the number
# covered would be Binomial(30, 0.8), mean 24, sd 2.2; requiring >= 19 (more than two sd
# below the mean) fails a calibrated forecast with probability about 1 %, and fails
# one whose intervals cover only 60 % of truths with probability about 70 %. The runs
# are seeded, so the outcome is fixed; the figures say how much it would take to fail.
COVERAGE_SETUP = Setup(
    devices=200,
    model=DeviceModel(online_chance=0.85, failure_probability=0.4, never_answer=0.01, churn=0.0),
    admin=AdminPolicy(retry_every=4),
)


def test_the_intervals_cover_simulated_truths_in_the_stated_share_of_runs() -> None:
    covered = 0
    widths = []
    for k in range(30):
        run = simulate(COVERAGE_SETUP, 1000 + k, snapshot_at=6 * DAY + HOUR)
        snap = run.snapshot
        assert snap is not None
        result = forecast(
            snap.rollout,
            snap.now,
            snap.pushes,
            snap.reports,
            admin=COVERAGE_SETUP.admin,
            runs=50,
            level=0.8,
            seed=k,
        )
        truth = run.outcome.reenrollment_required if run.outcome.forced else 0
        covered += result.as_is.cutoff_low <= truth <= result.as_is.cutoff_high
        widths.append(result.as_is.cutoff_high - result.as_is.cutoff_low)
    assert covered >= 19
    # Not covering by being vague: the intervals are a few devices wide.
    assert 0 < sum(widths) / len(widths) < 6


def test_before_day_6_the_extended_branch_extends_when_it_opens_if_it_will_be_allowed() -> None:
    ids = ["a", "b"]
    now = T0 + 2 * DAY
    pushes = {d: [T0] for d in ids}
    reports = {"a": [T0 + HOUR]}
    rollout = apply(_rollout(ids), DeviceInstalled("a"), T0 + HOUR).rollout
    later = forecast(rollout, now, pushes, reports, runs=3)
    assert later.extended is not None
    assert [c.at for c in later.extended.checkpoints] == [T0 + d * DAY for d in (14, 21, 28)]
    assert later.extended.checkpoints[-1].probability == 1.0  # b never answers
    short = apply(_rollout(ids, T0 + 25 * DAY), DeviceInstalled("a"), T0 + HOUR).rollout
    assert forecast(short, now, pushes, reports, runs=3).extended is None


def test_an_extension_after_a_checkpoint_moves_only_the_checkpoints_still_ahead() -> None:
    # Extension opens on day 8: the day-7 checkpoint is evaluated before the extension
    # and stays; the extension (at the day-8 review) moves checkpoints 2 and 3, where
    # the engine's own extended timeline puts them, and every future imports there.
    ids = ["a", "b"]
    rollout = _rollout(ids, policy=Policy(manual_extension_opens=8 * DAY))
    rollout = apply(rollout, DeviceInstalled("a"), T0 + HOUR).rollout
    now = T0 + 2 * DAY
    result = forecast(rollout, now, {d: [T0] for d in ids}, {"a": [T0 + HOUR]}, runs=3)
    assert result.extended is not None
    review = T0 + 8 * DAY + AdminPolicy().review_at
    extended = preview(rollout, ExtendManually(), review).rollout
    assert extended is not None
    assert [c.at for c in result.extended.checkpoints] == [
        T0 + 7 * DAY,
        timeline.checkpoint_at(extended.plan, extended.phase, 1),
        timeline.checkpoint_at(extended.plan, extended.phase, 2),
    ]
    assert [c.at for c in result.extended.checkpoints] == [T0 + d * DAY for d in (7, 21, 28)]
    assert result.extended.checkpoints[-1].probability == 1.0  # b never answers
    assert result.extended.other == 0.0


def test_the_administrators_bulk_retries_are_the_engines_to_take() -> None:
    # An agent server's root push may not be retried (the kind's guard): its retry days
    # come and go and the failed devices stay failed; an MDM server's are retried.
    ids = [f"d{i}" for i in range(6)]

    def cut_off(kind: CertificateKind) -> tuple[int, int]:
        rollout = _rollout(ids, kind=kind)
        answers: list[Command] = [DeviceFailed(d, "user declined profile") for d in ids[:3]]
        answers += [DeviceInstalled(d) for d in ids[3:]]
        rollout = apply_all(rollout, answers, T0 + HOUR).rollout
        pushes = {d: [T0] for d in ids}
        reports = {d: [T0 + HOUR] for d in ids}
        admin = AdminPolicy(retry_every=1)
        result = forecast(rollout, T0 + 2 * DAY, pushes, reports, admin=admin, runs=5)
        return result.as_is.cutoff_low, result.as_is.cutoff_high

    assert cut_off(CertificateKind.AGENT_SERVER) == (3, 3)
    assert cut_off(CertificateKind.MDM_SERVER)[1] < 3


def test_the_futures_take_the_forms_in_the_hindcasts_shares() -> None:
    # Ten replicates of five forms (replicate i has form i % 5); 200 futures.
    curves: list[_cure.Curve] = [object() for _ in range(10)]  # type: ignore[misc]
    keys = [f.key for f in _cure.FORMS]
    weights = dict(zip(keys, [0.1, 0.2, 0.3, 0.2, 0.2], strict=True))
    chosen = _by_weight(curves, 5, 200, weights)
    forms = [curves.index(c) % 5 for c in chosen]
    assert [forms.count(k) for k in range(5)] == [20, 40, 60, 40, 40]
    # Each form's replicates in turn.
    third = [curves.index(c) for c in chosen if curves.index(c) % 5 == 2]
    assert third[:4] == [2, 7, 2, 7]
    # Without a hindcast: every replicate in turn.
    assert _by_weight(curves, 5, 20, None) == curves + curves
