"""Nothing certflow does warns: every module imports, and every successful command runs,
with warnings turned into errors, leaving standard error empty.

A dependency that deprecates something certflow uses (cryptography 51 deprecated DSA, which
certflow named when its modules loaded) shows up here first, not on users' terminals.
Each run is a fresh interpreter under ``-W error`` with ``PYTHONWARNINGS=error``, so the
simulator's worker processes are held to the same rule.
"""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning

import certflow
from tests.certs.factory import DAY, HOST, NOW, build, key_pem, name, pem, pki, rsa_key

SUBJECT = [
    "--country", "IN", "--state", "Tamil Nadu", "--locality", "Chennai",
    "--org", "Example Ltd", "--common-name", HOST, "--san", HOST,
]  # fmt: skip

MODULES = sorted(info.name for info in pkgutil.walk_packages(certflow.__path__, prefix="certflow."))


def _strict(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-W", "error", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _succeeds_silently(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_every_module_is_found() -> None:
    # The walk itself must see the package's layers, or the import test proves nothing.
    for layer in ("core", "certs", "store", "sim", "demo", "cli"):
        assert f"certflow.{layer}" in MODULES
    assert "certflow.certs._names" in MODULES


def test_every_module_imports_without_a_warning(tmp_path: Path) -> None:
    code = f"import importlib\nfor name in {MODULES!r}:\n    importlib.import_module(name)\n"
    _succeeds_silently(_strict("-c", code, cwd=tmp_path))


@pytest.mark.parametrize(
    "command", [["--help"], ["cert", "check", "--help"], ["rollout", "--help"]], ids=" ".join
)
def test_help_without_a_warning(command: list[str], tmp_path: Path) -> None:
    done = _strict("-m", "certflow", *command, cwd=tmp_path)
    _succeeds_silently(done)
    assert done.stdout.startswith("Usage: certflow")


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good private PKI's certificate, chain and key; the current certificate; devices."""
    folder = tmp_path_factory.mktemp("upload")
    good = pki()
    (folder / "server.crt").write_bytes(pem(good.leaf))
    (folder / "chain.pem").write_bytes(pem(good.root, good.intermediate))
    (folder / "server.key").write_bytes(key_pem(good.leaf_key))
    current = build(
        HOST, key=rsa_key(2048, 8), not_before=NOW - 300 * DAY, not_after=NOW + 40 * DAY
    )
    (folder / "current.crt").write_bytes(pem(current))
    (folder / "devices.txt").write_text("d1\nd2\nd3\n")
    return folder


def test_cert_check_without_a_warning(upload: Path) -> None:
    done = _strict(
        "-m", "certflow", "cert", "check", "server.crt", "chain.pem", "--key", "server.key",
        "--host", HOST, "--at", NOW.isoformat(), cwd=upload,
    )  # fmt: skip
    _succeeds_silently(done)
    assert "Result: ok" in done.stdout


def test_certificate_commands_without_a_warning(upload: Path, tmp_path: Path) -> None:
    (tmp_path / "pfx-pass").write_text("pfx-pass\n")
    for args in (
        ["cert", "inspect", str(upload / "server.crt"), str(upload / "chain.pem")],
        [
            "cert",
            "export",
            str(upload / "server.crt"),
            str(upload / "chain.pem"),
            str(upload / "server.key"),
            "--out",
            str(tmp_path / "out"),
            "--new-password-file",
            str(tmp_path / "pfx-pass"),
        ],
        ["csr", "new", *SUBJECT, "--no-input"],
        ["csr", "show", "server.csr"],
        ["csr", "openssl-config", *SUBJECT, "--no-input"],
    ):
        (tmp_path / "out").mkdir(exist_ok=True)
        _succeeds_silently(_strict("-m", "certflow", *args, cwd=tmp_path))


def test_a_rollout_from_start_to_end_without_a_warning(upload: Path, tmp_path: Path) -> None:
    def at(days: float) -> str:
        return (NOW + timedelta(days=days, hours=1)).isoformat()

    db = str(tmp_path / "r.db")
    steps = [
        ["new", "r1", "--cert", str(upload / "server.crt"), "--cert", str(upload / "chain.pem"),
         "--cert", str(upload / "server.key"), "--existing", str(upload / "current.crt"),
         "--devices", str(upload / "devices.txt"), "--host", HOST, "--now", at(0)],
        ["distribute", "r1", "--now", at(0)],
        ["report", "r1", "d1", "installed", "--now", at(1)],
        ["report", "r1", "d2", "failed", "--now", at(1)],
        ["retry", "r1", "d2", "--now", at(2)],
        ["status", "r1", "--now", at(2)],
        ["effects", "r1", "--now", at(2)],
        ["tick", "--now", at(8)],
        ["history", "r1", "--now", at(8)],
        ["list", "--now", at(8)],
    ]  # fmt: skip
    for args in steps:
        done = _strict("-m", "certflow", "rollout", *args, "--db", db, cwd=tmp_path)
        _succeeds_silently(done)
    assert "r1" in done.stdout


def test_simulate_without_a_warning(tmp_path: Path) -> None:
    done = _strict(
        "-m", "certflow", "simulate", "--devices", "300", "--seed", "1", "--runs", "4",
        cwd=tmp_path,
    )  # fmt: skip
    _succeeds_silently(done)


def test_simulate_through_the_store_without_a_warning(tmp_path: Path) -> None:
    done = _strict(
        "-m", "certflow", "simulate", "--devices", "300", "--seed", "1",
        "--db", str(tmp_path / "sim.db"), cwd=tmp_path,
    )  # fmt: skip
    _succeeds_silently(done)


def test_certflow_names_no_deprecated_key_module() -> None:
    """cryptography deprecates DSA and finite-field Diffie-Hellman: their modules' classes
    warn when named, so certflow tells key kinds apart by ``PublicKeyTypes`` instead."""
    import ast

    root = Path(certflow.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                assert not (node.module.endswith("asymmetric") and names & {"dsa", "dh"}), (
                    f"{path} imports a deprecated key module"
                )
                assert not node.module.endswith((".dsa", ".dh")), path


VECTORS = Path(cryptography_vectors.__file__).parent
ODD_UPLOADS = {
    "a zero serial": VECTORS / "x509" / "custom" / "negative_serial.pem",
    "a three-letter country": VECTORS / "x509" / "custom" / "bad_country.pem",
    "PKCS#7 in BER": VECTORS / "pkcs7" / "amazon-roots.p7b",
    "a DSA certificate": VECTORS / "x509" / "custom" / "dsa_selfsigned_ca.pem",
}


@pytest.fixture(scope="module")
def dsa_leaf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate for a DSA key, issued by a CA that is not uploaded: nothing but the
    command's own reading touches its key."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        from cryptography.hazmat.primitives.asymmetric import dsa

        key = dsa.generate_private_key(2048)
    issuer = rsa_key(2048, 20)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("a DSA server"))
        .issuer_name(name("an absent CA"))
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(issuer, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("dsa") / "dsa-leaf.pem"
    path.write_bytes(pem(cert))
    return path


@pytest.mark.parametrize("command", [["cert", "inspect"], ["cert", "inspect", "--json"]])
def test_a_dsa_upload_puts_no_warning_on_the_terminal(
    dsa_leaf: Path, command: list[str], tmp_path: Path
) -> None:
    done = _strict("-m", "certflow", *command, str(dsa_leaf), cwd=tmp_path)
    _succeeds_silently(done)
    assert "DSA" in done.stdout


@pytest.mark.parametrize("upload", ODD_UPLOADS.values(), ids=ODD_UPLOADS.keys())
@pytest.mark.parametrize("command", [["cert", "inspect"], ["cert", "inspect", "--json"]])
def test_odd_but_readable_uploads_put_no_warning_on_the_terminal(
    upload: Path, command: list[str], tmp_path: Path
) -> None:
    # Real files that make cryptography warn: certflow reads them and says what matters.
    _succeeds_silently(_strict("-m", "certflow", *command, str(upload), cwd=tmp_path))


@pytest.mark.parametrize("upload", ODD_UPLOADS.values(), ids=ODD_UPLOADS.keys())
def test_checking_an_odd_upload_puts_no_warning_on_the_terminal(
    upload: Path, tmp_path: Path
) -> None:
    done = _strict(
        "-m", "certflow", "cert", "check", str(upload), "--host", HOST,
        "--now", NOW.isoformat(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode in (1, 2), done.stderr  # findings, or refused as input
    assert "Warning" not in done.stderr
    assert "Traceback" not in done.stderr
