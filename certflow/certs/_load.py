"""Loading what an administrator uploads: any mix of certificates, chains, PFX files and keys."""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias, TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from certflow.certs._errors import (
    CERTIFICATE,
    PRIVATE_KEY,
    PRIVATE_KEY_TYPES,
    SECRET,
    MaterialError,
    dsa_input,
    expect,
    expect_iterable,
    expect_optional,
    input_warnings_ignored,
    quiet,
)
from certflow.certs._files import LIMIT, read_bounded
from certflow.certs._names import weakly_signed_by
from certflow.core.errors import InvalidInput

#: One input of :func:`load`: a path, or the bytes of an uploaded file.
Source: TypeAlias = str | os.PathLike[str] | bytes
_T = TypeVar("_T")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\n(.*?)-----END \1-----", re.DOTALL)
_PEM_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 #]+-----")
_KEY_LABELS = {
    b"PRIVATE KEY",
    b"RSA PRIVATE KEY",
    b"ENCRYPTED PRIVATE KEY",
    b"EC PRIVATE KEY",
    b"DSA PRIVATE KEY",
}
_UNSUPPORTED_LABELS = {
    b"CERTIFICATE REQUEST": "a certificate signing request; upload the certificate the CA "
    "issued for it instead",
    b"NEW CERTIFICATE REQUEST": "a certificate signing request; upload the certificate the CA "
    "issued for it instead",
    b"PUBLIC KEY": "a public key alone; the server needs the certificate and its private key",
    b"RSA PUBLIC KEY": "a public key alone; the server needs the certificate and its private key",
    b"X509 CRL": "a certificate revocation list, not a certificate",
}
_IGNORED_LABELS = {b"EC PARAMETERS", b"DH PARAMETERS"}  # openssl writes these beside keys


