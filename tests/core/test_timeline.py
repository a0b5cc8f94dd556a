"""The timeline: every instant of the rules from one module, and `next_due`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import certflow as cf
from certflow.core import timeline
from tests.core.strategies import DAY, HOUR, T0, build, day, distributing, policies, spans


def test_checkpoints_deadline_notice_and_extension_window_of_the_default_policy() -> None:
    rollout = distributing(1)
    plan, phase = rollout.plan, rollout.phase
    assert [timeline.checkpoint_at(plan, phase, n) for n in range(3)] == [day(7), day(14), day(21)]
    assert timeline.checkpoint_at(plan, phase, 3) is None
    assert timeline.next_checkpoint(plan, phase) == day(7)
    assert not timeline.next_checkpoint_is_final(plan, phase)
    assert timeline.deadline(plan, phase) == day(21)
    assert timeline.next_notice(plan, phase) == day(6)
    assert timeline.extension_opens(plan, phase) == day(6)
    assert timeline.moved_deadline(plan, phase) == day(28)
    assert timeline.deadline_if_started(plan, day(2)) == day(23)


def test_a_pending_or_ended_rollout_has_no_next_instant() -> None:
    pending = build(1)
    assert timeline.next_checkpoint(pending.plan, pending.phase) is None
    assert timeline.deadline(pending.plan, pending.phase) is None
    assert timeline.next_notice(pending.plan, pending.phase) is None
    assert timeline.extension_opens(pending.plan, pending.phase) is None
    ended = cf.advance(distributing(1), day(22)).rollout
    assert timeline.next_checkpoint(ended.plan, ended.phase) is None
    assert timeline.moved_deadline(ended.plan, ended.phase) is None


def test_an_extension_moves_the_checkpoints_and_deadline_but_not_the_opening() -> None:
    rollout = cf.apply(distributing(1), cf.ExtendManually(), day(6.5)).rollout
    plan, phase = rollout.plan, rollout.phase
    assert timeline.next_checkpoint(plan, phase) == day(14)
    assert timeline.deadline(plan, phase) == day(28)
    assert timeline.next_notice(plan, phase) == day(13)
    assert timeline.extension_opens(plan, phase) == day(6)


def test_the_next_notice_is_none_once_the_checkpoint_was_announced() -> None:
    rollout = cf.advance(distributing(1), day(6)).rollout
    assert timeline.next_notice(rollout.plan, rollout.phase) is None
    assert timeline.next_checkpoint_is_final(rollout.plan, rollout.phase) is False


# --- next_due -----------------------------------------------------------------------------------


def test_next_due_is_each_scheduled_instant_in_turn_then_none() -> None:
    rollout = distributing(1)
    seen = []
    while (due := cf.next_due(rollout)) is not None:
        seen.append(due)
        rollout, effects = cf.advance(rollout, due)
        assert effects, "advance at next_due must do something"
    assert seen == [day(6), day(7), day(13), day(14), day(20), day(21)]
    assert rollout.state is cf.RolloutState.FORCED


def test_next_due_includes_acknowledgement_timeouts() -> None:
    rollout = distributing(1, policy=cf.Policy(ack_timeout=30 * HOUR))
    assert cf.next_due(rollout) == T0 + 30 * HOUR
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    # The push was answered: its timer no longer does anything, so it is not next.
    assert cf.next_due(rollout) == day(6)


def test_next_due_skips_every_answered_push_and_finds_the_first_unanswered_one() -> None:
    rollout = distributing(4, policy=cf.Policy(ack_timeout=30 * HOUR))
    rollout = cf.apply_all(
        rollout, [cf.DeviceFailed(f"d{i}", "x") for i in range(4)], T0 + HOUR
    ).rollout
    for hour, device in enumerate(["d0", "d1", "d2", "d3"], start=2):
        rollout = cf.apply(rollout, cf.Retry(device), T0 + hour * HOUR).rollout
    assert cf.next_due(rollout) == T0 + 32 * HOUR  # d0's retry
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), T0 + 10 * HOUR).rollout
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), T0 + 11 * HOUR).rollout
    assert cf.next_due(rollout) == T0 + 34 * HOUR  # d2's; d0's and d1's were answered
    rollout, effects = cf.advance(rollout, T0 + 34 * HOUR)
    assert effects == (cf.AcknowledgementTimedOut(("d2",), T0 + 34 * HOUR),)


def test_next_due_follows_the_fleet_wide_first_push_until_its_last_answer() -> None:
    rollout = distributing(3, policy=cf.Policy(ack_timeout=30 * HOUR))
    rollout = cf.apply_all(
        rollout, [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d1")], day(1)
    ).rollout
    assert cf.next_due(rollout) == T0 + 30 * HOUR  # d2 has not answered
    rollout = cf.apply(rollout, cf.DeviceInstalled("d2"), day(1)).rollout
    assert cf.next_due(rollout) == day(6)


def test_next_due_of_a_pending_or_ended_rollout_is_none() -> None:
    assert cf.next_due(build(3)) is None
    assert cf.next_due(cf.apply(distributing(1), cf.Cancel(), day(1)).rollout) is None


@given(n=st.integers(0, 8), policy=policies(), jump=spans)
def test_nothing_happens_before_next_due_and_something_happens_at_it(
    n: int, policy: cf.Policy, jump: timedelta
) -> None:
    rollout = cf.advance(distributing(n, policy=policy), T0 + jump).rollout
    due = cf.next_due(rollout)
    if due is None:
        assert cf.advance(rollout, rollout.clock + 400 * DAY).effects == ()
        return
    before = cf.advance(rollout, due - timedelta(microseconds=1)) if due > rollout.clock else None
    if before is not None:
        assert before.effects == ()
    after = cf.advance(rollout, due)
    assert after.rollout != rollout or after.effects


@pytest.mark.parametrize("n", [0, 3])
def test_summary_shows_the_next_notice(n: int) -> None:
    summary = cf.summarize(distributing(n), day(1))
    assert summary.next_notice == day(6)
    assert cf.summarize(distributing(n), day(6)).next_notice is None
