"""The forecast where the old fit degenerated: rollouts without retries, whose silent
devices have all waited longer than any answer seen. The tail is modelled, the fit's
own uncertainty reaches the intervals, the output says where the data end, and the
engine, not the draws, decides every outcome."""

from __future__ import annotations

import importlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from certflow import (
    Command,
    DeviceFailed,
    DeviceInstalled,
    DeviceState,
    DistributeRoot,
    InvalidInput,
    apply,
    apply_all,
    new_rollout,
)
from certflow.sim import _cure, _journal
from certflow.sim.fleet import simulate
from certflow.sim.forecast import forecast
from certflow.sim.models import AdminPolicy, DeviceModel, Setup
from tests.sim.observations import first_pushes

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# The module, not the function certflow.sim re-exports under the same name.
forecast_module = importlib.import_module("certflow.sim.forecast")

# Online on 15 % of days, no retries: at day 6 about 40 % still wait, all pushed at t0,
# each having waited longer than any answer seen; about 9 % of those still wait on day
# 21, and most of the rest answer between day 21 and day 28.
SLOW = Setup(
    devices=300,
    model=DeviceModel(online_chance=0.15, failure_probability=0.0, never_answer=0.02, churn=0.0),
)


def _day_6(setup: Setup, seed: int) -> Any:
    run = simulate(setup, seed, snapshot_at=6 * DAY + HOUR)
    assert run.snapshot is not None
    return run


def test_without_retries_the_silent_are_censored_not_never() -> None:
    run = _day_6(SLOW, 51)
    snap = run.snapshot
    result = forecast(snap.rollout, snap.now, snap.pushes, snap.reports, runs=100, seed=1)
    # Every waiting device was pushed at t0 and waited past every answer: all rest on
    # the tail, and the output says so.
    assert result.tail.waiting > 50
    assert result.tail.beyond == result.tail.waiting
    assert result.tail.answer_low is not None
    assert result.tail.answer_high is not None
    assert 0 < result.tail.answer_low <= result.tail.answer_high
    assert result.tail.horizon_days < 6.05
    # The futures still differ: some waiting devices answer in some of them.
    assert result.as_is.cutoff_high - result.as_is.cutoff_low > 0
    # And devices that keep answering make the extension matter.
    assert result.extended is not None
    assert result.extended.cutoff_mean < result.as_is.cutoff_mean
    assert result.advice.extend
    assert result.advice.saved_mean == pytest.approx(
        result.as_is.cutoff_mean - result.extended.cutoff_mean
    )
    assert result.advice.saved_high > 0 <= result.advice.saved_low
    document = json.loads(json.dumps(result.as_dict()))
    assert document["tail"]["beyond"] == result.tail.beyond
    assert document["recommendation"]["extend"] is True
    text = str(result)
    assert f"{result.tail.beyond:,} of them longer than that" in text
    assert "recommendation: extend: it spares" in text
    assert run.outcome.reenrollment_required <= result.as_is.cutoff_high


def test_the_fits_uncertainty_reaches_the_intervals() -> None:
    # The same fleet, small: the bootstrap's replicates disagree on the share that never
    # answers, and the futures drawn from them spread accordingly.
    small = Setup(devices=60, model=SLOW.model)
    snap = _day_6(small, 3).snapshot
    result = forecast(snap.rollout, snap.now, snap.pushes, snap.reports, runs=80, seed=0)
    assert result.tail.never_low < result.tail.never_high
    assert result.tail.replicates == 40


def test_the_pattern_shortcut_is_what_replaying_every_future_through_the_engine_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Failures, bulk retries and an extension: the first future of each pattern is
    # replayed through the evaluator, the others counted. Replaying every future must
    # give the same outcomes, future by future.
    setup = Setup(
        devices=150,
        model=DeviceModel(online_chance=0.4, failure_probability=0.3, never_answer=0.02, churn=0.0),
        admin=AdminPolicy(retry_every=3),
    )
    snap = _day_6(setup, 8).snapshot
    args = (snap.rollout, snap.now, snap.pushes, snap.reports)
    quick = forecast(*args, admin=setup.admin, runs=40, seed=2)
    replays = 0
    original = forecast_module._futures.replay

    def counted(*a: Any, **k: Any) -> Any:
        nonlocal replays
        replays += 1
        return original(*a, **k)

    monkeypatch.setattr(forecast_module._futures, "replay", counted)
    monkeypatch.setattr(forecast_module, "_checked", lambda *a, **k: None)
    slow = forecast(*args, admin=setup.admin, runs=40, seed=2)
    assert replays == 80  # every future of both branches went through the engine
    assert quick.extended is not None
    assert slow.extended is not None
    for fast, full in ((quick.as_is, slow.as_is), (quick.extended, slow.extended)):
        assert fast.cutoffs == full.cutoffs
        assert fast.import_days == full.import_days
    assert len(set(quick.as_is.cutoffs)) > 1


