"""Certificate signing requests: creation, inspection, the legacy OpenSSL config, and writing."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certflow.certs._check import MIN_RSA_BITS
from certflow.certs._errors import (
    DATA,
    PATH,
    SECRET,
    MaterialError,
    dsa_input,
    expect,
    expect_optional,
    quiet,
)
from certflow.certs._files import atomic_write, backup_together
from certflow.certs._keys import KEY_SIZES, key_to_pem
from certflow.certs._names import key_bits, key_kind, signature_algorithm_name
from certflow.certs._subject import SanEntry, Subject, sans_from_extension
from certflow.core.errors import InvalidInput

#: File names the source document's generateCSR tool writes.
KEY_FILE = "server.key"
CSR_FILE = "server.csr"
_KEY_MODE = 0o600
SUBJECT = "a certflow.certs.Subject, e.g. Subject.create(country=..., ...)"
CSR = "a cryptography x509.CertificateSigningRequest"
_CSR_MODE = 0o644


def create_csr(subject: Subject, key: rsa.RSAPrivateKey) -> x509.CertificateSigningRequest:
    """A CSR for ``subject`` signed with ``key`` (SHA-256), with the SANs as an extension."""
    expect("subject", subject, Subject, SUBJECT)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(
            f"key must be an RSA private key (the server supports RSA only), got {key_kind(key)}"
        )
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject.x509_name())
        .add_extension(x509.SubjectAlternativeName(subject.general_names()), critical=False)
        .sign(key, hashes.SHA256())
    )


def csr_to_pem(csr: x509.CertificateSigningRequest) -> bytes:
    """The CSR as PEM text, as CAs ask for it."""
    expect("csr", csr, x509.CertificateSigningRequest, CSR)
    return csr.public_bytes(serialization.Encoding.PEM)


@attrs.frozen
class CsrInfo:
    """What a CSR asks for, and whether its signature is valid (the source's verify step)."""

    subject: x509.Name
    sans: tuple[SanEntry, ...]
    key_type: str
    key_size: int | None
    signature_valid: bool
    signature_algorithm: str

    @property
    def common_name(self) -> str | None:
        """The subject's common name, if it has one."""
        values = self.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(values[0].value) if values else None

    @property
    def problems(self) -> tuple[str, ...]:
        """Why the CSR cannot be used, one reason each (empty when it can)."""
        found = []
        if not self.signature_valid:
            found.append(
                "its signature does not verify: the request was altered, or not signed by the "
                "key it carries"
            )
        if self.key_type in ("unsupported", "unknown"):
            found.append("its key is of an unsupported type; the server supports RSA keys only")
        elif self.key_type != "RSA":
            found.append(f"its key is {self.key_type}; the server supports RSA keys only")
        elif (self.key_size or 0) < MIN_RSA_BITS:
            found.append(
                f"its RSA key has {self.key_size} bits; at least {MIN_RSA_BITS} are needed"
            )
        return tuple(found)

    @property
    def ok(self) -> bool:
        """True when the signature is valid and the key is RSA of at least 2048 bits."""
        return not self.problems


def _key_description(key: object) -> tuple[str, int | None]:
    return key_kind(key), key_bits(key)


@quiet
def read_csr(data: bytes, *, source: str = "CSR") -> x509.CertificateSigningRequest:
    """A CSR from PEM (``CERTIFICATE REQUEST``) or DER; :class:`MaterialError` otherwise."""
    expect("data", data, bytes, DATA)
    if not data.strip():
        raise MaterialError(source, "empty", "the file is empty")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data.replace(b"\r\n", b"\n"))
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise MaterialError(
            source, "unparseable", "not a certificate signing request (PEM or DER)"
        ) from None


