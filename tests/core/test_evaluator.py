"""Every rule of rollout-rules.md, one test (or property) named after it.

The day numbers are the spec's: t0 = distribution start (``T0`` here), day N = t0 + N x 24h.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

import certflow as cf
from certflow.core.evaluator import DEFAULT
from tests.core.strategies import DAY, HOUR, T0, build, day, device_counts, distributing, spans

SECOND = timedelta(seconds=1)


def run(
    rollout: cf.Rollout, *steps: tuple[float, cf.Command | None]
) -> tuple[cf.Rollout, list[cf.Effect]]:
    """Apply ``(day, command)`` steps (``None``: just advance) and collect the effects."""
    effects: list[cf.Effect] = []
    for when, command in steps:
        step = (
            cf.advance(rollout, day(when))
            if command is None
            else cf.apply(rollout, command, day(when))
        )
        rollout = step.rollout
        effects += step.effects
    return rollout, effects


def of_type(effects: list[cf.Effect] | tuple[cf.Effect, ...], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in effects if isinstance(e, kind)]


def install_all(rollout: cf.Rollout, at: datetime) -> cf.Rollout:
    ids = [r.device_id for r in rollout.devices() if r.state is cf.DeviceState.PUSHED]
    return cf.apply_all(rollout, [cf.DeviceInstalled(d) for d in ids], at).rollout


# --- The source document's timeline, day by day -------------------------------------


def test_source_timeline_day_by_day_with_a_straggler_is_forced_on_day_21() -> None:
    rollout = distributing(["laptop", "phone", "tablet"], existing_expires_in=90 * DAY)
    log: list[tuple[int, str]] = []
    rollout = cf.apply(rollout, cf.DeviceInstalled("laptop"), day(1)).rollout
    rollout = cf.apply(rollout, cf.DeviceFailed("phone", "store locked"), day(2)).rollout
    rollout = cf.apply(rollout, cf.Retry("phone"), day(3)).rollout
    rollout = cf.apply(rollout, cf.DeviceInstalled("phone"), day(4)).rollout
    for n in range(5, 23):
        rollout, effects = cf.advance(rollout, day(n))
        log += [(n, type(e).__name__) for e in effects]
    assert log == [
        (6, "Notify"),
        (7, "ImportPostponed"),
        (13, "Notify"),
        (14, "ImportPostponed"),
        (20, "Notify"),
        (21, "ImportCertificate"),
        (21, "ReenrollmentRequired"),
        (21, "RestartRequired"),
    ]
    assert rollout.state is cf.RolloutState.FORCED
    assert rollout.device_state("tablet") is cf.DeviceState.REENROLL_REQUIRED
    assert rollout.device("phone").attempts == 2


def test_source_timeline_everyone_installed_imports_on_day_7() -> None:
    rollout = distributing(3)
    rollout = install_all(rollout, day(2))
    for n in range(3, 8):
        rollout, effects = cf.advance(rollout, day(n))
        if n == 6:
            assert [type(e) for e in effects] == [cf.Notify]
        elif n == 7:
            assert effects == (
                cf.ImportCertificate(forced=False, due_at=day(7)),
                cf.RestartRequired(due_at=day(7)),
            )
        else:
            assert effects == ()
    assert rollout.state is cf.RolloutState.IMPORTED


# --- Rollout machine rows -----------------------------------------------------------


def test_pending_distribute_root_starts_distribution_at_t0_and_pushes_every_in_scope_device() -> (
    None
):
    rollout = build(["a", "b", "c", "d"], trusted=("b",))
    rollout = cf.apply(rollout, cf.Unenroll("d"), T0).rollout
    rollout, effects = cf.apply(rollout, cf.DistributeRoot(), T0 + HOUR)
    assert rollout.state is cf.RolloutState.DISTRIBUTING
    assert rollout.phase.started_at == T0 + HOUR
    assert effects == (cf.PushRoot(("a", "c"), 1, T0 + HOUR),)
    assert [rollout.device_state(d) for d in "abcd"] == [
        cf.DeviceState.PUSHED,
        cf.DeviceState.INSTALLED,
        cf.DeviceState.PUSHED,
        cf.DeviceState.REMOVED,
    ]


@pytest.mark.parametrize(("public", "trusted"), [(True, ()), (False, ("d0", "d1", "d2"))])
def test_pending_proceed_to_import_is_imported_when_every_device_already_trusts_the_root(
    public: bool, trusted: tuple[str, ...]
) -> None:
    rollout, effects = cf.apply(build(3, public=public, trusted=trusted), cf.ProceedToImport(), T0)
    assert rollout.state is cf.RolloutState.IMPORTED
    assert effects == (cf.ImportCertificate(False, T0), cf.RestartRequired(T0))


def test_pending_proceed_to_import_is_forced_and_marks_devices_that_do_not_trust_the_root() -> None:
    rollout = build(3)
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), T0).rollout  # already trusts
    rollout, effects = cf.apply(rollout, cf.ProceedToImport(), T0)
    assert rollout.state is cf.RolloutState.FORCED
    assert effects == (
        cf.ImportCertificate(True, T0),
        cf.ReenrollmentRequired(("d0", "d2"), T0),
        cf.RestartRequired(T0),
    )
    assert rollout.device_state("d1") is cf.DeviceState.INSTALLED


def test_distributing_checkpoint_day_7_imports_when_the_condition_holds() -> None:
    rollout = install_all(distributing(2), day(6.5))
    rollout, effects = cf.advance(rollout, day(7))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(False, day(7))]


def test_distributing_checkpoint_day_7_extends_to_day_14_when_the_condition_fails() -> None:
    rollout, effects = cf.advance(distributing(2), day(7))
    assert rollout.state is cf.RolloutState.EXTENDED
    assert of_type(effects, cf.ImportPostponed) == [cf.ImportPostponed(1, day(14), day(7))]


def test_extended_checkpoint_day_14_imports_when_the_condition_holds() -> None:
    rollout = cf.advance(distributing(2), day(8)).rollout
    rollout = install_all(rollout, day(9))
    rollout, effects = cf.advance(rollout, day(14))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(False, day(14))]


def test_extended_checkpoint_day_14_extends_to_the_deadline_day_21_when_the_condition_fails() -> (
    None
):
    rollout, effects = cf.advance(distributing(2), day(14))
    assert rollout.state is cf.RolloutState.EXTENDED
    assert of_type(effects, cf.ImportPostponed)[-1] == cf.ImportPostponed(2, day(21), day(14))


def test_deadline_day_21_forces_the_import_when_the_condition_fails() -> None:
    rollout, effects = cf.advance(distributing(2), day(21))
    assert rollout.state is cf.RolloutState.FORCED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(21))]


def test_deadline_day_21_imports_when_the_condition_holds() -> None:
    rollout = cf.advance(distributing(2), day(15)).rollout
    rollout = install_all(rollout, day(16))
    rollout, effects = cf.advance(rollout, day(21))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(False, day(21))]


@pytest.mark.parametrize("when", [1, 8])
def test_import_now_during_distribution_is_forced_when_the_condition_fails(when: float) -> None:
    rollout, effects = run(distributing(2), (when, cf.ImportNow()))
    assert rollout.state is cf.RolloutState.FORCED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(when))]
    assert of_type(effects, cf.ReenrollmentRequired) == [
        cf.ReenrollmentRequired(("d0", "d1"), day(when))
    ]


@pytest.mark.parametrize("when", [1, 8])
def test_import_now_during_distribution_is_imported_when_the_condition_holds(when: float) -> None:
    rollout = install_all(cf.advance(distributing(2), day(when)).rollout, day(when))
    rollout, effects = cf.apply(rollout, cf.ImportNow(), day(when))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert effects == (cf.ImportCertificate(False, day(when)), cf.RestartRequired(day(when)))


def test_outcome_import_now_after_the_existing_certificate_expired_is_forced_by_stragglers() -> (
    None
):
    # Under distributed_and_expired the expiry imports nothing by itself.
    strict = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    rollout = distributing(2, existing_expires_in=2 * DAY, policy=strict)
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), day(1)).rollout
    rollout, effects = cf.apply(rollout, cf.ImportNow(), day(3))
    assert rollout.state is cf.RolloutState.FORCED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(3))]
    assert of_type(effects, cf.ReenrollmentRequired) == [cf.ReenrollmentRequired(("d0",), day(3))]


def test_outcome_the_existing_certificates_expiry_imports_at_its_own_instant_forced() -> None:
    # distributed_or_expired: the expiry (day 5) is itself a checkpoint, before day 7.
    rollout = distributing(3, existing_expires_in=5 * DAY)
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    rollout, effects = cf.advance(rollout, day(7))
    assert rollout.state is cf.RolloutState.FORCED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(5))]
    assert of_type(effects, cf.ReenrollmentRequired) == [
        cf.ReenrollmentRequired(("d1", "d2"), day(5))
    ]


def test_outcome_a_checkpoint_that_finds_the_certificate_expired_imports_forced() -> None:
    # The certificate expired before the distribution started: not a checkpoint of its
    # own (only one after t0 is), so day 7 finds the condition true and imports.
    rollout = cf.apply(build(3, existing_expires_in=-DAY), cf.DistributeRoot(), T0).rollout
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    rollout, effects = cf.advance(rollout, day(7))
    assert rollout.state is cf.RolloutState.FORCED
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(7))]
    assert of_type(effects, cf.ReenrollmentRequired) == [
        cf.ReenrollmentRequired(("d1", "d2"), day(7))
    ]


def test_outcome_distributed_and_expired_deadline_with_every_device_trusting_is_imported() -> None:
    policy = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    # The old certificate outlives the deadline: checkpoints never import, the deadline does.
    rollout = distributing(2, existing_expires_in=90 * DAY, policy=policy)
    rollout = install_all(rollout, day(2))
    rollout, effects = cf.advance(rollout, day(21))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert of_type(effects, cf.ImportPostponed) == [
        cf.ImportPostponed(1, day(14), day(7)),
        cf.ImportPostponed(2, day(21), day(14)),
    ]
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(False, day(21))]
    assert of_type(effects, cf.ReenrollmentRequired) == []


@pytest.mark.parametrize(
    "command", [cf.ImportNow(), cf.ProceedToImport()], ids=["import_now", "proceed_to_import"]
)
@pytest.mark.parametrize("all_trust", [True, False])
def test_outcome_of_an_administrators_import_is_decided_by_trust_alone(
    command: cf.Command, all_trust: bool
) -> None:
    rollout = build(2) if isinstance(command, cf.ProceedToImport) else distributing(2)
    if all_trust:
        rollout = cf.apply_all(
            rollout, [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d1")], T0
        ).rollout
    rollout, effects = cf.apply(rollout, command, day(1))
    expected = cf.RolloutState.IMPORTED if all_trust else cf.RolloutState.FORCED
    assert rollout.state is expected
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(not all_trust, day(1))]


@pytest.mark.parametrize("state_day", [6, 10])
def test_manual_extension_keeps_the_state_and_moves_next_checkpoint_and_deadline_by_7_days(
    state_day: float,
) -> None:
    rollout = cf.advance(distributing(2), day(state_day)).rollout
    before = cf.summarize(rollout, day(state_day))
    rollout, effects = cf.apply(rollout, cf.ExtendManually(), day(state_day))
    after = cf.summarize(rollout, day(state_day))
    assert effects == ()
    assert rollout.state is before.state
    assert after.next_checkpoint == before.next_checkpoint + 7 * DAY  # type: ignore[operator]
    assert after.deadline == before.deadline + 7 * DAY  # type: ignore[operator]


@pytest.mark.parametrize("when", [0, 3, 8])
def test_cancel_from_pending_distributing_or_extended_ends_the_rollout(when: float) -> None:
    rollout = build(2) if when == 0 else cf.advance(distributing(2), day(when)).rollout
    rollout, effects = cf.apply(rollout, cf.Cancel(), day(when))
    assert rollout.state is cf.RolloutState.CANCELLED
    assert effects == (cf.RolloutCancelled(day(when)),)  # the end says what happened
    assert cf.advance(rollout, day(60)).effects == ()  # nothing after the end


def _terminal_rollouts() -> list[cf.Rollout]:
    return [
        cf.apply(build(2), cf.ProceedToImport(), T0).rollout,
        cf.apply(build(2, public=True), cf.ProceedToImport(), T0).rollout,
        cf.apply(build(2), cf.Cancel(), T0).rollout,
    ]


@pytest.mark.parametrize("rollout", _terminal_rollouts(), ids=["forced", "imported", "cancelled"])
@pytest.mark.parametrize(
    "command",
    [cf.DistributeRoot(), cf.ProceedToImport(), cf.ImportNow(), cf.ExtendManually(), cf.Cancel()],
    ids=lambda c: type(c).__name__,
)
def test_no_administrator_command_leaves_a_terminal_state(
    rollout: cf.Rollout, command: cf.Command
) -> None:
    with pytest.raises(cf.CommandRefused, match="has ended"):
        cf.apply(rollout, command, day(1))


# --- The import condition -------------------------------------------------------------


@given(installed=st.booleans(), expired=st.booleans(), rule=st.sampled_from(cf.ImportRule))
def test_import_condition_follows_the_policy_rule_at_day_7(
    installed: bool, expired: bool, rule: cf.ImportRule
) -> None:
    rollout = distributing(
        2,
        existing_expires_in=(7 * DAY if expired else 7 * DAY + SECOND),
        policy=cf.Policy(import_rule=rule),
    )
    if installed:
        rollout = install_all(rollout, day(1))
    rollout = cf.advance(rollout, day(7)).rollout
    holds = (
        (installed or expired)
        if rule is cf.ImportRule.DISTRIBUTED_OR_EXPIRED
        else (installed and expired)
    )
    # The condition decides when time imports; trust alone decides the outcome.
    outcome = cf.RolloutState.IMPORTED if installed else cf.RolloutState.FORCED
    assert rollout.state is (outcome if holds else cf.RolloutState.EXTENDED)


def test_import_condition_existing_certificate_expired_at_exactly_the_checkpoint_counts_as_expired() -> (
    None
):
    rollout = distributing(2, existing_expires_in=7 * DAY)
    assert cf.advance(rollout, day(7)).rollout.state is cf.RolloutState.FORCED  # it imports
    rollout = distributing(2, existing_expires_in=7 * DAY + SECOND)
    assert cf.advance(rollout, day(7)).rollout.state is cf.RolloutState.EXTENDED


def test_import_condition_an_empty_scope_is_completely_distributed() -> None:
    rollout = distributing(0)
    assert cf.advance(rollout, day(7)).rollout.state is cf.RolloutState.IMPORTED
    rollout = cf.apply(distributing(1), cf.Unenroll("d0"), day(1)).rollout
    assert cf.advance(rollout, day(7)).rollout.state is cf.RolloutState.IMPORTED


def test_import_condition_a_publicly_trusted_root_counts_as_distributed() -> None:
    rollout, effects = cf.advance(distributing(2, public=True), day(7))
    assert rollout.state is cf.RolloutState.IMPORTED
    assert of_type(effects, cf.ReenrollmentRequired) == []


@given(n=device_counts, installed=st.booleans(), jump=spans)
def test_no_import_before_day_7_except_by_an_administrators_command(
    n: int, installed: bool, jump: timedelta
) -> None:
    rollout = distributing(n, existing_expires_in=timedelta(0))  # condition holds at once
    if installed:
        rollout = install_all(rollout, T0)
    now = min(T0 + jump, day(7) - SECOND)
    rollout, effects = cf.advance(rollout, now)
    assert rollout.state is cf.RolloutState.DISTRIBUTING
    assert of_type(effects, cf.ImportCertificate) == []


def test_checkpoints_with_two_manual_extensions_shift_every_later_checkpoint_and_the_deadline() -> (
    None
):
    _, effects = run(
        distributing(1), (6, cf.ExtendManually()), (15, cf.ExtendManually()), (40, None)
    )
    assert [e.due_at for e in of_type(effects, cf.ImportPostponed)] == [day(14), day(28)]
    assert of_type(effects, cf.ImportCertificate) == [cf.ImportCertificate(True, day(35))]


# --- Manual extension -----------------------------------------------------------------


def test_manual_extension_is_refused_before_day_6_with_the_day_it_opens() -> None:
    rollout = distributing(1)
    with pytest.raises(cf.CommandRefused, match=r"opens on day 6, 2026-07-07 09:00 UTC"):
        cf.apply(rollout, cf.ExtendManually(), day(6) - SECOND)
    assert cf.apply(rollout, cf.ExtendManually(), day(6)).rollout.phase.manual_extensions == 1


def test_manual_extension_is_refused_in_pending() -> None:
    with pytest.raises(cf.CommandRefused, match="distribute the root first"):
        cf.apply(build(1), cf.ExtendManually(), day(10))


def test_manual_extension_is_refused_when_the_new_certificate_expires_before_the_moved_deadline() -> (
    None
):
    # Valid until day 27 23:00: the deadline (21) fits, the moved one (28) does not.
    rollout = distributing(1, new_valid_for=28 * DAY)
    with pytest.raises(cf.CommandRefused, match="before the moved deadline"):
        cf.apply(rollout, cf.ExtendManually(), day(6))
    assert cf.apply(distributing(1, new_valid_for=29 * DAY), cf.ExtendManually(), day(6)).rollout


def test_manual_extension_can_be_repeated_while_the_certificate_allows_it() -> None:
    rollout, _ = run(distributing(1), (6, cf.ExtendManually()), (6, cf.ExtendManually()))
    assert cf.summarize(rollout, day(6)).deadline == day(35)


# --- Notifications ----------------------------------------------------------------------


def test_notifications_come_on_day_6_13_and_20_announcing_each_checkpoint() -> None:
    _, effects = run(distributing(1), (30, None))
    assert _announced(effects) == [
        (1, day(7), False, day(6)),
        (2, day(14), False, day(13)),
        (3, day(21), True, day(20)),
    ]


def _announced(
    effects: tuple[cf.Effect, ...] | list[cf.Effect],
) -> list[tuple[int, datetime, bool, datetime]]:
    return [(n.checkpoint, n.checkpoint_at, n.final, n.due_at) for n in of_type(effects, cf.Notify)]


def test_notifications_are_never_sent_after_the_rollout_ended() -> None:
    rollout = install_all(distributing(1), day(1))
    _, effects = run(rollout, (60, None))
    assert [e.due_at for e in of_type(effects, cf.Notify)] == [day(6)]
    _, effects = run(distributing(1), (3, cf.Cancel()), (60, None))
    assert of_type(effects, cf.Notify) == []


def test_notifications_are_never_sent_twice_and_an_extension_announces_the_moved_checkpoint() -> (
    None
):
    _, effects = run(distributing(1), (6.5, cf.ExtendManually()), (6.6, None), (40, None))
    assert _announced(effects) == [
        (1, day(7), False, day(6)),
        (1, day(14), False, day(13)),
        (2, day(21), False, day(20)),
        (3, day(28), True, day(27)),
    ]


# --- After the import -------------------------------------------------------------------


def test_after_the_import_a_restart_is_required_until_the_server_restarted() -> None:
    rollout, effects = cf.apply(build(1, public=True), cf.ProceedToImport(), T0)
    assert cf.RestartRequired(T0) in effects
    rollout = cf.advance(rollout, day(3)).rollout
    assert rollout.phase.restart_required
    rollout, effects = cf.apply(rollout, cf.ServerRestarted(), day(3))
    assert effects == ()
    assert not rollout.phase.restart_required
    assert cf.apply(rollout, cf.ServerRestarted(), day(4)).rollout.phase.restart_required is False


def test_after_a_forced_import_every_device_that_did_not_trust_the_root_requires_reenrolment() -> (
    None
):
    rollout = distributing(["ok", "pushed", "failed", "gone"])
    rollout, _ = run(
        rollout,
        (1, cf.DeviceInstalled("ok")),
        (1, cf.DeviceFailed("failed", "store locked")),
        (1, cf.Unenroll("gone")),
    )
    rollout, effects = cf.advance(rollout, day(21))
    assert of_type(effects, cf.ReenrollmentRequired) == [
        cf.ReenrollmentRequired(("pushed", "failed"), day(21))
    ]
    assert [r.state.value for r in rollout.devices()] == [
        "installed",
        "reenroll_required",
        "reenroll_required",
        "removed",
    ]


def test_the_new_certificate_must_be_valid_from_creation_through_the_deadline() -> None:
    with pytest.raises(cf.InvalidInput, match="before the deadline"):
        build(1, new_valid_for=22 * DAY - SECOND)  # not_before is day -1
    with pytest.raises(cf.InvalidInput, match="not valid yet"):
        cf.new_rollout(
            [], existing_not_after=T0, new_not_before=T0 + SECOND, new_not_after=T0 + 100 * DAY,
            root_publicly_trusted=False, created_at=T0,
        )  # fmt: skip
    assert build(1, new_valid_for=22 * DAY)  # exactly through the deadline is enough


def test_distribution_started_late_is_refused_when_the_certificate_would_expire_before_the_deadline() -> (
    None
):
    rollout = build(1, new_valid_for=30 * DAY)
    with pytest.raises(cf.CommandRefused, match="before the deadline"):
        cf.apply(rollout, cf.DistributeRoot(), day(10))
    assert (
        cf.apply(rollout, cf.DistributeRoot(), day(8)).rollout.state is cf.RolloutState.DISTRIBUTING
    )


# --- Device sub-machine rows ------------------------------------------------------------


def test_device_pending_to_pushed_when_it_enrols_during_distribution() -> None:
    rollout, effects = cf.apply(distributing(1), cf.Enroll("new"), day(2))
    assert effects == (cf.PushRoot(("new",), 1, day(2)),)
    assert rollout.device("new") == cf.DeviceRecord("new", cf.DeviceState.PUSHED, 1, None)


def test_device_pushed_to_installed_when_it_reports_the_root_installed() -> None:
    rollout = cf.apply(distributing(1), cf.DeviceInstalled("d0"), day(1)).rollout
    assert rollout.device_state("d0") is cf.DeviceState.INSTALLED


def test_device_pushed_to_failed_keeps_the_reason() -> None:
    rollout = cf.apply(distributing(1), cf.DeviceFailed("d0", "store locked"), day(1)).rollout
    assert rollout.device("d0") == cf.DeviceRecord("d0", cf.DeviceState.FAILED, 1, "store locked")


def test_device_pushed_to_failed_when_no_answer_within_the_acknowledgement_timeout() -> None:
    rollout = distributing(3, policy=cf.Policy(ack_timeout=48 * HOUR))
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    rollout, effects = cf.advance(rollout, day(2) - SECOND)
    assert effects == ()
    rollout, effects = cf.advance(rollout, day(2))
    assert effects == (cf.AcknowledgementTimedOut(("d1", "d2"), day(2)),)
    assert rollout.device("d1").last_failure_reason == "no acknowledgement within 2 days"
    rollout, effects = cf.apply(rollout, cf.Retry("d1"), day(3))
    rollout, effects = cf.advance(rollout, day(6))
    assert of_type(effects, cf.AcknowledgementTimedOut) == [
        cf.AcknowledgementTimedOut(("d1",), day(5))
    ]


def test_device_acknowledgement_timeout_is_off_by_default() -> None:
    rollout, effects = cf.advance(distributing(2), day(6.9))
    assert of_type(effects, cf.AcknowledgementTimedOut) == []
    assert rollout.counts()[cf.DeviceState.PUSHED] == 2


def test_device_failed_to_pushed_on_single_retry_with_the_next_attempt() -> None:
    rollout, effects = run(distributing(2), (1, cf.DeviceFailed("d1", "x")), (2, cf.Retry("d1")))
    assert effects[-1] == cf.PushRoot(("d1",), 2, day(2))
    assert rollout.device("d1") == cf.DeviceRecord("d1", cf.DeviceState.PUSHED, 2, "x")


def test_device_failed_to_pushed_on_bulk_retry_grouped_by_attempt() -> None:
    rollout, _ = run(
        distributing(4),
        (1, cf.DeviceFailed("d0", "x")),
        (1, cf.DeviceFailed("d2", "x")),
        (1, cf.Retry("d2")),
        (1, cf.DeviceFailed("d2", "y")),
        (1, cf.DeviceFailed("d3", "x")),
    )
    rollout, effects = cf.apply(rollout, cf.RetryAllFailed(), day(2))
    assert effects == (cf.PushRoot(("d0", "d3"), 2, day(2)), cf.PushRoot(("d2",), 3, day(2)))
    assert rollout.counts()[cf.DeviceState.FAILED] == 0
    assert cf.apply(rollout, cf.RetryAllFailed(), day(2)).effects == ()  # none failed: no-op


@pytest.mark.parametrize("command", [cf.Retry("d0"), cf.RetryAllFailed()], ids=["single", "bulk"])
def test_device_retry_exists_only_for_mdm_server_certificates(command: cf.Command) -> None:
    rollout = distributing(1, kind=cf.CertificateKind.AGENT_SERVER)
    rollout = cf.apply(rollout, cf.DeviceFailed("d0", "x"), day(1)).rollout
    with pytest.raises(cf.CommandRefused, match="only to MDM server certificates"):
        cf.apply(rollout, command, day(2))


@pytest.mark.parametrize(
    "state_of", ["pending", "pushed", "installed", "failed", "reenroll_required"]
)
def test_device_any_state_but_removed_goes_to_removed_on_unenrol(state_of: str) -> None:
    rollout = {
        "pending": build(1),
        "pushed": distributing(1),
        "installed": cf.apply(distributing(1), cf.DeviceInstalled("d0"), T0).rollout,
        "failed": cf.apply(distributing(1), cf.DeviceFailed("d0", "x"), T0).rollout,
        "reenroll_required": cf.apply(distributing(1), cf.ImportNow(), T0).rollout,
    }[state_of]
    assert rollout.device_state("d0").value == state_of
    rollout, effects = cf.apply(rollout, cf.Unenroll("d0"), day(1))
    assert rollout.device_state("d0") is cf.DeviceState.REMOVED
    assert effects == ()
    assert cf.apply(rollout, cf.Unenroll("d0"), day(1)).rollout == rollout  # duplicate


def test_device_removed_is_out_of_scope_and_may_enrol_again() -> None:
    rollout, effects = run(distributing(1), (1, cf.Unenroll("d0")), (2, cf.Enroll("d0")))
    assert effects[-1] == cf.PushRoot(("d0",), 2, day(2))
    assert rollout.device_state("d0") is cf.DeviceState.PUSHED


def test_device_reenroll_required_to_installed_when_it_reenrolled() -> None:
    rollout = cf.apply(distributing(1), cf.ImportNow(), day(1)).rollout
    with pytest.raises(cf.CommandRefused, match="send Reenrolled"):
        cf.apply(rollout, cf.DeviceInstalled("d0"), day(2))
    rollout = cf.apply(rollout, cf.Reenrolled("d0"), day(2)).rollout
    assert rollout.device_state("d0") is cf.DeviceState.INSTALLED
    assert rollout.counts()[cf.DeviceState.REENROLL_REQUIRED] == 0


def test_device_that_enrols_after_the_import_trusts_the_new_certificate() -> None:
    rollout = cf.apply(distributing(1), cf.ImportNow(), day(1)).rollout
    rollout, effects = cf.apply(rollout, cf.Enroll("fresh"), day(2))
    assert effects == ()
    assert rollout.device_state("fresh") is cf.DeviceState.INSTALLED


def test_device_pending_may_already_trust_the_root() -> None:
    rollout = build(2, trusted=("d0",))
    rollout = cf.apply(rollout, cf.DeviceInstalled("d1"), T0).rollout
    assert cf.apply(rollout, cf.ProceedToImport(), T0).rollout.state is cf.RolloutState.IMPORTED


def test_device_failed_then_late_confirmation_counts_as_installed() -> None:
    rollout, _ = run(
        distributing(1), (1, cf.DeviceFailed("d0", "x")), (2, cf.DeviceInstalled("d0"))
    )
    assert rollout.device_state("d0") is cf.DeviceState.INSTALLED


@pytest.mark.parametrize(
    "report",
    [cf.DeviceInstalled("d0"), cf.DeviceFailed("d0", "again"), cf.Enroll("d0")],
    ids=lambda c: type(c).__name__,
)
def test_device_duplicate_report_changes_nothing_and_emits_nothing(report: cf.Command) -> None:
    rollout = cf.advance(distributing(1), day(1)).rollout
    if isinstance(report, cf.DeviceInstalled):
        rollout = cf.apply(rollout, report, day(1)).rollout
    if isinstance(report, cf.DeviceFailed):
        rollout = cf.apply(rollout, cf.DeviceFailed("d0", "first"), day(1)).rollout
    again, effects = cf.apply(rollout, report, day(1))
    assert effects == ()
    assert again == rollout
    assert again.device("d0").last_failure_reason in (None, "first")


@pytest.mark.parametrize(
    "command",
    [
        cf.DeviceInstalled("nobody"),
        cf.DeviceFailed("nobody", "x"),
        cf.Retry("nobody"),
        cf.Unenroll("nobody"),
        cf.Reenrolled("nobody"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_device_report_for_an_unknown_device_is_a_clear_error_and_the_rollout_is_unchanged(
    command: cf.Command,
) -> None:
    rollout = distributing(1)
    before = cf.dumps(rollout)
    with pytest.raises(cf.UnknownDevice) as unknown:
        cf.apply(rollout, command, day(1))
    assert str(unknown.value) == (
        "unknown device 'nobody': it is not in this rollout (send Enroll first if it just enrolled)"
    )
    assert cf.dumps(rollout) == before


@pytest.mark.parametrize(
    ("setup", "command", "message"),
    [
        ("pending", cf.DeviceFailed("d0", "x"), "failures are reported while distributing"),
        ("installed", cf.Retry("d0"), "cannot be retried: it is installed"),
        ("installed", cf.DeviceFailed("d0", "x"), "it already trusts the root"),
        ("removed", cf.DeviceInstalled("d0"), "send Enroll if it came back"),
        ("distributing", cf.Reenrolled("d0"), "re-enrolment applies after the import"),
        ("pending", cf.ImportNow(), "use ProceedToImport"),
        ("distributing", cf.ProceedToImport(), "use ImportNow"),
        ("distributing", cf.DistributeRoot(), "distribution starts from pending"),
        ("cancelled", cf.DeviceInstalled("d0"), "was cancelled"),
    ],
)
def test_commands_in_the_wrong_state_are_refused_with_what_would_allow_them(
    setup: str, command: cf.Command, message: str
) -> None:
    rollout = {
        "pending": build(1),
        "distributing": distributing(1),
        "installed": cf.apply(distributing(1), cf.DeviceInstalled("d0"), T0).rollout,
        "removed": cf.apply(distributing(1), cf.Unenroll("d0"), T0).rollout,
        "cancelled": cf.apply(distributing(1), cf.Cancel(), T0).rollout,
    }[setup]
    before = cf.dumps(rollout)
    with pytest.raises(cf.CommandRefused, match=message):
        cf.apply(rollout, command, day(1))
    assert cf.dumps(rollout) == before


# --- The evaluator ----------------------------------------------------------------------


def test_naive_datetimes_are_rejected_everywhere() -> None:
    naive = datetime(2026, 7, 1, 9)
    with pytest.raises(cf.InvalidInput, match="created_at is a naive datetime"):
        cf.new_rollout([], existing_not_after=T0, new_not_before=T0, new_not_after=T0 + 99 * DAY,
                       root_publicly_trusted=False, created_at=naive)  # fmt: skip
    with pytest.raises(cf.InvalidInput, match="now is a naive datetime"):
        cf.advance(build(1), naive)
    with pytest.raises(cf.InvalidInput, match="now is a naive datetime"):
        cf.apply(build(1), cf.DistributeRoot(), naive)
    with pytest.raises(cf.InvalidInput, match="timezone-aware datetime"):
        cf.advance(build(1), "2026-07-01")  # type: ignore[arg-type]


def test_instants_are_exact_elapsed_time_whatever_the_timezone() -> None:
    tokyo = timezone(timedelta(hours=9))
    rollout = cf.apply(build(1), cf.DistributeRoot(), T0.astimezone(tokyo)).rollout
    rollout, effects = cf.advance(rollout, (day(6) - SECOND).astimezone(tokyo))
    assert effects == ()
    assert cf.advance(rollout, day(6).astimezone(UTC)).effects[0].due_at == day(6)


def test_an_instant_earlier_than_the_last_one_seen_is_refused_and_the_rollout_unchanged() -> None:
    rollout = cf.advance(distributing(1), day(3)).rollout
    with pytest.raises(cf.TimeWentBackwards, match="earlier than the last instant"):
        cf.advance(rollout, day(3) - timedelta(microseconds=1))
    with pytest.raises(cf.TimeWentBackwards):
        cf.apply(rollout, cf.DeviceInstalled("d0"), day(2))
    assert rollout.clock == day(3)


def test_a_command_first_advances_to_its_instant_and_effects_come_in_due_order() -> None:
    rollout = distributing(1)
    rollout, effects = cf.apply(rollout, cf.ImportNow(), day(10))
    assert [type(e) for e in effects] == [
        cf.Notify, cf.ImportPostponed, cf.ImportCertificate, cf.ReenrollmentRequired, cf.RestartRequired,
    ]  # fmt: skip
    assert [e.due_at for e in effects] == sorted(e.due_at for e in effects)


def test_catch_up_processes_every_missed_instant_in_order_with_its_own_due_at() -> None:
    _, effects = cf.advance(distributing(1), day(365))
    assert [e.due_at for e in effects] == [
        day(6),
        day(7),
        day(13),
        day(14),
        day(20),
        day(21),
        day(21),
        day(21),
    ]


@given(n=device_counts, cuts=st.lists(spans, max_size=6), total=spans)
def test_advancing_in_one_jump_equals_advancing_in_smaller_steps(
    n: int, cuts: list[timedelta], total: timedelta
) -> None:
    start = distributing(n, policy=cf.Policy(ack_timeout=30 * HOUR))
    end = T0 + total
    whole = cf.advance(start, end)
    rollout, effects = start, list[cf.Effect]()
    for cut in sorted(min(T0 + c, end) for c in cuts):
        rollout, step = cf.advance(rollout, cut)
        effects += step
    rollout, step = cf.advance(rollout, end)
    assert rollout == whole.rollout
    assert tuple(effects + list(step)) == whole.effects


@given(n=device_counts, jump=spans)
def test_advancing_twice_to_the_same_instant_changes_nothing_and_emits_nothing(
    n: int, jump: timedelta
) -> None:
    once = cf.advance(distributing(n), T0 + jump).rollout
    twice, effects = cf.advance(once, T0 + jump)
    assert effects == ()
    assert twice == once


@given(data=st.data(), n=st.integers(1, 30))
def test_apply_all_equals_applying_each_command_in_turn(data: st.DataObject, n: int) -> None:
    ids = [f"d{i}" for i in range(n)]
    rollout = cf.advance(distributing(ids), day(1)).rollout
    names = st.sampled_from(ids)
    commands = data.draw(
        st.lists(
            st.one_of(
                names.map(cf.DeviceInstalled),
                st.builds(cf.DeviceFailed, names, st.just("x")),
                names.map(cf.Retry),
                names.map(cf.Unenroll),
                st.just(cf.RetryAllFailed()),
            ),
            max_size=60,
        )
    )
    now = day(2)
    try:
        # Folded from the rollout itself: a batch of no-ops, like each no-op, leaves it
        # as it was (its clock too).
        expected_rollout, expected_effects = rollout, list[cf.Effect]()
        for command in commands:
            expected_rollout, step = cf.apply(expected_rollout, command, now)
            expected_effects += step
    except cf.CertflowError:
        with pytest.raises(cf.CertflowError):
            cf.apply_all(rollout, commands, now)
        return
    result = cf.apply_all(rollout, commands, now)
    assert result.rollout == expected_rollout
    assert list(result.effects) == list(cf.advance(rollout, now).effects) + expected_effects


def test_apply_all_is_atomic_when_a_command_is_refused() -> None:
    rollout = distributing(3)
    with pytest.raises(cf.UnknownDevice):
        cf.apply_all(rollout, [cf.DeviceInstalled("d0"), cf.DeviceInstalled("zz")], day(1))
    assert rollout.counts()[cf.DeviceState.PUSHED] == 3


def test_step_unpacks_as_rollout_and_effects() -> None:
    step = cf.apply(build(1), cf.DistributeRoot(), T0)
    rollout, effects = step
    assert (rollout, effects) == (step.rollout, step.effects)


def test_the_rollout_passed_in_is_never_modified() -> None:
    rollout = distributing(3)
    snapshot = cf.dumps(rollout)
    cf.apply(rollout, cf.DeviceInstalled("d0"), day(1))
    cf.apply_all(rollout, [cf.DeviceFailed("d1", "x"), cf.DeviceInstalled("d2")], day(1))
    cf.advance(rollout, day(30))
    assert cf.dumps(rollout) == snapshot


def test_something_that_is_not_a_command_is_refused() -> None:
    with pytest.raises(cf.InvalidInput, match="is not a certflow command"):
        cf.apply(build(1), "distribute", T0)  # type: ignore[arg-type]


def test_device_acknowledgement_timeout_applies_only_to_the_latest_push() -> None:
    rollout = build(2, policy=cf.Policy(ack_timeout=48 * HOUR))
    rollout = cf.apply(rollout, cf.Unenroll("d1"), T0).rollout  # never pushed
    rollout = cf.apply(rollout, cf.DistributeRoot(), T0).rollout
    rollout = cf.apply(rollout, cf.Enroll("d1"), day(1)).rollout  # its first push, on day 1
    rollout, effects = cf.advance(rollout, day(2))
    assert effects == (cf.AcknowledgementTimedOut(("d0",), day(2)),)
    assert rollout.device_state("d1") is cf.DeviceState.PUSHED
    rollout, effects = cf.advance(rollout, day(3))
    assert effects == (cf.AcknowledgementTimedOut(("d1",), day(3)),)


def test_device_timeouts_due_at_a_checkpoint_are_processed_before_it() -> None:
    rollout = distributing(1, policy=cf.Policy(ack_timeout=7 * DAY))
    _, effects = cf.advance(rollout, day(7))
    assert [type(e) for e in effects] == [cf.Notify, cf.AcknowledgementTimedOut, cf.ImportPostponed]


def _shared_chunks(a: cf.Rollout, b: cf.Rollout) -> int:
    return sum(
        x is y for x, y in zip(a._fleet.codes.chunks(), b._fleet.codes.chunks(), strict=False)
    )


@pytest.mark.parametrize(
    "command",
    [
        cf.DeviceInstalled("d5000"),
        cf.DeviceFailed("d5000", "x"),
        cf.Enroll("fresh"),
        cf.Unenroll("d9"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_one_device_event_copies_one_chunk_and_shares_the_rest_of_the_fleet(
    command: cf.Command,
) -> None:
    before = distributing(20_000)
    after = cf.apply(before, command, day(1)).rollout
    chunks = len(list(before._fleet.codes.chunks()))
    assert _shared_chunks(before, after) == chunks - 1
    batch = cf.apply_all(before, [cf.DeviceInstalled("d1"), cf.DeviceInstalled("d2")], day(1))
    assert _shared_chunks(before, batch.rollout) == chunks - 1


# --- Behaviours a mutation run of the earlier evaluator found untested -----------------------


def _fold(rollout: cf.Rollout, commands: list[cf.Command], now: datetime) -> cf.Step:
    effects: list[cf.Effect] = []
    for command in commands:
        rollout, step = cf.apply(rollout, command, now)
        effects += step
    return cf.Step(rollout, tuple(effects))


@pytest.mark.parametrize(
    "report",
    [cf.DeviceInstalled("d0"), cf.DeviceFailed("d0", "x"), cf.Unenroll("d0"), cf.Enroll("new")],
    ids=lambda c: type(c).__name__,
)
def test_apply_all_of_device_reports_on_a_cancelled_rollout_is_refused_as_apply_is(
    report: cf.Command,
) -> None:
    cancelled = cf.apply(distributing(2), cf.Cancel(), day(1)).rollout
    with pytest.raises(cf.CommandRefused, match="was cancelled") as single:
        cf.apply(cancelled, report, day(2))
    with pytest.raises(cf.CommandRefused, match="was cancelled") as batch:
        cf.apply_all(cancelled, [report], day(2))
    assert str(single.value) == str(batch.value)
    assert (single.value.reason, single.value.device_id) == (
        batch.value.reason,
        batch.value.device_id,
    )


def test_a_batch_over_many_chunks_with_late_enrolments_and_a_repeated_failure_equals_the_fold() -> (
    None
):
    rollout = distributing(700)
    rollout = cf.apply_all(rollout, [cf.Enroll(f"late-{i}") for i in range(3)], day(1)).rollout
    commands: list[cf.Command] = [cf.DeviceInstalled(f"d{i}") for i in range(0, 700, 3)]
    commands += [cf.DeviceFailed("d601", "locked"), cf.DeviceFailed("d601", "second reason")]
    commands += [cf.DeviceInstalled("late-1"), cf.DeviceFailed("late-2", "busy")]
    commands += [cf.DeviceInstalled(f"d{i}") for i in range(1, 700, 3)]
    batch = cf.apply_all(rollout, commands, day(2))
    assert batch == _fold(rollout, commands, day(2))
    assert batch.rollout.device("d601").last_failure_reason == "locked"
    assert batch.rollout.device_state("late-1") is cf.DeviceState.INSTALLED
    assert batch.rollout.counts()[cf.DeviceState.INSTALLED] == 468


def test_a_single_report_beyond_the_first_chunk_leaves_its_first_chunk_counterpart_alone() -> None:
    rollout = cf.apply(distributing(600), cf.DeviceFailed("d44", "x"), day(1)).rollout
    after = cf.apply(rollout, cf.DeviceInstalled("d300"), day(2)).rollout  # 300 = 256 + 44
    assert after.device_state("d300") is cf.DeviceState.INSTALLED
    assert after.device_state("d44") is cf.DeviceState.FAILED
    assert after.counts()[cf.DeviceState.INSTALLED] == 1
    assert after.counts()[cf.DeviceState.FAILED] == 1


def test_a_command_at_exactly_the_instant_a_timeout_falls_due_comes_after_the_timeout() -> None:
    rollout = distributing(1, policy=cf.Policy(ack_timeout=24 * HOUR))
    rollout, effects = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1))
    assert effects == (cf.AcknowledgementTimedOut(("d0",), day(1)),)
    assert rollout.device_state("d0") is cf.DeviceState.INSTALLED  # a late confirmation
    assert rollout.device("d0").last_failure_reason == "no acknowledgement within 1 day"


@pytest.mark.parametrize("first", ["d0", "d1"])
def test_two_devices_retried_at_different_times_to_one_attempt_each_time_out_alone(
    first: str,
) -> None:
    second = "d1" if first == "d0" else "d0"
    rollout = distributing(2, policy=cf.Policy(ack_timeout=10 * HOUR))
    rollout = cf.apply_all(
        rollout, [cf.DeviceFailed("d0", "x"), cf.DeviceFailed("d1", "y")], T0 + HOUR
    ).rollout
    rollout = cf.apply(rollout, cf.Retry(first), T0 + 2 * HOUR).rollout
    rollout = cf.apply(rollout, cf.Retry(second), T0 + 5 * HOUR).rollout
    assert rollout.device("d0").attempts == rollout.device("d1").attempts == 2
    rollout, effects = cf.advance(rollout, T0 + 12 * HOUR)
    assert effects == (cf.AcknowledgementTimedOut((first,), T0 + 12 * HOUR),)
    assert rollout.device_state(second) is cf.DeviceState.PUSHED
    rollout, effects = cf.advance(rollout, T0 + 15 * HOUR)
    assert effects == (cf.AcknowledgementTimedOut((second,), T0 + 15 * HOUR),)


@pytest.mark.parametrize(
    ("steps", "ended"),
    [
        ([(3, cf.ImportNow())], 3),
        ([(0.5, cf.ProceedToImport())], 0.5),
        ([(30, None)], 21),
        ([(4, cf.Cancel())], 4),
    ],
    ids=["import now", "proceed", "deadline", "cancel"],
)
def test_ended_at_is_the_instant_of_the_import_or_cancel(
    steps: list[tuple[float, cf.Command | None]], ended: float
) -> None:
    start = build(1) if isinstance(steps[0][1], cf.ProceedToImport) else distributing(1)
    rollout, _ = run(start, *steps)
    assert rollout.phase.ended_at == day(ended)


def test_a_device_enrolled_after_creation_can_report_installed_and_is_counted() -> None:
    rollout, effects = cf.apply(distributing(1), cf.Enroll("late"), day(1))
    assert effects == (cf.PushRoot(("late",), 1, day(1)),)
    rollout = cf.apply(rollout, cf.DeviceInstalled("late"), day(2)).rollout
    assert rollout.device_state("late") is cf.DeviceState.INSTALLED
    assert rollout.counts()[cf.DeviceState.INSTALLED] == 1
    assert list(rollout.device_ids()) == ["d0", "late"]


@pytest.mark.parametrize(("when", "first"), [(6, cf.Notify), (7, cf.Notify)])
def test_a_report_at_the_instant_a_notice_or_checkpoint_falls_due_comes_after_it(
    when: float, first: type
) -> None:
    rollout = distributing(2)
    rollout, effects = cf.apply(rollout, cf.DeviceInstalled("d0"), day(when))
    assert isinstance(effects[0], first)
    assert rollout.device_state("d0") is cf.DeviceState.INSTALLED
    if when == 7:
        assert rollout.state is cf.RolloutState.EXTENDED  # d0 was not yet installed at day 7


class _NoOffset(tzinfo):
    """A timezone that does not know its offset: such an instant is naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "nowhere"


