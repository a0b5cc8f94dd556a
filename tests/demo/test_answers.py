"""Whether the demo sends a report: the engine's answer, kept only where no guard decides."""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime
from typing import Any

import attrs
import pytest

from certflow.core.machines import RULES
from certflow.demo import run
from certflow.demo._answers import Answers, decided_per_state
from certflow.demo._hosts import Host
from tests.demo.conftest import DEVICES


def test_the_demo_sends_a_report_exactly_when_the_engine_would_take_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo keeps the engine's answer per rollout state, device state and kind of
    # report; here every kept answer is checked against a preview of the very report.
    original = Answers.taken
    answers: Counter[tuple[str, bool]] = Counter()

    def taken(self: Any, command: Any, state: Any, now: datetime) -> bool:
        answer = original(self, command, state, now)
        host: Host = self.host
        assert answer is host.preview(command, now).accepted, command
        answers[type(command).__name__, answer] += 1
        return answer

    monkeypatch.setattr(Answers, "taken", taken)
    result = run(devices=DEVICES, seed=7, out=io.StringIO())
    # Late installs from devices the import cut off are refused; their re-enrolment is taken.
    assert answers["DeviceInstalled", False] > 0
    assert answers["Reenrolled", True] == result.reenrolled > 0
    assert answers["Unenroll", True] == result.unenrolled > 0


def test_only_reports_no_guard_decides_are_answered_once_per_state() -> None:
    assert decided_per_state() == {
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
    assert "DeviceFailed" not in decided_per_state(attrs.evolve(RULES, rollout=guarded))
