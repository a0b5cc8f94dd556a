"""A rollout's identity (rollout-rules.md, "What a rollout knows and says"): public
values only, checked field by field, never a key."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import given
from hypothesis import strategies as st

import certflow as cf
from tests.certs.factory import build as build_certificate
from tests.certs.factory import ec_key, rsa_key
from tests.core.strategies import (
    DAY,
    T0,
    build,
    der_certificate,
    fingerprint,
    identities,
    identity,
    pem,
)

LEAF = der_certificate(b"the leaf")
ROOT = der_certificate(b"the root")


def _certificate(**changes: Any) -> cf.CertificateIdentity:
    fields: dict[str, Any] = {
        "fingerprint": fingerprint(LEAF),
        "subject": "CN=mdm.example.com",
        "names": ("mdm.example.com",),
        "issuer": "CN=Example CA",
        "not_before": T0 - DAY,
        "not_after": T0 + 299 * DAY,
        "pem": pem(LEAF),
    }
    return cf.CertificateIdentity(**{**fields, **changes})


def _root(**changes: Any) -> cf.RootIdentity:
    fields: dict[str, Any] = {
        "fingerprint": fingerprint(ROOT),
        "subject": "CN=Example CA",
        "publicly_trusted": False,
        "pem": pem(ROOT),
    }
    return cf.RootIdentity(**{**fields, **changes})


def _identity(**changes: Any) -> cf.Identity:
    fields: dict[str, Any] = {
        "certificate": _certificate(),
        "root": _root(),
        "hosts": ("mdm.example.com",),
        "intermediates": (),
    }
    return cf.Identity(**{**fields, **changes})


# --- what it holds -------------------------------------------------------------------------


def test_an_identity_holds_the_public_facts_the_rules_list() -> None:
    assert [f.name for f in attrs.fields(cf.CertificateIdentity)] == [
        "fingerprint",
        "subject",
        "names",
        "issuer",
        "not_before",
        "not_after",
        "pem",
    ]
    assert [f.name for f in attrs.fields(cf.RootIdentity)] == [
        "fingerprint",
        "subject",
        "publicly_trusted",
        "pem",
    ]
    assert [f.name for f in attrs.fields(cf.Identity)] == [
        "certificate",
        "root",
        "hosts",
        "intermediates",
    ]


@pytest.mark.parametrize("kind", [cf.CertificateIdentity, cf.RootIdentity, cf.Identity])
def test_identities_are_frozen_and_slotted(kind: type) -> None:
    value: Any = {
        cf.CertificateIdentity: _certificate,
        cf.RootIdentity: _root,
        cf.Identity: _identity,
    }[kind]()
    assert not hasattr(value, "__dict__")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        value.hosts = ("other",)
    with pytest.raises((AttributeError, TypeError)):
        value.private_key = "anything"  # no field to put a key in, and no room for one


def test_the_pem_is_kept_in_one_spelling() -> None:
    crlf = pem(LEAF).replace("\n", "\r\n")
    body = base64.b64encode(LEAF).decode()
    one_line = f"\n  -----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----  \n\n"
    for text in (crlf, one_line):
        assert _certificate(pem=text) == _certificate()
        assert _certificate(pem=text).pem == pem(LEAF)


def test_the_chain_lists_every_public_certificate_once() -> None:
    known = identity(intermediates=2)
    blocks = known.chain_pem.split("-----END CERTIFICATE-----\n")[:-1]
    assert len(blocks) == 4
    assert known.chain_pem.startswith(known.certificate.pem)
    assert known.chain_pem.endswith(known.root.pem)
    alone = _identity(root=_root(fingerprint=fingerprint(LEAF), pem=pem(LEAF)))
    assert alone.self_signed
    assert alone.chain_pem == alone.certificate.pem


def test_a_pem_is_found_by_its_fingerprint() -> None:
    known = identity()
    assert known.pem(known.root.fingerprint) == known.root.pem
    assert known.pem(known.certificate.fingerprint) == known.certificate.pem
    with pytest.raises(cf.InvalidInput, match="no certificate of this rollout has the fingerprint"):
        known.pem("0" * 64)


# --- what it refuses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build_it", "message"),
    [
        (lambda: _certificate(fingerprint="AB" * 32), r"certificate\.fingerprint: expected a SHA"),
        (
            lambda: _certificate(fingerprint=":".join(["ab"] * 32)),
            r"certificate\.fingerprint: .*no colons",
        ),
        (lambda: _certificate(fingerprint="ab"), r"certificate\.fingerprint: expected"),
        (lambda: _certificate(fingerprint=None), r"certificate\.fingerprint: expected a str"),
        (
            lambda: _certificate(fingerprint=fingerprint(ROOT)),
            r"certificate\.fingerprint: \w+ is not the SHA-256 fingerprint of certificate\.pem",
        ),
        (lambda: _certificate(subject=b"CN=x"), r"certificate\.subject: expected a str"),
        (lambda: _certificate(subject="CN=a\nb"), r"certificate\.subject: must be one line"),
        (lambda: _certificate(issuer=7), r"certificate\.issuer: expected a str, got int"),
        (lambda: _certificate(names="a.example"), r"certificate\.names: expected a tuple of str"),
        (lambda: _certificate(names=("a", "")), r"certificate\.names\[1\]: must not be empty"),
        (lambda: _certificate(names=("a", "a")), r"certificate\.names\[1\]: 'a' is listed twice"),
        (lambda: _certificate(names=("a", 1)), r"certificate\.names\[1\]: expected a str"),
        (
            lambda: _certificate(not_before=datetime(2026, 1, 1)),
            r"certificate\.not_before is a naive datetime",
        ),
        (lambda: _certificate(not_after="2027"), r"certificate\.not_after must be a timezone"),
        (
            lambda: _certificate(not_after=T0 - DAY),
            r"certificate\.not_before .* is not before certificate\.not_after",
        ),
        (lambda: _certificate(pem=LEAF), r"certificate\.pem: expected a str, got bytes"),
        (lambda: _certificate(pem=""), r"certificate\.pem: expected one PEM certificate, found 0"),
        (
            lambda: _certificate(pem=pem(LEAF) + pem(ROOT)),
            r"certificate\.pem: expected one PEM certificate, found 2 PEM blocks",
        ),
        (
            lambda: _certificate(pem="note\n" + pem(LEAF)),
            r"certificate\.pem: expected one PEM certificate, found text outside the PEM block$",
        ),
        (
            lambda: _certificate(pem=pem(LEAF, "X509 CRL")),
            r"certificate\.pem: expected a PEM CERTIFICATE block, got 'X509 CRL'",
        ),
        (
            lambda: _certificate(pem=pem(LEAF).replace("M", "*", 1)),
            r"certificate\.pem: the PEM block is not valid base64",
        ),
        (
            lambda: _certificate(pem=pem(b"\x30\x03\x02\x01\x00")),
            r"certificate\.pem: the PEM block does not hold an X\.509 certificate",
        ),
        (
            lambda: _certificate(pem=pem(LEAF).replace("END CERTIFICATE", "END X509 CRL")),
            r"certificate\.pem: expected a PEM CERTIFICATE block, got 'CERTIFICATE'",
        ),
        (
            lambda: _certificate(pem=pem(LEAF).replace("\n", "\n!", 1)),
            r"certificate\.pem: the PEM block is not valid base64",
        ),
        (
            lambda: _certificate(pem=pem(LEAF, "PRIVATE KEY")),
            r"^certificate\.pem: holds a private key; a rollout's identity holds public "
            r"certificates only, never a key$",
        ),
        (lambda: _root(fingerprint="ab"), r"^root\.fingerprint: expected a SHA-256 fingerprint"),
        (lambda: _root(publicly_trusted=1), r"root\.publicly_trusted: expected a bool, got 1"),
        (lambda: _root(fingerprint=fingerprint(LEAF)), r"root\.fingerprint: .* of root\.pem"),
        (lambda: _root(subject=None), r"root\.subject: expected a str"),
        (
            lambda: _identity(certificate=_root()),
            r"^certificate: expected a certflow\.CertificateIdentity, got RootIdentity$",
        ),
        (
            lambda: _identity(root=_certificate()),
            r"^root: expected a certflow\.RootIdentity, got CertificateIdentity$",
        ),
        (lambda: _identity(hosts=()), r"hosts: at least one is required"),
        (lambda: _identity(hosts="mdm.example.com"), r"hosts: expected a tuple of str, got str"),
        (
            lambda: _identity(intermediates=pem(ROOT)),
            r"^intermediates: expected a tuple of PEM text, got str$",
        ),
        (lambda: _identity(intermediates=("x",)), r"intermediates\[0\]: expected one PEM"),
        (
            lambda: _identity(
                root=_root(fingerprint=fingerprint(LEAF), pem=pem(LEAF)), intermediates=(pem(ROOT),)
            ),
            r"^intermediates: a self-signed certificate \(its own root\) has no intermediates$",
        ),
    ],
)
def test_every_bad_field_is_named_with_its_problem(build_it: Any, message: str) -> None:
    with pytest.raises(cf.InvalidInput, match=message):
        build_it()


def test_cut_or_padded_der_is_not_a_certificate() -> None:
    for der in (LEAF[:-1], LEAF + b"\x00", b"\x30\x84" + LEAF[2:], b"\x30", b"\x30\x80"):
        with pytest.raises(cf.InvalidInput, match=r"does not hold an X\.509 certificate|base64"):
            _certificate(pem=pem(der), fingerprint=fingerprint(der))
    # a long form length (a body of 128 bytes or more) is read as such
    big = der_certificate(bytes(300))
    assert _certificate(pem=pem(big), fingerprint=fingerprint(big)).pem == pem(big)


# --- never a key -----------------------------------------------------------------------------


def _keys() -> dict[str, bytes]:
    """Every encoding of a private key that certflow's uploads accept, and PKCS#12."""
    rsa, ec = rsa_key(), ec_key()
    der, pem_ = serialization.Encoding.DER, serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    locked = serialization.BestAvailableEncryption(b"secret")
    cert = build_certificate("mdm.example.com", key=rsa)
    return {
        "pkcs8 pem": rsa.private_bytes(pem_, pkcs8, plain),
        "pkcs1 pem": rsa.private_bytes(pem_, serialization.PrivateFormat.TraditionalOpenSSL, plain),
        "encrypted pkcs8 pem": rsa.private_bytes(pem_, pkcs8, locked),
        "sec1 pem": ec.private_bytes(pem_, serialization.PrivateFormat.TraditionalOpenSSL, plain),
        "pkcs8 der": rsa.private_bytes(der, pkcs8, plain),
        "pkcs1 der": rsa.private_bytes(der, serialization.PrivateFormat.TraditionalOpenSSL, plain),
        "encrypted pkcs8 der": rsa.private_bytes(der, pkcs8, locked),
        "sec1 der": ec.private_bytes(der, serialization.PrivateFormat.TraditionalOpenSSL, plain),
        "ec pkcs8 der": ec.private_bytes(der, pkcs8, plain),
        "pkcs12": pkcs12.serialize_key_and_certificates(b"s", rsa, cert, None, plain),
    }


