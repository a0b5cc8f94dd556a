"""The policy: the spec's defaults, and refusal of timelines the evaluator cannot keep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given

import certflow as cf
from tests.core.strategies import DAY, HOUR, policies


def test_the_default_policy_is_the_spec_timeline() -> None:
    policy = cf.Policy()
    assert policy.checkpoints == (7 * DAY, 14 * DAY, 21 * DAY)
    assert policy.deadline == 21 * DAY
    assert policy.notice_before == DAY
    assert policy.manual_extension == 7 * DAY
    assert policy.manual_extension_opens == 6 * DAY
    assert policy.import_rule is cf.ImportRule.DISTRIBUTED_OR_EXPIRED
    assert policy.ack_timeout is None


def test_retry_is_allowed_for_mdm_server_certificates_only() -> None:
    assert cf.CertificateKind.MDM_SERVER.retry_allowed
    assert not cf.CertificateKind.AGENT_SERVER.retry_allowed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"checkpoints": ()}, "non-empty tuple of timedelta"),
        ({"checkpoints": (7 * DAY, 7 * DAY)}, "more than notice_before"),
        ({"checkpoints": (12 * HOUR,)}, "more than notice_before"),
        ({"notice_before": timedelta(0)}, "notice_before must be positive"),
        ({"manual_extension": DAY}, "manual_extension must be longer than notice_before"),
        ({"ack_timeout": -HOUR}, "ack_timeout must be positive"),
        ({"manual_extension_opens": 6}, "manual_extension_opens must be a timedelta"),
        ({"import_rule": "sometimes"}, "import_rule must be an ImportRule"),
    ],
)
def test_a_policy_the_evaluator_cannot_keep_is_refused_clearly(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(cf.InvalidInput, match=message):
        cf.Policy(**changes)  # type: ignore[arg-type]


@given(policies())
def test_generated_policies_are_valid_and_frozen(policy: cf.Policy) -> None:
    assert policy.deadline == policy.checkpoints[-1]
    with pytest.raises(AttributeError):
        policy.notice_before = HOUR  # type: ignore[misc]