@pytest.mark.parametrize(
    "bad", ["2026-07-02", 1234567890, datetime(2026, 7, 2, tzinfo=_NoOffset())]
)
@pytest.mark.parametrize("operation", ["apply", "apply_all", "advance"])
def test_a_now_that_is_not_an_aware_datetime_is_refused_clearly(
    bad: object, operation: str
) -> None:
    rollout = distributing(1)
    calls: dict[str, Callable[[], object]] = {
        "apply": lambda: cf.apply(rollout, cf.DeviceInstalled("d0"), bad),  # type: ignore[arg-type]
        "apply_all": lambda: cf.apply_all(rollout, [cf.DeviceInstalled("d0")], bad),  # type: ignore[arg-type]
        "advance": lambda: cf.advance(rollout, bad),  # type: ignore[arg-type]
    }
    with pytest.raises(cf.InvalidInput, match="now") as refused:
        calls[operation]()
    assert not isinstance(refused.value, TypeError)


# --- Retry --------------------------------------------------------------------------------------


def _in_every_state(kind: cf.CertificateKind) -> list[cf.Rollout]:
    pending = build(2, kind=kind)
    running = distributing(2, kind=kind)
    return [
        pending,
        running,
        cf.advance(running, day(8)).rollout,  # extended
        cf.apply(running, cf.ImportNow(), day(1)).rollout,  # forced
        cf.apply(build(2, kind=kind, trusted=("d0", "d1")), cf.ProceedToImport(), T0).rollout,
        cf.apply(running, cf.Cancel(), day(1)).rollout,
    ]


