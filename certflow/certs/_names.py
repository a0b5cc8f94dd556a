"""What certificates are signed with, told from cryptography's public API only."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

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
    key = parent.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            scheme = child.signature_algorithm_parameters
            if not isinstance(scheme, padding.PSS):
                scheme = padding.PKCS1v15()  # cryptography gives no parameters for MD5
            key.verify(child.signature, child.tbs_certificate_bytes, scheme, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(digest))
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, digest)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True
