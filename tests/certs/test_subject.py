"""Subject fields and subject alternative names of the CSR tool."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from certflow.certs import Subject, SubjectError, normalize_country, parse_san, parse_sans
from certflow.core.errors import InvalidInput

from .strategies import countries, dns_names, san_lists, subjects

FIELDS = {
    "country": "de",
    "state": "Bavaria",
    "locality": "Munich",
    "organization": "Example GmbH",
    "common_name": "mdm.example.com",
}


def test_country_code_is_validated_and_upper_cased() -> None:
    assert normalize_country("de") == "DE"
    assert normalize_country(" in ") == "IN"


@pytest.mark.parametrize(
    ("typed", "hint"),
    [("UK", "did you mean GB"), ("India", "did you mean IN"), ("DEU", "did you mean DE")],
)
def test_wrong_country_is_refused_with_a_suggestion(typed: str, hint: str) -> None:
    with pytest.raises(SubjectError, match=hint):
        normalize_country(typed)


def test_unknown_country_is_refused_with_examples() -> None:
    with pytest.raises(SubjectError, match=r"'XX' is not an ISO 3166-1 alpha-2 .* e\.g\. US"):
        normalize_country("XX")


def test_subject_error_is_invalid_input() -> None:
    assert issubclass(SubjectError, InvalidInput)


@given(countries)
def test_every_iso_country_is_accepted(code: str) -> None:
    assert normalize_country(code.lower()) == code


def test_common_name_is_added_to_the_sans_first() -> None:
    subject = Subject.create(**FIELDS, sans="www.example.com, 10.0.0.5")
    assert subject.sans == ("mdm.example.com", "www.example.com", ipaddress.ip_address("10.0.0.5"))


def test_common_name_already_listed_is_not_repeated() -> None:
    subject = Subject.create(**FIELDS, sans="www.example.com,MDM.example.com.,www.example.com")
    assert subject.sans == ("www.example.com", "mdm.example.com")


def test_subject_without_common_name_in_sans_cannot_be_built_directly() -> None:
    with pytest.raises(SubjectError, match="common name must be among"):
        Subject("DE", "s", "l", "o", "", "a.example.com", ("b.example.com",))


def test_x509_name_order_and_optional_ou() -> None:
    name = Subject.create(**FIELDS).x509_name()
    oids = [attribute.oid for attribute in name]
    assert oids == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.COMMON_NAME,
    ]
    with_ou = Subject.create(**FIELDS, organizational_unit="IT").x509_name()
    assert with_ou.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "IT"


@pytest.mark.parametrize("field", ["state", "locality", "organization", "common_name"])
def test_required_fields(field: str) -> None:
    with pytest.raises(SubjectError, match=f"{field.replace('_', ' ')} is required"):
        Subject.create(**{**FIELDS, field: "  "})


def test_field_length_limit() -> None:
    Subject.create(**{**FIELDS, "organization": "x" * 64})
    with pytest.raises(SubjectError, match=r"65 characters long; X\.509 allows at most 64"):
        Subject.create(**{**FIELDS, "organization": "x" * 65})


def test_control_characters_are_refused() -> None:
    with pytest.raises(SubjectError, match="control character"):
        Subject.create(**{**FIELDS, "locality": "Mun\nich"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("*.example.com", "*.example.com"),
        ("localhost", "localhost"),
        ("10.1.2.3", ipaddress.ip_address("10.1.2.3")),
        ("2001:DB8::1", ipaddress.ip_address("2001:db8::1")),
        ("[::1]", ipaddress.ip_address("::1")),
        ("bücher.example", "xn--bcher-kva.example"),
        # IDNA 2008, not Python's IDNA 2003 codec: ß stays a letter of its own
        ("straße.de", "xn--strae-oqa.de"),
        ("Straße.DE.", "xn--strae-oqa.de"),
        ("*.straße.de", "*.xn--strae-oqa.de"),
        ("faß.de", "xn--fa-hia.de"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),  # full width
        ("λ.com", "xn--wxa.com"),
    ],
)
def test_san_kinds(text: str, expected: object) -> None:
    assert parse_san(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("*.com", "too broad"),
        ("*", "too broad"),
        ("a.*.example.com", "whole left-most label"),
        ("f*o.example.com", "whole left-most label"),
        ("**.example.com", "whole left-most label"),
        ("-bad.example.com", "labels are letters"),
        ("under_score.example.com", "labels are letters"),
        ("a..example.com", "labels are letters"),
        ("x" * 64 + ".example.com", "labels are letters"),
        ("10.0.0.256", "not a valid one"),
        ("", "empty"),
        ("a\u200db.example.com", r"not a valid internationalised DNS name \(IDNA 2008\)"),
        ("bücher.example:443", r"not a valid internationalised DNS name \(IDNA 2008\)"),
    ],
)
def test_bad_sans_are_refused(text: str, problem: str) -> None:
    with pytest.raises(SubjectError, match=problem):
        parse_san(text)


def test_sans_from_one_comma_separated_string() -> None:
    assert parse_sans(" a.example.com,, 10.0.0.1 ,*.b.example.com,") == (
        "a.example.com",
        ipaddress.ip_address("10.0.0.1"),
        "*.b.example.com",
    )


@given(san_lists)
def test_generated_san_lists_parse_to_the_same_names(entries: list[str]) -> None:
    parsed = parse_sans(",".join(entries))
    assert [str(e) for e in parsed] == list(
        dict.fromkeys(str(parse_san(e)) for e in entries)  # order kept, duplicates dropped
    )


@given(subjects())
def test_generated_subjects_keep_the_common_name_among_sans(subject: Subject) -> None:
    assert subject.common_name_entry() in subject.sans
    assert subject.x509_name().get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        subject.common_name
    )
    assert len(set(subject.sans)) == len(subject.sans)


@given(dns_names, st.sampled_from([" ", "\t"]))
def test_surrounding_whitespace_is_ignored(name: str, pad: str) -> None:
    assert parse_san(pad + name + pad) == name


def test_an_internationalised_common_name_is_its_idna_2008_form() -> None:
    subject = Subject.create(**{**FIELDS, "common_name": "mdm.straße.de", "sans": "faß.de"})
    assert subject.common_name == "mdm.xn--strae-oqa.de"
    assert subject.sans == ("mdm.xn--strae-oqa.de", "xn--fa-hia.de")