def _failed_fleet(
    **options: Any,
) -> tuple[Any, datetime, dict[str, list[datetime]], dict[str, list[datetime]]]:
    ids = [f"d{i}" for i in range(8)]
    rollout = new_rollout(
        ids,
        existing_not_after=T0 + 40 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=options.pop("new_not_after", T0 + 300 * DAY),
        root_publicly_trusted=False,
        created_at=T0,
    )
    rollout = apply(rollout, DistributeRoot(), T0).rollout
    answers: list[Command] = [DeviceInstalled(d) for d in ids[:5]]
    answers += [DeviceFailed(d, "user declined profile") for d in ids[5:]]
    rollout = apply_all(rollout, answers, T0 + 2 * HOUR).rollout
    pushes = {d: [T0] for d in ids}
    reports = {d: [T0 + 2 * HOUR] for d in ids}
    return rollout, T0 + 6 * DAY + HOUR, pushes, reports


def test_an_extension_that_changes_nothing_says_why() -> None:
    rollout, now, pushes, reports = _failed_fleet()
    result = forecast(rollout, now, pushes, reports, runs=20)
    assert result.extended is not None
    assert result.as_is.cutoffs == result.extended.cutoffs == (3,) * 20
    assert not result.advice.extend
    assert "no device left that could still answer" in result.advice.reason
    assert "3 of them failed with no bulk retry to come" in result.advice.reason
    # With bulk retries the failed devices answer again, before the deadline as it is:
    # still nothing to spare, for another reason.
    retried = forecast(rollout, now, pushes, reports, admin=AdminPolicy(retry_every=1), runs=20)
    assert retried.as_is.cutoff_mean < 3
    assert "no device left" not in retried.advice.reason


def test_a_refused_extension_names_the_certificates_validity() -> None:
    rollout, now, pushes, reports = _failed_fleet(new_not_after=T0 + 25 * DAY)
    result = forecast(rollout, now, pushes, reports, runs=5)
    assert result.extended is None
    assert not result.advice.extend
    assert result.advice.reason.startswith("no manual extension can be made: ")
    validity = [t for t in result.constraints if "new certificate's validity" in t]
    assert validity
    assert validity[0].endswith("past it, so the engine refuses it")
    assert any("existing certificate's expiry" in t for t in result.constraints)
    assert "constraint: an extension cannot pass the new certificate's validity" in str(result)


