"""From certificate to rollout: ``rollout_for`` builds the rollout from the certificates."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certflow import (
    CertificateIdentity,
    CertificateKind,
    Policy,
    RolloutState,
    RootIdentity,
    dumps,
)
from certflow.certs import (
    CertificateRejected,
    Material,
    PublicRoots,
    check,
    identity_of,
    load,
    material_of,
    rollout_for,
    root_publicly_trusted,
)
from certflow.core.errors import InvalidInput

from .factory import DAY, HOST, NOW, Pki, build, ec_key, key_pem, pem, pki, rsa_key, san

DEVICES = ["ios-1", "android-2", "mac-3"]


def existing_certificate() -> Material:
    """The certificate the server has now: self-signed, expiring in 20 days."""
    return Material.from_parts(
        [build(HOST, key=rsa_key(2048, 8), not_before=NOW - 300 * DAY, not_after=NOW + 20 * DAY)]
    )


def test_private_root_rollout_carries_the_certificates_facts(good: Pki) -> None:
    material = load(pem(good.leaf, good.intermediate, good.root), key_pem(good.leaf_key))
    existing = existing_certificate()
    rollout = rollout_for(material, existing, DEVICES, now=NOW, hosts=[HOST])
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
        host=HOST,
    )
    assert rollout.plan.kind is CertificateKind.AGENT_SERVER
    assert rollout.plan.policy is policy


def test_public_root_is_detected(good: Pki) -> None:
    roots = PublicRoots.of([good.root])
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    assert root_publicly_trusted(material, now=NOW, roots=roots)
    assert not root_publicly_trusted(material, now=NOW)  # certifi's roots: private
    rollout = rollout_for(
        material, existing_certificate(), DEVICES, now=NOW, host=HOST, roots=roots
    )
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
        rollout_for(
            Material.from_parts([], [rsa_key()]),
            existing_certificate(),
            DEVICES,
            now=NOW,
            host=HOST,
        )
    with pytest.raises(InvalidInput, match="already has"):
        rollout_for(material, good.leaf, DEVICES, now=NOW, host=HOST)
    with pytest.raises(InvalidInput, match="naive"):
        rollout_for(
            material, existing_certificate(), DEVICES, now=NOW.replace(tzinfo=None), host=HOST
        )
    with pytest.raises(InvalidInput, match="duplicate device ids"):
        rollout_for(material, existing_certificate(), ["a", "a"], now=NOW, host=HOST)


def test_new_certificate_must_last_through_the_rollout() -> None:
    short = pki(not_before=NOW - DAY, not_after=NOW + 5 * DAY)
    material = Material.from_parts([short.leaf, short.intermediate, short.root], [short.leaf_key])
    with pytest.raises(InvalidInput, match="before the deadline") as caught:
        rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST)
    assert not isinstance(caught.value, CertificateRejected)  # the checks passed; the rollout
    # core refused a certificate that expires before the rollout's deadline


# rollout_for always checks, for every host


def test_without_a_host_no_rollout_starts(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    with pytest.raises(InvalidInput, match="no host to check the certificate for"):
        rollout_for(material, existing_certificate(), DEVICES, now=NOW)


@pytest.mark.parametrize(
    ("problem", "p", "code"),
    [
        ("398 days", pki(not_before=NOW - DAY, not_after=NOW - DAY + 398 * DAY), "validity_period"),
        ("an EC key", pki(leaf_key=ec_key()), "key_type"),
    ],
    ids=["398 days", "EC key"],
)
def test_a_certificate_with_an_error_never_starts_a_rollout(
    problem: str, p: Pki, code: str
) -> None:
    material = Material.from_parts([p.leaf, p.intermediate, p.root], [p.leaf_key])
    with pytest.raises(CertificateRejected) as caught:
        rollout_for(material, existing_certificate(), DEVICES, now=NOW, hosts=[HOST])
    assert {f.code.value for f in caught.value.report.errors} == {code}


def test_every_host_is_checked(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    with pytest.raises(
        CertificateRejected, match=r"for mdm\.example\.com, 203\.0\.113\.9: "
    ) as caught:
        rollout_for(material, existing_certificate(), DEVICES, now=NOW, hosts=[HOST, "203.0.113.9"])
    assert caught.value.report.uncovered_hosts == ("203.0.113.9",)
    both = pki(sans=san(HOST, "203.0.113.9"))
    covered = Material.from_parts([both.leaf, both.intermediate, both.root], [both.leaf_key])
    rollout = rollout_for(
        covered, existing_certificate(), DEVICES, now=NOW, host=HOST, hosts=["203.0.113.9"]
    )
    assert rollout.state is RolloutState.PENDING


def test_the_key_can_be_given_beside_the_material(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root])
    with pytest.raises(CertificateRejected, match="no_private_key"):
        rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST)
    rollout = rollout_for(
        material, existing_certificate(), DEVICES, now=NOW, host=HOST, key=good.leaf_key
    )
    assert rollout.state is RolloutState.PENDING


# rollout_for records what it rolls out (rollout-rules.md, "What a rollout knows and says")


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def test_the_rollout_records_the_identity_of_what_it_rolls_out(good: Pki) -> None:
    material = load(pem(good.leaf, good.intermediate, good.root), key_pem(good.leaf_key))
    rollout = rollout_for(
        material, existing_certificate(), DEVICES, now=NOW, hosts=[HOST, "mdm.example.com"]
    )
    known = rollout.plan.identity
    assert known is not None
    assert known.certificate == CertificateIdentity(
        fingerprint=_fingerprint(good.leaf),
        subject="CN=mdm.example.com,O=certflow tests",
        names=("mdm.example.com",),
        issuer="CN=certflow test intermediate,O=certflow tests",
        not_before=good.leaf.not_valid_before_utc,
        not_after=good.leaf.not_valid_after_utc,
        pem=pem(good.leaf).decode(),
    )
    assert known.root == RootIdentity(
        fingerprint=_fingerprint(good.root),
        subject="CN=certflow test root,O=certflow tests",
        publicly_trusted=False,
        pem=pem(good.root).decode(),
    )
    assert known.hosts == (HOST,)
    assert known.intermediates == (pem(good.intermediate).decode(),)
    assert known.chain_pem == pem(good.leaf, good.intermediate, good.root).decode()


def test_the_identity_never_holds_the_private_key(good: Pki) -> None:
    material = load(pem(good.leaf, good.intermediate, good.root), key_pem(good.leaf_key))
    assert material.private_key is not None
    text = dumps(rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST))
    assert "PRIVATE" not in text
    assert isinstance(good.leaf_key, rsa.RSAPrivateKey)
    numbers = good.leaf_key.private_numbers()
    secret = base64.b64encode(
        good.leaf_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    ).decode()
    for part in (secret[20:60], format(numbers.d, "x")[:32], str(numbers.d)[:32]):
        assert part not in text


def test_a_public_root_not_supplied_is_the_one_the_chain_check_found(good: Pki) -> None:
    roots = PublicRoots.of([good.root])
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    rollout = rollout_for(
        material, existing_certificate(), DEVICES, now=NOW, host=HOST, roots=roots
    )
    known = rollout.plan.identity
    assert known is not None
    assert (known.root.fingerprint, known.root.publicly_trusted) == (_fingerprint(good.root), True)
    assert known.root.pem == pem(good.root).decode()
    assert known.intermediates == (pem(good.intermediate).decode(),)


def test_a_self_signed_certificate_is_its_own_root() -> None:
    key = rsa_key(2048, 5)
    leaf = build(HOST, key=key, not_before=NOW - DAY, not_after=NOW + 200 * DAY)
    rollout = rollout_for(
        Material.from_parts([leaf], [key]), existing_certificate(), DEVICES, now=NOW, host=HOST
    )
    known = rollout.plan.identity
    assert known is not None
    assert known.self_signed
    assert known.root.pem == known.certificate.pem == pem(leaf).decode()
    assert known.intermediates == ()


def test_the_identity_names_every_san_once_and_escapes_control_characters() -> None:
    key = rsa_key(2048, 6)
    odd = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mdm\nexample")])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(odd)
        .issuer_name(odd)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 200 * DAY)
        .add_extension(x509.SubjectAlternativeName(san(HOST, "203.0.113.10", HOST)), critical=False)
        .sign(key, hashes.SHA256())
    )
    material = Material.from_parts([leaf], [key])
    known = rollout_for(
        material, existing_certificate(), DEVICES, now=NOW, hosts=[HOST, "203.0.113.10"]
    ).plan.identity
    assert known is not None
    assert known.certificate.subject == known.certificate.issuer == "CN=mdm\\0aexample"
    assert known.certificate.names == (HOST, "203.0.113.10")
    assert known.hosts == (HOST, "203.0.113.10")


def test_identity_of_needs_the_passed_check_of_the_same_material(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root], [good.leaf_key])
    report = check(material, host=HOST, now=NOW)
    assert identity_of(material, report).certificate.fingerprint == _fingerprint(good.leaf)
    other = pki("other.example.com")
    elsewhere = Material.from_parts([other.leaf, other.intermediate, other.root], [other.leaf_key])
    with pytest.raises(InvalidInput, match="report must be the passed check of this material"):
        identity_of(elsewhere, report)
    failed = check(material, host="other.example.com", now=NOW)
    with pytest.raises(InvalidInput, match="report must be the passed check"):
        identity_of(material, failed)
    with pytest.raises(InvalidInput, match="material"):
        identity_of("server.pem", report)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="report"):
        identity_of(material, None)  # type: ignore[arg-type]


def test_material_of_an_identity_is_the_public_part_of_what_rollout_for_was_given(
    good: Pki,
) -> None:
    material = load(pem(good.leaf, good.intermediate, good.root), key_pem(good.leaf_key))
    known = rollout_for(material, existing_certificate(), DEVICES, now=NOW, host=HOST).plan
    assert known.identity is not None
    again = material_of(known.identity)
    assert (again.leaf, again.intermediates, again.root, again.private_key) == (
        good.leaf,
        (good.intermediate,),
        good.root,
        None,
    )


def test_material_of_names_a_pem_cryptography_cannot_read() -> None:
    from tests.core.strategies import identity

    with pytest.raises(InvalidInput, match=r"identity\.certificate\.pem: not a certificate"):
        material_of(identity())
    with pytest.raises(InvalidInput, match=r"identity must be a certflow\.Identity"):
        material_of("plan.identity")  # type: ignore[arg-type]
