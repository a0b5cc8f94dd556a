"""The demo's story: it runs through the real evaluator, tells the story, is seeded."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from certflow import (
    ImportCertificate,
    Notify,
    PushRoot,
    ReenrollmentRequired,
    RestartRequired,
    dumps,
    loads,
)
from certflow.core.identity import short
from certflow.core.plan import DeviceState
from certflow.demo import Scenario, SimulationResult, run
from certflow.demo._pki import HOST
from tests.demo.conftest import DEVICES


def test_output_tells_the_whole_story(simulated: tuple[SimulationResult, str]) -> None:
    _, text = simulated
    for expected in (
        "== Timeline ==",
        "admin: distribute root certificate",
        "e-mail administrators: checkpoint 1 on ",
        "admin: manual extension (+7 days)",
        "admin: bulk retry of ",
        "import postponed to ",
        "import the new certificate",
        " must re-enrol: ",
        "restart the server so that it loads the new certificate",
        "server restarted",
        "enrol new-",
        "unenrol ",
        "== View details",
        "failure reasons",
    ):
        assert expected in text, expected
    assert "day  6.0  e-mail administrators: checkpoint 1 on 2026-07-08 09:00 UTC" in text


def test_the_demo_rolls_out_a_real_certificate_that_passed_the_checks(
    simulated: tuple[SimulationResult, str],
) -> None:
    result, text = simulated
    identity = result.rollout.plan.identity
    assert identity is not None
    assert identity.hosts == (HOST,)
    assert HOST in identity.certificate.names
    assert not identity.root.publicly_trusted
    assert identity.certificate.issuer == identity.root.subject
    plan = result.rollout.plan
    assert plan.new_not_after == identity.certificate.not_after
    assert plan.new_not_after - plan.new_not_before < timedelta(days=397)
    assert plan.existing_not_after == Scenario().start + Scenario().existing_expires_after
    assert (
        f"certificate: {identity.certificate.subject} ({short(identity.certificate.fingerprint)})"
        in text
    )
    # Every push names the root the rollout records.
    pushes = [e for e in result.effects if isinstance(e, PushRoot)]
    assert pushes
    assert {e.root_fingerprint for e in pushes} == {identity.root.fingerprint}


def test_same_seed_same_output_other_seed_other_output() -> None:
    first, second, other = io.StringIO(), io.StringIO(), io.StringIO()
    run(devices=300, seed=11, out=first)
    run(devices=300, seed=11, out=second)
    run(devices=300, seed=12, out=other)
    assert first.getvalue() == second.getvalue()
    assert first.getvalue() != other.getvalue()


def test_final_rollout_is_terminal_and_counts_add_up(
    simulated: tuple[SimulationResult, str],
) -> None:
    result, _ = simulated
    rollout, summary = result.rollout, result.summary
    assert rollout.state.terminal
    assert summary.state is rollout.state
    assert sum(summary.counts.values()) == rollout.device_count
    assert rollout.device_count == DEVICES + result.enrolled
    assert summary.in_scope == rollout.device_count - summary.counts[DeviceState.REMOVED]
    assert summary.counts[DeviceState.REMOVED] == result.unenrolled
    assert summary.counts[DeviceState.PUSHED] == summary.counts[DeviceState.FAILED] == 0
    assert not summary.restart_required
    assert result.server_restarted
    assert loads(dumps(rollout)) == rollout


def test_effects_match_the_figures(simulated: tuple[SimulationResult, str]) -> None:
    result, _ = simulated
    effects = result.effects
    imports = [e for e in effects if isinstance(e, ImportCertificate)]
    assert len(imports) == 1
    assert imports[0].forced is result.forced
    assert result.import_day == (imports[0].due_at - result.rollout.plan.created_at) / timedelta(
        days=1
    )
    assert any(isinstance(e, RestartRequired) for e in effects)
    reenrol = [e for e in effects if isinstance(e, ReenrollmentRequired)]
    assert sum(len(e.device_ids) for e in reenrol) == result.reenrollment_required > 0
    notices = [e for e in effects if isinstance(e, Notify)]
    assert len(notices) == result.notices
    assert len({n.checkpoint_at for n in notices}) == len(notices)  # never twice
    assert all(n.checkpoint_at - n.due_at == timedelta(days=1) for n in notices)
    assert result.manual_extensions == 1
    assert result.bulk_retries > 0
    assert max(e.attempt for e in effects if isinstance(e, PushRoot)) > 1
    dues = [e.due_at for e in effects]
    assert dues == sorted(dues)


def test_without_extension_the_admin_never_extends() -> None:
    out = io.StringIO()
    result = run(devices=300, seed=3, out=out, scenario=Scenario(extend=False))
    assert result.manual_extensions == 0
    assert "admin: manual extension" not in out.getvalue()
    assert result.import_day == 21.0


def test_a_fleet_that_completes_imports_without_forcing() -> None:
    calm = Scenario(share_offline=0, share_flaky=0, share_silent=0, share_churn=0, extend=False)
    result = run(devices=300, seed=5, out=io.StringIO(), scenario=calm)
    assert result.forced is False
    assert result.reenrollment_required == 0
    assert result.import_day in (7.0, 14.0)  # a checkpoint, whichever found everyone
    assert result.summary.percent_complete == 100.0
    assert result.bulk_retries == 0  # no push failed: the retry's preview pushes nobody


def test_quiet_prints_one_line() -> None:
    out = io.StringIO()
    run(devices=300, seed=7, out=out, quiet=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("seed 7: ")


def test_rejects_an_empty_fleet() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run(devices=0, out=io.StringIO())
