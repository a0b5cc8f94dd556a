"""What a rollout rolls out: the public identity of the new certificate and its root.

``rollout-rules.md`` ("What a rollout knows and says"): a rollout created from checked
material records the new certificate's SHA-256 fingerprint, subject, names, issuer and
validity; the root's fingerprint, subject and whether it is publicly trusted; the hosts
it was checked for; and the public certificates (leaf, intermediates, root) as PEM.
Never a private key. :func:`certflow.certs.rollout_for` fills it from checked material;
a rollout made from dates alone (a simulation) has none (``plan.identity is None``).

These are plain values: the core does not parse certificates (it needs no
``cryptography``). What it does check, so that nothing else can get in, is that each
PEM is one ``CERTIFICATE`` block whose content has the outer shape of an X.509
certificate (a DER ``SEQUENCE`` of a ``SEQUENCE``, a ``SEQUENCE`` and a ``BIT STRING``,
which no private key, encrypted or not, has), and that each fingerprint is the SHA-256
of that content. PEM text is kept in one spelling (64-column base64, ``\\n`` line ends,
a final newline), so that the same certificate always gives equal identities.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from datetime import datetime
from typing import Any

import attrs

from certflow.core.errors import InvalidInput
from certflow.core.instants import require_aware, show

__all__ = [
    "CertificateIdentity",
    "Identity",
    "RootIdentity",
    "optional_fingerprint",
    "pem_named",
    "short",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BLOCK = re.compile(r"-----BEGIN ([^-\r\n]*)-----(.*?)-----END ([^-\r\n]*)-----", re.DOTALL)
_BEGIN = "-----BEGIN CERTIFICATE-----\n"
_END = "-----END CERTIFICATE-----\n"


def _text(field: str, value: object) -> str:
    if type(value) is not str:
        raise InvalidInput(f"{field}: expected a str, got {type(value).__name__} {value!r}")
    return value


def _line(field: str, value: object) -> str:
    """One line of text: no control characters, no PEM (so no key can ride along)."""
    text = _text(field, value)
    if _CONTROL.search(text):
        raise InvalidInput(
            f"{field}: must be one line without control characters (RFC 4514 escapes them "
            f"as \\0a), got {text!r}"
        )
    if "-----BEGIN" in text:
        raise InvalidInput(f"{field}: must not hold PEM text, got {text[:40]!r}...")
    return text


def _fingerprint(field: str, value: object) -> str:
    text = _text(field, value)
    if not _HEX64.fullmatch(text):
        raise InvalidInput(
            f"{field}: expected a SHA-256 fingerprint as 64 lowercase hexadecimal digits "
            f"(no colons), got {text!r}"
        )
    return text


def _names(field: str, value: object, *, required: bool = False) -> tuple[str, ...]:
    """A tuple (or list) of distinct non-empty strings; a lone string is refused."""
    if not isinstance(value, tuple | list):
        raise InvalidInput(f"{field}: expected a tuple of str, got {type(value).__name__}")
    items = tuple(value)
    seen: set[str] = set()
    for index, item in enumerate(items):
        _line(f"{field}[{index}]", item)
        if not item:
            raise InvalidInput(f"{field}[{index}]: must not be empty")
        if item in seen:
            raise InvalidInput(f"{field}[{index}]: {item!r} is listed twice")
        seen.add(item)
    if required and not items:
        raise InvalidInput(f"{field}: at least one is required")
    return items


def _der_item(data: bytes, at: int) -> tuple[int, int, int]:
    """The tag, content start and end of the DER item at ``at``; ValueError if it is cut."""
    if at + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[at], data[at + 1]
    start = at + 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or start + size > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _looks_like_certificate(der: bytes) -> bool:
    """``Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE,
    signatureValue BIT STRING }``, filling ``der`` exactly. Every private key format
    (PKCS#1, SEC 1, PKCS#8, encrypted PKCS#8) and PKCS#12 differ from it at once."""
    try:
        tag, start, end = _der_item(der, 0)
        if tag != 0x30 or end != len(der):
            return False
        tags = []
        at = start
        while at < end:
            inner, _, at = _der_item(der, at)
            tags.append(inner)
    except ValueError:
        return False
    return tags == [0x30, 0x30, 0x03] and at == end


def _certificate_pem(field: str, value: object) -> tuple[str, bytes]:
    """``value`` in the one PEM spelling, and the certificate's DER; InvalidInput otherwise."""
    text = _text(field, value)
    if "PRIVATE KEY" in text.upper():
        raise InvalidInput(
            f"{field}: holds a private key; a rollout's identity holds public certificates "
            "only, never a key"
        )
    blocks = list(_BLOCK.finditer(text))
    rest = _BLOCK.sub("", text)
    if len(blocks) != 1 or rest.strip():
        found = f"{len(blocks)} PEM blocks" if len(blocks) != 1 else "text outside the PEM block"
        raise InvalidInput(f"{field}: expected one PEM certificate, found {found}")
    begin, body, end = blocks[0].groups()
    if begin != "CERTIFICATE" or end != "CERTIFICATE":
        raise InvalidInput(f"{field}: expected a PEM CERTIFICATE block, got {begin!r}")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field}: the PEM block is not valid base64") from None
    if not _looks_like_certificate(der):
        raise InvalidInput(f"{field}: the PEM block does not hold an X.509 certificate")
    encoded = base64.b64encode(der).decode("ascii")
    lines = "".join(encoded[i : i + 64] + "\n" for i in range(0, len(encoded), 64))
    return _BEGIN + lines + _END, der


