"""From certificate to rollout: ``rollout_for`` builds the rollout from the certificates."""

from __future__ import annotations

import pytest
from cryptography.x509.verification import Store

from certflow import CertificateKind, Policy, RolloutState
from certflow.certs import (
    CertificateRejected,
    Material,
    load,
    rollout_for,
    root_publicly_trusted,
)
from certflow.certs import _check as check_module
from certflow.core.errors import InvalidInput

from .factory import DAY, HOST, NOW, Pki, build, key_pem, pem, pki, rsa_key

DEVICES = ["ios-1", "android-2", "mac-3"]


def existing_certificate() -> Material:
    """The certificate the server has now: self-signed, expiring in 20 days."""
    return Material.from_parts(
        [build(HOST, key=rsa_key(2048, 8), not_before=NOW - 300 * DAY, not_after=NOW + 20 * DAY)]
    )


def test_private_root_rollout_carries_the_certificates_facts(good: Pki) -> None:
    material = load(pem(good.leaf, good.intermediate, good.root), key_pem(good.leaf_key))
    existing = existing_certificate()
    rollout = rollout_for(material, existing, DEVICES, now=NOW)
    assert rollout.state is RolloutState.PENDING
    plan = rollout.plan
    assert plan.existing_not_after == existing.leaf.not_valid_after_utc  # type: ignore[union-attr]
    assert (plan.new_not_before, plan.new_not_after) == (
        good.leaf.not_valid_before_utc,
        good.leaf.not_valid_after_utc,
    )
    assert plan.root_publicly_trusted is False
    assert plan.kind is CertificateKind.MDM_SERVER
    assert plan.created_at == NOW


def test_existing_may_be_a_plain_certificate_and_kind_and_policy_pass_through(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    existing = existing_certificate().leaf
    assert existing is not None
    policy = Policy()
    rollout = rollout_for(
        material,
        existing,
        DEVICES,
        now=NOW,
        kind=CertificateKind.AGENT_SERVER,
        policy=policy,
        trusted_device_ids=["mac-3"],
    )
    assert rollout.plan.kind is CertificateKind.AGENT_SERVER
    assert rollout.plan.policy is policy


def test_public_root_is_detected(good: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_module, "_public_roots", lambda: (good.root,))
    monkeypatch.setattr(check_module, "_public_store", lambda: Store([good.root]))
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    assert root_publicly_trusted(material, now=NOW)
    rollout = rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST)
    assert rollout.plan.root_publicly_trusted is True


def test_with_host_a_bad_certificate_starts_no_rollout(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root])  # no key
    with pytest.raises(
        CertificateRejected, match=r"fails 2 checks for other\.example\.com"
    ) as caught:
        rollout_for(material, existing_certificate(), DEVICES, now=NOW, host="other.example.com")
    assert {f.code.value for f in caught.value.report.errors} == {"no_private_key", "host_mismatch"}
    assert isinstance(caught.value, InvalidInput)


def test_with_host_a_good_certificate_starts_one(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    assert rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST).state is (
        RolloutState.PENDING
    )


def test_bad_input(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    with pytest.raises(InvalidInput, match="no server certificate"):
        rollout_for(Material.from_parts([], [rsa_key()]), existing_certificate(), DEVICES, now=NOW)
    with pytest.raises(InvalidInput, match="already has"):
        rollout_for(material, good.leaf, DEVICES, now=NOW)
    with pytest.raises(InvalidInput, match="naive"):
        rollout_for(material, existing_certificate(), DEVICES, now=NOW.replace(tzinfo=None))
    with pytest.raises(InvalidInput, match="duplicate device ids"):
        rollout_for(material, existing_certificate(), ["a", "a"], now=NOW)


def test_new_certificate_must_last_through_the_rollout() -> None:
    short = pki(not_before=NOW - DAY, not_after=NOW + 5 * DAY)
    material = Material.from_parts([short.leaf, short.intermediate, short.root], [short.leaf_key])
    with pytest.raises(InvalidInput):
        rollout_for(material, existing_certificate(), DEVICES, now=NOW)
