"""The server-certificate checks of certificate-rules.md: every problem at once, each on its own."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certflow.certs._chain import PublicRoots, judge_chain, name_of, reason, roles
from certflow.certs._errors import (
    MATERIAL,
    PRIVATE_KEY,
    PRIVATE_KEY_TYPES,
    SubjectError,
    dsa_input,
    expect,
    expect_iterable,
    expect_optional,
    quiet,
)
from certflow.certs._load import Material, key_matches
from certflow.certs._names import describe_key, usage_name, weak_digest
from certflow.certs._subject import parse_san, sans_from_extension
from certflow.core.errors import InvalidInput
from certflow.core.instants import require_utc, show, show_span

#: Validity must be strictly less than this (``not_after - not_before``).
MAX_VALIDITY = timedelta(days=397)
#: A certificate with fewer days left than this gets an ``expiring_soon`` warning.
EXPIRY_WARNING = timedelta(days=30)
#: The smallest RSA key accepted.
MIN_RSA_BITS = 2048


class Severity(StrEnum):
    """How bad a finding is; only errors make a report not ``ok``."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Code(StrEnum):
    """The stable code of a finding (programs match on these, never on messages)."""

    VALIDITY_PERIOD = "validity_period"
    KEY_TYPE = "key_type"
    KEY_SIZE = "key_size"
    KEY_MISMATCH = "key_mismatch"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    HOST_MISMATCH = "host_mismatch"
    CHAIN_INCOMPLETE = "chain_incomplete"
    SELF_SIGNED = "self_signed"
    USAGE = "usage"
    WEAK_SIGNATURE = "weak_signature"
    EXPIRING_SOON = "expiring_soon"
    NO_CERTIFICATE = "no_certificate"
    NO_PRIVATE_KEY = "no_private_key"
    TRUST_PUBLIC = "trust_public"
    TRUST_PRIVATE = "trust_private"


class ImportMode(StrEnum):
    """The import option of the source document a report recommends."""

    #: The root is public: devices already trust it, import directly.
    PROCEED_TO_IMPORT = "proceed_to_import"
    #: The root is private (enterprise): push it to every device first.
    DISTRIBUTE_ROOT_FIRST = "distribute_root_first"


@attrs.frozen
class Finding:
    """One result of a check: a stable code, a severity and a message for people.

    ``host`` names the host a ``host_mismatch`` finding is about (``None`` for the others).
    """

    code: Code
    severity: Severity
    message: str
    host: str | None = None


@attrs.frozen
class Report:
    """Everything :func:`check` found about one certificate, for its hosts, at one instant.

    ``host`` is the first of ``hosts``, every address the certificate was checked for.
    """

    host: str
    checked_at: datetime
    findings: tuple[Finding, ...]
    #: True when the chain leads to a root of the public store (certifi's bundle unless
    #: :func:`check` was given other ``roots``).
    root_publicly_trusted: bool
    #: The chain the verifier built (leaf first), empty when none could be built.
    chain: tuple[x509.Certificate, ...] = attrs.field(eq=False, default=())
    hosts: tuple[str, ...] = attrs.field(
        default=attrs.Factory(lambda self: (self.host,), takes_self=True)
    )

    @property
    def uncovered_hosts(self) -> tuple[str, ...]:
        """The hosts the certificate does not cover (each has a ``host_mismatch`` error)."""
        named = {f.host for f in self.findings if f.code is Code.HOST_MISMATCH}
        return tuple(host for host in self.hosts if host in named)

    @property
    def ok(self) -> bool:
        """True when no finding is an error (warnings and info do not count)."""
        return not self.errors

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity ``error``."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings of severity ``warning``."""
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def codes(self) -> frozenset[Code]:
        """The codes of all findings."""
        return frozenset(f.code for f in self.findings)

    @property
    def recommended_mode(self) -> ImportMode | None:
        """Proceed to import for a public root; distribute the root first otherwise.

        ``None`` when there is no server certificate: there is nothing to import.
        """
        if Code.NO_CERTIFICATE in self.codes:
            return None
        if self.root_publicly_trusted:
            return ImportMode.PROCEED_TO_IMPORT
        return ImportMode.DISTRIBUTE_ROOT_FIRST

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        mode = self.recommended_mode
        return {
            "ok": self.ok,
            "host": self.host,
            "hosts": list(self.hosts),
            "uncovered_hosts": list(self.uncovered_hosts),
            "checked_at": self.checked_at.isoformat(),
            "root_publicly_trusted": self.root_publicly_trusted,
            "recommended_mode": None if mode is None else mode.value,
            "chain": [cert.subject.rfc4514_string() for cert in self.chain],
            "findings": [
                {
                    "code": f.code.value,
                    "severity": f.severity.value,
                    "message": f.message,
                    "host": f.host,
                }
                for f in self.findings
            ],
        }


