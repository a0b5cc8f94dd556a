"""The certificate tools' warning filters (:mod:`certflow.certs._errors`): cryptography's
warnings about odd *input* are silenced, and nothing else is, so a deprecation of an API
that certflow calls still reaches the tests and ``make test-latest``."""

from __future__ import annotations

import warnings

import pytest
from cryptography.utils import CryptographyDeprecationWarning

from certflow.certs._errors import INPUT_WARNINGS, dsa_input, input_warnings_ignored, quiet

ODD_INPUT = [
    "Parsed a serial number which wasn't positive (i.e., it was negative or zero), which is "
    "disallowed by RFC 5280.",
    "PKCS#7 certificates could not be parsed as DER, falling back to parsing as BER.",
    "PKCS#12 bundle could not be parsed as DER, falling back to parsing as BER.",
    "Attribute's length must be >= 2 and <= 2, but it was 3",
    "Invalid ASN.1 (UTF-8 characters in a VisibleString) in the explicit text",
]


@quiet
def _warns(message: str, category: type[Warning]) -> str:
    warnings.warn(message, category, stacklevel=1)
    return "done"


@pytest.mark.parametrize("message", ODD_INPUT)
def test_warnings_about_odd_input_are_silenced(message: str) -> None:
    assert len(INPUT_WARNINGS) == len(ODD_INPUT) - 1  # one pattern covers PKCS#7 and #12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _warns(message, CryptographyDeprecationWarning) == "done"
        assert _warns(message, UserWarning) == "done"


@pytest.mark.parametrize(
    ("message", "category"),
    [
        ("DSA is deprecated and support will be removed", CryptographyDeprecationWarning),
        ("Properties that return a naïve datetime object have been deprecated", DeprecationWarning),
        ("something else entirely", UserWarning),
    ],
)
def test_any_other_warning_reaches_the_caller(message: str, category: type[Warning]) -> None:
    with pytest.warns(category, match=message):
        _warns(message, category)
    with pytest.warns(category, match=message), input_warnings_ignored():
        warnings.warn(message, category, stacklevel=1)


def test_dsa_input_silences_only_the_dsa_deprecation() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with dsa_input():
            warnings.warn("DSA is deprecated ...", CryptographyDeprecationWarning, stacklevel=1)
    with pytest.warns(CryptographyDeprecationWarning, match="FFDH"), dsa_input():
        warnings.warn(
            "Diffie-Hellman over finite fields (FFDH) is deprecated",
            CryptographyDeprecationWarning,
            stacklevel=1,
        )