@quiet
def inspect_csr(csr: x509.CertificateSigningRequest | bytes, *, source: str = "CSR") -> CsrInfo:
    """Subject, SANs, key type and size of a CSR, and whether its self-signature verifies."""
    expect("csr", csr, (x509.CertificateSigningRequest, bytes), f"{CSR} or {DATA}")
    request = read_csr(csr, source=source) if isinstance(csr, bytes) else csr
    try:
        with dsa_input():
            key_type, key_size = _key_description(request.public_key())
    except (ValueError, UnsupportedAlgorithm):
        key_type, key_size = "unsupported", None
    try:
        sans = sans_from_extension(request.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as error:
        raise MaterialError(source, "unparseable", f"malformed CSR extension: {error}") from None
    algorithm = signature_algorithm_name(request)
    return CsrInfo(
        subject=request.subject,
        sans=sans,
        key_type=key_type,
        key_size=key_size,
        signature_valid=request.is_signature_valid,
        signature_algorithm=algorithm,
    )


@attrs.frozen
class WrittenFiles:
    """Where :func:`write_key_and_csr` put the new files, and the backups it made first."""

    key: Path
    csr: Path
    backups: tuple[Path, ...]


def write_key_and_csr(
    folder: str | os.PathLike[str],
    key: rsa.RSAPrivateKey,
    csr: x509.CertificateSigningRequest,
    *,
    passphrase: str | bytes | None = None,
) -> WrittenFiles:
    """Write ``server.key`` (mode 0o600) and ``server.csr`` into ``folder``.

    Existing files are first copied to ``server.key.bak`` / ``server.csr.bak`` (or ``.bak.1``,
    ... — the first number free for both, so the backups of one run share it, and an earlier
    backup is never overwritten), then each new file replaces the old one atomically. The key
    is encrypted with ``passphrase`` when one is given.
    """
    expect("folder", folder, (str, os.PathLike), PATH)
    expect("key", key, rsa.RSAPrivateKey, "an RSA private key")
    expect("csr", csr, x509.CertificateSigningRequest, CSR)
    expect_optional("passphrase", passphrase, (str, bytes), SECRET)
    directory = Path(folder)
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not an existing folder")
    key_path, csr_path = directory / KEY_FILE, directory / CSR_FILE
    # One number for both backups, so the key and the CSR of one run stay a pair.
    backups = tuple(b for b in backup_together([key_path, csr_path]) if b is not None)
    atomic_write(key_path, key_to_pem(key, passphrase), mode=_KEY_MODE)
    atomic_write(csr_path, csr_to_pem(csr), mode=_CSR_MODE)
    return WrittenFiles(key=key_path, csr=csr_path, backups=backups)


def _conf_value(text: str) -> str:
    # OpenSSL's config parser treats these as escape, comment, variable and quote characters.
    return "".join("\\" + ch if ch in "\\#$\"'`" else ch for ch in text)


def openssl_config(subject: Subject, *, bits: int = 2048) -> str:
    """The legacy ``opensslsan.conf`` of the source document for ``subject``.

    ``openssl req -new -config opensslsan.conf -newkey rsa:BITS -nodes -keyout server.key
    -out server.csr`` then gives a CSR with the same subject and SANs as :func:`create_csr`.
    """
    expect("subject", subject, Subject, SUBJECT)
    if bits not in KEY_SIZES or not isinstance(bits, int) or isinstance(bits, bool):
        raise InvalidInput(f"RSA key size {bits!r} is not supported; use 2048, 3072 or 4096")
    dn = [
        ("countryName", subject.country),
        ("stateOrProvinceName", subject.state),
        ("localityName", subject.locality),
        ("organizationName", subject.organization),
        ("organizationalUnitName", subject.organizational_unit),
        ("commonName", subject.common_name),
    ]
    lines = [
        "# opensslsan.conf - generated by certflow",
        "# openssl req -new -config opensslsan.conf -newkey rsa:"
        f"{bits} -nodes -keyout server.key -out server.csr",
        "[ req ]",
        f"default_bits       = {bits}",
        "default_md         = sha256",
        "prompt             = no",
        "utf8               = yes",
        "string_mask        = utf8only",
        "distinguished_name = req_distinguished_name",
        "req_extensions     = req_ext",
        "",
        "[ req_distinguished_name ]",
        *(f"{key:<22} = {_conf_value(value)}" for key, value in dn if value),
        "",
        "[ req_ext ]",
        "subjectAltName = @alt_names",
        "",
        "[ alt_names ]",
    ]
    counts = {"DNS": 0, "IP": 0}
    for entry in subject.sans:  # OpenSSL keeps the section's order, so the SANs match ours
        kind = "DNS" if isinstance(entry, str) else "IP"
        counts[kind] += 1
        lines.append(f"{kind}.{counts[kind]} = {entry}")
    return "\n".join(lines) + "\n"
