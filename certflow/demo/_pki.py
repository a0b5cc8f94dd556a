"""The demo's certificates: a private root, the new server certificate it issues, and the
old server certificate the rollout replaces.

The demo rolls out a real certificate, so that its rollout records what it rolls out
(fingerprints, names, the root to push) and ``certflow rollout status`` of the demo
database shows it, as it would for an administrator's upload. The material goes through
:func:`certflow.certs.rollout_for`, so the demo's certificate passes the same checks as
an upload (RSA, less than 397 days, the host in its names).

Keys are fresh for every process (RSA keys cannot be seeded), so fingerprints differ
between runs while the timeline, which depends only on the seed, does not. One process
reuses its material (``functools.cache``): both demo hosts of one run see the same
certificate.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certflow.certs import Material

#: The demo server's address: in the new certificate's names, and checked against them.
HOST = "mdm.demo.example"
_ORGANIZATION = "certflow demo"


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    *,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A CA certificate when ``issuer`` is None (self-signed), else a TLS server
    certificate for :data:`HOST` signed by ``issuer``."""
    issuer_name, signer = (subject, key) if issuer is None else issuer
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if is_ca:
        usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        builder = (
            builder.add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        )
    return builder.sign(signer, hashes.SHA256())


@functools.cache
def material(start: datetime, existing_not_after: datetime) -> tuple[Material, x509.Certificate]:
    """The new material (root, server certificate valid from two days before ``start``
    for 396 days, and its key) and the existing server certificate, which expires at
    ``existing_not_after``."""
    root_key, leaf_key, old_key = _key(), _key(), _key()
    root_name = _name("certflow demo root CA")
    root = _certificate(
        root_name,
        root_key,
        issuer=None,
        not_before=start - timedelta(days=30),
        not_after=start + timedelta(days=3650),
    )
    leaf = _certificate(
        _name(HOST),
        leaf_key,
        issuer=(root_name, root_key),
        not_before=start - timedelta(days=2),
        not_after=start + timedelta(days=394),
    )
    # The old certificate was issued by an older CA a year before it expires.
    old_ca = _name("certflow demo old CA")
    existing = _certificate(
        _name(HOST),
        old_key,
        issuer=(old_ca, old_key),
        not_before=existing_not_after - timedelta(days=365),
        not_after=existing_not_after,
    )
    return Material.from_parts([root, leaf], [leaf_key], sources=("demo",)), existing
