"""What certificates are signed with, told from cryptography's public API only."""

from __future__ import annotations

from typing import Protocol, cast, get_args, runtime_checkable

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from certflow.certs._errors import dsa_input, expect

# md2WithRSAEncryption and md4WithRSAEncryption (RFC 3279): cryptography does not know
# them at all, so their public, standard OIDs are the only way to name them.
_UNSUPPORTED_WEAK = {
    x509.ObjectIdentifier("1.2.840.113549.1.1.2"): "MD2",
    x509.ObjectIdentifier("1.2.840.113549.1.1.3"): "MD4",
}


def weak_digest(cert: x509.Certificate | x509.CertificateSigningRequest) -> str | None:
    """``"SHA-1"``, ``"MD5"`` (``"MD2"``, ``"MD4"``) when ``cert`` is signed over such a digest.

    The digest comes from ``signature_hash_algorithm``, so every algorithm over SHA-1 counts
    (RSA PKCS#1 under either OID, RSA-PSS, ECDSA, DSA).
    """
    expect(
        "cert", cert, (x509.Certificate, x509.CertificateSigningRequest),
        "a cryptography x509.Certificate or x509.CertificateSigningRequest",
    )  # fmt: skip
    try:
        digest = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return _UNSUPPORTED_WEAK.get(cert.signature_algorithm_oid)
    except ValueError:  # malformed parameters (e.g. RSA-PSS): not a digest to judge
        return None
    if isinstance(digest, hashes.SHA1):
        return "SHA-1"
    if isinstance(digest, hashes.MD5):
        return "MD5"
    return None


