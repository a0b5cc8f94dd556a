"""Tests of certflow/core/_kernel.py, _fleet.py and _compiled.py that the mutation run asked for."""

from __future__ import annotations

import attrs

import certflow as cf
from certflow.core.machines import Transition, call
from tests.core.strategies import DAY, day, distributing

ONE_DAY_ACK = cf.Policy(ack_timeout=DAY)


def _retried_during_the_first_push() -> cf.Rollout:
    """d0 and d1 pushed at day 0 (one-day wait); d0 fails at day 0.1 and is retried at
    day 0.2, while d1 still waits on the fleet-wide first push."""
    rollout = distributing(["d0", "d1"], policy=ONE_DAY_ACK)
    rollout = cf.apply(rollout, cf.DeviceFailed("d0", "store locked"), day(0.1)).rollout
    return cf.apply(rollout, cf.RetryAllFailed(), day(0.2)).rollout


def test_a_retry_during_the_first_push_times_out_apart_from_the_first_push() -> None:
    rollout = _retried_during_the_first_push()
    first = cf.advance(rollout, day(1))
    assert first.effects == (cf.AcknowledgementTimedOut(("d1",), day(1)),)
    retried = cf.advance(first.rollout, day(1.2))
    assert retried.effects == (cf.AcknowledgementTimedOut(("d0",), day(1.2)),)
    assert retried.rollout.device_state("d0") is cf.DeviceState.FAILED
    assert retried.rollout.device("d0").attempts == 2


def test_once_the_first_push_is_answered_the_next_due_is_the_retry_timeout() -> None:
    rollout = _retried_during_the_first_push()
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), day(0.3)).rollout
    assert cf.next_due(rollout) == day(1.2)


def test_a_retry_after_the_first_push_is_answered_times_out_by_its_own_attempt() -> None:
    rollout = distributing(["d0", "d1"], policy=ONE_DAY_ACK)
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), day(0.05)).rollout
    rollout = cf.apply(rollout, cf.DeviceFailed("d0", "store locked"), day(0.1)).rollout
    rollout = cf.apply(rollout, cf.RetryAllFailed(), day(0.2)).rollout
    assert cf.next_due(rollout) == day(1.2)
    step = cf.advance(rollout, day(1.2))
    assert step.effects == (cf.AcknowledgementTimedOut(("d0",), day(1.2)),)
    assert step.rollout.device_state("d0") is cf.DeviceState.FAILED


def test_a_batch_of_reports_writes_each_device_of_a_fleet_past_the_256th_chunk() -> None:
    far = 256 * 256 + 1  # in chunk 256, the chunk number a shifted index 1 would name
    rollout = distributing(far + 1)
    ids = [f"d{far}", "d1"]
    step = cf.apply_all(rollout, [cf.DeviceInstalled(d) for d in ids], day(1))
    assert [step.rollout.device_state(d) for d in ids] == [cf.DeviceState.INSTALLED] * 2
    assert step.rollout.counts()[cf.DeviceState.INSTALLED] == 2


def _evaluator_with_device_row(row: Transition) -> cf.Evaluator:
    """The evaluator of rules whose device row from ``row``'s source on its trigger is ``row``."""
    device = cf.RULES.device
    rows = tuple(
        row if (r.source, r.trigger) == (row.source, row.trigger) else r for r in device.transitions
    )
    rules = attrs.evolve(cf.RULES, device=attrs.evolve(device, transitions=rows))
    return cf.Evaluator(_rules=rules)


def test_a_fleet_move_without_actions_that_keeps_devices_pushed_keeps_their_attempts() -> None:
    evaluator = _evaluator_with_device_row(Transition("pushed", "import", "pushed"))
    step = evaluator.apply(distributing(["d0", "d1"]), cf.ImportNow(), day(0.2))
    assert step.rollout.device("d0").state is cf.DeviceState.PUSHED
    assert step.rollout.device("d0").attempts == 1
    assert step.rollout.counts()[cf.DeviceState.PUSHED] == 2


def test_a_fleet_move_without_actions_into_the_first_state_counts_the_moved_devices() -> None:
    evaluator = _evaluator_with_device_row(Transition("failed", "import", "pending"))
    rollout = distributing(["d0", "d1"])
    rollout = evaluator.apply(rollout, cf.DeviceFailed("d0", "store locked"), day(0.1)).rollout
    counts = evaluator.apply(rollout, cf.ImportNow(), day(0.2)).rollout.counts()
    assert counts[cf.DeviceState.PENDING] == 1
    assert counts[cf.DeviceState.FAILED] == 0
    assert counts[cf.DeviceState.REENROLL_REQUIRED] == 1


def test_a_push_after_the_rollout_ended_starts_a_new_timer_queue() -> None:
    evaluator = _evaluator_with_device_row(
        Transition("reenroll_required", "reenrolled", "pushed", actions=(call("push_root"),))
    )
    rollout = distributing(["d0", "d1"], policy=ONE_DAY_ACK)
    rollout = evaluator.apply(rollout, cf.ImportNow(), day(0.2)).rollout  # drops every timer
    step = evaluator.apply(rollout, cf.Reenrolled("d0"), day(0.3))
    assert step.effects == (cf.PushRoot(("d0",), 2, day(0.3), None),)
    assert step.rollout.device_state("d0") is cf.DeviceState.PUSHED