def _matching(field: str, fingerprint: str, der: bytes) -> None:
    actual = hashlib.sha256(der).hexdigest()
    if actual != fingerprint:
        raise InvalidInput(
            f"{field}.fingerprint: {fingerprint} is not the SHA-256 fingerprint of "
            f"{field}.pem ({actual})"
        )


def _set(instance: Any, name: str, value: object) -> None:
    object.__setattr__(instance, name, value)  # frozen: only while it is being made


@attrs.frozen
class CertificateIdentity:
    """The new server certificate: what administrators and hosts name it by.

    ``fingerprint``: SHA-256 of the certificate (DER), 64 lowercase hexadecimal digits;
    ``subject`` and ``issuer``: distinguished names as RFC 4514 text; ``names``: its
    subject alternative names (DNS names and IP addresses, as text); ``not_before`` and
    ``not_after``: its validity; ``pem``: the certificate itself.
    """

    fingerprint: str
    subject: str
    names: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    pem: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        _fingerprint("certificate.fingerprint", self.fingerprint)
        _line("certificate.subject", self.subject)
        _set(self, "names", _names("certificate.names", self.names))
        _line("certificate.issuer", self.issuer)
        require_aware("certificate.not_before", self.not_before)
        require_aware("certificate.not_after", self.not_after)
        if self.not_before >= self.not_after:
            raise InvalidInput(
                f"certificate.not_before {show(self.not_before)} is not before "
                f"certificate.not_after {show(self.not_after)}"
            )
        pem, der = _certificate_pem("certificate.pem", self.pem)
        _matching("certificate", self.fingerprint, der)
        _set(self, "pem", pem)


@attrs.frozen
class RootIdentity:
    """The root certificate the new certificate chains to: the one devices must trust.

    ``publicly_trusted``: the root is in the public store devices already trust, so it
    needs no distribution. ``fingerprint``, ``subject`` and ``pem`` as for
    :class:`CertificateIdentity`.
    """

    fingerprint: str
    subject: str
    publicly_trusted: bool
    pem: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        _fingerprint("root.fingerprint", self.fingerprint)
        _line("root.subject", self.subject)
        if type(self.publicly_trusted) is not bool:
            raise InvalidInput(
                f"root.publicly_trusted: expected a bool, got {self.publicly_trusted!r}"
            )
        pem, der = _certificate_pem("root.pem", self.pem)
        _matching("root", self.fingerprint, der)
        _set(self, "pem", pem)