def parse_host(host: str) -> x509.DNSName | x509.IPAddress:
    """The server's address (host name or IPv4/IPv6 address) as an X.509 subject to match."""
    expect("host", host, str, "the server's host name or IP address, a str")
    try:
        entry = parse_san(host)
    except SubjectError as error:
        raise InvalidInput(f"host {host!r}: {error}") from None
    if isinstance(entry, str):
        if entry.startswith("*."):
            raise InvalidInput(f"host {host!r} is a wildcard; give the server's actual name")
        return x509.DNSName(entry)
    return x509.IPAddress(entry)


@quiet
def check(
    material: Material,
    *,
    host: str | None = None,
    now: datetime,
    key: PrivateKeyTypes | None = None,
    hosts: Iterable[str] = (),
    roots: PublicRoots | None = None,
) -> Report:
    """Check ``material`` as the server certificate for ``host`` at the instant ``now``.

    ``hosts`` adds more addresses (the vendor's rule is the host name *and* the NAT
    address): every one is checked, and each one not covered gets its own
    ``host_mismatch`` error. At least one host is needed, in ``host`` or ``hosts``.
    ``key`` is the private key when it is not part of the material (e.g. ``server.key``).
    Every check reports on its own: host and chain are judged at an instant inside the
    certificate's validity window, so an expired certificate still gets honest host and chain
    verdicts besides its ``expired`` error. ``now`` must be timezone-aware.
    ``roots`` is the public root store that tells a public root from a private one
    (:meth:`PublicRoots.certifi` when ``None``).
    """
    expect("material", material, Material, MATERIAL)
    expect_optional("key", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
    at = require_utc("now", now)
    names = _hosts(host, hosts)
    subjects = [parse_host(name) for name in names]
    leaf = material.leaf
    if leaf is None:
        what = (
            "only CA certificates were given (a chain file?)"
            if material.certificates
            else "only a private key was given"
        )
        finding = Finding(
            Code.NO_CERTIFICATE,
            Severity.ERROR,
            f"no server certificate: {what}; upload the certificate the CA issued",
        )
        return Report(
            host=names[0],
            hosts=names,
            checked_at=at,
            findings=(finding,),
            root_publicly_trusted=False,
        )
    findings = [
        *_validity_period(leaf),
        *_key_type(leaf),
        *_private_key(leaf, key if key is not None else material.private_key),
        *_times(material, at),
    ]
    inside = _inside(at, [leaf])
    for name, subject in zip(names, subjects, strict=True):
        findings += [attrs.evolve(f, host=name) for f in _host(leaf, subject, name, inside)]
    verdict = judge_chain(material, _inside(at, list(material.chain)), roots)
    chain, public = verdict.chain, verdict.public
    if verdict.self_signed:
        findings.append(
            Finding(
                Code.SELF_SIGNED,
                Severity.WARNING,
                "the certificate is self-signed: no CA vouches for it, so every device must "
                "be given this very certificate as a trusted root",
            )
        )
    elif verdict.problem is not None:
        findings.append(Finding(Code.CHAIN_INCOMPLETE, Severity.ERROR, verdict.problem))
    findings += _usage(leaf)
    findings += _weak_signatures(material)
    findings.append(_trust(material, chain, public))
    return Report(
        host=names[0],
        hosts=names,
        checked_at=at,
        findings=tuple(findings),
        root_publicly_trusted=public,
        chain=chain,
    )


def _hosts(host: str | None, hosts: Iterable[str]) -> tuple[str, ...]:
    """``host`` and ``hosts`` as one tuple, each address once (compared as matched)."""
    expect_optional("host", host, str, "the server's host name or IP address, a str")
    expect_iterable("hosts", hosts, "an iterable of host names or IP addresses (str)")
    given = ([] if host is None else [host]) + list(hosts)
    if not given:
        raise InvalidInput(
            "no host to check the certificate for: give the server's host name and NAT "
            "address (host=... or hosts=[...])"
        )
    unique: dict[object, str] = {}
    for name in given:
        unique.setdefault(parse_host(name), name)
    return tuple(unique.values())


def _validity_period(leaf: x509.Certificate) -> list[Finding]:
    period = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if period < MAX_VALIDITY:
        return []
    return [
        Finding(
            Code.VALIDITY_PERIOD,
            Severity.ERROR,
            f"valid for {show_span(period)}; must be less than 397 days",
        )
    ]


def _key_type(leaf: x509.Certificate) -> list[Finding]:
    try:
        with dsa_input():
            public = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return [
            Finding(
                Code.KEY_TYPE,
                Severity.ERROR,
                "the key is of an unsupported type; the server supports RSA keys only",
            )
        ]
    if not isinstance(public, rsa.RSAPublicKey):
        kind = describe_key(public)
        return [
            Finding(
                Code.KEY_TYPE,
                Severity.ERROR,
                f"the key is {kind}; the server supports RSA keys only",
            )
        ]
    if public.key_size < MIN_RSA_BITS:
        return [
            Finding(
                Code.KEY_SIZE,
                Severity.ERROR,
                f"the RSA key has {public.key_size} bits; at least {MIN_RSA_BITS} are needed",
            )
        ]
    return []


def _private_key(leaf: x509.Certificate, key: PrivateKeyTypes | None) -> list[Finding]:
    if key is None:
        return [
            Finding(
                Code.NO_PRIVATE_KEY,
                Severity.ERROR,
                "no private key: the server cannot use the certificate without it; upload a "
                "PFX that contains it, or give the server.key made with the CSR",
            )
        ]
    if not key_matches(leaf, key):
        return [
            Finding(
                Code.KEY_MISMATCH,
                Severity.ERROR,
                "the private key does not belong to the certificate (was the certificate "
                "issued for another CSR?)",
            )
        ]
    return []


def _times(material: Material, at: datetime) -> list[Finding]:
    found = []
    for role, cert in roles(material):
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if at > end:
            found.append(
                Finding(
                    Code.EXPIRED,
                    Severity.ERROR,
                    f"{role} expired on {show(end)}, {show_span(at - end)} ago",
                )
            )
        elif at < start:
            found.append(
                Finding(
                    Code.NOT_YET_VALID,
                    Severity.ERROR,
                    f"{role} is not valid before {show(start)}, {show_span(start - at)} from now",
                )
            )
        elif end - at < EXPIRY_WARNING:
            found.append(
                Finding(
                    Code.EXPIRING_SOON,
                    Severity.WARNING,
                    f"{role} expires on {show(end)}, in {show_span(end - at)}; "
                    "fewer than 30 days left",
                )
            )
    return found


def _inside(at: datetime, certs: list[x509.Certificate]) -> datetime:
    """``at`` moved into the window where all ``certs`` are valid (the leaf's if none is)."""
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    if start > end:
        start, end = certs[0].not_valid_before_utc, certs[0].not_valid_after_utc
    return min(max(at, start), end)


# Only the SAN match: usage and chain problems have findings of their own.
def _wildcard_near(entries: Iterable[object], subject: x509.DNSName | x509.IPAddress) -> bool:
    """True when a wildcard name of the certificate is about ``subject``'s domain without
    covering it: ``*.example.com`` for ``example.com`` itself or for ``a.b.example.com``."""
    if not isinstance(subject, x509.DNSName):
        return False
    host = subject.value.lower().rstrip(".")
    for entry in entries:
        text = str(entry).lower().rstrip(".")
        if text.startswith("*."):
            suffix = text[2:]
            if host == suffix or host.endswith("." + suffix):
                return True
    return False


_HOST_ONLY = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)


