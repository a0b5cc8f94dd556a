"""The existing certificate's expiry, in words: what an administrator must be told."""

from __future__ import annotations

import certflow as cf
from certflow.core.expiry import expiry_warnings
from tests.core.strategies import DAY, T0, build, day, distributing

STRICT = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)


def _warnings(rollout: cf.Rollout, at: object) -> tuple[str, ...]:
    return expiry_warnings(rollout.plan, rollout.phase, at)  # type: ignore[arg-type]


def test_nothing_to_say_when_the_expiry_is_well_past_the_rollout() -> None:
    assert _warnings(build(1), T0) == ()
    assert _warnings(distributing(1), day(1)) == ()


def test_a_pending_rollout_whose_certificate_expires_before_the_first_checkpoint() -> None:
    (line,) = _warnings(build(1, existing_expires_in=3 * DAY), T0)
    assert "expires on" in line
    assert "before the first checkpoint" in line
    assert line.endswith("the import will happen then, whatever the fleet's state")
    (strict,) = _warnings(build(1, existing_expires_in=3 * DAY, policy=STRICT), T0)
    assert strict.endswith("the first checkpoint will find it expired")


def test_a_pending_rollout_whose_certificate_has_expired_already() -> None:
    (line,) = _warnings(build(1, existing_expires_in=-DAY), T0)
    assert line.startswith("the existing certificate expired on")


def test_a_running_rollout_whose_deadline_lies_past_the_expiry() -> None:
    rollout = distributing(1, existing_expires_in=10 * DAY)
    (line,) = _warnings(rollout, day(1))
    assert "lies past the existing certificate's expiry" in line
    assert line.endswith("the import will happen at the expiry")


def test_an_extension_that_moves_the_deadline_past_the_expiry_is_warned_about() -> None:
    rollout = distributing(1, existing_expires_in=25 * DAY)
    assert _warnings(rollout, day(6)) == ()
    extended = cf.apply(rollout, cf.ExtendManually(), day(6)).rollout
    (line,) = _warnings(extended, day(6))
    assert "the deadline" in line
    assert "lies past" in line


def test_an_expired_certificate_in_a_running_rollout_says_devices_cannot_be_managed() -> None:
    rollout = distributing(1, existing_expires_in=10 * DAY, policy=STRICT)
    (line,) = _warnings(cf.advance(rollout, day(11)).rollout, day(11))
    assert "cannot be managed" in line


def test_an_ended_rollout_warns_of_nothing() -> None:
    ended = cf.apply(build(1, existing_expires_in=-DAY), cf.Cancel(), T0).rollout
    assert _warnings(ended, T0) == ()


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------

EXPIRED = (
    "the existing certificate expired on {}: until the new one is imported, the server's "
    "devices cannot be managed"
)


def test_an_expired_certificate_is_worded_in_full_with_its_date() -> None:
    assert _warnings(build(1, existing_expires_in=-DAY), T0) == (
        EXPIRED.format("2026-06-30 09:00 UTC"),
    )
    running = cf.advance(distributing(1, existing_expires_in=10 * DAY, policy=STRICT), day(11))
    assert _warnings(running.rollout, day(11)) == (EXPIRED.format("2026-07-11 09:00 UTC"),)


def test_a_certificate_has_expired_at_the_very_instant_of_its_expiry() -> None:
    rollout = build(1, existing_expires_in=DAY)
    assert _warnings(rollout, T0 + DAY) == (EXPIRED.format("2026-07-02 09:00 UTC"),)


def test_an_expiry_at_or_after_the_first_checkpoint_is_no_pending_warning() -> None:
    # the first checkpoint (day 7) decides at its own instant; day 10 is before the second
    for expires_in in (7 * DAY, 10 * DAY):
        assert _warnings(build(1, existing_expires_in=expires_in), T0) == ()


def test_a_deadline_at_the_very_expiry_does_not_lie_past_it() -> None:
    for policy in (None, STRICT):
        rollout = distributing(1, existing_expires_in=21 * DAY, policy=policy)
        assert _warnings(rollout, day(1)) == ()


def test_under_the_strict_rule_a_deadline_past_the_expiry_serves_it_expired() -> None:
    rollout = distributing(1, existing_expires_in=10 * DAY, policy=STRICT)
    assert _warnings(rollout, day(1)) == (
        "the deadline 2026-07-22 09:00 UTC lies past the existing certificate's expiry "
        "(2026-07-11 09:00 UTC): it is served expired from then until the import",
    )