@pytest.mark.parametrize("kind", list(cf.CertificateKind))
def test_retry_of_an_unknown_device_is_an_unknown_device_in_every_state_and_kind(
    kind: cf.CertificateKind,
) -> None:
    states = set()
    for rollout in _in_every_state(kind):
        states.add(rollout.state)
        with pytest.raises(cf.UnknownDevice, match="unknown device 'no-such-device'"):
            cf.apply(rollout, cf.Retry("no-such-device"), day(30))
        with pytest.raises(cf.UnknownDevice):
            cf.apply_all(rollout, [cf.Retry("no-such-device")], day(30))
    assert states == set(cf.RolloutState)


def test_retry_of_a_silent_device_pushes_the_root_again_with_the_next_attempt() -> None:
    rollout, effects = cf.apply(distributing(2), cf.Retry("d0"), day(2))
    assert effects == (cf.PushRoot(("d0",), 2, day(2)),)
    assert rollout.device("d0") == cf.DeviceRecord("d0", cf.DeviceState.PUSHED, 2, None)
    rollout, effects = cf.apply(rollout, cf.Retry("d0"), day(3))
    assert effects == (cf.PushRoot(("d0",), 3, day(3)),)


def test_retry_of_a_silent_device_restarts_its_acknowledgement_timer() -> None:
    rollout = distributing(2, policy=cf.Policy(ack_timeout=48 * HOUR))
    rollout = cf.apply(rollout, cf.Retry("d0"), day(1)).rollout
    rollout, effects = cf.advance(rollout, day(2))
    assert effects == (cf.AcknowledgementTimedOut(("d1",), day(2)),)  # d0 was pushed again
    rollout, effects = cf.advance(rollout, day(3))
    assert effects == (cf.AcknowledgementTimedOut(("d0",), day(3)),)


