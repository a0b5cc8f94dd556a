"""From certificate to rollout: the bridge between uploaded material and the rollout core."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certflow.certs._chain import PublicRoots, judge_chain
from certflow.certs._check import Report, _inside, check
from certflow.certs._errors import (
    CERTIFICATE,
    MATERIAL,
    expect,
    expect_iterable,
    input_warnings_ignored,
)
from certflow.certs._load import Material
from certflow.certs._subject import san_text, sans_from_extension
from certflow.core.errors import InvalidInput
from certflow.core.evaluator import new_rollout
from certflow.core.identity import CertificateIdentity, Identity, RootIdentity
from certflow.core.instants import require_utc
from certflow.core.policy import CertificateKind, Policy
from certflow.core.rollout import Rollout


class CertificateRejected(InvalidInput):
    """The new certificate fails the checks, so no rollout is started; ``report`` says why."""

    def __init__(self, report: Report) -> None:
        problems = "; ".join(f"{f.code.value}: {f.message}" for f in report.errors)
        count = len(report.errors)
        super().__init__(
            f"the new certificate fails {count} check{'s' * (count != 1)} for "
            f"{', '.join(report.hosts)}: {problems}"
        )
        self.report = report


def root_publicly_trusted(
    material: Material, *, now: datetime, roots: PublicRoots | None = None
) -> bool:
    """True when the leaf chains, through the material's certificates, to a public root
    (of certifi's bundle unless ``roots``).

    The chain is judged at ``now`` moved into the certificates' validity window, as
    :func:`check` does, so the answer does not depend on the certificate being current.
    """
    expect("material", material, Material, MATERIAL)
    at = require_utc("now", now)
    if material.leaf is None:
        raise InvalidInput("the material has no server certificate")
    return judge_chain(material, _inside(at, list(material.chain)), roots).public


def rollout_for(
    material: Material,
    existing: x509.Certificate | Material,
    device_ids: Iterable[str],
    *,
    now: datetime,
    kind: CertificateKind = CertificateKind.MDM_SERVER,
    policy: Policy | None = None,
    trusted_device_ids: Iterable[str] = (),
    host: str | None = None,
    hosts: Iterable[str] = (),
    key: PrivateKeyTypes | None = None,
    roots: PublicRoots | None = None,
) -> Rollout:
    """A ``pending`` rollout replacing ``existing`` (the server's current certificate) by
    the leaf of ``material`` on ``device_ids``, created at ``now``.

    :func:`check` always runs first, for every address in ``host`` and ``hosts`` (at least
    one is required: the server's host name and its NAT address), with ``key`` when the
    private key is not part of ``material``. A certificate with any error finding raises
    :class:`CertificateRejected` instead of starting a rollout. The new certificate's
    validity, the current one's expiry and whether the new root is publicly trusted (which
    decides whether the root is distributed first) come from the certificates themselves,
    and the rollout records what it rolls out (:func:`identity_of`: the certificates'
    public identity, never the key). Bad input raises
    :class:`~certflow.core.errors.InvalidInput`, as :func:`certflow.new_rollout` does.
    """
    expect("material", material, Material, MATERIAL)
    expect("existing", existing, (x509.Certificate, Material), f"{CERTIFICATE} or {MATERIAL}")
    expect_iterable("device_ids", device_ids, "an iterable of device ids (str)")
    expect_iterable("trusted_device_ids", trusted_device_ids, "an iterable of device ids (str)")
    at = require_utc("now", now)
    new = material.leaf
    if new is None:
        raise InvalidInput("the new material has no server certificate")
    current = existing.leaf if isinstance(existing, Material) else existing
    if not isinstance(current, x509.Certificate):
        raise InvalidInput("existing must be the current server certificate (or its material)")
    if current == new:
        raise InvalidInput("the new certificate is the one the server already has")
    report = check(material, host=host, hosts=hosts, now=at, key=key, roots=roots)
    if not report.ok:
        raise CertificateRejected(report)
    return new_rollout(
        device_ids,
        existing_not_after=current.not_valid_after_utc,
        new_not_before=new.not_valid_before_utc,
        new_not_after=new.not_valid_after_utc,
        root_publicly_trusted=report.root_publicly_trusted,
        created_at=at,
        kind=kind,
        policy=policy,
        trusted_device_ids=trusted_device_ids,
        identity=identity_of(material, report),
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    """``text`` with its control characters escaped as RFC 4514 escapes them (``\\0a``)."""
    return _CONTROL.sub(lambda found: f"\\{ord(found[0]):02x}", text)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def identity_of(material: Material, report: Report) -> Identity:
    """The identity of what a rollout of ``material`` rolls out, as ``report`` (its passed
    :func:`check`) found it: the leaf, the intermediates, the hosts checked, and the root
    devices must trust: the supplied root, or else the top of the chain the check built
    (the public root that issued it, or the leaf itself when it is self-signed).

    Public certificates only: the material's private key never goes in.
    """
    expect("material", material, Material, MATERIAL)
    expect("report", report, Report, "a certflow.certs.Report (of check)")
    leaf = material.leaf
    if leaf is None:
        raise InvalidInput("the material has no server certificate")
    if not report.ok or not report.chain or report.chain[0] != leaf:
        raise InvalidInput(
            "report must be the passed check of this material (its chain starts at the leaf)"
        )
    root = material.root if material.root is not None else report.chain[-1]
    names = (_one_line(san_text(entry)) for entry in sans_from_extension(leaf.extensions))
    return Identity(
        certificate=CertificateIdentity(
            fingerprint=_fingerprint(leaf),
            subject=_one_line(leaf.subject.rfc4514_string()),
            names=tuple(dict.fromkeys(name for name in names if name)),
            issuer=_one_line(leaf.issuer.rfc4514_string()),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            pem=_pem(leaf),
        ),
        root=RootIdentity(
            fingerprint=_fingerprint(root),
            subject=_one_line(root.subject.rfc4514_string()),
            publicly_trusted=report.root_publicly_trusted,
            pem=_pem(root),
        ),
        hosts=report.hosts,
        intermediates=() if root is leaf else tuple(_pem(c) for c in material.intermediates),
    )


def material_of(identity: Identity) -> Material:
    """The public certificates of a rollout's ``identity`` as :class:`Material` (leaf,
    intermediates, root; no key), for :func:`~certflow.certs.export` and the checks.

    A self-signed certificate is the leaf alone, as :func:`~certflow.certs.load` reads
    it. Each PEM must be a certificate cryptography reads (the core checks only its
    shape), else :class:`~certflow.core.errors.InvalidInput` names it.
    """
    expect("identity", identity, Identity, "a certflow.Identity (plan.identity)")

    def parsed(field: str, text: str) -> x509.Certificate:
        try:
            with input_warnings_ignored():
                return x509.load_pem_x509_certificate(text.encode("ascii"))
        except ValueError as error:
            raise InvalidInput(f"identity.{field}: not a certificate ({error})") from None

    leaf = parsed("certificate.pem", identity.certificate.pem)
    intermediates = tuple(
        parsed(f"intermediates[{n}]", text) for n, text in enumerate(identity.intermediates)
    )
    root = None if identity.self_signed else parsed("root.pem", identity.root.pem)
    return Material(leaf=leaf, intermediates=intermediates, root=root)