@attrs.frozen
class Identity:
    """What a rollout rolls out: the new certificate, the intermediates (PEM, the one
    that issued the certificate first), the root, and the hosts the certificate was
    checked for. Public certificates only: no field can hold a key.

    A self-signed certificate is its own root (the same fingerprint in both).
    """

    certificate: CertificateIdentity
    root: RootIdentity
    hosts: tuple[str, ...]
    intermediates: tuple[str, ...] = attrs.field(default=(), repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.certificate, CertificateIdentity):
            raise InvalidInput(
                "certificate: expected a certflow.CertificateIdentity, got "
                f"{type(self.certificate).__name__}"
            )
        if not isinstance(self.root, RootIdentity):
            raise InvalidInput(
                f"root: expected a certflow.RootIdentity, got {type(self.root).__name__}"
            )
        _set(self, "hosts", _names("hosts", self.hosts, required=True))
        if not isinstance(self.intermediates, tuple | list):
            kind = type(self.intermediates).__name__
            raise InvalidInput(f"intermediates: expected a tuple of PEM text, got {kind}")
        pems = tuple(
            _certificate_pem(f"intermediates[{n}]", pem)[0]
            for n, pem in enumerate(self.intermediates)
        )
        _set(self, "intermediates", pems)
        if self.certificate.fingerprint == self.root.fingerprint and pems:
            raise InvalidInput(
                "intermediates: a self-signed certificate (its own root) has no intermediates"
            )

    @property
    def self_signed(self) -> bool:
        """Whether the certificate is its own root."""
        return self.certificate.fingerprint == self.root.fingerprint

    @property
    def chain_pem(self) -> str:
        """The public certificates as one PEM text: certificate, intermediates, root
        (the root once when the certificate is its own)."""
        root = () if self.self_signed else (self.root.pem,)
        return "".join((self.certificate.pem, *self.intermediates, *root))

    def pem(self, fingerprint: str) -> str:
        """The PEM of the certificate or root whose SHA-256 fingerprint is ``fingerprint``."""
        for part in (self.certificate, self.root):
            if part.fingerprint == fingerprint:
                return part.pem
        raise InvalidInput(
            f"no certificate of this rollout has the fingerprint {fingerprint!r}: its "
            f"certificate is {self.certificate.fingerprint} and its root "
            f"{self.root.fingerprint}"
        )


# --- what the effects name --------------------------------------------------------------------


def optional_fingerprint(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: ``None`` or a SHA-256 fingerprint (an effect's field)."""
    if value is not None:
        _fingerprint(attribute.name, value)


def short(fingerprint: str) -> str:
    """``SHA-256 1fa62e8fddc92f43…``: a fingerprint in a line for people."""
    return f"SHA-256 {fingerprint[:16]}…"


def pem_named(of: object, fingerprint: str | None, effect: str) -> str:
    """The PEM of the certificate ``fingerprint`` names, in the identity of ``of`` (a
    rollout, or its plan); the one call behind an effect's ``root_pem`` and
    ``certificate_pem``."""
    plan = getattr(of, "plan", of)
    if not hasattr(plan, "identity"):
        raise InvalidInput(f"of must be a certflow.Rollout or its Plan, got {type(of).__name__}")
    if fingerprint is None:
        raise InvalidInput(
            f"this {effect} names no certificate: its rollout has no identity (made from "
            "dates alone), so there is no PEM to give"
        )
    identity = plan.identity
    if identity is None:
        raise InvalidInput(
            f"the rollout given has no identity, so it holds no PEM for this {effect}; give "
            "the rollout (or plan) that emitted it"
        )
    if not isinstance(identity, Identity):
        raise InvalidInput(
            f"plan.identity must be a certflow.Identity, got {type(identity).__name__}"
        )
    return identity.pem(fingerprint)