def test_bulk_retry_takes_only_failed_devices_not_silent_ones() -> None:
    rollout = cf.apply(distributing(3), cf.DeviceFailed("d1", "x"), day(1)).rollout
    rollout, effects = cf.apply(rollout, cf.RetryAllFailed(), day(2))
    assert effects == (cf.PushRoot(("d1",), 2, day(2)),)
    assert [r.attempts for r in rollout.devices()] == [1, 2, 1]


# --- Asking before acting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "when", "allowed"),
    [
        (cf.ExtendManually(), 2, False),
        (cf.ExtendManually(), 6, True),
        (cf.ImportNow(), 1, True),
        (cf.ProceedToImport(), 1, False),
        (cf.DistributeRoot(), 1, False),
        (cf.Cancel(), 30, False),
    ],
)
def test_allows_and_refusal_answer_as_apply_would_without_running_anything(
    command: cf.Command, when: float, allowed: bool
) -> None:
    rollout = distributing(2)
    assert DEFAULT.allows(rollout, command, day(when)) is allowed
    refusal = DEFAULT.refusal(rollout, command, day(when))
    if allowed:
        assert refusal is None
        cf.apply(rollout, command, day(when))
        return
    assert refusal is not None
    with pytest.raises(cf.CommandRefused) as raised:
        cf.apply(rollout, command, day(when))
    assert (str(refusal), refusal.reason, refusal.allowed_at) == (
        str(raised.value),
        raised.value.reason,
        raised.value.allowed_at,
    )


