"""export: the files the server installs and the devices trust, from any uploaded material."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certflow.certs import (
    CHAIN_PEM,
    FULLCHAIN_PEM,
    ROOT_CER,
    ROOT_PEM,
    SERVER_CRT,
    SERVER_PFX,
    Material,
    PublicRoots,
    export,
    key_matches,
    load,
)
from certflow.core.errors import InvalidInput

from .factory import HOST, Pki, build, key_pem, pem, rsa_key

ALL = [SERVER_CRT, CHAIN_PEM, FULLCHAIN_PEM, ROOT_CER, ROOT_PEM, SERVER_PFX]


def full(p: Pki) -> Material:
    return Material.from_parts([p.root, p.leaf, p.intermediate], [p.leaf_key])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_the_server_and_the_devices_need(good: Pki, tmp_path: Path) -> None:
    exported = export(full(good), tmp_path, pfx_password="s3cret")
    assert [f.path.name for f in exported.files] == ALL
    assert (exported.backups, exported.skipped) == ((), ())
    assert (tmp_path / SERVER_CRT).read_bytes() == pem(good.leaf)
    assert (tmp_path / CHAIN_PEM).read_bytes() == pem(good.intermediate)
    assert (tmp_path / FULLCHAIN_PEM).read_bytes() == pem(good.leaf, good.intermediate)
    assert x509.load_der_x509_certificate((tmp_path / ROOT_CER).read_bytes()) == good.root
    assert (tmp_path / ROOT_PEM).read_bytes() == pem(good.root)
    bundle = pkcs12.load_pkcs12((tmp_path / SERVER_PFX).read_bytes(), b"s3cret")
    assert bundle.cert is not None
    assert bundle.cert.certificate == good.leaf
    assert bundle.key is not None
    assert key_matches(good.leaf, bundle.key)
    assert [c.certificate for c in bundle.additional_certs] == [good.intermediate, good.root]
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {
        **dict.fromkeys(ALL[:-1], 0o644),
        SERVER_PFX: 0o600,
    }


def test_key_material_is_owner_only_under_a_permissive_umask(good: Pki, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        export(full(good), tmp_path, pfx_password="pw")
    finally:
        os.umask(old)
    assert _mode(tmp_path / SERVER_PFX) == 0o600


def test_existing_files_are_backed_up_under_one_number(good: Pki, tmp_path: Path) -> None:
    export(full(good), tmp_path, pfx_password="one")
    first = (tmp_path / SERVER_PFX).read_bytes()
    again = export(full(good), tmp_path, pfx_password="two")
    assert again.backups == tuple(tmp_path / f"{name}.bak" for name in ALL)
    assert (tmp_path / f"{SERVER_PFX}.bak").read_bytes() == first
    assert _mode(tmp_path / f"{SERVER_PFX}.bak") == 0o600
    (tmp_path / f"{ROOT_CER}.bak").unlink()
    third = export(full(good), tmp_path, pfx_password="three")
    assert third.backups == tuple(tmp_path / f"{name}.bak.1" for name in ALL)


def test_from_a_pfx_upload(good: Pki, tmp_path: Path) -> None:
    upload = pkcs12.serialize_key_and_certificates(
        b"x", good.leaf_key, good.leaf, [good.intermediate, good.root],  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"in"),
    )  # fmt: skip
    exported = export(load(upload, password="in"), tmp_path, pfx_password="out")
    assert [f.path.name for f in exported.files] == ALL


def test_without_the_key_there_is_no_pfx_and_no_password(good: Pki, tmp_path: Path) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root])
    exported = export(material, tmp_path)
    assert [f.path.name for f in exported.files] == ALL[:-1]
    assert exported.skipped == ((SERVER_PFX, "the material holds no private key"),)


@pytest.mark.parametrize(
    ("material", "password", "message"),
    [
        (lambda p: full(p), None, "the material holds the private key, so server.pfx is written, "
         "and it needs a password (pfx_password)"),
        (lambda p: Material.from_parts([p.leaf, p.intermediate, p.root], [rsa_key(2048, 7)]),
         "pw", "the private key does not belong to the server certificate, so nothing is exported"),
        (lambda p: Material.from_parts([p.intermediate, p.root]), "pw",
         "no server certificate among the material, so nothing is exported"),
    ],
    ids=["no password", "another key", "no certificate"],
)  # fmt: skip
def test_bad_material_writes_nothing(
    material: object, password: str | None, message: str, good: Pki, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput) as caught:
        export(material(good), tmp_path, pfx_password=password)  # type: ignore[operator]
    assert str(caught.value).startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_or_a_fifo_in_the_way_writes_nothing(good: Pki, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not an existing folder"):
        export(full(good), tmp_path / "missing", pfx_password="pw")
    os.mkfifo(tmp_path / ROOT_PEM)
    with pytest.raises(InvalidInput, match=r"root\.pem exists and is a FIFO"):
        export(full(good), tmp_path, pfx_password="pw")
    assert [p.name for p in tmp_path.iterdir()] == [ROOT_PEM]


def test_a_private_root_that_was_not_supplied_is_reported(good: Pki, tmp_path: Path) -> None:
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    exported = export(material, tmp_path, pfx_password="pw")
    assert [f.path.name for f in exported.files] == [
        SERVER_CRT,
        CHAIN_PEM,
        FULLCHAIN_PEM,
        SERVER_PFX,
    ]
    reason = (
        "the root 'CN=certflow test root,O=certflow tests', which issued 'certflow test "
        "intermediate', was not supplied and is not a public root; add the CA's root certificate"
    )
    assert exported.skipped == ((ROOT_CER, reason), (ROOT_PEM, reason))


def test_a_public_root_that_was_not_supplied_comes_from_the_public_store(
    good: Pki, tmp_path: Path
) -> None:
    # Nobody can issue under a real public root in a test, so the test root plays one.
    roots = PublicRoots.of([good.root])
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    export(material, tmp_path, pfx_password="pw", roots=roots)
    assert (tmp_path / ROOT_PEM).read_bytes() == pem(good.root)


def test_a_self_signed_certificate_is_its_own_root(tmp_path: Path) -> None:
    leaf = build(HOST, key=rsa_key())
    exported = export(load(pem(leaf), key_pem(rsa_key())), tmp_path, pfx_password="pw")
    assert (tmp_path / ROOT_PEM).read_bytes() == pem(leaf)
    assert exported.skipped == (
        (CHAIN_PEM, "the certificate is self-signed: there are no intermediates"),
    )
    assert (tmp_path / FULLCHAIN_PEM).read_bytes() == pem(leaf)
