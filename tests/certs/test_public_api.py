"""Public APIs only: one time-helper module, cryptography's public types, names and OIDs."""

from __future__ import annotations

import ast
import re
import subprocess
import warnings
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certflow.certs import (
    Code,
    check,
    describe_key,
    key_kind,
    signature_algorithm_name,
    usage_name,
)

from .factory import HOST, NOW, build, ec_key, pki, resign_weak, rsa_key, san
from .test_check import full

PACKAGE = Path(__file__).resolve().parents[2] / "certflow"
MINE = sorted([*(PACKAGE / "certs").rglob("*.py"), *(PACKAGE / "cli").rglob("*.py")])


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_one_time_helper_module_for_the_whole_package() -> None:
    helpers = {"require_aware", "require_utc", "show", "show_span"}
    defined = [
        f"{path.relative_to(PACKAGE.parent)}:{node.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in helpers
    ]
    assert defined == [f"certflow/core/instants.py:{name}" for name in
                       ("require_aware", "require_utc", "show", "show_span")]  # fmt: skip
    assert not (PACKAGE / "certs" / "_time.py").exists()


def test_no_private_attribute_of_another_object_is_read() -> None:
    """No ``oid._name``, no ``SignatureAlgorithmOID._RSA_WITH_SHA1``, no private class."""
    offences = []
    for path in MINE:
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Constant) and node.value in ("_name", "_RSA_WITH_SHA1"):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.value!r}")
    assert offences == []


def test_no_class_name_is_shown_as_a_key_type() -> None:
    offences = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in MINE
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr == "__name__"
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "type"
        and "key" in ast.unparse(node.value.args[0]).lower()
    ]
    assert offences == []


def _dsa_public_key() -> PublicKeyTypes:
    # An uploaded key may still be DSA, so certflow must name it; cryptography deprecates
    # making one (and naming its module's classes), which only this one call does.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        from cryptography.hazmat.primitives.asymmetric import dsa

        return dsa.generate_private_key(2048).public_key()


@pytest.mark.parametrize(
    ("key", "kind", "text"),
    [
        (rsa_key(), "RSA", "RSA 2048 bits"),
        (rsa_key().public_key(), "RSA", "RSA 2048 bits"),
        (ec_key(), "EC", "EC 256 bits (secp256r1)"),
        (ec_key().public_key(), "EC", "EC 256 bits (secp256r1)"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519", "Ed25519"),
        (_dsa_public_key(), "DSA", "DSA 2048 bits"),
        ("not a key", "unknown", "unknown"),
    ],
    ids=["rsa", "rsa public", "ec", "ec public", "ed25519", "dsa public", "str"],
)
def test_key_types_are_named_from_cryptographys_public_classes(
    key: object, kind: str, text: str
) -> None:
    assert (key_kind(key), describe_key(key)) == (kind, text)


def test_an_ec_certificate_is_refused_with_the_key_named() -> None:
    report = check(full(pki(leaf_key=ec_key())), host=HOST, now=NOW)
    (finding,) = [f for f in report.findings if f.code is Code.KEY_TYPE]
    assert (
        finding.message == "the key is EC 256 bits (secp256r1); the server supports RSA keys only"
    )


def test_usage_names() -> None:
    assert usage_name(ExtendedKeyUsageOID.SERVER_AUTH) == "serverAuth"
    assert usage_name(ExtendedKeyUsageOID.CLIENT_AUTH) == "clientAuth"
    assert usage_name(ExtendedKeyUsageOID.OCSP_SIGNING) == "OCSPSigning"
    assert usage_name(x509.ObjectIdentifier("1.2.3.4")) == "1.2.3.4"


def test_every_public_signature_algorithm_has_a_name() -> None:
    public = [getattr(SignatureAlgorithmOID, n) for n in dir(SignatureAlgorithmOID)
              if n.isupper() and not n.startswith("_") and n != "UNSIGNED"]  # fmt: skip
    from certflow.certs import _names

    assert [oid for oid in public if oid not in _names._SIGNATURE_NAMES] == []


def _openssl_name(openssl: str, cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    text = subprocess.run(
        [openssl, "x509", "-noout", "-text"],
        input=cert.public_bytes(Encoding.PEM),
        capture_output=True,
        check=True,
    ).stdout.decode()
    found = re.search(r"Signature Algorithm: (.+)", text)
    assert found is not None
    return found.group(1).strip()


def _vector_certificates() -> list[x509.Certificate]:
    base = Path(cryptography_vectors.__file__).parent / "x509"
    certs = []
    for name in ("ecdsa_root.pem", "ee-pss-sha1-cert.pem", "verisign_md2_root.pem",
                 "cryptography.io.pem", "ed25519/root-ed25519.pem", "ed448/root-ed448.pem",
                 "custom/dsa_selfsigned_ca.pem", "custom/ecdsa_sha3_256.pem"):  # fmt: skip
        path = base / name
        if path.exists():
            certs.append(x509.load_pem_x509_certificate(path.read_bytes()))
    p = pki()
    return [*certs, p.leaf, resign_weak(p.leaf, p.intermediate_key, "sha1"),
            resign_weak(p.leaf, p.intermediate_key, "md5"), build(HOST, key=ec_key())]  # fmt: skip


def test_signature_algorithm_names_are_openssls(openssl: str) -> None:
    certs = _vector_certificates()
    assert len(certs) >= 9
    ours = [signature_algorithm_name(cert) for cert in certs]
    assert ours == [_openssl_name(openssl, cert) for cert in certs]


# The verifier's message is shown to people, never decided on; where certflow trims its
# framing, these tests pin the framing, so a change in cryptography shows up here.


def _message(leaf: x509.Certificate, store: list[x509.Certificate], name: str | None) -> str:
    ee = ExtensionPolicy.permit_all().require_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    builder = (
        PolicyBuilder()
        .store(Store(store))
        .time(NOW)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)
    )
    verifier = builder.build_client_verifier() if name is None else None
    try:
        if verifier is not None:
            verifier.verify(leaf, [])
        else:
            assert name is not None
            builder.build_server_verifier(x509.DNSName(name)).verify(leaf, [])
    except VerificationError as error:
        return str(error)
    raise AssertionError("the verifier accepted it")


def test_the_verifier_texts_certflow_trims_are_pinned() -> None:
    p = pki(sans=san("www.example.com"))
    missing = _message(p.leaf, [p.root], None)
    assert missing == (
        "validation failed: candidates exhausted: all candidates exhausted with no interior errors"
    )
    wrong_name = _message(p.leaf, [p.leaf], HOST)
    assert wrong_name.startswith("validation failed: leaf certificate has no matching ")
    assert " (encountered processing <Certificate(" in wrong_name


def test_no_verdict_comes_from_the_verifiers_message_text() -> None:
    source = (PACKAGE / "certs" / "_check.py").read_text()
    assert "no matching subjectAltName" not in source
    assert "in reason" not in source


def test_no_assert_decides_anything_in_the_certificate_tools() -> None:
    # `python -O` strips asserts: control flow must never depend on one.
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in MINE
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Assert)
    ]
    assert found == []
