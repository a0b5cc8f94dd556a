"""The demo simulation: it runs through the real evaluator, tells the story, is seeded."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
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
from certflow.core.machines import RULES
from certflow.core.plan import DeviceState
from certflow.sim import demo
from certflow.sim.demo import Scenario, SimulationResult, run

DEVICES = 500


@pytest.fixture(scope="module")
def simulated() -> tuple[SimulationResult, str]:
    out = io.StringIO()
    result = run(devices=DEVICES, seed=7, out=out)
    return result, out.getvalue()


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


def test_through_the_store_the_story_is_the_same_and_every_effect_went_through_the_outbox(
    simulated: tuple[SimulationResult, str], tmp_path: Path
) -> None:
    from certflow.store import SqliteStore

    result, text = simulated
    out = io.StringIO()
    with SqliteStore(tmp_path / "demo.db") as store:
        stored = run(devices=DEVICES, seed=7, out=out, store=store, name="demo")
        lines = out.getvalue().splitlines()
        # The same timeline, with the store named first and the outbox accounted for last.
        assert lines[4].startswith("store: rollout 'demo' in ")
        effects = store.effects("demo", include_acknowledged=True)
        outbox = lines.index(
            f"outbox: {len(effects):,} effects delivered and acknowledged, 0 pending"
        )
        assert lines[outbox - 1] == ""
        assert lines[:4] + lines[5 : outbox - 1] + lines[outbox + 1 :] == text.splitlines()
        assert all(e.acked_at is not None for e in effects)
        assert [e.effect for e in effects] == list(stored.effects) == list(result.effects)
        assert dumps(store.replay("demo")) == store.dumps("demo")
        kinds = {e.kind for e in store.journal("demo")}
        assert kinds == {"create", "command", "batch", "advance"}
    assert stored.summary.counts == result.summary.counts
    assert (stored.import_day, stored.forced) == (result.import_day, result.forced)


def test_the_demo_sends_a_report_exactly_when_the_engine_would_take_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo keeps the engine's answer per rollout state, device state and kind of
    # report; here every kept answer is checked against a preview of the very report.
    original = demo._Answers.taken
    answers: Counter[tuple[str, bool]] = Counter()

    def taken(self: Any, command: Any, state: Any, now: datetime) -> bool:
        answer = original(self, command, state, now)
        host: demo._Host = self.host
        assert answer is host.preview(command, now).accepted, command
        answers[type(command).__name__, answer] += 1
        return answer

    monkeypatch.setattr(demo._Answers, "taken", taken)
    result = run(devices=DEVICES, seed=7, out=io.StringIO())
    # Late installs from devices the import cut off are refused; their re-enrolment is taken.
    assert answers["DeviceInstalled", False] > 0
    assert answers["Reenrolled", True] == result.reenrolled > 0
    assert answers["Unenroll", True] == result.unenrolled > 0


def test_only_reports_no_guard_decides_are_answered_once_per_state() -> None:
    assert demo._decided_per_state() == {
        "DeviceInstalled",
        "DeviceFailed",
        "Enroll",
        "Unenroll",
        "Reenrolled",
    }  # not Retry: its gate asks the certificate kind
    # A guard on a report's gate makes the demo preview each such report.
    guarded = attrs.evolve(
        RULES.rollout,
        states=tuple(
            attrs.evolve(
                state,
                gates=tuple(
                    attrs.evolve(gate, guards=("kind_allows_retry",))
                    if gate.trigger == "report_failed"
                    else gate
                    for gate in state.gates
                ),
            )
            for state in RULES.rollout.states
        ),
    )
    assert "DeviceFailed" not in demo._decided_per_state(attrs.evolve(RULES, rollout=guarded))


def test_the_extension_is_told_by_how_far_it_moved_the_deadline() -> None:
    day = datetime(2026, 7, 22, 9, 0, tzinfo=UTC)
    assert demo._moved(day, day + timedelta(days=7)) == "+7 days"
    assert demo._moved(day, day + timedelta(days=3, hours=12)) == "+3 days 12 h"
    assert demo._moved(None, day) == "-"
