"""The chain verdict (:mod:`certflow.certs._chain`): a server's chain, judged as a TLS client
judges it, against an injectable public root store.

The oracle is cryptography's own server verifier, run on the same certificates for a host
the leaf covers: certflow builds the chain without a subject (the host has a finding of
its own), so the two must agree on every hierarchy whose host matches.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID as Usage
from cryptography.x509.verification import (
    PolicyBuilder,
    Store,
    VerificationError,
)

from certflow.certs import Code, ImportMode, Material, PublicRoots, check, is_public_root
from certflow.core.errors import InvalidInput

from .factory import DAY, HOST, NOW, build, rsa_key

START = NOW - 1000 * DAY
CA_END = NOW + 3650 * DAY


def hierarchy(
    inter_eku: Sequence[x509.ObjectIdentifier] | None,
    *,
    critical: bool = False,
    root_eku: Sequence[x509.ObjectIdentifier] | None = None,
    inter_bits: int = 2048,
) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """root -> intermediate (with ``inter_eku``) -> RSA leaf for HOST."""
    root_key, inter_key = rsa_key(2048, 11), rsa_key(inter_bits, 12)
    root = build(
        "chain test root", key=root_key, ca=True, not_before=START, not_after=CA_END,
        ca_eku=root_eku,
    )  # fmt: skip
    inter = build(
        "chain test intermediate", key=inter_key, issuer=(root, root_key), ca=True,
        not_before=START, not_after=CA_END, ca_eku=inter_eku, ca_eku_critical=critical,
    )  # fmt: skip
    leaf = build(HOST, key=rsa_key(), issuer=(inter, inter_key))
    return root, inter, leaf


def server_verifier_accepts(
    root: x509.Certificate, leaf: x509.Certificate, intermediates: list[x509.Certificate]
) -> bool:
    verifier = (
        PolicyBuilder().store(Store([root])).time(NOW).build_server_verifier(x509.DNSName(HOST))
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError:
        return False
    return True


EKUS: list[tuple[str, Sequence[x509.ObjectIdentifier] | None, bool]] = [
    ("none", None, False),
    ("serverAuth only", [Usage.SERVER_AUTH], False),
    ("serverAuth only, critical", [Usage.SERVER_AUTH], True),
    ("clientAuth only", [Usage.CLIENT_AUTH], False),
    ("serverAuth and clientAuth", [Usage.SERVER_AUTH, Usage.CLIENT_AUTH], False),
    ("anyExtendedKeyUsage", [Usage.ANY_EXTENDED_KEY_USAGE], False),
    ("codeSigning", [Usage.CODE_SIGNING], False),
    ("clientAuth and emailProtection", [Usage.CLIENT_AUTH, Usage.EMAIL_PROTECTION], False),
]


@pytest.mark.parametrize(("label", "eku", "critical"), EKUS, ids=[e[0] for e in EKUS])
@pytest.mark.parametrize("public", [True, False], ids=["root public", "root supplied"])
def test_the_verdict_is_the_server_verifiers(
    label: str, eku: Sequence[x509.ObjectIdentifier] | None, critical: bool, public: bool
) -> None:
    root, inter, leaf = hierarchy(eku, critical=critical)
    if public:  # the root is in the (injected) public store, and not uploaded
        material = Material.from_parts([leaf, inter], [rsa_key()])
        roots = PublicRoots.of([root])
    else:  # a private root, uploaded with the chain
        material = Material.from_parts([leaf, inter, root], [rsa_key()])
        roots = PublicRoots.of([])
    report = check(material, host=HOST, now=NOW, roots=roots)
    expected = server_verifier_accepts(root, leaf, [inter])
    assert (Code.CHAIN_INCOMPLETE not in report.codes) is expected, report.findings
    assert report.root_publicly_trusted is (expected and public)
    if expected:
        assert report.chain == (leaf, inter, root)


def test_intermediates_restricted_to_server_auth_are_a_good_public_chain() -> None:
    root, inter, leaf = hierarchy([Usage.SERVER_AUTH])
    report = check(
        Material.from_parts([leaf, inter], [rsa_key()]),
        host=HOST, now=NOW, roots=PublicRoots.of([root]),
    )  # fmt: skip
    assert report.ok, report.findings
    assert report.codes == {Code.TRUST_PUBLIC}
    assert report.recommended_mode is ImportMode.PROCEED_TO_IMPORT
    # The reason this is tested: a *client* verifier refuses this very chain.
    with pytest.raises(VerificationError, match="EKU"):
        PolicyBuilder().store(Store([root])).time(NOW).build_client_verifier().verify(leaf, [inter])


def test_an_intermediate_restricted_to_client_auth_is_refused_saying_so() -> None:
    root, inter, leaf = hierarchy([Usage.CLIENT_AUTH])
    report = check(Material.from_parts([leaf, inter, root], [rsa_key()]), host=HOST, now=NOW)
    (finding,) = report.errors
    assert finding.code is Code.CHAIN_INCOMPLETE
    assert finding.message == (
        "intermediate 'chain test intermediate' is restricted to clientAuth by its extended "
        "key usage, so TLS clients refuse it in a server's chain; ask the CA for a chain "
        "issued for serverAuth"
    )
    assert not report.root_publicly_trusted


def test_a_cross_signed_intermediate_leads_to_the_root_the_store_holds() -> None:
    # The CA's own (private) root issued the intermediate; a public root cross-signed the
    # same intermediate (same name, same key). Whichever root the store holds wins.
    private_root, inter, leaf = hierarchy([Usage.SERVER_AUTH])
    public_key = rsa_key(2048, 13)
    public_root = build(
        "public test root", key=public_key, ca=True, not_before=START, not_after=CA_END
    )
    cross = build(
        "chain test intermediate", key=rsa_key(2048, 12), issuer=(public_root, public_key),
        ca=True, not_before=START, not_after=CA_END, ca_eku=[Usage.SERVER_AUTH],
    )  # fmt: skip
    assert cross.subject == inter.subject
    assert cross.public_key() == inter.public_key()
    upload = Material.from_parts([leaf, inter, private_root, cross], [rsa_key()])
    report = check(upload, host=HOST, now=NOW, roots=PublicRoots.of([public_root]))
    assert report.ok, report.findings
    assert report.root_publicly_trusted
    assert report.chain == (leaf, cross, public_root)
    assert report.recommended_mode is ImportMode.PROCEED_TO_IMPORT
    # A store that holds neither: the uploaded private root decides, and it is private.
    private = check(upload, host=HOST, now=NOW, roots=PublicRoots.of([]))
    assert private.ok
    assert not private.root_publicly_trusted
    assert private.chain == (leaf, inter, private_root)
    assert private.recommended_mode is ImportMode.DISTRIBUTE_ROOT_FIRST
    # Without the cross-certificate, the public store alone cannot reach the leaf.
    alone = Material.from_parts([leaf, inter, private_root], [rsa_key()])
    assert not check(
        alone, host=HOST, now=NOW, roots=PublicRoots.of([public_root])
    ).root_publicly_trusted


def test_the_host_verdict_stays_separate_from_the_chain_verdict() -> None:
    root, inter, leaf = hierarchy([Usage.SERVER_AUTH])
    report = check(
        Material.from_parts([leaf, inter], [rsa_key()]),
        host="other.example.org", now=NOW, roots=PublicRoots.of([root]),
    )  # fmt: skip
    assert report.codes == {Code.HOST_MISMATCH, Code.TRUST_PUBLIC}
    assert report.chain == (leaf, inter, root)


def test_public_roots_of_given_certificates() -> None:
    root, _, leaf = hierarchy(None)
    roots = PublicRoots.of([root])
    assert root in roots
    assert leaf not in roots
    assert "x" not in roots
    assert roots.certificates == (root,)
    assert PublicRoots.of([]).certificates == ()
    assert is_public_root(root, roots=roots)
    assert not is_public_root(root)
    assert len(PublicRoots.certifi().certificates) > 100
    assert PublicRoots.certifi() is PublicRoots.certifi()  # read once


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("roots", r"certificates must be an iterable"),
        ([b"not a certificate"], r"certificates\[0\] must be"),
    ],
)
def test_public_roots_refuse_what_is_not_a_certificate(given: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        PublicRoots.of(given)  # type: ignore[arg-type]


def test_check_refuses_roots_that_are_not_a_store() -> None:
    root, inter, leaf = hierarchy(None)
    with pytest.raises(InvalidInput, match=r"roots must be a certflow.certs.PublicRoots"):
        check(Material.from_parts([leaf, inter]), host=HOST, now=NOW, roots=[root])  # type: ignore[arg-type]


def test_a_refusal_against_a_public_root_says_why_not_that_the_root_is_missing() -> None:
    # The root is in the public store, not uploaded; the chain fails for another reason.
    root, inter, leaf = hierarchy([Usage.SERVER_AUTH], inter_bits=1024)
    report = check(
        Material.from_parts([leaf, inter], [rsa_key()]),
        host=HOST, now=NOW, roots=PublicRoots.of([root]),
    )  # fmt: skip
    (finding,) = [f for f in report.errors if f.code is Code.CHAIN_INCOMPLETE]
    assert finding.message == (
        "the chain 'mdm.example.com' -> 'chain test intermediate' -> 'chain test root' is not "
        "acceptable to TLS clients: RSA key is too weak"
    )


def test_only_the_chains_own_cas_are_blamed_for_their_usage() -> None:
    root, inter, leaf = hierarchy([Usage.SERVER_AUTH])
    stray = build(
        "unrelated client ca", key=rsa_key(2048, 14), ca=True, not_before=START,
        not_after=CA_END, ca_eku=[Usage.CLIENT_AUTH],
    )  # fmt: skip
    report = check(Material.from_parts([leaf, inter, stray], [rsa_key()]), host=HOST, now=NOW)
    (finding,) = [f for f in report.errors if f.code is Code.CHAIN_INCOMPLETE]
    assert finding.message.startswith("no chain to a trusted root: 'CN=chain test root")
    # A root restricted to clientAuth is named as the root.
    root, inter, leaf = hierarchy(None, root_eku=[Usage.CLIENT_AUTH])
    report = check(Material.from_parts([leaf, inter, root], [rsa_key()]), host=HOST, now=NOW)
    (finding,) = [f for f in report.errors if f.code is Code.CHAIN_INCOMPLETE]
    assert finding.message.startswith(
        "root 'chain test root' is restricted to clientAuth by its extended key usage"
    )
