"""Hypothesis strategies and builders shared by the test modules."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

import certflow as cf

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def build(
    devices: int | list[str] = 3,
    *,
    at: datetime = T0,
    existing_expires_in: timedelta = 60 * DAY,
    new_valid_for: timedelta = 300 * DAY,
    public: bool = False,
    kind: cf.CertificateKind = cf.CertificateKind.MDM_SERVER,
    policy: cf.Policy | None = None,
    trusted: tuple[str, ...] = (),
    identified: bool = False,
) -> cf.Rollout:
    """A pending rollout created at ``at`` with devices ``d0``, ``d1``, …; with
    ``identified``, it knows what it rolls out (:func:`identity`, of its dates)."""
    ids = [f"d{i}" for i in range(devices)] if isinstance(devices, int) else devices
    known = (
        identity(not_before=at - DAY, not_after=at - DAY + new_valid_for, public=public)
        if identified
        else None
    )
    return cf.new_rollout(
        ids,
        existing_not_after=at + existing_expires_in,
        new_not_before=at - DAY,
        new_not_after=at - DAY + new_valid_for,
        root_publicly_trusted=public,
        created_at=at,
        kind=kind,
        policy=policy,
        trusted_device_ids=trusted,
        identity=known,
    )


def distributing(devices: int | list[str] = 3, **kwargs: Any) -> cf.Rollout:
    """A rollout whose distribution started at ``T0`` (day 0)."""
    return cf.apply(build(devices, **kwargs), cf.DistributeRoot(), T0).rollout


def day(n: float) -> datetime:
    """Day ``n`` of a distribution started at ``T0``."""
    return T0 + n * DAY


device_counts = st.integers(min_value=0, max_value=40)

# Spans from a second to two years, biased towards the interesting hours and days.
spans = st.one_of(
    st.integers(min_value=1, max_value=59).map(lambda s: timedelta(seconds=s)),
    st.integers(min_value=1, max_value=72).map(lambda h: h * HOUR),
    st.integers(min_value=1, max_value=30).map(lambda d: d * DAY),
    st.integers(min_value=0, max_value=730 * 86400).map(lambda s: timedelta(seconds=s)),
)


@st.composite
def policies(draw: st.DrawFn) -> cf.Policy:
    """Valid policies: the default most of the time, otherwise a random timeline."""
    if draw(st.booleans()):
        ack = draw(st.none() | st.integers(1, 96).map(lambda h: h * HOUR))
        rule = draw(st.sampled_from(cf.ImportRule))
        return cf.Policy(import_rule=rule, ack_timeout=ack)
    notice = draw(st.integers(1, 48)) * HOUR
    gaps = draw(st.lists(st.integers(notice // HOUR + 1, 400), min_size=1, max_size=4))
    checkpoints: list[timedelta] = []
    for gap in gaps:
        checkpoints.append((checkpoints[-1] if checkpoints else timedelta(0)) + gap * HOUR)
    return cf.Policy(
        checkpoints=tuple(checkpoints),
        notice_before=notice,
        manual_extension=notice + draw(st.integers(1, 300)) * HOUR,
        manual_extension_opens=draw(st.integers(0, 300)) * HOUR + timedelta(seconds=1),
        import_rule=draw(st.sampled_from(cf.ImportRule)),
        ack_timeout=draw(st.none() | st.integers(1, 96).map(lambda h: h * HOUR)),
    )


# Every administrator's command, and the device commands as builders of a device id: what
# the property tests of the evaluator and of the store draw from.
ADMIN_COMMANDS: tuple[cf.Command, ...] = (
    cf.DistributeRoot(),
    cf.ProceedToImport(),
    cf.ImportNow(),
    cf.ExtendManually(),
    cf.Cancel(),
    cf.RetryAllFailed(),
    cf.ServerRestarted(),
)
DEVICE_COMMANDS: tuple[Callable[[str], cf.Command], ...] = (
    cf.DeviceInstalled,
    lambda d: cf.DeviceFailed(d, "profile refused ✓"),
    cf.Retry,
    cf.Enroll,
    cf.Unenroll,
    cf.Reenrolled,
)


# --- identities: certificates as the core sees them ----------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def der_certificate(content: bytes) -> bytes:
    """Bytes with the outer shape of an X.509 certificate (all the core looks at):
    ``SEQUENCE { SEQUENCE { content }, SEQUENCE { sha256WithRSA }, BIT STRING }``."""
    tbs = _der(0x30, _der(0x04, content))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d01010b")))
    signature = _der(0x03, b"\x00" + hashlib.sha256(content).digest())
    return _der(0x30, tbs + algorithm + signature)


def pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """``der`` as PEM text: 64-column base64 between the ``label`` lines."""
    text = base64.b64encode(der).decode("ascii")
    lines = "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))
    return f"-----BEGIN {label}-----\n{lines}-----END {label}-----\n"


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of ``der``, as the core spells it."""
    return hashlib.sha256(der).hexdigest()