def test_the_journal_is_read_in_bulk_as_the_rule_says_push_by_push() -> None:
    # The bulk read against the rule written out device by device: the k-th report
    # answers the k-th push, an unanswered push waits until now; failures are the
    # answers of an in-scope device but the last one of a device that trusts the root.
    setup = Setup(
        devices=150,
        model=DeviceModel(
            online_chance=0.4, failure_probability=0.3, never_answer=0.02, churn=0.01
        ),
        admin=AdminPolicy(retry_every=3),
    )
    snap = _day_6(setup, 8).snapshot
    journal = _journal.read(snap.rollout, snap.now, snap.pushes, snap.reports)
    waits, answered, first, failures = [], [], [], []
    for device_id, pushed in snap.pushes.items():
        reported = snap.reports.get(device_id, [])
        for k, push in enumerate(pushed):
            end = reported[k] if k < len(reported) else snap.now
            waits.append((end - push).total_seconds())
            answered.append(k < len(reported))
            first.append(k == 0)
        state = snap.rollout.device_state(device_id)
        failures.append(len(reported) - state.trusts if reported and state.in_scope else 0)
    assert journal.waits.tolist() == waits
    assert journal.answered.tolist() == answered
    assert journal.first.tolist() == first
    assert journal.failures.tolist() == failures
    assert sum(failures) > 0
    assert not all(answered)
    # The movers, in the rollout's order whatever the mappings' order.
    movers = _journal.movers(journal, snap.rollout)
    expected = [
        d
        for d in snap.rollout.device_ids()
        if snap.rollout.device_state(d) in (DeviceState.PUSHED, DeviceState.FAILED)
    ]
    assert list(movers.ids) == expected
    backwards = dict(reversed(list(snap.pushes.items())))
    again = _journal.movers(
        _journal.read(snap.rollout, snap.now, backwards, snap.reports), snap.rollout
    )
    assert again.ids == movers.ids
    assert again.waited.tolist() == movers.waited.tolist()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, r: p.update(d0=["yesterday"]), "push of 'd0'"),
        (lambda p, r: p.update(d0=[[T0]]), "push of 'd0'"),
        (lambda p, r: r.update(d0=[T0 + 7 * DAY]), "report 1 of 'd0' at .* is not between"),
    ],
)
def test_the_bulk_read_refuses_what_the_device_loop_names(change: Any, message: str) -> None:
    rollout, now, pushes, reports = _failed_fleet()
    change(pushes, reports)
    with pytest.raises(InvalidInput, match=message):
        forecast(rollout, now, pushes, reports, runs=5)


def _rushed_fleet(
    now: datetime,
) -> tuple[Any, datetime, dict[str, list[datetime]], dict[str, list[datetime]]]:
    # 91 devices answer in a rush that halves every hour (the k-th at the hour where a
    # geometric law of one half passes k/91: 46 in the first hour, the last in the 8th);
    # 9 stay silent. Every tail the data allow says the silent never answer.
    ids = [f"d{i:03d}" for i in range(100)]
    rollout = new_rollout(
        ids,
        existing_not_after=T0 + 40 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
    )
    rollout = apply(rollout, DistributeRoot(), T0).rollout
    hours = [1 + math.floor(math.log(1 - (k + 0.5) / 91) / math.log(0.5)) for k in range(91)]
    reports: dict[str, list[datetime]] = {}
    for hour in sorted(set(hours)):
        answering = [d for d, h in zip(ids, hours, strict=False) if h == hour]
        installed: list[Command] = [DeviceInstalled(d) for d in answering]
        rollout = apply_all(rollout, installed, T0 + hour * HOUR).rollout
        reports.update({d: [T0 + hour * HOUR] for d in answering})
    return rollout, now, {d: [T0] for d in ids}, reports


def test_an_interval_narrower_than_its_open_question_is_marked_unreliable() -> None:
    # 13 hours in, the 9 silent devices have waited longer than any answer took (8 h),
    # but not twice as long: whether they answer is open. The tails all say never, so
    # the futures hardly differ: an interval narrower than their answers alone would
    # spread (2 x 1.645 x sqrt(0.09 x 9) = 2.96 devices) is a precision the data do not
    # have, and the forecast says so.
    result = forecast(*_rushed_fleet(T0 + 13 * HOUR), runs=60, seed=3)
    assert (result.tail.beyond, result.tail.unsettled) == (9, 9)
    assert result.tail.horizon_days == pytest.approx(8 / 24)
    assert result.as_is.cutoff_high - result.as_is.cutoff_low < 2.96
    assert not result.tail.reliable
    assert result.tail.caution is not None
    assert "9 device(s) have waited longer than any answer seen" in result.tail.caution
    document = json.loads(json.dumps(result.as_dict()))
    assert document["reliable"] is False
    assert document["tail"]["reliable"] is False
    assert document["tail"]["caution"] == result.tail.caution
    assert set(document["tail"]["by_shape"]) == {f.key for f in _cure.FORMS}
    assert set(document["tail"]["by_shape"]) == {"1", "0.5", "2", "lomax 24h", "lomax 2h"}
    assert f"\nunreliable: {result.tail.caution}\n" in str(result)


