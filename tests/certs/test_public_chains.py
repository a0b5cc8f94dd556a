"""Real public server chains (tests/certs/data/public): certflow's check agrees with TLS clients.

The chains are what public web servers presented (taken from x509-limbo's online test cases,
see the README beside them), so nothing here depends on certificates this project made. Each
one is loaded through certflow's public API in every order of its files, as separate PEM
files, as one concatenated PEM, and as a PKCS#7 bundle in PEM and in DER; each load must give
a complete chain to a public root of certifi's bundle, the host covered, and "Proceed to
Import". The private key is not public, so every report also has its ``no_private_key`` error.
"""

from __future__ import annotations

import functools
import itertools
import tomllib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certflow.certs import Code, ImportMode, Material, Report, check, is_public_root, load
from certflow.certs._errors import input_warnings_ignored

DATA = Path(__file__).parent / "data" / "public"


@attrs.frozen
class Chain:
    """One entry of chains.toml and its certificates."""

    name: str
    host: str
    valid_at: datetime
    key_type: str
    serverauth_only_intermediates: bool
    cross_signed: bool
    root_sha256: str
    leaf_sha256: str
    provenance: str

    @property
    def folder(self) -> Path:
        return DATA / self.name

    @property
    def files(self) -> tuple[Path, ...]:
        """The chain's files: leaf.pem, intermediates.pem and, if there is one, root.pem."""
        names = ("leaf.pem", "intermediates.pem", "root.pem")
        return tuple(self.folder / n for n in names if (self.folder / n).exists())

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.folder / "leaf.pem").read_bytes())

    @property
    def intermediates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates((self.folder / "intermediates.pem").read_bytes())

    @property
    def certificates(self) -> list[x509.Certificate]:
        """Every certificate of the files, in the order of :attr:`files`."""
        return [
            c for path in self.files for c in x509.load_pem_x509_certificates(path.read_bytes())
        ]


def _chains() -> tuple[Chain, ...]:
    table: dict[str, Any] = tomllib.loads((DATA / "chains.toml").read_text(encoding="utf-8"))
    fields = {field.name for field in attrs.fields(Chain)}
    return tuple(
        Chain(**{key: value for key, value in entry.items() if key in fields})
        for entry in table["chain"]
    )


CHAINS = _chains()
SERVERAUTH_ONLY = [c for c in CHAINS if c.serverauth_only_intermediates]


@functools.cache
def _certifi_roots() -> tuple[x509.Certificate, ...]:
    with input_warnings_ignored():
        # A few long-lived public roots have a zero serial; they are trusted all the same.
        return tuple(x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes()))


def _certifi_store() -> Store:
    return Store(list(_certifi_roots()))


