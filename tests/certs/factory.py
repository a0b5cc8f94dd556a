"""Certificates made for the tests: a small PKI whose every property a test can bend.

Keys are generated once per process (RSA generation is the slow part); signing is fast.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The instant most tests check at.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOST = "mdm.example.com"


@functools.cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    """A cached RSA key; ``slot`` tells several keys of one size apart."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    """A cached P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    """``O=certflow tests, CN=common_name``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certflow tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def san(*entries: str) -> list[x509.GeneralName]:
    """General names from text: IP addresses become IP SANs, anything else DNS SANs."""
    out: list[x509.GeneralName] = []
    for entry in entries:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            out.append(x509.DNSName(entry))
    return out


def build(
    common_name: str,
    *,
    key: CertificateIssuerPrivateKeyTypes,
    issuer: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] | None = (),
    not_before: datetime = NOW - 10 * DAY,
    not_after: datetime | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    key_usage: x509.KeyUsage | None = None,
    ca_eku: Sequence[x509.ObjectIdentifier] | None = None,
    ca_eku_critical: bool = False,
) -> x509.Certificate:
    """One certificate; self-signed when ``issuer`` is None. ``sans=None`` omits the SAN.

    ``eku`` is a leaf's extended key usage; ``ca_eku`` a CA's (none by default): public CAs
    now restrict their TLS intermediates to serverAuth.
    """
    issuer_name, signer = (
        (name(common_name), key) if issuer is None else (issuer[0].subject, issuer[1])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after if not_after is not None else not_before + 90 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(key_usage or usage, critical=True)
        if ca_eku is not None:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(list(ca_eku)), critical=ca_eku_critical
            )
    else:
        usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        builder = builder.add_extension(key_usage or usage, critical=True)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if sans is not None:
            entries = list(sans) or san(common_name)
            builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return builder.sign(signer, hashes.SHA256())


@attrs.frozen
class Pki:
    """Root -> intermediate -> leaf, with their keys."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    root_key: rsa.RSAPrivateKey
    intermediate_key: rsa.RSAPrivateKey
    leaf_key: CertificateIssuerPrivateKeyTypes


def pki(
    host: str = HOST,
    *,
    leaf_key: CertificateIssuerPrivateKeyTypes | None = None,
    sans: Sequence[x509.GeneralName] | None = (),
    not_before: datetime = NOW - 10 * DAY,
    not_after: datetime | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    key_usage: x509.KeyUsage | None = None,
    ca_not_after: datetime = NOW + 3650 * DAY,
) -> Pki:
    """A private PKI issuing one server certificate for ``host`` (the SAN unless ``sans``)."""
    root_key, inter_key = rsa_key(2048, 1), rsa_key(2048, 2)
    key = leaf_key if leaf_key is not None else rsa_key()
    start = NOW - 1000 * DAY
    root = build(
        "certflow test root", key=root_key, ca=True, not_before=start, not_after=ca_not_after
    )
    inter = build(
        "certflow test intermediate",
        key=inter_key,
        issuer=(root, root_key),
        ca=True,
        not_before=start,
        not_after=ca_not_after,
    )
    leaf = build(
        host,
        key=key,
        issuer=(inter, inter_key),
        sans=sans,
        not_before=not_before,
        not_after=not_after,
        eku=eku,
        key_usage=key_usage,
    )
    return Pki(root, inter, leaf, root_key, inter_key, key)


def pem(*certs: x509.Certificate) -> bytes:
    """Certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """An unencrypted PKCS#8 PEM key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# AlgorithmIdentifier DER of sha256WithRSAEncryption; SHA-1 and MD5 differ in the last OID byte.
_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
_WEAK_RSA = {"sha1": (0x05, hashes.SHA1()), "md5": (0x04, hashes.MD5())}


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def resign_weak(
    cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey, digest: str
) -> x509.Certificate:
    """``cert`` re-signed with SHA-1 or MD5 (cryptography no longer builds such certificates)."""
    last, algorithm = _WEAK_RSA[digest]
    weak_alg = _SHA256_RSA[:-3] + bytes([last]) + _SHA256_RSA[-2:]
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1
    tbs = tbs.replace(_SHA256_RSA, weak_alg)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), algorithm)
    bit_string = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + weak_alg + bit_string
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)
