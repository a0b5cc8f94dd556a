"""Export: from any uploaded material, the files the server installs and the devices trust."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeGuard, get_args

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certflow.certs._chain import PublicRoots, name_of, public_issuer
from certflow.certs._errors import MATERIAL, PATH, SECRET, expect, expect_optional, quiet
from certflow.certs._files import atomic_write, backup_together, check_target
from certflow.certs._load import Material, key_matches
from certflow.certs._names import key_kind
from certflow.core.errors import InvalidInput

#: The server certificate, as the vendor procedure names it.
SERVER_CRT = "server.crt"
#: The intermediate certificates, the one that issued the server certificate first.
CHAIN_PEM = "chain.pem"
#: The server certificate followed by the intermediates: what a TLS server sends.
FULLCHAIN_PEM = "fullchain.pem"
#: The root certificate to distribute to devices, DER (what device management pushes).
ROOT_CER = "root.cer"
#: The same root certificate, PEM.
ROOT_PEM = "root.pem"
#: Certificate, private key and chain in one password-protected PKCS#12 file.
SERVER_PFX = "server.pfx"

# The kinds PKCS#12 can hold, as cryptography declares them (naming the classes one by one
# would touch deprecated ones, DSA).
_PKCS12_KEYS: tuple[type, ...] = get_args(pkcs12.PKCS12PrivateKeyTypes)


def _fits_pkcs12(key: object) -> TypeGuard[pkcs12.PKCS12PrivateKeyTypes]:
    return isinstance(key, _PKCS12_KEYS)


_PUBLIC_MODE = 0o644
_KEY_MODE = 0o600  # key material is for the owner only


@attrs.frozen
class ExportedFile:
    """One file :func:`export` wrote: where, what it holds, and its permissions."""

    path: Path
    content: str
    mode: int


@attrs.frozen
class Exported:
    """What :func:`export` wrote, the backups it made first, and what it could not write."""

    files: tuple[ExportedFile, ...]
    backups: tuple[Path, ...]
    #: ``(file name, reason)`` for each file the material had nothing for.
    skipped: tuple[tuple[str, str], ...]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def _root(material: Material, roots: PublicRoots | None) -> x509.Certificate | None:
    """The root devices must trust: supplied, the leaf itself, or found in the public store."""
    if material.root is not None:
        return material.root
    if material.leaf is not None and material.leaf_self_signed:
        return material.leaf
    return public_issuer(material.chain[-1], roots=roots) if material.chain else None


@quiet
def export(
    material: Material,
    folder: str | os.PathLike[str],
    *,
    pfx_password: str | bytes | None = None,
    roots: PublicRoots | None = None,
) -> Exported:
    """Write into ``folder`` what the server installs and what the devices must trust.

    - ``server.crt``: the server certificate (PEM), as the vendor procedure names it;
    - ``chain.pem``: the intermediates, and ``fullchain.pem``: the certificate and them;
    - ``root.cer`` (DER) and ``root.pem``: the root to distribute to devices: the supplied
      root, the certificate itself when it is self-signed, or the public root that issued
      the top of the chain (of certifi's bundle unless ``roots``);
    - ``server.pfx``: certificate, private key, intermediates and root, encrypted with
      ``pfx_password`` (required when the material holds the key), mode 0600.

    Everything is validated before anything is written: the material needs a server
    certificate, and a private key must belong to it. Existing files are then backed up
    under one shared number (``NAME.bak``, ``NAME.bak.1``...), and each file is replaced
    atomically. A file the material has nothing for is listed in ``skipped`` with the
    reason. Bad input raises :class:`~certflow.core.errors.InvalidInput`.
    """
    expect("material", material, Material, MATERIAL)
    expect("folder", folder, (str, os.PathLike), PATH)
    expect_optional("pfx_password", pfx_password, (str, bytes), SECRET)
    directory = Path(folder)
    if not directory.is_dir():
        raise InvalidInput(f"{directory}: not an existing folder; create it first")
    leaf = material.leaf
    if leaf is None:
        raise InvalidInput(
            "no server certificate among the material, so nothing is exported; add the "
            "certificate the CA issued"
        )
    key = material.private_key
    if key is not None and not key_matches(leaf, key):
        raise InvalidInput(
            "the private key does not belong to the server certificate, so nothing is "
            "exported (was the certificate issued for another CSR?)"
        )
    secret = pfx_password.encode() if isinstance(pfx_password, str) else pfx_password
    if key is not None and not secret:
        raise InvalidInput(
            f"the material holds the private key, so {SERVER_PFX} is written, and it needs a "
            "password (pfx_password)"
        )
    root = _root(material, roots)
    planned: list[tuple[str, bytes, str, int]] = [
        (SERVER_CRT, _pem(leaf), "the server certificate (PEM)", _PUBLIC_MODE)
    ]
    skipped: list[tuple[str, str]] = []
    if material.intermediates:
        planned.append(
            (CHAIN_PEM, _pem(*material.intermediates), "the intermediates (PEM)", _PUBLIC_MODE)
        )
    elif material.leaf_self_signed:
        skipped.append((CHAIN_PEM, "the certificate is self-signed: there are no intermediates"))
    else:
        skipped.append((CHAIN_PEM, "there are no intermediates: the root issued the certificate"))
    planned.append(
        (
            FULLCHAIN_PEM,
            _pem(leaf, *material.intermediates),
            "the server certificate and the intermediates (PEM)",
            _PUBLIC_MODE,
        )
    )
    if root is not None:
        der = root.public_bytes(serialization.Encoding.DER)
        planned.append((ROOT_CER, der, "the root to distribute to devices (DER)", _PUBLIC_MODE))
        planned.append(
            (ROOT_PEM, _pem(root), "the root to distribute to devices (PEM)", _PUBLIC_MODE)
        )
    else:
        top = material.chain[-1]
        reason = (
            f"the root '{top.issuer.rfc4514_string()}', which issued '{name_of(top)}', was not "
            "supplied and is not a public root; add the CA's root certificate"
        )
        skipped += [(ROOT_CER, reason), (ROOT_PEM, reason)]
    if key is not None and secret:
        if not _fits_pkcs12(key):
            raise InvalidInput(f"a {key_kind(key)} key cannot go into a PKCS#12 file")
        extra = [*material.intermediates, *([] if root is None or root is leaf else [root])]
        name = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        pfx = pkcs12.serialize_key_and_certificates(
            str(name[0].value).encode() if name else b"server",
            key,
            leaf,
            extra,
            serialization.BestAvailableEncryption(secret),
        )
        planned.append(
            (SERVER_PFX, pfx, "certificate, private key and chain (PKCS#12, encrypted)", _KEY_MODE)
        )
    else:
        skipped.append((SERVER_PFX, "the material holds no private key"))
    targets = [check_target(directory / name) for name, *_ in planned]
    backups = tuple(b for b in backup_together(targets) if b is not None)
    files = []
    for target, (_, data, content, mode) in zip(targets, planned, strict=True):
        atomic_write(target, data, mode=mode)
        files.append(ExportedFile(target, content, mode))
    return Exported(files=tuple(files), backups=backups, skipped=tuple(skipped))
