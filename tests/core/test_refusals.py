"""Tests of certflow/core/_refusals.py that the mutation run asked for."""

from __future__ import annotations

import certflow as cf
from certflow.core import guards as g
from certflow.core._compiled import compile_rules
from certflow.core._refusals import device_refusal, guard_refusal, state_refusal, where
from certflow.core.machines import ROLLOUT_MACHINE
from tests.core.strategies import day, distributing


def _fields(refused: cf.CommandRefused) -> tuple[object, ...]:
    return (
        refused.command,
        refused.state,
        refused.reason,
        refused.allowed_at,
        refused.device_id,
        refused.device_state,
        refused.hint,
    )


def test_a_guard_refusal_carries_the_state_and_when_the_guard_will_hold() -> None:
    rollout = distributing(1)
    situation = g.Situation(rollout.plan, rollout.phase, day(2), 0)
    refused = guard_refusal(ROLLOUT_MACHINE, "extension_open", situation, "ExtendManually")
    hint = "manual extension opens on day 6, 2026-07-07 09:00 UTC (4 days from now)"
    assert str(refused) == f"ExtendManually refused: {hint}"
    assert _fields(refused) == (
        "ExtendManually",
        "distributing",
        "extension_open",
        day(6),
        None,
        None,
        hint,
    )


def test_a_guard_refusal_of_a_device_command_names_the_device() -> None:
    rollout = distributing(1, kind=cf.CertificateKind.AGENT_SERVER)
    situation = g.Situation(rollout.plan, rollout.phase, day(2), 1)
    refused = guard_refusal(
        ROLLOUT_MACHINE,
        "kind_allows_retry",
        situation,
        "Retry",
        prefix="Retry('d0')",
        device_id="d0",
    )
    assert str(refused).startswith("Retry('d0') refused: retry applies only to MDM server")
    assert _fields(refused)[:6] == (
        "Retry",
        "distributing",
        "kind_allows_retry",
        None,
        "d0",
        None,
    )


def test_a_state_refusal_carries_the_command_the_state_the_reason_and_the_device() -> None:
    refused = state_refusal(
        cf.RolloutState.PENDING,
        "ImportNow",
        "use ProceedToImport",
        device_id="d0",
        machine=ROLLOUT_MACHINE,
    )
    hint = "use ProceedToImport (allowed while pending)"
    # a running rollout's state is named alone: only an ended one says it has ended
    assert str(refused) == f"ImportNow refused: the rollout is pending; {hint}"
    assert _fields(refused) == ("ImportNow", "pending", "rollout_state", None, "d0", None, hint)


def test_a_device_refusal_carries_the_command_the_reason_and_the_device_s_state() -> None:
    compiled = compile_rules()
    table = compiled.device["distributing"]["report_installed"]
    removed = compiled.device_states.index("removed")
    refused = device_refusal(compiled, table, "d0", removed, cf.DeviceInstalled("d0"))
    hint = "it was unenrolled; send Enroll if it came back"
    assert str(refused) == f"device 'd0' cannot report the root installed: it is removed; {hint}"
    assert _fields(refused) == ("DeviceInstalled", "", "device_state", None, "d0", "removed", hint)


def test_a_command_allowed_in_three_states_is_said_to_be_allowed_in_all_three() -> None:
    assert ROLLOUT_MACHINE.sources("cancel") == ("pending", "distributing", "extended")
    assert where(ROLLOUT_MACHINE, "send Cancel") == (
        "send Cancel (allowed while pending, distributing or extended)"
    )


def test_where_a_command_is_allowed_is_said_once_however_often_the_hint_names_it() -> None:
    assert where(ROLLOUT_MACHINE, "use ImportNow; ImportNow forces the import") == (
        "use ImportNow (allowed while distributing or extended); ImportNow forces the import"
    )


def test_a_trigger_that_is_no_command_names_nothing_in_a_hint() -> None:
    """The timers' triggers have no command: the word None of a hint is only a word."""
    timer = ROLLOUT_MACHINE.trigger("checkpoint")
    assert timer.command is None
    assert ROLLOUT_MACHINE.sources("checkpoint") == ("distributing", "extended")
    assert where(ROLLOUT_MACHINE, "None of the devices answered") == (
        "None of the devices answered"
    )