@attrs.frozen
class Material:
    """Certificate material merged from one or more uploads, identified and ordered.

    ``leaf`` is the server certificate, ``intermediates`` lead from it upwards (the one that
    issued the leaf first), ``root`` is the self-signed certificate at the top when it was
    supplied, ``private_key`` the key (the one matching the leaf when several were given).
    ``others`` holds certificates that are not on the leaf's chain.
    """

    leaf: x509.Certificate | None
    intermediates: tuple[x509.Certificate, ...] = ()
    root: x509.Certificate | None = None
    private_key: PrivateKeyTypes | None = attrs.field(default=None, eq=False)
    others: tuple[x509.Certificate, ...] = ()
    sources: tuple[str, ...] = ()

    @classmethod
    def from_parts(
        cls,
        certificates: Iterable[x509.Certificate],
        private_keys: Iterable[PrivateKeyTypes] = (),
        *,
        sources: Iterable[str] = (),
    ) -> Material:
        """Identify leaf, intermediates and root among ``certificates``, in any order.

        The leaf is the certificate matching a private key; else the non-CA certificate with
        the longest chain among the others; else the only certificate. Issuers are found by
        name and a signature check, so the order of the input does not matter.
        """
        expect_iterable("certificates", certificates, "an iterable of x509.Certificate")
        expect_iterable("private_keys", private_keys, "an iterable of private keys")
        expect_iterable("sources", sources, "an iterable of str")
        certs = list(certificates)
        keys = list(private_keys)
        for index, cert in enumerate(certs):
            expect(f"certificates[{index}]", cert, x509.Certificate, CERTIFICATE)
        for index, key in enumerate(keys):
            expect(f"private_keys[{index}]", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
        return _identify(_unique_certificates(certs), keys, tuple(sources))

    @classmethod
    def of(
        cls,
        certificate: x509.Certificate,
        *chain: x509.Certificate,
        key: PrivateKeyTypes | None = None,
    ) -> Material:
        """Material from certificate objects already in hand (e.g. a server's current one)."""
        expect_optional("key", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
        return cls.from_parts([certificate, *chain], [] if key is None else [key])

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Leaf, intermediates and root, in that order (what the server presents)."""
        head = () if self.leaf is None else (self.leaf,)
        tail = () if self.root is None else (self.root,)
        return (*head, *self.intermediates, *tail)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Every certificate, the chain first and then the others."""
        return (*self.chain, *self.others)

    @property
    def leaf_self_signed(self) -> bool:
        """True when the server certificate signed itself."""
        return self.leaf is not None and _issued_by(self.leaf, self.leaf)

    def with_private_key(self, key: PrivateKeyTypes) -> Material:
        """The same material with ``key`` (e.g. ``server.key`` of the CSR flow) as its key."""
        expect("key", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
        return _identify(list(self.certificates), [key], self.sources)


@quiet
def load(
    *sources: Source,
    password: str | bytes | None = None,
    names: Sequence[str] | None = None,
) -> Material:
    """Load and merge certificate material from paths or bytes, whatever their format.

    Each source may be a PEM file (one or more certificates and keys, CRLF line ends and
    ``Bag Attributes`` lines allowed), a DER certificate, a PKCS#7 chain (PEM or DER), a
    PKCS#12/PFX file (including legacy 3DES/RC2 encryption) or a PKCS#1/PKCS#8 key in PEM or
    DER, encrypted or not; the format is detected from the content, never the file name.
    ``password`` opens every encrypted source. ``names`` names byte sources in messages
    (default ``input 1``, ``input 2``...).

    Every failure raises :class:`MaterialError` whose message names the source.
    """
    if not sources:
        raise MaterialError("load()", "empty", "nothing to load: give at least one file")
    for index, source in enumerate(sources, start=1):
        expect(f"source {index}", source, (str, os.PathLike, bytes, bytearray, memoryview),
               "a file path (str or os.PathLike) or the file's bytes")  # fmt: skip
    expect_optional("password", password, (str, bytes), SECRET)
    if names is not None and (
        isinstance(names, str)
        or not isinstance(names, Sequence)
        or not all(isinstance(n, str) for n in names)
    ):
        raise InvalidInput(f"names must be a sequence of str, got {names!r}")
    secret = password.encode() if isinstance(password, str) else password
    certs: list[x509.Certificate] = []
    keys: list[PrivateKeyTypes] = []
    labels: list[str] = []
    for index, source in enumerate(sources, start=1):
        label = _label(source, index, names)
        data = _read(source, label)
        found_certs, found_keys = _parse(label, data, secret or None)
        certs += _well_formed(label, found_certs)
        keys += found_keys
        labels.append(label)
    return _identify(_unique_certificates(certs), keys, tuple(labels))


def _label(source: Source, index: int, names: Sequence[str] | None) -> str:
    if names is not None and index <= len(names):
        return names[index - 1]
    if isinstance(source, bytes | bytearray | memoryview):
        return f"input {index}"
    return os.fspath(source)


def _read(source: Source, label: str) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > LIMIT:
            raise MaterialError(label, "too_large", f"larger than 1 MiB{_TOO_LARGE}")
    else:
        data = read_bounded(source, name=label, hint=_TOO_LARGE)
    if not data.strip():
        raise MaterialError(label, "empty", "the file is empty")
    return data


_TOO_LARGE = "; certificates, chains and keys are a few KiB, so this is not certificate material"


_Parsed: TypeAlias = tuple[list[x509.Certificate], list[PrivateKeyTypes]]


def _parse(label: str, data: bytes, password: bytes | None) -> _Parsed:
    if b"-----BEGIN" in data:
        return _parse_pem(label, data, password)
    return _parse_der(label, data, password)


def _parse_pem(label: str, data: bytes, password: bytes | None) -> _Parsed:
    text = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    blocks = list(_PEM_BLOCK.finditer(text))
    if len(blocks) < len(_PEM_BEGIN.findall(text)):
        raise MaterialError(
            label, "unparseable", "truncated or damaged PEM: a BEGIN line without its END line"
        )
    certs: list[x509.Certificate] = []
    keys: list[PrivateKeyTypes] = []
    for number, block in enumerate(blocks, start=1):
        kind, pem = block.group(1), block.group(0)
        what = f"PEM block {number} ({kind.decode()})"
        if kind in (b"CERTIFICATE", b"X509 CERTIFICATE"):
            certs.append(_guard(label, what, x509.load_pem_x509_certificate, pem))
        elif kind == b"TRUSTED CERTIFICATE":  # OpenSSL's form: the certificate, then trust data
            body = _b64(label, what, block.group(2))
            certs.append(_guard(label, what, _first_der_certificate, body))
        elif kind == b"PKCS7":
            certs += _guard(label, what, pkcs7.load_pem_pkcs7_certificates, pem)
        elif kind in _KEY_LABELS:
            where = f"{what}: " if len(blocks) > 1 else ""
            keys.append(_load_key(label, serialization.load_pem_private_key, pem, password, where))
        elif kind in _IGNORED_LABELS:
            continue
        else:
            problem = _UNSUPPORTED_LABELS.get(kind, f"unsupported PEM content ({kind.decode()})")
            raise MaterialError(label, "unsupported", f"{what} is {problem}")
    return certs, keys


def _b64(label: str, what: str, body: bytes) -> bytes:
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise MaterialError(label, "unparseable", f"{what} is damaged (bad base64)") from None


# What cryptography raises for malformed certificates and extensions.
_MALFORMED = (
    ValueError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def _guard(label: str, what: str, parse: Callable[[bytes], _T], data: bytes) -> _T:
    try:
        return parse(data)
    except _MALFORMED as error:
        raise MaterialError(label, "unparseable", f"{what} is damaged: {error}") from None


def _well_formed(label: str, certs: list[x509.Certificate]) -> list[x509.Certificate]:
    """``certs``, once each one's names and extensions parse: the checks read them all."""
    for number, cert in enumerate(certs, start=1):
        try:
            name = cert.subject.rfc4514_string() or "(empty subject)"
            cert.issuer.rfc4514_string()
        except _MALFORMED as error:
            raise MaterialError(
                label, "unparseable", f"certificate {number} has a malformed name: {error}"
            ) from None
        try:
            cert.extensions  # noqa: B018 - parsing is the point
        except _MALFORMED as error:
            raise MaterialError(
                label, "unparseable", f"certificate '{name}' has a malformed extension: {error}"
            ) from None
    return certs


def _load_key(
    label: str,
    loader: Callable[[bytes, bytes | None], PrivateKeyTypes],
    blob: bytes,
    password: bytes | None,
    where: str = "",
) -> PrivateKeyTypes:
    """The key in ``blob``; cryptography's exception types say what went wrong."""
    damaged = MaterialError(label, "unparseable", f"{where}the private key is damaged")
    try:
        with dsa_input():
            return loader(blob, password)
    except UnsupportedAlgorithm as error:
        raise MaterialError(
            label, "unsupported", f"{where}unsupported private key: {error}"
        ) from None
    except TypeError:  # cryptography's "password (not) given but key is (not) encrypted"
        if password is None:
            raise MaterialError(
                label,
                "password_required",
                f"{where}the private key is encrypted; its password is needed",
            ) from None
    except ValueError:
        if password is None:
            raise damaged from None
    # A password was given and refused: meant for another file of the upload (this key is
    # not encrypted), wrong (it is), or the key is damaged.
    try:
        return loader(blob, None)
    except TypeError:
        raise MaterialError(
            label, "bad_password", f"{where}wrong password for the encrypted private key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise damaged from None


def _der_header(data: bytes, offset: int = 0) -> tuple[int, int, int | None] | None:
    """(tag, header length, content length) of the DER element at ``offset``, if well-formed.

    The length is ``None`` for BER's indefinite form, which older tools write.
    """
    if len(data) < offset + 2:
        return None
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, 2, first
    count = first & 0x7F
    if count == 0:
        return tag, 2, None
    if count > 4 or len(data) < offset + 2 + count:
        return None
    return tag, 2 + count, int.from_bytes(data[offset + 2 : offset + 2 + count], "big")


def _first_der_certificate(data: bytes) -> x509.Certificate:
    header = _der_header(data)
    if header is None or header[2] is None:
        raise ValueError("not DER")
    return x509.load_der_x509_certificate(data[: header[1] + header[2]])


def _looks_like_pkcs12(data: bytes) -> bool:
    # PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo, ... }
    header = _der_header(data)
    return (
        header is not None
        and header[0] == 0x30
        and data[header[1] : header[1] + 3] == b"\x02\x01\x03"
    )


def _parse_der(label: str, data: bytes, password: bytes | None) -> _Parsed:
    # cryptography decides what the bytes are; the DER header is only read afterwards, to
    # explain a refusal, so nothing cryptography can read is turned away here.
    try:
        return [x509.load_der_x509_certificate(data)], []
    except x509.InvalidVersion as error:
        raise MaterialError(label, "unparseable", f"damaged certificate: {error}") from None
    except ValueError:
        pass
    with contextlib.suppress(ValueError, UnsupportedAlgorithm):
        return pkcs7.load_der_pkcs7_certificates(data), []
    for secret in dict.fromkeys((password, None)):  # the password may be for another file
        with contextlib.suppress(ValueError, UnsupportedAlgorithm):
            return _pkcs12_parts(pkcs12.load_pkcs12(data, secret))
    try:
        return [], [_load_key(label, serialization.load_der_private_key, data, password)]
    except MaterialError as error:
        if error.code != "unparseable":
            raise
    return _refuse_der(label, data, password)


def _refuse_der(label: str, data: bytes, password: bytes | None) -> _Parsed:
    """Why no loader of cryptography read ``data``: the most useful explanation."""
    header = _der_header(data)
    if header is None or header[0] != 0x30:
        hint = "text without a '-----BEGIN' line" if _is_text(data) else "unrecognised content"
        raise MaterialError(
            label,
            "unparseable",
            f"not a certificate, chain, PKCS#12 (PFX) file or private key ({hint})",
        )
    if header[2] is not None and header[1] + header[2] > len(data):
        raise MaterialError(
            label,
            "unparseable",
            f"truncated: the file ends after {len(data)} of {header[1] + header[2]} bytes",
        )
    if _looks_like_pkcs12(data):
        return _parse_pkcs12(label, data, password)
    try:
        x509.load_der_x509_csr(data)
    except ValueError:
        pass
    else:
        raise MaterialError(
            label, "unsupported", f"is {_UNSUPPORTED_LABELS[b'CERTIFICATE REQUEST']}"
        )
    raise MaterialError(
        label,
        "unparseable",
        "not a certificate, chain, PKCS#12 (PFX) file or private key (damaged DER data)",
    )


def _is_text(data: bytes) -> bool:
    return all(byte in b"\t\n\r" or 32 <= byte < 127 for byte in data[:512])


def _pkcs12_parts(bundle: pkcs12.PKCS12KeyAndCertificates) -> _Parsed:
    certs = [] if bundle.cert is None else [bundle.cert.certificate]
    certs += [extra.certificate for extra in bundle.additional_certs]
    return certs, [] if bundle.key is None else [bundle.key]


def _parse_pkcs12(label: str, data: bytes, password: bytes | None) -> _Parsed:
    """A PKCS#12 file's content, or the reason (password, algorithm) it cannot be opened."""
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except UnsupportedAlgorithm as error:
        raise MaterialError(
            label, "unsupported", f"unsupported PKCS#12 encryption: {error}"
        ) from None
    except ValueError:
        if password is None:
            raise MaterialError(
                label,
                "password_required",
                "this PKCS#12 (PFX) file is password-protected (or damaged); "
                "its password is needed",
            ) from None
        try:  # the password may have been meant for another file of the upload
            bundle = pkcs12.load_pkcs12(data, None)
        except (ValueError, UnsupportedAlgorithm):
            raise MaterialError(
                label,
                "bad_password",
                "wrong password for this PKCS#12 (PFX) file (or it is damaged)",
            ) from None
    return _pkcs12_parts(bundle)


def _unique_certificates(certificates: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    unique: list[x509.Certificate] = []
    for cert in certificates:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            unique.append(cert)
    return unique


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(certificate: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """True when ``key`` is the private key of ``certificate``."""
    expect("certificate", certificate, x509.Certificate, CERTIFICATE)
    expect("key", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
    try:
        with dsa_input():
            return _spki(certificate.public_key()) == _spki(key.public_key())
    except (ValueError, UnsupportedAlgorithm):  # a key type cryptography cannot read
        return False


@functools.lru_cache(maxsize=4096)  # ordering asks the same question many times
def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    with input_warnings_ignored():  # comparing odd names (e.g. a long country) warns
        if child.issuer != parent.subject:
            return False
    try:
        with dsa_input():
            child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):  # e.g. it refuses SHA-1 and MD5
        return weakly_signed_by(child, parent)
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def _walk_up(start: int, certs: list[x509.Certificate]) -> list[int]:
    """Indexes from ``start`` up through its issuers; self-signed parents are tried first."""
    path = [start]
    while not _issued_by(certs[path[-1]], certs[path[-1]]):
        parents = [
            j for j in range(len(certs)) if j not in path and _issued_by(certs[path[-1]], certs[j])
        ]
        if not parents:
            break
        parents.sort(key=lambda j: not _issued_by(certs[j], certs[j]))
        path.append(parents[0])
    return path


def _identify(
    certs: list[x509.Certificate], keys: list[PrivateKeyTypes], sources: tuple[str, ...]
) -> Material:
    matching = [i for i, cert in enumerate(certs) if any(key_matches(cert, k) for k in keys)]
    leaf: int | None
    if matching:
        leaf = min(matching, key=lambda i: (_is_ca(certs[i]), i))
    else:
        candidates = [i for i, cert in enumerate(certs) if not _is_ca(cert)]
        if candidates:
            leaf = max(candidates, key=lambda i: (len(_walk_up(i, certs)), -i))
        else:
            leaf = 0 if len(certs) == 1 else None
    if leaf is None:  # only CA certificates: order them as a chain, bottom first
        issuers = {j for i in range(len(certs)) for j in _walk_up(i, certs)[1:]}
        bottoms = [i for i in range(len(certs)) if i not in issuers] or [0]
        path = _walk_up(bottoms[0], certs) if certs else []
        top_is_root = bool(path) and _issued_by(certs[path[-1]], certs[path[-1]])
        upper, root = (path[:-1], path[-1]) if top_is_root else (path, None)
    else:
        path = _walk_up(leaf, certs)
        top_is_root = len(path) > 1 and _issued_by(certs[path[-1]], certs[path[-1]])
        upper, root = (path[1:-1], path[-1]) if top_is_root else (path[1:], None)
    key = next((k for k in keys if leaf is not None and key_matches(certs[leaf], k)), None)
    if key is None and keys:
        key = keys[0]
    return Material(
        leaf=None if leaf is None else certs[leaf],
        intermediates=tuple(certs[i] for i in upper),
        root=None if root is None else certs[root],
        private_key=key,
        others=tuple(c for i, c in enumerate(certs) if i not in path),
        sources=sources,
    )