def test_allows_answers_only_for_the_administrators_rollout_commands() -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        DEFAULT.allows(distributing(1), cf.DeviceInstalled("d0"), day(1))
    assert str(refused.value) == (
        "DeviceInstalled(device_id='d0') is not an administrator's rollout command; allows() "
        "and refusal() answer for DistributeRoot, ProceedToImport, ImportNow, "
        "ExtendManually, RetryAllFailed and Cancel"
    )
    with pytest.raises(cf.InvalidInput, match="not an administrator's rollout command"):
        DEFAULT.refusal(distributing(1), "extend", day(1))  # type: ignore[arg-type]


def test_a_single_report_beyond_the_first_mid_node_reads_its_own_code() -> None:
    # Device 16,384 + 44 sits in the second mid node; device 44 in the first is failed.
    rollout = cf.apply(distributing(16_500), cf.DeviceFailed("d44", "x"), day(1)).rollout
    after = cf.apply(rollout, cf.DeviceInstalled("d16428"), day(2)).rollout
    assert after.device_state("d16428") is cf.DeviceState.INSTALLED
    assert after.counts()[cf.DeviceState.INSTALLED] == 1
    assert after.counts()[cf.DeviceState.FAILED] == 1


@pytest.mark.parametrize(
    "steps",
    [
        [(0, cf.DistributeRoot())],
        [(1, cf.DeviceFailed("d3", "x")), (2, cf.RetryAllFailed())],
        [(1, cf.ImportNow())],
        [(30, None)],
    ],
    ids=["distribute", "bulk retry", "import", "timeouts and the deadline"],
)
def test_fleet_wide_steps_never_modify_the_rollout_they_start_from(
    steps: list[tuple[float, cf.Command | None]],
) -> None:
    policy = cf.Policy(ack_timeout=HOUR)
    start = (
        build(600, policy=policy)
        if isinstance(steps[0][1], cf.DistributeRoot)
        else distributing(600, policy=policy)
    )
    rollout = start
    for when, command in steps:
        before = cf.dumps(rollout)
        copy = cf.loads(before)
        rollout = (
            cf.advance(rollout, day(when))
            if command is None
            else cf.apply(rollout, command, day(when))
        ).rollout
        assert cf.dumps(copy) == before
    assert cf.dumps(start) == cf.dumps(cf.loads(cf.dumps(start)))