def _disguises(key: bytes) -> list[tuple[str, str]]:
    """``(fingerprint, PEM text)`` pairs that try to pass ``key`` off as a certificate."""
    if key.startswith(b"-----BEGIN"):
        text = key.decode()
        body = base64.b64decode("".join(text.strip().splitlines()[1:-1]))
        return [
            (fingerprint(LEAF), text),
            (fingerprint(LEAF), pem(LEAF) + text),
            (fingerprint(body), pem(body)),  # the key's own bytes under a certificate label
            (fingerprint(LEAF), pem(LEAF).replace("CERTIFICATE", "PRIVATE KEY")),
        ]
    return [(fingerprint(key), pem(key)), (fingerprint(key), pem(key, "PRIVATE KEY"))]


@pytest.mark.parametrize("encoding", sorted(_keys()))
def test_no_private_key_gets_into_an_identity_in_any_field(encoding: str) -> None:
    key = _keys()[encoding]
    attempts: list[tuple[Any, dict[str, Any]]] = []
    for digest, text in _disguises(key):
        attempts += [
            (_certificate, {"fingerprint": digest, "pem": text}),
            (_root, {"fingerprint": digest, "pem": text}),
            (_identity, {"intermediates": (text,)}),
        ]
    if key.startswith(b"-----BEGIN"):
        text = key.decode()
        one_line = text.replace("\n", " ")
        attempts += [
            (_certificate, {"subject": text}),
            (_certificate, {"subject": one_line}),
            (_certificate, {"issuer": one_line}),
            (_certificate, {"names": (one_line,)}),
            (_root, {"subject": one_line}),
            (_identity, {"hosts": (one_line,)}),
        ]
    attempts += [
        (_certificate, {"pem": rsa_key()}),
        (_certificate, {"subject": rsa_key()}),
        (_identity, {"hosts": (rsa_key(),)}),
        (_identity, {"intermediates": (key,)}),
    ]
    for make, fields in attempts:
        with pytest.raises(cf.InvalidInput, match=r"private key|PEM|certificate|expected a str"):
            make(**fields)