def _sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    """The certificate's extended key usages, ``None`` without the extension."""
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _key_type(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "EC-P256"
    return type(key).__name__


# How an administrator might upload the same chain: the certificates of the files, in one order.

Form = Callable[[Sequence[Path]], Material]


def _separate_files(paths: Sequence[Path]) -> Material:
    return load(*paths)


def _concatenated(paths: Sequence[Path]) -> Material:
    return load(b"".join(path.read_bytes() for path in paths))


def _certs(paths: Sequence[Path]) -> list[x509.Certificate]:
    return [c for path in paths for c in x509.load_pem_x509_certificates(path.read_bytes())]


def _pkcs7_pem(paths: Sequence[Path]) -> Material:
    return load(pkcs7.serialize_certificates(_certs(paths), serialization.Encoding.PEM))


def _pkcs7_der(paths: Sequence[Path]) -> Material:
    return load(pkcs7.serialize_certificates(_certs(paths), serialization.Encoding.DER))


FORMS: dict[str, Form] = {
    "files": _separate_files,
    "concatenated-pem": _concatenated,
    "pkcs7-pem": _pkcs7_pem,
    "pkcs7-der": _pkcs7_der,
}


def _uploads() -> Iterator[Any]:
    for chain in CHAINS:
        for order in itertools.permutations(chain.files):
            for form in FORMS:
                label = "+".join(path.stem for path in order)
                yield pytest.param(chain, form, order, id=f"{chain.name}-{form}-{label}")


# certflow agrees with a TLS client


@pytest.mark.parametrize(("chain", "form", "order"), list(_uploads()))
def test_certflow_accepts_the_public_chain_in_every_order_and_format(
    chain: Chain, form: str, order: tuple[Path, ...]
) -> None:
    material = FORMS[form](order)
    assert material.leaf == chain.leaf
    report: Report = check(material, host=chain.host, now=chain.valid_at)
    found = {f.code: f.message for f in report.findings}
    assert Code.CHAIN_INCOMPLETE not in found, found[Code.CHAIN_INCOMPLETE]
    assert Code.HOST_MISMATCH not in found, found[Code.HOST_MISMATCH]
    assert report.root_publicly_trusted is True
    assert report.recommended_mode is ImportMode.PROCEED_TO_IMPORT
    assert report.chain[0] == chain.leaf
    root = report.chain[-1]
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert is_public_root(root)
    assert _sha256(root) == chain.root_sha256
    assert Code.TRUST_PUBLIC in found
    # The only errors: the private key, which is not public, and an EC leaf's key (RSA only).
    allowed = {Code.NO_PRIVATE_KEY} | (
        {Code.KEY_TYPE} if chain.key_type.startswith("EC") else set()
    )
    assert {f.code for f in report.errors} == allowed


# The fixtures are what chains.toml says they are


def test_the_table_has_a_serverauth_only_chain_and_rsa_leaves() -> None:
    assert len(CHAINS) >= 4
    assert len({c.name for c in CHAINS}) == len(CHAINS)
    assert SERVERAUTH_ONLY, "at least one chain must have serverAuth-only intermediates"
    assert sum(c.key_type.startswith("RSA") for c in CHAINS) >= 3
    assert any(c.cross_signed for c in CHAINS)
    assert any(not (c.folder / "root.pem").exists() for c in CHAINS)
    assert any((c.folder / "root.pem").exists() for c in CHAINS)


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.name)
def test_the_fixture_matches_its_table_entry(chain: Chain) -> None:
    leaf, intermediates = chain.leaf, chain.intermediates
    assert _sha256(leaf) == chain.leaf_sha256
    assert _key_type(leaf) == chain.key_type
    assert intermediates
    assert chain.valid_at.utcoffset() is not None
    for cert in chain.certificates:
        assert cert.not_valid_before_utc <= chain.valid_at <= cert.not_valid_after_utc
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert chain.host in names.get_values_for_type(x509.DNSName) or (
        f"*.{chain.host.split('.', 1)[1]}" in names.get_values_for_type(x509.DNSName)
    )
    # The intermediates are in the order the server sends them: each issued the one before.
    for child, parent in itertools.pairwise([leaf, *intermediates]):
        child.verify_directly_issued_by(parent)
    # serverAuth alone on every intermediate, exactly where the table says so.
    usages = [_usages(cert) for cert in intermediates]
    serverauth_only = all(
        u is not None
        and ExtendedKeyUsageOID.SERVER_AUTH in u
        and ExtendedKeyUsageOID.CLIENT_AUTH not in u
        for u in usages
    )
    assert serverauth_only is chain.serverauth_only_intermediates
    # A cross-signed path: the top intermediate is a CA's own root certified by a public root
    # (which the certificate alone cannot show), so at least the issuing CA sits below it.
    if chain.cross_signed:
        assert len(intermediates) >= 2
    root_file = chain.folder / "root.pem"
    if root_file.exists():
        (root,) = x509.load_pem_x509_certificates(root_file.read_bytes())
        assert _sha256(root) == chain.root_sha256
        intermediates[-1].verify_directly_issued_by(root)
    assert chain.root_sha256 in {_sha256(r) for r in _certifi_roots()}
    assert chain.provenance.startswith("github.com/C2SP/x509-limbo@")


# What a TLS client does: cryptography's own verifiers, the reference certflow follows


def _server_verify(chain: Chain) -> list[x509.Certificate]:
    verifier = (
        PolicyBuilder()
        .store(_certifi_store())
        .time(chain.valid_at)
        .build_server_verifier(x509.DNSName(chain.host))
    )
    return verifier.verify(chain.leaf, chain.intermediates)


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.name)
def test_a_tls_client_accepts_every_chain(chain: Chain) -> None:
    built = _server_verify(chain)
    assert built[0] == chain.leaf
    assert _sha256(built[-1]) == chain.root_sha256


@pytest.mark.parametrize("chain", SERVERAUTH_ONLY, ids=lambda c: c.name)
def test_a_client_certificate_verifier_refuses_a_serverauth_only_chain(chain: Chain) -> None:
    """Why certflow must judge the chain as a TLS client judges a server.

    A verifier for client certificates requires every intermediate's extended key usage to
    allow clientAuth, which a dedicated server-authentication hierarchy never does; the server
    verifier requires serverAuth and accepts the very same chain. The leaf's own usage is not
    the reason: with any leaf extensions allowed, the client verifier still refuses.
    """
    _server_verify(chain)
    client = PolicyBuilder().store(_certifi_store()).time(chain.valid_at)
    with pytest.raises(VerificationError):
        client.build_client_verifier().verify(chain.leaf, chain.intermediates)
    any_leaf = client.extension_policies(
        ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
    )
    with pytest.raises(VerificationError, match="EKU"):
        any_leaf.build_client_verifier().verify(chain.leaf, chain.intermediates)


@pytest.mark.parametrize(
    "chain", [c for c in CHAINS if not c.serverauth_only_intermediates], ids=lambda c: c.name
)
def test_intermediates_that_allow_client_auth_pass_either_verifier(chain: Chain) -> None:
    """The contrast: with clientAuth allowed (or no EKU) on the intermediates, both agree."""
    _server_verify(chain)
    any_leaf = (
        PolicyBuilder()
        .store(_certifi_store())
        .time(chain.valid_at)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
    )
    verified = any_leaf.build_client_verifier().verify(chain.leaf, chain.intermediates)
    assert _sha256(verified.chain[-1]) == chain.root_sha256