def test_rules_given_to_the_evaluator_are_deprecated_and_still_run() -> None:
    # Rules are internal (docs/decisions.md): the old spelling works for one release.
    with pytest.warns(DeprecationWarning, match=r"Evaluator\(rules\) is deprecated"):
        evaluator = cf.Evaluator(cf.RULES)
    assert evaluator.rules is cf.RULES


# --- No-ops ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        ("installed", cf.DeviceInstalled("d0")),  # a duplicate report
        ("distributing", cf.Enroll("d0")),  # enrolling an enrolled device
        ("distributing", cf.RetryAllFailed()),  # a bulk retry with nothing failed
        ("distributing", cf.ServerRestarted()),  # no restart is required
    ],
    ids=["duplicate report", "enrolled again", "bulk retry, nothing failed", "restarted"],
)
def test_a_command_that_changes_nothing_returns_the_rollout_itself(
    setup: str, command: cf.Command
) -> None:
    rollout = distributing(2)
    if setup == "installed":
        rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    step = cf.apply(rollout, command, day(2))
    assert step.rollout is rollout  # equal, clock included: callers can tell "no change"
    assert step.effects == ()
    assert cf.apply_all(rollout, [command, command], day(2)).rollout is rollout


def test_a_command_with_something_due_is_no_no_op() -> None:
    rollout = distributing(1)
    step = cf.apply(rollout, cf.RetryAllFailed(), day(6))  # the day-6 notice falls due
    assert step.rollout is not rollout
    assert step.rollout.clock == day(6)
    assert [type(e) for e in step.effects] == [cf.Notify]


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_rules_given_to_the_evaluator_are_run_and_the_warning_names_the_caller() -> None:
    from pathlib import Path

    import attrs

    from certflow.core import evaluator as module

    rules = attrs.evolve(cf.RULES)  # equal, and not the very object the default runs
    with pytest.warns(DeprecationWarning, match=r"^Evaluator\(rules\) is deprecated") as caught:
        evaluator = cf.Evaluator(rules)
    assert evaluator.rules is rules
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert str(warning.message) == (
        "Evaluator(rules) is deprecated and will be removed in certflow 0.3: the rules are "
        "certflow's own (docs/decisions.md, 'Rules are internal'); use Evaluator()"
    )
    # stacklevel: the line that called Evaluator, not certflow's own
    assert Path(warning.filename).resolve() != Path(module.__file__).resolve()


