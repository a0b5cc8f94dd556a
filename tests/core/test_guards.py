"""Each guard at its boundary, and the refusal it gives (message and structured fields)."""

from __future__ import annotations

from datetime import timedelta

import pytest

import certflow as cf
from certflow.core import guards
from tests.core.strategies import DAY, T0, build, day, distributing

SECOND = timedelta(seconds=1)


def _situation(rollout: cf.Rollout, now: object, untrusting: int = 0) -> guards.Situation:
    return guards.Situation(rollout.plan, rollout.phase, now, untrusting)  # type: ignore[arg-type]


def test_valid_at_start_holds_from_the_certificates_not_before() -> None:
    rollout = build(1)  # new_not_before = T0 - 1 day
    check = guards.GUARDS["valid_at_start"]
    assert check(_situation(rollout, T0 - DAY))
    assert not check(_situation(rollout, T0 - DAY - SECOND))


def test_valid_through_deadline_and_not_expired_at_their_boundaries() -> None:
    rollout = build(1, new_valid_for=30 * DAY)  # not_after = T0 + 29 days
    through = guards.GUARDS["valid_through_deadline"]
    assert through(_situation(rollout, T0 + 8 * DAY))  # deadline = T0 + 29 days exactly
    assert not through(_situation(rollout, T0 + 8 * DAY + SECOND))
    alive = guards.GUARDS["not_expired"]
    assert alive(_situation(rollout, T0 + 29 * DAY))
    assert not alive(_situation(rollout, T0 + 29 * DAY + SECOND))


@pytest.mark.parametrize(
    ("public", "untrusting", "holds"), [(False, 0, True), (False, 1, False), (True, 5, True)]
)
def test_all_trust_counts_untrusting_devices_unless_the_root_is_public(
    public: bool, untrusting: int, holds: bool
) -> None:
    rollout = build(1, public=public)
    assert guards.GUARDS["all_trust"](_situation(rollout, T0, untrusting)) is holds


@pytest.mark.parametrize(
    ("rule", "untrusting", "expired", "holds"),
    [
        (cf.ImportRule.DISTRIBUTED_OR_EXPIRED, 0, False, True),
        (cf.ImportRule.DISTRIBUTED_OR_EXPIRED, 1, True, True),
        (cf.ImportRule.DISTRIBUTED_OR_EXPIRED, 1, False, False),
        (cf.ImportRule.DISTRIBUTED_AND_EXPIRED, 0, True, True),
        (cf.ImportRule.DISTRIBUTED_AND_EXPIRED, 0, False, False),
        (cf.ImportRule.DISTRIBUTED_AND_EXPIRED, 1, True, False),
    ],
)
def test_import_condition_follows_the_rule(
    rule: cf.ImportRule, untrusting: int, expired: bool, holds: bool
) -> None:
    rollout = distributing(1, existing_expires_in=7 * DAY, policy=cf.Policy(import_rule=rule))
    now = day(7) if expired else day(7) - SECOND
    assert guards.GUARDS["import_condition"](_situation(rollout, now, untrusting)) is holds


def test_extension_open_from_day_6_and_valid_through_the_moved_deadline() -> None:
    rollout = distributing(
        1, new_valid_for=29 * DAY
    )  # not_after = day 28: exactly the moved deadline
    opened = guards.GUARDS["extension_open"]
    assert not opened(_situation(rollout, day(6) - SECOND))
    assert opened(_situation(rollout, day(6)))
    moved = guards.GUARDS["valid_through_moved_deadline"]
    assert moved(_situation(rollout, day(6)))
    shorter = distributing(1, new_valid_for=29 * DAY - SECOND)
    assert not moved(_situation(shorter, day(6)))


def test_extension_guards_do_not_hold_before_distribution() -> None:
    rollout = build(1)
    assert not guards.GUARDS["extension_open"](_situation(rollout, day(10)))
    assert not guards.GUARDS["valid_through_moved_deadline"](_situation(rollout, day(10)))


@pytest.mark.parametrize(
    ("kind", "holds"),
    [(cf.CertificateKind.MDM_SERVER, True), (cf.CertificateKind.AGENT_SERVER, False)],
)
def test_kind_allows_retry_only_for_mdm_server_certificates(
    kind: cf.CertificateKind, holds: bool
) -> None:
    assert guards.GUARDS["kind_allows_retry"](_situation(build(1, kind=kind), T0)) is holds


# --- Refusals carry their reason as data ----------------------------------------------------------


def test_a_refusal_before_day_6_says_when_manual_extension_opens() -> None:
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(distributing(1), cf.ExtendManually(), day(2))
    error = refused.value
    assert str(error) == (
        "ExtendManually refused: manual extension opens on day 6, 2026-07-07 09:00 UTC "
        "(4 days from now)"
    )
    assert (error.command, error.state, error.reason) == (
        "ExtendManually",
        "distributing",
        "extension_open",
    )
    assert error.allowed_at == day(6)
    assert (error.device_id, error.device_state) == (None, None)


def test_a_refusal_for_the_rollout_state_names_the_state_and_the_other_command() -> None:
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(build(1), cf.ImportNow(), T0)
    assert str(refused.value) == (
        "ImportNow refused: the rollout is pending; use ProceedToImport (allowed while pending)"
    )
    assert refused.value.hint == "use ProceedToImport (allowed while pending)"
    assert (refused.value.reason, refused.value.state, refused.value.allowed_at) == (
        "rollout_state",
        "pending",
        None,
    )


def test_a_device_refusal_names_the_device_and_its_state() -> None:
    rollout = cf.apply(distributing(1), cf.Unenroll("d0"), day(1)).rollout
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(rollout, cf.DeviceInstalled("d0"), day(2))
    error = refused.value
    assert str(error) == (
        "device 'd0' cannot report the root installed: it is removed; "
        "it was unenrolled; send Enroll if it came back"
    )
    assert (error.command, error.reason, error.device_id, error.device_state) == (
        "DeviceInstalled",
        "device_state",
        "d0",
        "removed",
    )


def test_retry_for_another_kind_reads_well_and_names_the_guard() -> None:
    rollout = distributing(1, kind=cf.CertificateKind.AGENT_SERVER)
    rollout = cf.apply(rollout, cf.DeviceFailed("d0", "x"), day(1)).rollout
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(rollout, cf.Retry("d0"), day(2))
    assert str(refused.value) == (
        "Retry('d0') refused: retry applies only to MDM server certificates, and this rollout "
        "replaces an agent server certificate"
    )
    assert refused.value.reason == "kind_allows_retry"
    assert refused.value.device_id == "d0"


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_hint_shows_an_instant_that_does_not_exist_yet_as_nothing() -> None:
    from certflow.core.machines import Guard

    hint = Guard("toy", "deadline [{deadline}]; opens [{extension_opens_at}]; at {now}")
    assert guards.explain(hint, _situation(build(1), T0)) == (
        "deadline []; opens []; at 2026-07-01 09:00 UTC"
    )


def test_only_a_fact_that_is_an_instant_says_when_a_guard_will_hold() -> None:
    from certflow.core.machines import Guard

    situation = _situation(distributing(1), day(1), untrusting=3)
    assert guards.allowed_at(Guard("toy", "", "extension_opens_at"), situation) == day(6)
    assert guards.allowed_at(Guard("toy", "", "untrusting"), situation) is None
    assert guards.allowed_at(Guard("toy", "", "extension_wait"), situation) is None
