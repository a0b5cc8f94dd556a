"""The chain verdict: does the server certificate lead to a trusted root, judged as a TLS
client judges a *server's* chain, and is that root public or private?

Path building is cryptography's X.509 verification (the WebPKI profile); nothing here
builds or orders a path by hand. Its server verifier also demands that the host match,
which certflow judges on its own (so that an administrator sees every problem at once), so
the chain is built by the verifier without a subject, with the one rule in which a server's
chain differs from a client's restated for the CAs: a CA that lists extended key usages
must list serverAuth (or anyExtendedKeyUsage). Intermediates restricted to serverAuth, as
public CAs now issue them, are therefore fine, and one restricted to clientAuth is refused.
``tests/certs/test_chain.py`` holds the verdict equal to cryptography's own server verifier
on every chain whose host matches. The leaf's own extended key usage is the ``usage``
finding of :mod:`certflow.certs._check`, a warning as the spec rates it, not judged here too.

The public root store (certifi's bundle by default) decides public versus private; it is
injectable (:class:`PublicRoots`), so tests and air-gapped hosts choose their own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

import attrs
import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certflow.certs._errors import CERTIFICATE, expect, expect_iterable, input_warnings_ignored
from certflow.certs._files import LIMIT, read_bounded
from certflow.certs._load import Material, _issued_by
from certflow.certs._names import usage_name, weak_digest

_SERVER_USAGES = frozenset(
    {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)


def name_of(cert: x509.Certificate) -> str:
    """The common name of ``cert`` (its whole subject when it has none), for messages."""
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(common[0].value) if common else cert.subject.rfc4514_string() or "(empty subject)"


def _as_tuple(certificates: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    return tuple(certificates)


@attrs.frozen(eq=False)
class PublicRoots:
    """The roots that devices already trust: a chain to one of them is public (Proceed to
    Import), any other chain is private (distribute the root first).

    Build one with :meth:`certifi` (the default of every check: the bundle of the
    installed ``certifi``) or :meth:`of` (any certificates: a test's, or a fleet's own
    store where devices trust a different set).
    """

    certificates: tuple[x509.Certificate, ...] = attrs.field(converter=_as_tuple)
    _store: Store | None = attrs.field(init=False, repr=False)
    _fingerprints: frozenset[bytes] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        certs = list(self.certificates)
        # cryptography refuses an empty Store; no public root means nothing is public.
        object.__setattr__(self, "_store", Store(certs) if certs else None)
        fingerprints = frozenset(c.fingerprint(hashes.SHA256()) for c in certs)
        object.__setattr__(self, "_fingerprints", fingerprints)

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate]) -> PublicRoots:
        """The store of exactly ``certificates`` (none: no chain is public)."""
        expect_iterable("certificates", certificates, "an iterable of x509.Certificate")
        certs = tuple(certificates)
        for index, cert in enumerate(certs):
            expect(f"certificates[{index}]", cert, x509.Certificate, CERTIFICATE)
        return cls(certs)

    @classmethod
    def certifi(cls) -> PublicRoots:
        """The public roots of the installed ``certifi`` bundle (read once per process)."""
        return _certifi_roots()

    def __contains__(self, cert: object) -> bool:
        """True when ``cert`` is one of these roots (the same certificate, byte for byte)."""
        return (
            isinstance(cert, x509.Certificate)
            and cert.fingerprint(hashes.SHA256()) in self._fingerprints
        )

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The root of this store that issued ``cert``, if any."""
        expect("cert", cert, x509.Certificate, CERTIFICATE)
        return next((root for root in self.certificates if _issued_by(cert, root)), None)

    def verify(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], at: datetime
    ) -> tuple[x509.Certificate, ...] | str:
        """The chain to one of these roots (leaf first), or why none could be built."""
        if self._store is None:
            return "the public root store is empty"
        return build_chain(leaf, intermediates, self._store, at)


@functools.cache
def _certifi_roots() -> PublicRoots:
    # certifi's bundle is about 300 KiB; the bound only guards against a broken install.
    data = read_bounded(certifi.where(), limit=16 * LIMIT)
    with input_warnings_ignored():
        # A few long-lived public roots have a zero serial; they are trusted all the same.
        return PublicRoots(tuple(x509.load_pem_x509_certificates(data)))


def _roots(roots: PublicRoots | None) -> PublicRoots:
    if roots is None:
        return PublicRoots.certifi()
    expect("roots", roots, PublicRoots, "a certflow.certs.PublicRoots (or None for certifi's)")
    return roots


def _ca_allows_server_auth(
    policy: Policy, cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    """The WebPKI rule for a CA in a server's chain (a server verifier's own rule)."""
    if usage is not None and not _SERVER_USAGES.intersection(usage):
        raise ValueError(f"{name_of(cert)} is not issued for serverAuth")


# NON_CRITICAL as in the WebPKI defaults: a critical EKU on a CA is refused, as a server
# verifier refuses it.
_SERVER_CHAIN_CA = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _ca_allows_server_auth
)
# The leaf's names, usage and profile have findings of their own.
_ANY_LEAF = ExtensionPolicy.permit_all()


def build_chain(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], roots: Store, at: datetime
) -> tuple[x509.Certificate, ...] | str:
    """The chain the verifier builds from ``leaf`` to one of ``roots`` at ``at``, judged as
    a server's chain; or the verifier's reason for refusing, in words for people."""
    verifier = (
        PolicyBuilder()
        .store(roots)
        .time(at)
        .extension_policies(ca_policy=_SERVER_CHAIN_CA, ee_policy=_ANY_LEAF)
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(leaf, intermediates).chain)
    except VerificationError as error:
        return reason(error)


