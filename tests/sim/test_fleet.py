"""One modelled rollout, through the real evaluator: reproducible, and every figure is the effects'."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from certflow import (
    ImportCertificate,
    ImportRule,
    InvalidInput,
    Notify,
    Policy,
    PushRoot,
    ReenrollmentRequired,
    RolloutState,
    dumps,
    loads,
)
from certflow.core.plan import DeviceState
from certflow.sim.fleet import Simulation, simulate
from certflow.sim.models import AdminPolicy, DeviceModel, Setup

DAY = timedelta(days=1)
# Everyone online every day, installs within hours (sigma 0.5: the slowest of 400 in
# about a day), nobody fails, leaves or stays silent.
CALM = DeviceModel(
    online_chance=1.0, install_sigma=0.5, failure_probability=0.0, never_answer=0.0, churn=0.0
)


def test_same_seed_same_run_other_seed_other_run() -> None:
    setup = Setup(devices=300, admin=AdminPolicy(retry_every=3))
    first, second, other = simulate(setup, 4), simulate(setup, 4), simulate(setup, 5)
    assert first.outcome == second.outcome
    assert first.effects == second.effects
    assert first.rollout == second.rollout
    assert first.effects != other.effects


def _check_figures(run: Simulation) -> None:
    effects, outcome = run.effects, run.outcome
    imports = [e for e in effects if isinstance(e, ImportCertificate)]
    assert len(imports) == 1
    assert imports[0].forced is outcome.forced
    assert outcome.import_day == (imports[0].due_at - run.start) / DAY
    cut = sum(len(e.device_ids) for e in effects if isinstance(e, ReenrollmentRequired))
    assert cut == outcome.reenrollment_required
    assert run.rollout.counts()[DeviceState.REENROLL_REQUIRED] == cut
    assert len([e for e in effects if isinstance(e, Notify)]) == outcome.notices
    assert run.rollout.state.terminal
    assert loads(dumps(run.rollout)) == run.rollout


def test_figures_are_the_effects_of_the_real_evaluator() -> None:
    run = simulate(Setup(devices=500, admin=AdminPolicy(retry_every=3)), 2)
    _check_figures(run)
    assert run.outcome.forced  # 1% never answer
    assert run.outcome.bulk_retries > 0
    assert max(e.attempt for e in run.effects if isinstance(e, PushRoot)) > 1
    dues = [e.due_at for e in run.effects]
    assert dues == sorted(dues)


def test_a_fleet_that_always_answers_imports_on_day_7_without_cutting_anyone_off() -> None:
    run = simulate(Setup(devices=400, model=CALM), 1)
    _check_figures(run)
    assert (run.outcome.import_day, run.outcome.forced) == (7.0, False)
    assert run.outcome.reenrollment_required == 0
    assert run.outcome.percent_at_import == 100.0
    assert run.rollout.state is RolloutState.IMPORTED


def test_a_fleet_that_never_answers_is_forced_at_the_deadline_every_device_cut_off() -> None:
    model = DeviceModel(never_answer=1.0, churn=0.0)
    run = simulate(Setup(devices=200, model=model), 1)
    _check_figures(run)
    assert (run.outcome.import_day, run.outcome.forced) == (21.0, True)
    assert run.outcome.reenrollment_required == 200
    assert run.outcome.checkpoints_postponed == 2
    assert run.outcome.notices == 3


def test_bulk_retries_bring_failed_devices_in() -> None:
    model = DeviceModel(failure_probability=0.5, never_answer=0.0, churn=0.0)
    passive = simulate(Setup(devices=400, model=model), 3).outcome
    retrying = simulate(
        Setup(devices=400, model=model, admin=AdminPolicy(retry_every=2)), 3
    ).outcome
    assert passive.bulk_retries == 0
    assert passive.reenrollment_required > 150  # about half failed, nobody retried them
    assert retrying.bulk_retries > 3
    assert retrying.reenrollment_required < passive.reenrollment_required / 10


def test_a_manual_extension_moves_the_deadline_a_week() -> None:
    admin = AdminPolicy(extend_on_day=6)
    outcome = simulate(Setup(devices=300, admin=admin), 1).outcome
    assert outcome.manual_extensions == 1
    assert outcome.import_day == 28.0
    assert outcome.notices == 4


def test_import_now_at_a_completion() -> None:
    admin = AdminPolicy(import_now_at=95.0)
    outcome = simulate(Setup(devices=300, admin=admin), 1).outcome
    assert outcome.imported_now
    assert outcome.import_day is not None
    assert outcome.import_day < 7
    assert outcome.percent_at_import is not None
    assert outcome.percent_at_import >= 95.0


@pytest.mark.parametrize(("expires", "day"), [(40, 21.0), (10, 14.0)])
def test_distributed_and_expired_waits_for_the_old_certificate_to_expire(
    expires: int, day: float
) -> None:
    setup = Setup(
        devices=200,
        model=CALM,
        policy=Policy(import_rule=ImportRule.DISTRIBUTED_AND_EXPIRED),
        existing_expires_after=expires * DAY,
    )
    outcome = simulate(setup, 1).outcome
    assert (outcome.import_day, outcome.forced) == (day, False)


def test_churn_unenrols_and_enrols() -> None:
    model = DeviceModel(churn=0.05)
    run = simulate(Setup(devices=200, model=model), 1)
    counts = run.rollout.counts()
    assert counts[DeviceState.REMOVED] == 10
    assert run.rollout.device_count == 210
    _check_figures(run)


def test_the_trace_counts_every_device_each_day() -> None:
    run = simulate(Setup(devices=300), 1, trace=True)
    assert run.trace is not None
    days = run.trace.days
    assert days[0] == 0.0
    assert days == tuple(sorted(days))
    assert days[-1] == run.outcome.import_day
    assert list(days[:-1]) == [float(d) for d in range(len(days) - 1)]
    for counts in run.trace.counts:
        assert sum(counts.values()) >= 300
    assert run.trace.counts[-1] == run.rollout.counts()
    assert run.trace.counts[0][DeviceState.PENDING] == 300  # before the distribution


def test_the_snapshot_is_what_the_host_knew_then() -> None:
    setup = Setup(
        devices=300, model=DeviceModel(failure_probability=0.2), admin=AdminPolicy(retry_every=3)
    )
    run = simulate(setup, 1, snapshot_at=6 * DAY + timedelta(hours=1))
    snap = run.snapshot
    assert snap is not None
    assert snap.now == setup.start + 6 * DAY + timedelta(hours=1)
    assert snap.rollout.clock == snap.now
    assert snap.rollout.state is RolloutState.DISTRIBUTING
    assert set(snap.pushes) >= set(snap.reports)
    pushed = Counter(len(at) for at in snap.pushes.values())
    assert pushed[2] > 0  # the bulk retries of day 1 and day 4
    for device_id, reports in snap.reports.items():
        pushes = snap.pushes[device_id]
        assert len(reports) <= len(pushes)
        assert all(p <= r for p, r in zip(pushes, reports, strict=False))
        assert all(
            r <= snap.now and (r - setup.start) % setup.step == timedelta(0) for r in reports
        )
    # The run went on after the snapshot, identical to a run without it.
    assert run.outcome == simulate(setup, 1).outcome


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput, match="seed"):
        simulate(Setup(devices=10), "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="snapshot_at"):
        simulate(Setup(devices=10), 1, snapshot_at=timedelta(0))


def test_the_outcome_reads_as_one_line() -> None:
    outcome = simulate(Setup(devices=200, model=CALM), 1).outcome
    assert str(outcome) == (
        "seed 1: import on day 7; 0 of 200 devices need re-enrolment; 1 notices, "
        "0 manual extension(s), 0 bulk retries"
    )
    assert outcome.as_dict()["import_day"] == 7.0


def test_run_is_the_deprecated_name_of_a_simulation() -> None:
    import certflow.sim
    import certflow.sim.fleet

    for module in (certflow.sim, certflow.sim.fleet):
        with pytest.warns(DeprecationWarning, match=r"\.Run is deprecated"):
            assert module.Run is certflow.sim.Simulation