def identity(
    name: str = "mdm.example.com",
    *,
    not_before: datetime = T0 - DAY,
    not_after: datetime = T0 + 299 * DAY,
    public: bool = False,
    intermediates: int = 1,
    hosts: tuple[str, ...] = ("mdm.example.com", "203.0.113.10"),
) -> cf.Identity:
    """The identity of a certificate for ``name``, its ``intermediates`` and its root
    (certificates shaped as the core checks them, told apart by ``name``)."""
    leaf = der_certificate(f"leaf {name}".encode())
    root = der_certificate(f"root {name}".encode())
    return cf.Identity(
        certificate=cf.CertificateIdentity(
            fingerprint=fingerprint(leaf),
            subject=f"CN={name},O=Example",
            names=(name, "203.0.113.10"),
            issuer=f"CN=Intermediate {name}" if intermediates else f"CN=Root {name}",
            not_before=not_before,
            not_after=not_after,
            pem=pem(leaf),
        ),
        root=cf.RootIdentity(
            fingerprint=fingerprint(root),
            subject=f"CN=Root {name}",
            publicly_trusted=public,
            pem=pem(root),
        ),
        hosts=hosts,
        intermediates=tuple(
            pem(der_certificate(f"intermediate {n} {name}".encode())) for n in range(intermediates)
        ),
    )


# One line of text as a subject, an issuer, a name or a host: no control characters.
_line_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30
).filter(lambda text: "-----BEGIN" not in text)


@st.composite
def identities(
    draw: st.DrawFn,
    *,
    not_before: datetime = T0 - DAY,
    not_after: datetime = T0 + 299 * DAY,
    public: bool | None = None,
) -> cf.Identity:
    """Any valid identity of a certificate valid from ``not_before`` to ``not_after``."""
    leaf = der_certificate(draw(st.binary(max_size=300)))
    self_signed = draw(st.booleans())
    root = leaf if self_signed else der_certificate(b"root " + draw(st.binary(max_size=40)))
    count = 0 if self_signed else draw(st.integers(0, 3))
    return cf.Identity(
        certificate=cf.CertificateIdentity(
            fingerprint=fingerprint(leaf),
            subject=draw(_line_text),
            names=tuple(draw(st.lists(_line_text, max_size=4, unique=True))),
            issuer=draw(_line_text),
            not_before=not_before,
            not_after=not_after,
            pem=pem(leaf),
        ),
        root=cf.RootIdentity(
            fingerprint=fingerprint(root),
            subject=draw(_line_text),
            publicly_trusted=draw(st.booleans()) if public is None else public,
            pem=pem(root),
        ),
        hosts=tuple(draw(st.lists(_line_text, min_size=1, max_size=3, unique=True))),
        intermediates=tuple(pem(der_certificate(bytes([n]) * 40)) for n in range(count)),
    )
