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


# --- The expiry of the existing certificate (rollout-rules.md) -----------------------------------
# One test per clause of the rule, run through the evaluator from distribution to the end:
# when the expiry falls before t0, before, between and after the checkpoints, at a
# checkpoint and at the deadline, with a manual extension around it, and under both
# import rules. Each asserts the whole timeline: the notices (when, for which instant,
# whether for the expiry), the postponements and the import.


def _run_to_end(rollout: cf.Rollout) -> tuple[cf.Rollout, list[cf.Effect]]:
    """Every instant the rollout says is due, in turn, until it ends."""
    effects: list[cf.Effect] = []
    while (due := cf.next_due(rollout)) is not None:
        rollout, more = cf.advance(rollout, due)
        effects.extend(more)
    return rollout, effects


def _notices(effects: list[cf.Effect]) -> list[tuple[float, float, bool]]:
    """Each notice as (day sent, day of the instant it announces, whether it is the expiry)."""
    return [
        ((e.due_at - T0) / DAY, (e.checkpoint_at - T0) / DAY, e.expiry)
        for e in effects
        if isinstance(e, cf.Notify)
    ]


def _imports(effects: list[cf.Effect]) -> list[tuple[float, bool]]:
    return [
        ((e.due_at - T0) / DAY, e.forced) for e in effects if isinstance(e, cf.ImportCertificate)
    ]


def _postponed(effects: list[cf.Effect]) -> list[float]:
    return [(e.due_at - T0) / DAY for e in effects if isinstance(e, cf.ImportPostponed)]


def test_expiry_before_the_first_checkpoint_imports_there_and_the_pre_empted_checkpoint_is_never_announced() -> (
    None
):
    rollout, effects = _run_to_end(distributing(2, existing_expires_in=5 * DAY))
    assert _notices(effects) == [(4, 5, True)]
    assert _imports(effects) == [(5, True)]
    assert _postponed(effects) == []
    assert rollout.state is cf.RolloutState.FORCED


def test_expiry_between_checkpoints_becomes_the_next_decision_after_a_postponement() -> None:
    _, effects = _run_to_end(distributing(2, existing_expires_in=10 * DAY))
    # Day 7 postpones to day 14, but the expiry (day 10) comes first: announced on day 9.
    assert _notices(effects) == [(6, 7, False), (9, 10, True)]
    assert _postponed(effects) == [7]
    assert _imports(effects) == [(10, True)]


def test_expiry_closer_than_the_notice_at_a_postponing_checkpoint_is_announced_by_that_checkpoint() -> (
    None
):
    _, effects = _run_to_end(distributing(2, existing_expires_in=7.5 * DAY))
    # At day 7 the expiry is half a day away, less than notice_before: announced at once.
    assert _notices(effects) == [(6, 7, False), (7, 7.5, True)]
    assert _imports(effects) == [(7.5, True)]


def test_expiry_closer_than_the_notice_at_distribution_start_is_announced_at_t0() -> None:
    started = cf.apply(build(2, existing_expires_in=12 * HOUR), cf.DistributeRoot(), T0)
    _, effects = _run_to_end(started.rollout)
    effects = [*started.effects, *effects]
    assert _notices(effects) == [(0, 0.5, True)]
    assert _imports(effects) == [(0.5, True)]


def test_expiry_at_a_checkpoint_lets_the_checkpoint_decide_and_the_condition_holds() -> None:
    _, effects = _run_to_end(distributing(2, existing_expires_in=7 * DAY))
    assert _notices(effects) == [(6, 7, False)]
    assert _imports(effects) == [(7, True)]


def test_expiry_at_the_deadline_is_no_checkpoint_of_its_own_the_deadline_imports() -> None:
    _, effects = _run_to_end(distributing(2, existing_expires_in=21 * DAY))
    assert _notices(effects) == [(6, 7, False), (13, 14, False), (20, 21, False)]
    assert _postponed(effects) == [7, 14]
    assert _imports(effects) == [(21, True)]


def test_expiry_after_the_deadline_changes_nothing() -> None:
    _, effects = _run_to_end(distributing(2, existing_expires_in=30 * DAY))
    assert _notices(effects) == [(6, 7, False), (13, 14, False), (20, 21, False)]
    assert _imports(effects) == [(21, True)]