@given(identities())
def test_every_valid_identity_holds_certificates_only(known: cf.Identity) -> None:
    for text in (known.certificate.pem, known.root.pem, *known.intermediates):
        assert text.startswith("-----BEGIN CERTIFICATE-----\n")
        assert text.count("-----BEGIN") == 1
    assert "PRIVATE" not in repr(attrs.asdict(known))


# --- in a rollout ----------------------------------------------------------------------------


def test_new_rollout_takes_an_identity_and_a_rollout_from_dates_has_none() -> None:
    assert build(2).plan.identity is None
    rollout = build(2, identified=True)
    assert rollout.plan.identity == identity(not_before=T0 - DAY, not_after=T0 + 299 * DAY)
    step = cf.apply(rollout, cf.DistributeRoot(), T0)
    assert step.rollout.plan.identity == rollout.plan.identity


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"identity": "mdm.example.com"}, "identity must be a certflow.Identity or None, got str"),
        (
            {"identity": identity(public=True)},
            r"identity\.root\.publicly_trusted \(True\) contradicts root_publicly_trusted "
            r"\(False\); give the identity the rollout's own answer \(attrs\.evolve its root\)$",
        ),
        (
            {"identity": identity(not_after=T0 + 100 * DAY)},
            r"identity\.certificate\.not_after \(2026-10-09T09:00:00\+00:00\) differs from "
            r"new_not_after",
        ),
        (
            {"identity": identity(not_before=T0 - 2 * DAY)},
            r"identity\.certificate\.not_before .* differs from new_not_before",
        ),
    ],
)
def test_new_rollout_refuses_an_identity_that_contradicts_its_facts(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(cf.InvalidInput, match=message):
        cf.new_rollout(
            ["a"],
            existing_not_after=T0 + 60 * DAY,
            new_not_before=T0 - DAY,
            new_not_after=T0 + 299 * DAY,
            root_publicly_trusted=False,
            created_at=T0,
            **changes,
        )


def test_the_same_instant_in_another_offset_is_the_same_validity() -> None:
    from datetime import timezone

    east = timezone(timedelta(hours=5, minutes=30))
    known = identity(not_before=(T0 - DAY).astimezone(east))
    assert build(1, identified=False).plan.new_not_before == known.certificate.not_before
    rollout = cf.new_rollout(
        ["a"],
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 299 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
        identity=known,
    )
    assert rollout.plan.identity is known


@given(st.data())
def test_random_identities_ride_along_unchanged(data: st.DataObject) -> None:
    known = data.draw(identities(public=False))
    rollout = cf.new_rollout(
        ["a", "b"],
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 299 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
        identity=known,
    )
    later = cf.advance(cf.apply(rollout, cf.DistributeRoot(), T0).rollout, T0 + 30 * DAY)
    assert later.rollout.plan.identity is known


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------

#: A body of 128 bytes with the shape the check looks for (only a long form length fits it).
_BODY_128 = bytes.fromhex("30003000") + b"\x03\x7a" + bytes(122)


def test_pem_text_in_a_line_is_quoted_to_its_first_forty_characters() -> None:
    text = "-----BEGIN CERTIFICATE----- " + "A" * 40
    message = f"certificate.subject: must not hold PEM text, got {text[:40]!r}..."
    with pytest.raises(cf.InvalidInput, match=f"^{re.escape(message)}$"):
        _certificate(subject=text)


def test_the_shape_is_all_that_is_checked_even_empty_parts_pass() -> None:
    # SEQUENCE { SEQUENCE {}, SEQUENCE {}, BIT STRING {} }: the last item ends the data
    der = bytes.fromhex("3006300030000300")
    assert _certificate(pem=pem(der), fingerprint=fingerprint(der)).pem == pem(der)


def test_a_long_form_length_in_one_octet_is_read() -> None:
    der = der_certificate(bytes(150))
    assert der[1] == 0x81
    assert _certificate(pem=pem(der), fingerprint=fingerprint(der)).pem == pem(der)


@pytest.mark.parametrize(
    "der",
    [
        b"\x30\x80" + _BODY_128,  # indefinite length (BER, not DER), of the whole
        bytes.fromhex("3006308030000300"),  # indefinite length of an inner item
        b"\x30\x85\x00\x00\x00\x00\x80" + _BODY_128,  # a length in five octets
    ],
)
def test_a_length_der_does_not_allow_is_not_a_certificate(der: bytes) -> None:
    with pytest.raises(cf.InvalidInput, match=r"does not hold an X\.509 certificate"):
        _certificate(pem=pem(der), fingerprint=fingerprint(der))


def test_the_pem_call_words_why_it_has_nothing_to_give_in_full() -> None:
    dated = cf.apply(build(2), cf.DistributeRoot(), T0)
    (nameless,) = dated.effects
    assert isinstance(nameless, cf.PushRoot)
    message = (
        "this PushRoot names no certificate: its rollout has no identity (made from dates "
        "alone), so there is no PEM to give"
    )
    with pytest.raises(cf.InvalidInput, match=f"^{re.escape(message)}$"):
        nameless.root_pem(dated.rollout)
    named = cf.apply(build(2, identified=True), cf.DistributeRoot(), T0).effects[0]
    assert isinstance(named, cf.PushRoot)
    message = (
        "the rollout given has no identity, so it holds no PEM for this PushRoot; give the "
        "rollout (or plan) that emitted it"
    )
    with pytest.raises(cf.InvalidInput, match=f"^{re.escape(message)}$"):
        named.root_pem(dated.rollout)
    with pytest.raises(
        cf.InvalidInput, match=r"^plan\.identity must be a certflow\.Identity, got str$"
    ):
        named.root_pem(SimpleNamespace(identity="mdm.example.com"))  # type: ignore[arg-type]