def test_allows_at_answers_for_the_administrator_s_rollout_commands_only() -> None:
    rollout = distributing(1)
    for command in (cf.DeviceInstalled("d0"), object()):
        with pytest.raises(cf.InvalidInput, match=r"is not an administrator's rollout command$"):
            DEFAULT.allows_at(rollout.plan, rollout.phase, 0, day(1), command)  # type: ignore[arg-type]


def _without_forced_import_now() -> cf.Rules:
    import attrs

    rows = tuple(
        row
        for row in cf.RULES.rollout.transitions
        if (row.trigger, row.dest) != ("import_now", "forced")
    )
    return attrs.evolve(cf.RULES, rollout=attrs.evolve(cf.RULES.rollout, transitions=rows))


def test_allows_at_decides_by_the_untrusting_count_it_is_given() -> None:
    # With the shipped rules an import is allowed whoever trusts (it is forced); rules
    # that import only a trusting fleet ask the count.
    evaluator = cf.Evaluator(_rules=_without_forced_import_now())
    rollout = distributing(2)
    assert evaluator.allows_at(rollout.plan, rollout.phase, 0, day(1), cf.ImportNow())
    assert not evaluator.allows_at(rollout.plan, rollout.phase, 2, day(1), cf.ImportNow())
    # and so do allows and refusal, which count the rollout's own devices
    trusting = rollout
    for device_id in ("d0", "d1"):
        trusting = cf.apply(trusting, cf.DeviceInstalled(device_id), day(1)).rollout
    assert evaluator.allows(trusting, cf.ImportNow(), day(1))
    assert evaluator.refusal(trusting, cf.ImportNow(), day(1)) is None
    assert not evaluator.allows(rollout, cf.ImportNow(), day(1))
    refused = evaluator.refusal(rollout, cf.ImportNow(), day(1))
    assert refused is not None
    assert refused.reason == "all_trust"


