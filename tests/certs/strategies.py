"""Hypothesis strategies shared by the certificate tests: subjects, SAN lists, validity periods."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import iso3166
from hypothesis import strategies as st

from certflow.certs import Subject

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_LABEL_CHARS = _LETTERS + "0123456789-"

countries = st.sampled_from(sorted(iso3166.countries_by_alpha2))

labels = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(_LETTERS),
    st.text(_LABEL_CHARS, max_size=10),
    st.sampled_from(_LETTERS + "0123456789"),
)
#: Host names of two to four labels ending in a letter-only top-level label.
dns_names = st.builds(
    lambda parts, tld: ".".join([*parts, tld]),
    st.lists(labels, min_size=1, max_size=3),
    st.text(_LETTERS, min_size=2, max_size=6),
)
wildcards = dns_names.map(lambda name: "*." + name)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
san_entries = st.one_of(dns_names, wildcards, ipv4, ipv6)
san_lists = st.lists(san_entries, max_size=6)

#: Free text for subject fields: any printable Unicode, no control characters.
field_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")


@st.composite
def subjects(draw: st.DrawFn) -> Subject:
    """A valid subject; the common name may be a DNS name or an IP address."""
    return Subject.create(
        country=draw(countries),
        state=draw(field_text),
        locality=draw(field_text),
        organization=draw(field_text),
        organizational_unit=draw(st.one_of(st.just(""), field_text)),
        common_name=draw(st.one_of(dns_names, ipv4)),
        sans=",".join(draw(san_lists)),
    )


#: Validity periods around the 397-day limit, to the second.
validity_periods = st.one_of(
    st.integers(min_value=396 * 86400, max_value=398 * 86400),
    st.integers(min_value=86400, max_value=800 * 86400),
).map(lambda seconds: timedelta(seconds=seconds))


def is_ip(text: str) -> bool:
    """True when ``text`` is an IP address literal."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
