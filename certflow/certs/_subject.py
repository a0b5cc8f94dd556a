"""The subject of a server certificate request: validated fields and subject alternative names."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TypeAlias

import attrs
import idna
import iso3166
from cryptography import x509
from cryptography.x509.oid import NameOID

from certflow.certs._errors import SubjectError, expect

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
#: One subject alternative name: a DNS name (possibly a wildcard) or an IP address.
SanEntry: TypeAlias = str | IPAddress

# Upper bounds of RFC 5280 appendix A (ub-common-name etc.).
_MAX_LENGTH = {
    "state": 128,
    "locality": 128,
    "organization": 64,
    "organizational_unit": 64,
    "common_name": 64,
}
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Codes people type that ISO 3166-1 does not have.
_COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}


def normalize_country(value: str) -> str:
    """The ISO 3166-1 alpha-2 code ``value`` names, upper-case; refuses anything else."""
    expect("country", value, str, "a str, e.g. 'US'")
    code = value.strip().upper()
    if len(code) == 2 and code in iso3166.countries_by_alpha2:
        return code
    hint = _COUNTRY_HINTS.get(code)
    if hint is None:
        try:
            hint = iso3166.countries.get(value.strip()).alpha2
        except KeyError:
            hint = None
    suggestion = (
        f"; did you mean {hint} ({iso3166.countries_by_alpha2[hint].name})?"
        if hint
        else "; use the two-letter ISO 3166-1 code, e.g. US, GB, DE, IN"
    )
    raise SubjectError(f"country {value!r} is not an ISO 3166-1 alpha-2 country code{suggestion}")


def _text(field: str, value: str, *, required: bool) -> str:
    expect(field, value, str, "a str")
    text = value.strip()
    label = field.replace("_", " ")
    if not text:
        if required:
            raise SubjectError(f"{label} is required")
        return ""
    if _CONTROL.search(text):
        raise SubjectError(f"{label} {value!r} contains a control character")
    if len(text) > _MAX_LENGTH[field]:
        raise SubjectError(
            f"{label} is {len(text)} characters long; X.509 allows at most {_MAX_LENGTH[field]}"
        )
    return text


def parse_san(value: str) -> SanEntry:
    """One subject alternative name: an IPv4/IPv6 address, a DNS name or a ``*.`` wildcard.

    DNS names are lower-cased, a trailing dot is dropped and internationalised names are
    converted to their ``xn--`` form by IDNA 2008 (``straße.de`` is ``xn--strae-oqa.de``,
    not ``strasse.de``). A wildcard is only allowed as the whole left-most label
    and needs at least two labels after it (``*.example.com``, not ``*.com``).
    """
    expect("name", value, str, "a DNS name or IP address, a str")
    text = value.strip()
    if not text:
        raise SubjectError("empty subject alternative name")
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    name = text.rstrip(".")
    name = name.lower() if name.isascii() else _idna(name, value)
    if len(name) > 253:
        raise SubjectError(f"DNS name {value!r} is longer than 253 characters")
    labels = name.split(".")
    wildcard = labels[0] == "*"
    rest = labels[1:] if wildcard else labels
    if wildcard and len(rest) < 2:
        raise SubjectError(
            f"wildcard {value!r} is too broad: it needs at least two labels after '*.' "
            "(e.g. *.example.com)"
        )
    for label in rest:
        if not _LABEL.match(label):
            problem = (
                "a wildcard is only allowed as the whole left-most label (e.g. *.example.com)"
                if "*" in label
                else "labels are letters, digits and inner hyphens, 1 to 63 characters"
            )
            raise SubjectError(f"{value!r} is neither an IP address nor a DNS name: {problem}")
    if all(label.isdigit() for label in rest):
        raise SubjectError(f"{value!r} looks like an IP address but is not a valid one")
    return name


def _idna(name: str, value: str) -> str:
    """An internationalised name in its ``xn--`` form: IDNA 2008 with UTS #46 mapping.

    Python's own ``idna`` codec implements IDNA 2003, which maps ``straße.de`` to
    ``strasse.de``, another domain; the ``idna`` package keeps the ``ß`` (non-transitional
    processing, as browsers do) and maps case and width as UTS #46 says.
    """
    wildcard = name.startswith("*.")
    try:
        ascii_name = idna.encode(name[2:] if wildcard else name, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise SubjectError(
            f"{value!r} is not a valid internationalised DNS name (IDNA 2008): {error}"
        ) from None
    return ("*." if wildcard else "") + ascii_name


def parse_sans(text: str) -> tuple[SanEntry, ...]:
    """Subject alternative names from one comma-separated string, duplicates dropped."""
    expect("sans", text, str, "one comma-separated str")
    entries: list[SanEntry] = []
    for part in text.split(","):
        if part.strip():
            entry = parse_san(part)
            if entry not in entries:
                entries.append(entry)
    return tuple(entries)


def san_text(entry: SanEntry) -> str:
    """A SAN as typed: ``www.example.com`` or ``10.0.0.1``."""
    return str(entry)


def general_name(entry: SanEntry) -> x509.GeneralName:
    """A SAN as the X.509 general name that carries it."""
    if isinstance(entry, str):
        return x509.DNSName(entry)
    return x509.IPAddress(entry)


def sans_from_extension(extensions: x509.Extensions) -> tuple[SanEntry, ...]:
    """The DNS and IP subject alternative names of a certificate or CSR, in order."""
    expect("extensions", extensions, x509.Extensions, "x509.Extensions (cert.extensions)")
    try:
        san = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[SanEntry] = []
    for name in san:
        value = name.value if isinstance(name, x509.DNSName | x509.IPAddress) else None
        if isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            out.append(value)  # IP *networks* only appear in name constraints
    return tuple(out)


def _check_sans(instance: Subject, attribute: attrs.Attribute[object], value: object) -> None:
    if instance.common_name_entry() not in instance.sans:
        raise SubjectError("the common name must be among the subject alternative names")


@attrs.frozen
class Subject:
    """The validated subject of a server certificate: who it is for and which names it covers.

    Build it with :meth:`create`, which validates and normalises every field. The common
    name is always among :attr:`sans`, since clients match host names by SAN only.
    """

    country: str
    state: str
    locality: str
    organization: str
    organizational_unit: str
    common_name: str
    sans: tuple[SanEntry, ...] = attrs.field(validator=_check_sans)

    @classmethod
    def create(
        cls,
        *,
        country: str,
        state: str,
        locality: str,
        organization: str,
        common_name: str,
        organizational_unit: str = "",
        sans: str | Iterable[str] = "",
    ) -> Subject:
        """A validated subject; ``sans`` is one comma-separated string (or several strings).

        The common name is added in front of the SANs when they do not list it. Every bad
        field raises :class:`SubjectError` naming the field and the problem.
        """
        common = _text("common_name", common_name, required=True)
        cn_entry = parse_san(common)
        expect("sans", sans, (str, Iterable), "a comma-separated str or an iterable of str")
        texts = [sans] if isinstance(sans, str) else list(sans)
        for entry in texts:
            expect("sans", entry, str, "a comma-separated str or an iterable of str")
        parsed = parse_sans(",".join(texts))
        entries = parsed if cn_entry in parsed else (cn_entry, *parsed)
        return cls(
            country=normalize_country(country),
            state=_text("state", state, required=True),
            locality=_text("locality", locality, required=True),
            organization=_text("organization", organization, required=True),
            organizational_unit=_text("organizational_unit", organizational_unit, required=False),
            common_name=san_text(cn_entry),
            sans=entries,
        )

    def common_name_entry(self) -> SanEntry:
        """The common name as a SAN entry (DNS name or IP address)."""
        return parse_san(self.common_name)

    def x509_name(self) -> x509.Name:
        """The subject distinguished name, in the order C, ST, L, O, OU, CN."""
        pairs = [
            (NameOID.COUNTRY_NAME, self.country),
            (NameOID.STATE_OR_PROVINCE_NAME, self.state),
            (NameOID.LOCALITY_NAME, self.locality),
            (NameOID.ORGANIZATION_NAME, self.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            (NameOID.COMMON_NAME, self.common_name),
        ]
        return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])

    def general_names(self) -> list[x509.GeneralName]:
        """The SANs as X.509 general names."""
        return [general_name(entry) for entry in self.sans]