def test_the_one_device_shortcut_never_skips_a_gate_s_guard() -> None:
    import attrs

    from certflow.core.machines import Gate

    states = tuple(
        attrs.evolve(
            state,
            gates=tuple(
                Gate(g.trigger, ("kind_allows_retry",)) if g.trigger == "report_installed" else g
                for g in state.gates
            ),
        )
        if state.name == "distributing"
        else state
        for state in cf.RULES.rollout.states
    )
    rules = attrs.evolve(cf.RULES, rollout=attrs.evolve(cf.RULES.rollout, states=states))
    evaluator = cf.Evaluator(_rules=rules)
    agent = distributing(2, kind=cf.CertificateKind.AGENT_SERVER)
    with pytest.raises(cf.CommandRefused) as refused:
        evaluator.apply(agent, cf.DeviceInstalled("d0"), day(1))
    assert refused.value.reason == "kind_allows_retry"
    mdm = evaluator.apply(distributing(2), cf.DeviceInstalled("d0"), day(1)).rollout
    assert mdm.device_state("d0") is cf.DeviceState.INSTALLED


@pytest.mark.parametrize("operation", ["apply", "apply_all", "advance"])
def test_a_now_before_the_clock_is_refused_naming_this_rollout(operation: str) -> None:
    rollout = cf.apply(distributing(1), cf.DeviceInstalled("d0"), day(2)).rollout
    calls: dict[str, Callable[[], object]] = {
        "apply": lambda: cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)),
        "apply_all": lambda: cf.apply_all(rollout, [cf.DeviceInstalled("d0")], day(1)),
        "advance": lambda: cf.advance(rollout, day(1)),
    }
    with pytest.raises(cf.TimeWentBackwards) as refused:
        calls[operation]()
    assert str(refused.value) == (
        f"now ({day(1).isoformat()}) is earlier than the last instant this rollout has "
        f"seen ({day(2).isoformat()}); instants must never go backwards"
    )


def test_apply_calls_a_now_whose_zone_has_no_offset_naive() -> None:
    # Its comparison with the clock raises TypeError; the refusal still names the value.
    bad = datetime(2026, 7, 2, tzinfo=_NoOffset())
    with pytest.raises(cf.InvalidInput, match=r"^now is a naive datetime \(2026-07-02T00:00:00"):
        cf.apply(distributing(1), cf.DeviceInstalled("d0"), bad)