def test_a_silence_as_long_again_as_the_data_settles_the_question() -> None:
    # Three days in, the same 9 devices have been silent for nine times the longest
    # wait: no longer an open question, and the same narrow interval is not marked.
    result = forecast(*_rushed_fleet(T0 + 3 * DAY), runs=60, seed=3)
    assert (result.tail.beyond, result.tail.unsettled) == (9, 0)
    assert result.as_is.cutoff_high - result.as_is.cutoff_low < 2.96
    assert result.tail.reliable
    assert result.tail.caution is None
    assert result.as_dict()["reliable"] is True
    assert "unreliable" not in str(result)


def test_every_tail_shape_takes_its_turn_in_the_bootstrap() -> None:
    snap = _day_6(Setup(devices=100, model=SLOW.model), 4).snapshot
    journal = _journal.read(snap.rollout, snap.now, snap.pushes, snap.reports)
    points, curves = _cure.bootstrap(journal.observations(), 40, 24 * 30, np.random.default_rng(0))
    assert [p.model.form for p in points] == list(_cure.FORMS)
    forms = [c.model.form.key for c in curves]
    assert {f: forms.count(f) for f in forms} == {
        "1": 8,
        "0.5": 8,
        "2": 8,
        "lomax 24h": 8,
        "lomax 2h": 8,
    }


def test_the_tails_uncertainty_widens_the_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fleet of 100 on day 3, slow and without retries: most silent devices rest on
    # the tail. Varying its shape and drawing the share that never answers widen the
    # interval of devices cut off beyond what refitting one constant hazard gives.
    snap = simulate(Setup(devices=100, model=SLOW.model), 4, snapshot_at=3 * DAY + HOUR).snapshot
    assert snap is not None
    args = (snap.rollout, snap.now, snap.pushes, snap.reports)
    wide = forecast(*args, runs=200, seed=1)
    monkeypatch.setattr(_cure, "FORMS", (_cure.Form(1.0),))
    monkeypatch.setattr(_cure, "_survivors_cured", lambda cured, evidence, rng: cured)
    narrow = forecast(*args, runs=200, seed=1)
    assert wide.tail.beyond > 20
    assert narrow.tail.by_shape.keys() == {"1"}
    widths = [b.cutoff_high - b.cutoff_low for b in (wide.as_is, narrow.as_is)]
    assert widths[0] > widths[1] + 3, widths


def test_a_daily_cycle_is_not_read_as_a_share_that_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20,000 devices online on 15 % of days, answering a few hours into the day they are
    # online, 1 % never: a constant hazard from one day to the next, a cycle within each.
    # Observed 6 days and 2 hours. Fitted hour by hour, the quiet hours before now read
    # as a hazard dying out (18 % never answering); on whole days, near 1 %.
    hours = 146
    rng = np.random.default_rng(5)
    n = 20_000
    wait = (rng.geometric(0.15, n) - 1) * 24 + 4 * np.exp(rng.normal(0, 1, n))
    wait[rng.random(n) < 0.01] = np.inf
    obs = first_pushes(wait, hours, ages=False)
    assert _cure.fit_curve(obs, obs.size, 24 * 30).model.cure < 0.03
    monkeypatch.setattr(_cure, "DAILY_FROM", 10**9)  # never by days: the bias they are for
    assert _cure.fit_curve(obs, obs.size, 24 * 30).model.cure > 0.1


def test_a_tail_fitted_on_less_than_two_days_is_too_early_to_trust() -> None:
    # The slow fleet on day 3: every silent device rests on a tail fitted on the last
    # day and a half of waits. On day 6 the same fleet's tail has three days.
    early = simulate(SLOW, 51, snapshot_at=3 * DAY + HOUR).snapshot
    assert early is not None
    result = forecast(early.rollout, early.now, early.pushes, early.reports, runs=40, seed=1)
    assert result.tail.unsettled > 0
    assert result.tail.horizon_days * _cure.WINDOW < 2
    assert not result.tail.reliable
    assert result.tail.caution is not None
    assert "too early to tell how many of them answer" in result.tail.caution
    assert result.as_dict()["reliable"] is False
    late = _day_6(SLOW, 51).snapshot
    later = forecast(late.rollout, late.now, late.pushes, late.reports, runs=40, seed=1)
    assert later.tail.horizon_days * _cure.WINDOW >= 2
    assert later.tail.caution is None or "too early" not in later.tail.caution