def _host(
    leaf: x509.Certificate, subject: x509.DNSName | x509.IPAddress, host: str, at: datetime
) -> list[Finding]:
    try:
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [
            Finding(
                Code.HOST_MISMATCH,
                Severity.ERROR,
                f"the certificate has no subject alternative names, so it covers no host; "
                f"clients ignore the common name ('{name_of(leaf)}')",
            )
        ]
    except ValueError as error:
        return [Finding(Code.HOST_MISMATCH, Severity.ERROR, f"unreadable SAN extension: {error}")]
    entries = sans_from_extension(leaf.extensions)
    names = ", ".join(str(entry) for entry in entries) or "none"
    hint = "; a wildcard covers exactly one label" if _wildcard_near(entries, subject) else ""
    # The leaf is its own trust anchor here, so only the name (and profile) is judged.
    builder = (
        PolicyBuilder()
        .store(Store([leaf]))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_HOST_ONLY)
    )
    try:
        builder.build_server_verifier(subject).verify(leaf, [])
    except VerificationError as error:
        # Was it the name? The same verification without a name to match answers that,
        # rather than the wording of the verifier's message.
        try:
            builder.build_client_verifier().verify(leaf, [])
        except VerificationError:
            return [
                Finding(
                    Code.HOST_MISMATCH,
                    Severity.ERROR,
                    f"{host} could not be matched: {reason(error)}",
                )
            ]
        return [
            Finding(
                Code.HOST_MISMATCH,
                Severity.ERROR,
                f"{host} is not covered by the certificate's names ({names}){hint}",
            )
        ]
    except ValueError as error:
        return [Finding(Code.HOST_MISMATCH, Severity.ERROR, f"{host} cannot be matched: {error}")]
    return []