def test_expiry_before_t0_is_no_checkpoint_and_the_first_checkpoint_imports() -> None:
    rollout, effects = _run_to_end(distributing(2, existing_expires_in=-DAY))
    assert timeline.expiry_checkpoint(rollout.plan, rollout.phase) is None
    assert _notices(effects) == [(6, 7, False)]
    assert _imports(effects) == [(7, True)]


def test_expiry_imports_by_trust_imported_when_every_device_trusts() -> None:
    rollout = distributing(2, existing_expires_in=5 * DAY, policy=cf.Policy(ack_timeout=None))
    rollout = cf.apply_all(rollout, [cf.DeviceInstalled("d0")], day(1)).rollout
    # One device still waits: the condition (distributed) fails, so only the expiry imports.
    rollout = cf.apply_all(rollout, [cf.DeviceInstalled("d1")], day(4.5)).rollout
    rollout, effects = _run_to_end(rollout)
    # Everyone trusts by day 4.5: the next tick imports, cleanly.
    assert _imports(effects) == [(5, False)]
    assert rollout.state is cf.RolloutState.IMPORTED


def test_a_manual_extension_does_not_move_the_expiry() -> None:
    rollout = distributing(2, existing_expires_in=10 * DAY)
    rollout = cf.apply(rollout, cf.ExtendManually(), day(6.5)).rollout
    assert timeline.next_checkpoint(rollout.plan, rollout.phase) == day(14)
    assert timeline.next_decision(rollout.plan, rollout.phase) == day(10)
    rollout, effects = _run_to_end(rollout)
    assert _notices(effects)[-1] == (9, 10, True)
    assert _imports(effects) == [(10, True)]


def test_an_extension_that_moves_the_deadline_past_the_expiry_makes_the_expiry_a_checkpoint() -> (
    None
):
    rollout = distributing(2, existing_expires_in=24 * DAY)
    assert timeline.expiry_checkpoint(rollout.plan, rollout.phase) is None  # past day 21
    rollout = cf.apply(rollout, cf.ExtendManually(), day(6.5)).rollout
    assert timeline.deadline(rollout.plan, rollout.phase) == day(28)
    assert timeline.expiry_checkpoint(rollout.plan, rollout.phase) == day(24)
    rollout, effects = _run_to_end(rollout)
    assert _postponed(effects) == [14, 21]
    assert _notices(effects)[-1] == (23, 24, True)
    assert _imports(effects) == [(24, True)]


def test_under_distributed_and_expired_the_expiry_imports_nothing_by_itself() -> None:
    policy = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    rollout = distributing(2, existing_expires_in=5 * DAY, policy=policy)
    assert timeline.expiry_checkpoint(rollout.plan, rollout.phase) is None
    rollout, effects = _run_to_end(rollout)
    # Nobody installs, so the condition never holds: the deadline imports.
    assert all(not expiry for *_, expiry in _notices(effects))
    assert _postponed(effects) == [7, 14]
    assert _imports(effects) == [(21, True)]


def test_under_distributed_and_expired_a_checkpoint_after_the_expiry_imports_a_distributed_fleet() -> (
    None
):
    policy = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    rollout = distributing(2, existing_expires_in=10 * DAY, policy=policy)
    rollout = cf.apply_all(
        rollout, [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d1")], day(1)
    ).rollout
    rollout, effects = _run_to_end(rollout)
    # Distributed on day 1, but not expired on day 7; expired (and distributed) on day 14.
    assert _postponed(effects) == [7]
    assert _imports(effects) == [(14, False)]


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_an_expiry_at_the_instant_of_a_checkpoint_leaves_the_checkpoint_the_next_decision() -> None:
    from datetime import timezone

    east = timezone(timedelta(hours=5, minutes=30))
    rollout = cf.apply(
        cf.new_rollout(
            ["a"],
            existing_not_after=day(7).astimezone(east),  # the first checkpoint, another offset
            new_not_before=T0 - DAY,
            new_not_after=T0 + 299 * DAY,
            root_publicly_trusted=False,
            created_at=T0,
        ),
        cf.DistributeRoot(),
        T0,
    ).rollout
    plan, phase = rollout.plan, rollout.phase
    assert timeline.expiry_checkpoint(plan, phase) == day(7)
    decision = timeline.next_decision(plan, phase)
    assert decision is not None
    assert decision.isoformat() == day(7).isoformat()  # the checkpoint's, not the expiry's
    assert not timeline.next_decision_is_expiry(plan, phase)