def reason(error: Exception) -> str:
    """The verifier's message without its framing, to show to people (never to decide on).

    The texts trimmed here are pinned by a test, so a change in cryptography shows up.
    """
    text = str(error).removeprefix("validation failed: ")
    text = text.removeprefix("candidates exhausted: ")
    text = text.removeprefix("Python extension validator failed: ValueError: ")
    return text.split(" (encountered processing", 1)[0]


@attrs.frozen
class ChainVerdict:
    """What :func:`judge_chain` found: the chain built, whether its root is public, and
    what is wrong with it (``None`` when nothing is)."""

    chain: tuple[x509.Certificate, ...]
    public: bool
    problem: str | None = None
    #: The leaf signed itself: a warning of its own, not a chain problem.
    self_signed: bool = False


def judge_chain(material: Material, at: datetime, roots: PublicRoots | None) -> ChainVerdict:
    """The chain verdict for ``material.leaf`` at ``at`` against the public ``roots``
    (certifi's when ``None``), falling back to the roots the material itself supplies."""
    public_roots = _roots(roots)
    leaf = material.leaf
    if leaf is None:
        raise ValueError("judge_chain needs material with a server certificate")
    if material.leaf_self_signed:
        return ChainVerdict((leaf,), leaf in public_roots, self_signed=True)
    self_signed = [c for c in material.others if _issued_by(c, c)]
    intermediates = [*material.intermediates, *(c for c in material.others if c not in self_signed)]
    supplied = ([] if material.root is None else [material.root]) + self_signed
    public = public_roots.verify(leaf, intermediates, at)
    if isinstance(public, tuple):
        return ChainVerdict(public, True)
    private = build_chain(leaf, intermediates, Store(supplied), at) if supplied else public
    if isinstance(private, tuple):
        return ChainVerdict(private, False)
    # The refusal worth showing is the one against the root the chain leads to.
    refusal = private if material.root is not None else public
    problem = _problem(material, refusal, public_roots)
    return ChainVerdict((), _root_is_public(material, public_roots), problem)


def _root_is_public(material: Material, roots: PublicRoots) -> bool:
    """Whether the material's own certificates lead to a public root although no chain
    could be verified (a weak signature stops the verifier before it looks further)."""
    if not any(
        weak_digest(c) in ("SHA-1", "MD5") for c in material.chain if c is not material.root
    ):
        return False
    top = material.chain[-1]
    root = material.root or roots.issuer_of(top)
    return root is not None and root in roots


def _not_for_servers(material: Material) -> list[str]:
    """The CAs of the material's chain that list extended key usages without serverAuth."""
    found = []
    for role, cert in roles(material)[1:]:
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        if not _SERVER_USAGES.intersection(usage):
            listed = ", ".join(usage_name(oid) for oid in usage) or "nothing"
            found.append(f"{role} is restricted to {listed}")
    return found


def _problem(material: Material, refusal: str, roots: PublicRoots) -> str:
    """Why no chain could be verified, in words that say what to do about it."""
    top = material.chain[-1]
    root = material.root or roots.issuer_of(top)
    missing = (
        f"'{top.issuer.rfc4514_string()}', which issued '{name_of(top)}', was not supplied and "
        "is not a public root"
    )
    weak = [
        f"{role} is signed with {digest}"
        for role, cert in roles(material)
        if cert is not material.root and (digest := weak_digest(cert)) is not None
    ]
    if weak:
        # The verifier refuses SHA-1 and MD5 before it looks any further, so its reason
        # would be misleading; the chain's own structure says what else is true.
        chain = material.chain if root is material.root else (*material.chain, root)
        path = " -> ".join(f"'{name_of(c)}'" for c in chain if c is not None)
        rest = (
            f"the certificates themselves lead to the root: {path}"
            if root is not None
            else f"besides, {missing}"
        )
        return (
            f"the chain could not be verified because of the weak signature: {'; '.join(weak)}"
            f", which TLS clients refuse; {rest}; ask the CA to reissue with SHA-256"
        )
    restricted = _not_for_servers(material)
    if restricted:
        return (
            f"{'; '.join(restricted)} by its extended key usage, so TLS clients refuse "
            f"{'it' if len(restricted) == 1 else 'them'} in a server's chain; ask the CA for a "
            "chain issued for serverAuth"
        )
    if root is None:
        return (
            f"no chain to a trusted root: {missing}; add the CA's intermediate and root "
            "certificates (its chain file)"
        )
    shown = (*material.chain, *(() if root is material.root else (root,)))
    path = " -> ".join(f"'{name_of(c)}'" for c in shown)
    return f"the chain {path} is not acceptable to TLS clients: {refusal}"


def roles(material: Material) -> list[tuple[str, x509.Certificate]]:
    """Each certificate of the chain with its role, in words (``intermediate 'X'``...)."""
    found = [] if material.leaf is None else [("the certificate", material.leaf)]
    found += [(f"intermediate '{name_of(cert)}'", cert) for cert in material.intermediates]
    if material.root is not None:
        found.append((f"root '{name_of(material.root)}'", material.root))
    return found


def is_public_root(cert: x509.Certificate, *, roots: PublicRoots | None = None) -> bool:
    """True when ``cert`` is in the public root store (certifi's bundle unless ``roots``)."""
    expect("cert", cert, x509.Certificate, CERTIFICATE)
    return cert in _roots(roots)


def public_issuer(
    cert: x509.Certificate, *, roots: PublicRoots | None = None
) -> x509.Certificate | None:
    """The root of the public store (certifi's bundle unless ``roots``) that issued ``cert``."""
    return _roots(roots).issuer_of(cert)
