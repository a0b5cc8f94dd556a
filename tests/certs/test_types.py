"""Wrong argument types to the public functions: a clear InvalidInput, never AttributeError."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certflow import certs
from certflow.certs import Material, Subject, rollout_for
from certflow.core.errors import CertflowError, InvalidInput

from .factory import HOST, NOW, build, key_pem, pem, pki, rsa_key
from .test_rollout_bridge import DEVICES, existing_certificate

P = pki()
MATERIAL = Material.from_parts([P.leaf, P.intermediate, P.root], [P.leaf_key])
SUBJECT = Subject.create(
    country="DE", state="Bavaria", locality="Munich", organization="Example",
    common_name=HOST,
)  # fmt: skip
CSR = certs.create_csr(SUBJECT, rsa_key())


# What a first user passed, and what they should be told.
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: rollout_for("server.pfx", existing_certificate(), DEVICES, now=NOW, host=HOST),  # type: ignore[arg-type]
            "material must be a certflow.certs.Material, e.g. certs.load('server.pfx', "
            "password=...), got str 'server.pfx'",
        ),
        (
            lambda: certs.check(MATERIAL, host=HOST, now=NOW, key="server.key"),  # type: ignore[arg-type]
            "key must be a private key object of cryptography, e.g. certs.load_key(data) or "
            "None, got str 'server.key'",
        ),
        (
            lambda: certs.check("server.pfx", host=HOST, now=NOW),  # type: ignore[arg-type]
            "material must be a certflow.certs.Material",
        ),
        (
            lambda: certs.load(42),  # type: ignore[arg-type]
            "source 1 must be a file path (str or os.PathLike) or the file's bytes, got int 42",
        ),
        (
            lambda: certs.load(b"x", password=1234),  # type: ignore[arg-type]
            "password must be a str or bytes password or None, got int 1234",
        ),
        (
            lambda: certs.create_csr("mdm.example.com", rsa_key()),  # type: ignore[arg-type]
            "subject must be a certflow.certs.Subject",
        ),
        (
            lambda: certs.inspect_csr("server.csr"),  # type: ignore[arg-type]
            "csr must be a cryptography x509.CertificateSigningRequest or bytes (the file's "
            "content), got str 'server.csr'",
        ),
        (
            lambda: certs.load_key("server.key"),  # type: ignore[arg-type]
            "data must be bytes (the file's content), got str 'server.key'",
        ),
        (
            lambda: certs.decrypt_key(key_pem(rsa_key()), None),  # type: ignore[arg-type]
            "passphrase must be a str or bytes password, got NoneType None",
        ),
        (
            lambda: certs.generate_key("2048"),  # type: ignore[arg-type]
            "RSA key size '2048' is not supported",
        ),
    ],
    ids=[
        "rollout_for(path)",
        "check(key=path)",
        "check(path)",
        "load(int)",
        "load(password=int)",
        "create_csr(str)",
        "inspect_csr(path)",
        "load_key(path)",
        "decrypt_key(None)",
        "generate_key(str)",
    ],
)
def test_wrong_types_are_named_with_what_they_should_be(
    call: Callable[[], object], message: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()
    assert str(caught.value).startswith(message)


def _baselines(tmp: Path) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """Every public function of certflow.certs with arguments it accepts."""
    key_file = tmp / "server.key"
    key_file.write_bytes(key_pem(rsa_key()))
    encrypted = certs.key_to_pem(rsa_key(), "pw")
    return {
        "load": (certs.load, {"sources": pem(P.leaf), "password": None, "names": None}),
        "check": (
            certs.check,
            {"material": MATERIAL, "host": HOST, "now": NOW, "key": None, "hosts": ()},
        ),
        "rollout_for": (
            rollout_for,
            {
                "material": MATERIAL,
                "existing": existing_certificate(),
                "device_ids": DEVICES,
                "now": NOW,
                "host": HOST,
                "hosts": [HOST],
                "key": None,
                "trusted_device_ids": (),
            },
        ),
        "root_publicly_trusted": (certs.root_publicly_trusted, {"material": MATERIAL, "now": NOW}),
        "identity_of": (
            certs.identity_of,
            {"material": MATERIAL, "report": certs.check(MATERIAL, host=HOST, now=NOW)},
        ),
        "material_of": (
            certs.material_of,
            {"identity": certs.identity_of(MATERIAL, certs.check(MATERIAL, host=HOST, now=NOW))},
        ),
        "key_matches": (certs.key_matches, {"certificate": P.leaf, "key": P.leaf_key}),
        "is_public_root": (certs.is_public_root, {"cert": P.root}),
        "parse_host": (certs.parse_host, {"host": HOST}),
        "parse_san": (certs.parse_san, {"value": HOST}),
        "parse_sans": (certs.parse_sans, {"text": HOST}),
        "normalize_country": (certs.normalize_country, {"value": "DE"}),
        "Subject.create": (
            Subject.create,
            {
                "country": "DE",
                "state": "s",
                "locality": "l",
                "organization": "o",
                "common_name": HOST,
                "organizational_unit": "",
                "sans": "",
            },
        ),
        "create_csr": (certs.create_csr, {"subject": SUBJECT, "key": rsa_key()}),
        "csr_to_pem": (certs.csr_to_pem, {"csr": CSR}),
        "read_csr": (certs.read_csr, {"data": certs.csr_to_pem(CSR), "source": "CSR"}),
        "inspect_csr": (certs.inspect_csr, {"csr": CSR, "source": "CSR"}),
        "write_key_and_csr": (
            certs.write_key_and_csr,
            {"folder": tmp, "key": rsa_key(), "csr": CSR, "passphrase": None},
        ),
        "openssl_config": (certs.openssl_config, {"subject": SUBJECT, "bits": 2048}),
        "generate_key": (certs.generate_key, {"bits": 2048}),
        "key_to_pem": (certs.key_to_pem, {"key": rsa_key(), "passphrase": None}),
        "load_key": (
            certs.load_key,
            {"data": key_pem(rsa_key()), "passphrase": None, "source": "k"},
        ),
        "encrypt_key": (
            certs.encrypt_key,
            {
                "data": key_pem(rsa_key()),
                "passphrase": "pw",
                "current_passphrase": None,
                "source": "k",
            },
        ),
        "decrypt_key": (certs.decrypt_key, {"data": encrypted, "passphrase": "pw", "source": "k"}),
        "Material.from_parts": (
            Material.from_parts,
            {"certificates": [P.leaf], "private_keys": [P.leaf_key], "sources": ()},
        ),
        "Material.of": (Material.of, {"certificate": P.leaf, "key": None}),
        "Material.with_private_key": (MATERIAL.with_private_key, {"key": P.leaf_key}),
        "read_bounded": (certs.read_bounded, {"path": key_file, "limit": 100_000, "name": None}),
        "read_password": (certs.read_password, {"source": key_file, "name": None}),
        "backup": (certs.backup, {"path": tmp / "absent"}),
        "backup_together": (certs.backup_together, {"paths": [tmp / "absent"]}),
        "atomic_write": (certs.atomic_write, {"path": tmp / "out", "data": b"x", "mode": 0o600}),
        "check_target": (certs.check_target, {"path": tmp / "out"}),
        "describe_key": (certs.describe_key, {"key": P.leaf_key}),
        "key_kind": (certs.key_kind, {"key": P.leaf_key}),
        "signature_algorithm_name": (certs.signature_algorithm_name, {"item": P.leaf}),
        "usage_name": (certs.usage_name, {"oid": P.leaf.signature_algorithm_oid}),
        "weak_digest": (certs.weak_digest, {"cert": P.leaf}),
        "export": (certs.export, {"material": MATERIAL, "folder": tmp / "x", "pfx_password": "p"}),
    }


WRONG: list[object] = [None, 42, 1.5, "server.pem", b"junk", object(), ["server.pem"]]


def test_every_public_function_is_listed_here(tmp_path: Path) -> None:
    functions = {
        name
        for name in certs.__all__
        if inspect.isfunction(getattr(certs, name)) and name not in {"sans_from_extension"}
    }
    listed = {name for name in _baselines(tmp_path) if "." not in name}
    assert functions - listed == set()


def test_wrong_types_anywhere_give_a_certflow_error_never_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each argument of each public function, replaced by values of the wrong type."""
    monkeypatch.chdir(tmp_path)  # "server.pem" is a path too: whatever it writes stays here
    crashes = []
    for name, (function, arguments) in _baselines(tmp_path).items():
        for argument in arguments:
            for wrong in WRONG:
                given = {**arguments, argument: wrong}
                sources = given.pop("sources", None)
                try:
                    if name == "load":
                        function(sources, **given)
                    else:
                        function(**given)
                except CertflowError:
                    pass
                except Exception as error:  # any other type is the bug
                    crashes.append(f"{name}({argument}={wrong!r}): {type(error).__name__}: {error}")
    assert crashes == []


def test_sans_from_extension_needs_extensions() -> None:
    with pytest.raises(InvalidInput, match="extensions must be"):
        certs.sans_from_extension("DNS:mdm.example.com")  # type: ignore[arg-type]
    assert certs.sans_from_extension(build(HOST, key=rsa_key()).extensions) == (HOST,)