def _usage(leaf: x509.Certificate) -> list[Finding]:
    found = []
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        listed = ", ".join(usage_name(oid) for oid in eku) or "nothing"
        found.append(
            Finding(
                Code.USAGE,
                Severity.WARNING,
                f"extended key usage lists {listed} but not serverAuth: TLS clients will "
                "refuse it as a server certificate",
            )
        )
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not (ku.digital_signature or ku.key_encipherment):
        found.append(
            Finding(
                Code.USAGE,
                Severity.WARNING,
                "key usage allows neither digitalSignature nor keyEncipherment, which a TLS "
                "server needs",
            )
        )
    return found


def _weak_signatures(material: Material) -> list[Finding]:
    found = []
    # A root's signature on itself is never checked by clients, so it does not count.
    for role, cert in roles(material):
        if cert is material.root:
            continue
        weak = weak_digest(cert)
        if weak is not None:
            found.append(
                Finding(
                    Code.WEAK_SIGNATURE,
                    Severity.WARNING,
                    f"{role} is signed with {weak}, which clients no longer accept; ask the "
                    "CA for a SHA-256 signature",
                )
            )
    return found


def _trust(material: Material, chain: tuple[x509.Certificate, ...], public: bool) -> Finding:
    top = chain[-1] if chain else (material.root or material.chain[-1])
    if public:
        return Finding(
            Code.TRUST_PUBLIC,
            Severity.INFO,
            f"the root '{name_of(top)}' is publicly trusted: devices already trust it, so the "
            "certificate can be imported directly (Proceed to Import)",
        )
    if not chain and material.root is None:
        return Finding(
            Code.TRUST_PRIVATE,
            Severity.INFO,
            "the root could not be identified, so it is treated as private: distribute it to "
            "every device before importing (Distribute Root Certificate)",
        )
    return Finding(
        Code.TRUST_PRIVATE,
        Severity.INFO,
        f"the root '{name_of(top)}' is private, an enterprise CA: distribute it to every "
        "device before importing (Distribute Root Certificate)",
    )
