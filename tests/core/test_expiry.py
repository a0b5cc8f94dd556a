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