def weakly_signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent``'s key made ``child``'s SHA-1 or MD5 signature.

    ``verify_directly_issued_by`` refuses these digests outright, so a chain with a SHA-1
    certificate could not even be ordered; the signature is checked here with the
    certificate's own public signature parameters instead, as cryptography documents.
    """
    digest = child.signature_hash_algorithm if weak_digest(child) in ("SHA-1", "MD5") else None
    if digest is None:
        return False
    with dsa_input():
        key = parent.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            scheme = child.signature_algorithm_parameters
            if not isinstance(scheme, padding.PSS):
                scheme = padding.PKCS1v15()  # cryptography gives no parameters for MD5
            key.verify(child.signature, child.tbs_certificate_bytes, scheme, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(digest))
        elif key_kind(key) == "DSA":
            cast(_DigestVerifier, key).verify(child.signature, child.tbs_certificate_bytes, digest)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _oid_names(owner: type, names: dict[str, str]) -> dict[x509.ObjectIdentifier, str]:
    """``{owner.CONSTANT: name}`` for the constants this cryptography version has."""
    return {getattr(owner, c): n for c, n in names.items() if hasattr(owner, c)}


# OpenSSL's names (what `openssl x509 -text` prints), keyed by cryptography's public OIDs.
_SIGNATURE_NAMES = _oid_names(
    SignatureAlgorithmOID,
    {
        "RSA_WITH_MD5": "md5WithRSAEncryption",
        "RSA_WITH_SHA1": "sha1WithRSAEncryption",
        "RSA_WITH_SHA224": "sha224WithRSAEncryption",
        "RSA_WITH_SHA256": "sha256WithRSAEncryption",
        "RSA_WITH_SHA384": "sha384WithRSAEncryption",
        "RSA_WITH_SHA512": "sha512WithRSAEncryption",
        "RSA_WITH_SHA3_224": "RSA-SHA3-224",
        "RSA_WITH_SHA3_256": "RSA-SHA3-256",
        "RSA_WITH_SHA3_384": "RSA-SHA3-384",
        "RSA_WITH_SHA3_512": "RSA-SHA3-512",
        "RSASSA_PSS": "rsassaPss",
        "ECDSA_WITH_SHA1": "ecdsa-with-SHA1",
        "ECDSA_WITH_SHA224": "ecdsa-with-SHA224",
        "ECDSA_WITH_SHA256": "ecdsa-with-SHA256",
        "ECDSA_WITH_SHA384": "ecdsa-with-SHA384",
        "ECDSA_WITH_SHA512": "ecdsa-with-SHA512",
        "ECDSA_WITH_SHA3_224": "ecdsa_with_SHA3-224",
        "ECDSA_WITH_SHA3_256": "ecdsa_with_SHA3-256",
        "ECDSA_WITH_SHA3_384": "ecdsa_with_SHA3-384",
        "ECDSA_WITH_SHA3_512": "ecdsa_with_SHA3-512",
        "DSA_WITH_SHA1": "dsaWithSHA1",
        "DSA_WITH_SHA224": "dsa_with_SHA224",
        "DSA_WITH_SHA256": "dsa_with_SHA256",
        "DSA_WITH_SHA384": "dsa_with_SHA384",
        "DSA_WITH_SHA512": "dsa_with_SHA512",
        "ED25519": "ED25519",
        "ED448": "ED448",
        "GOSTR3411_94_WITH_3410_2001": "GOST R 34.11-94 with GOST R 34.10-2001",
        "GOSTR3410_2012_WITH_3411_2012_256": "GOST R 34.10-2012 with GOST R 34.11-2012 (256 bit)",
        "GOSTR3410_2012_WITH_3411_2012_512": "GOST R 34.10-2012 with GOST R 34.11-2012 (512 bit)",
        "ML_DSA_44": "ML-DSA-44",
        "ML_DSA_65": "ML-DSA-65",
        "ML_DSA_87": "ML-DSA-87",
    },
) | {oid: f"{digest.lower()}WithRSAEncryption" for oid, digest in _UNSUPPORTED_WEAK.items()}

# The names RFC 5280 and OpenSSL give the extended key usages.
_USAGE_NAMES = _oid_names(
    ExtendedKeyUsageOID,
    {
        "SERVER_AUTH": "serverAuth",
        "CLIENT_AUTH": "clientAuth",
        "CODE_SIGNING": "codeSigning",
        "EMAIL_PROTECTION": "emailProtection",
        "TIME_STAMPING": "timeStamping",
        "OCSP_SIGNING": "OCSPSigning",
        "ANY_EXTENDED_KEY_USAGE": "anyExtendedKeyUsage",
        "SMARTCARD_LOGON": "msSmartcardLogin",
        "KERBEROS_PKINIT_KDC": "pkInitKDC",
        "IPSEC_IKE": "ipsecIKE",
        "CERTIFICATE_TRANSPARENCY": "certificateTransparency",
        "BUNDLE_SECURITY": "bundleSecurity",
    },
)


def signature_algorithm_name(item: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """The name of the algorithm ``item`` is signed with, as OpenSSL prints it.

    E.g. ``sha256WithRSAEncryption``; an algorithm without a name gives its dotted OID.
    """
    expect(
        "item", item, (x509.Certificate, x509.CertificateSigningRequest),
        "a cryptography x509.Certificate or x509.CertificateSigningRequest",
    )  # fmt: skip
    oid = item.signature_algorithm_oid
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def usage_name(oid: x509.ObjectIdentifier) -> str:
    """An extended key usage by name (``serverAuth``), or its dotted OID."""
    expect("oid", oid, x509.ObjectIdentifier, "a cryptography x509.ObjectIdentifier")
    return _USAGE_NAMES.get(oid, oid.dotted_string)


def key_kind(key: object) -> str:
    """The kind of ``key``: ``RSA``, ``EC``, ``DSA``, ``Ed25519``..., told by cryptography's
    public key classes (never by the name of an implementation class); ``unknown`` else."""
    for cls in _KEY_CLASSES:
        if isinstance(key, cls):
            name = cls.__name__.removesuffix("PublicKey").removesuffix("PrivateKey")
            return _KIND_NAMES.get(name, name)
    return "unknown"


def describe_key(key: object) -> str:
    """``key`` for people: ``RSA 2048 bits``, ``EC 256 bits (secp256r1)``, ``Ed25519``...

    ``key`` may be a certificate, for its public key (``unsupported`` when cryptography
    cannot read it); an uploaded DSA key is read without cryptography's deprecation warning.
    """
    if isinstance(key, x509.Certificate | x509.CertificateSigningRequest):
        try:
            with dsa_input():
                key = key.public_key()
        except (ValueError, UnsupportedAlgorithm):
            return "unsupported"
    kind = key_kind(key)
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"{kind} {key.key_size} bits ({key.curve.name})"
    bits = key_bits(key)
    return kind if bits is None else f"{kind} {bits} bits"


def key_bits(key: object) -> int | None:
    """The size of ``key`` in bits, for the kinds that have one (RSA, EC, DSA, DH)."""
    return key.key_size if isinstance(key, _Sized) else None


_KEY_CLASSES: tuple[type, ...] = (*get_args(PublicKeyTypes), *get_args(PrivateKeyTypes))
_KIND_NAMES = {
    "EllipticCurve": "EC",
    "MLDSA44": "ML-DSA-44",
    "MLDSA65": "ML-DSA-65",
    "MLDSA87": "ML-DSA-87",
    "MLKEM768": "ML-KEM-768",
    "MLKEM1024": "ML-KEM-1024",
}


@runtime_checkable
class _Sized(Protocol):
    """A key with a size in bits: told by the public ``key_size`` of its interface."""

    @property
    def key_size(self) -> int: ...


class _DigestVerifier(Protocol):
    """A DSA public key's ``verify``: the class itself is deprecated by cryptography, so it
    is told apart by :func:`key_kind` (the classes of ``PublicKeyTypes``), never named."""

    def verify(self, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm) -> None: ...
