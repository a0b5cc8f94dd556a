"""Errors of the certificate tools; all derive from :class:`certflow.core.errors.CertflowError`."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, ParamSpec, TypeVar, get_args

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.utils import CryptographyDeprecationWarning

from certflow.core.errors import CertflowError, InvalidInput

MaterialErrorCode = Literal[
    "empty", "unparseable", "password_required", "bad_password", "too_large", "unsupported",
    "unreadable",
]  # fmt: skip


class MaterialError(CertflowError):
    """Uploaded certificate material that cannot be used.

    ``code`` is stable for programs (``empty``, ``unparseable``, ``password_required``,
    ``bad_password``, ``too_large``, ``unsupported``, ``unreadable``); ``source`` names the
    file (or ``input N`` for bytes); the message names both the file and the problem.
    """

    def __init__(self, source: str, code: MaterialErrorCode, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.code: MaterialErrorCode = code
        self.problem = problem


class SubjectError(InvalidInput):
    """A CSR subject field or subject alternative name that cannot be used."""


def expect(name: str, value: object, types: type | tuple[type, ...], what: str) -> None:
    """Refuse ``value`` unless it is an instance of ``types``: ``name must be WHAT, got ...``.

    Public functions call this first, so a wrong argument type is a clear
    :class:`InvalidInput` naming the argument, never an ``AttributeError`` deep inside.
    """
    if not isinstance(value, types):
        raise InvalidInput(f"{name} must be {what}, got {_describe(value)}")


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


_P = ParamSpec("_P")
_R = TypeVar("_R")


#: The warnings cryptography gives about odd but readable *input*, as patterns matched at
#: the start of their message; certflow reads such input and reports what matters as findings or
#: errors. Any other warning (a deprecated API, say) is left to reach the caller and the
#: tests, so the next deprecation shows up in ``make test-latest``, not on a terminal.
INPUT_WARNINGS = (
    # A zero or negative serial (a few long-lived public roots have one).
    r"Parsed a serial number which wasn't positive",
    # PKCS#7 in BER, as `openssl crl2pkcs7` writes it; a PKCS#12 file in BER.
    r"PKCS#(7 certificates|12 bundle) could not be parsed as DER",
    # A name attribute of an odd length (e.g. a three-letter country).
    r"Attribute's length must be",
    # UTF-8 in a VisibleString of a certificate policy's text.
    r"Invalid ASN\.1 \(UTF-8 characters in a VisibleString\)",
)


@contextlib.contextmanager
def input_warnings_ignored() -> Iterator[None]:
    """Silence :data:`INPUT_WARNINGS`, and only them, while the block runs."""
    with warnings.catch_warnings():
        for start in INPUT_WARNINGS:
            warnings.filterwarnings("ignore", message=start)
        yield


@contextlib.contextmanager
def dsa_input() -> Iterator[None]:
    """Silence cryptography's deprecation of DSA while the block reads *uploaded* DSA keys
    or signatures: certflow reads them to name and refuse them, and the deprecation is not
    the administrator's to see. certflow's own code never names DSA (a test holds it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "DSA is deprecated", category=CryptographyDeprecationWarning
        )
        yield


def quiet(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` with cryptography's warnings about odd input silenced while it runs.

    cryptography warns about odd but readable input (BER instead of DER, a zero serial, a
    long country name...). certflow reads such input and reports what matters as findings
    or errors; a raw warning is not for the user's terminal, nor an exception under
    ``-W error``. Only those warnings are silenced (:data:`INPUT_WARNINGS`).
    (``warnings.catch_warnings`` is process-wide state in Python 3.11.)
    """

    @functools.wraps(function)
    def silenced(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with input_warnings_ignored():
            return function(*args, **kwargs)

    return silenced


#: What the type checks say each kind of argument should be.
PATH = "a file path (str or os.PathLike)"
DATA = "bytes (the file's content)"
SECRET = "a str or bytes password"
MATERIAL = "a certflow.certs.Material, e.g. certs.load('server.pfx', password=...)"
CERTIFICATE = "a cryptography x509.Certificate"
PRIVATE_KEY = "a private key object of cryptography, e.g. certs.load_key(data)"
#: The private key classes of cryptography (``PrivateKeyTypes`` as a tuple for isinstance).
PRIVATE_KEY_TYPES: tuple[type, ...] = get_args(PrivateKeyTypes)


def expect_iterable(name: str, value: object, what: str) -> None:
    """Refuse ``value`` unless it is an iterable other than a single str or bytes."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidInput(f"{name} must be {what}, got {_describe(value)}")


def expect_optional(name: str, value: object, types: type | tuple[type, ...], what: str) -> None:
    """:func:`expect` for an argument that may also be ``None``."""
    if value is not None:
        expect(name, value, types, f"{what} or None")
