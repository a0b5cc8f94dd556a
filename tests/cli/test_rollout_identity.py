"""``certflow rollout``: what a rollout rolls out, recorded by ``new``, shown by ``status``
and ``list``, and written back out by ``export`` (rollout-rules.md, "What a rollout knows
and says"; store.md, the ``export`` line).

The tests that use a database run once per backend (SQLite and PostgreSQL, the
``backend`` fixture); the one about a database an earlier certflow wrote is SQLite's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certflow import certs
from certflow.store import open_store
from tests.backends import Backend
from tests.certs.factory import DAY, HOST, NOW, build, pem, rsa_key
from tests.cli.test_rollout import as_json, at, cli, new_args, upload
from tests.core.strategies import build as build_rollout

__all__ = ["upload"]  # the module fixture of the upload, shared with test_rollout

OLD_DATABASE = Path(__file__).parent.parent / "store" / "data" / "certflow-schema-3.db"
PUBLIC_FILES = ("server.crt", "chain.pem", "fullchain.pem", "root.cer", "root.pem")


def sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@attrs.frozen
class Uploaded:
    """The certificates of the upload (the test_rollout module's fixture), by role."""

    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate


@pytest.fixture(scope="module")
def good(upload: Path) -> Uploaded:
    material = certs.load(upload / "server.crt")
    assert material.leaf is not None
    assert material.root is not None
    (intermediate,) = material.intermediates
    return Uploaded(material.leaf, intermediate, material.root)


def folder(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (hidden ones and temporary files included)."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


# --- new, status, list ---------------------------------------------------------------------------


def test_new_records_what_the_rollout_rolls_out(
    upload: Path, backend: Backend, good: Uploaded
) -> None:
    created = as_json(cli(*new_args(upload, backend.target), "--json"))
    assert created["identity"] == {
        "certificate": {
            "fingerprint": sha256(good.leaf),
            "subject": "CN=mdm.example.com,O=certflow tests",
            "names": [HOST],
            "issuer": "CN=certflow test intermediate,O=certflow tests",
            "not_before": good.leaf.not_valid_before_utc.isoformat(),
            "not_after": good.leaf.not_valid_after_utc.isoformat(),
        },
        "root": {
            "fingerprint": sha256(good.root),
            "subject": "CN=certflow test root,O=certflow tests",
            "publicly_trusted": False,
        },
        "hosts": [HOST],
        "intermediates": 1,
    }
    text = cli(*new_args(upload, backend.target, "r2")).stdout
    assert "Certificate:      CN=mdm.example.com,O=certflow tests\n" in text
    assert f"  SHA-256:        {sha256(good.leaf)}\n" in text
    assert "Root certificate: CN=certflow test root,O=certflow tests (private)\n" in text
    assert f"  SHA-256:        {sha256(good.root)}\n" in text
    assert "Root: private. Next: certflow rollout distribute r2" in text
    with open_store(backend.target, create=False) as store:
        identity = store.plan("r1").identity
    assert identity is not None
    assert identity.chain_pem == pem(good.leaf, good.intermediate, good.root).decode()


def test_status_shows_what_the_rollout_rolls_out(
    upload: Path, backend: Backend, good: Uploaded
) -> None:
    db = backend.target
    cli(*new_args(upload, db))
    text = cli("rollout", "status", "r1", "--db", db, "--now", at(1)).stdout
    lines = text.splitlines()
    for line in [
        "Certificate:      CN=mdm.example.com,O=certflow tests",
        f"  SHA-256:        {sha256(good.leaf)}",
        f"  names:          {HOST}",
        "  issuer:         CN=certflow test intermediate,O=certflow tests",
        "Root:             CN=certflow test root,O=certflow tests (private)",
        f"  SHA-256:        {sha256(good.root)}",
        f"Hosts:            {HOST}",
    ]:
        assert line in lines, text
    data = as_json(cli("rollout", "status", "r1", "--db", db, "--now", at(1), "--json"))
    assert data["identity"]["certificate"]["fingerprint"] == sha256(good.leaf)
    assert data["identity"]["root"] == {
        "fingerprint": sha256(good.root),
        "subject": "CN=certflow test root,O=certflow tests",
        "publicly_trusted": False,
    }
    assert "PRIVATE" not in str(data)
    assert "BEGIN" not in str(data)


def test_list_shows_what_each_rollout_rolls_out(
    upload: Path, backend: Backend, good: Uploaded
) -> None:
    db = backend.target
    cli(*new_args(upload, db))
    text = cli("rollout", "list", "--db", db, "--now", at()).stdout
    header, row = text.splitlines()
    assert header.endswith("NEXT DUE  CERTIFICATE")
    assert row.endswith(
        f"-         CN=mdm.example.com,O=certflow tests (SHA-256 {sha256(good.leaf)[:16]}…)"
    )
    (data,) = as_json(cli("rollout", "list", "--db", db, "--now", at(), "--json"))
    assert data["identity"]["root"]["fingerprint"] == sha256(good.root)


def test_a_public_root_override_is_the_identitys_answer_too(
    upload: Path, backend: Backend, good: Uploaded
) -> None:
    created = as_json(cli(*new_args(upload, backend.target), "--public-root", "--json"))
    assert created["root_publicly_trusted"] is True
    assert created["identity"]["root"]["publicly_trusted"] is True
    assert created["identity"]["root"]["fingerprint"] == sha256(good.root)


# --- export ---------------------------------------------------------------------------------------


def test_export_writes_what_cert_export_writes_from_the_upload(
    upload: Path, backend: Backend, tmp_path: Path, good: Uploaded
) -> None:
    db = backend.target
    cli(*new_args(upload, db))
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    out, reference = tmp_path / "out", tmp_path / "reference"
    out.mkdir()
    reference.mkdir()
    text = cli("rollout", "export", "r1", "--out", out, "--db", db, "--now", at(1)).stdout
    cli("cert", "export", upload / "server.crt", "--out", reference)  # no key: no server.pfx
    assert folder(out) == folder(reference)
    assert sorted(folder(out)) == sorted(PUBLIC_FILES)
    assert folder(out)["root.cer"] == good.root.public_bytes(serialization.Encoding.DER)
    assert folder(out)["root.pem"] == pem(good.root)
    assert folder(out)["chain.pem"] == pem(good.intermediate)
    assert folder(out)["server.crt"] == pem(good.leaf)
    assert f"Wrote {out / 'root.cer'}" in text
    assert "server.pfx" not in text  # a rollout never holds a key; none is missing
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o644


def test_export_says_what_it_wrote_as_json_and_backs_up_what_was_there(
    upload: Path, backend: Backend, tmp_path: Path
) -> None:
    db = backend.target
    cli(*new_args(upload, db))
    (tmp_path / "root.pem").write_text("an older root\n")
    data = as_json(
        cli("rollout", "export", "r1", "--out", tmp_path, "--db", db, "--now", at(), "--json")
    )
    assert data["rollout"] == "r1"
    assert data["folder"] == str(tmp_path)
    assert sorted(Path(w["file"]).name for w in data["written"]) == sorted(PUBLIC_FILES)
    assert data["backups"] == [str(tmp_path / "root.pem.bak")]
    assert data["skipped"] == []
    assert (tmp_path / "root.pem.bak").read_text() == "an older root\n"


def test_export_of_a_self_signed_certificate_has_no_chain(
    upload: Path, backend: Backend, tmp_path: Path
) -> None:
    key = rsa_key(2048, 9)
    alone = build(HOST, key=key, not_before=NOW - DAY, not_after=NOW + 200 * DAY)
    (tmp_path / "alone.crt").write_bytes(pem(alone))
    (tmp_path / "alone.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    args = new_args(upload, backend.target)
    args[args.index(upload / "server.crt")] = tmp_path / "alone.crt"
    args[args.index(upload / "server.key")] = tmp_path / "alone.key"
    cli(*args)
    out = tmp_path / "out"
    out.mkdir()
    text = cli("rollout", "export", "r1", "--out", out, "--db", backend.target).stdout
    assert folder(out)["root.pem"] == folder(out)["server.crt"] == pem(alone)
    assert "chain.pem" not in folder(out)
    assert "No chain.pem: the certificate is self-signed" in text


@pytest.mark.parametrize("as_json_flag", [False, True])
def test_export_of_a_rollout_without_identity_writes_nothing(
    backend: Backend, tmp_path: Path, as_json_flag: bool
) -> None:
    with open_store(backend.target) as store:
        store.create("dates", build_rollout(3))  # made from dates alone, as a simulation is
    out = tmp_path / "out"
    out.mkdir()
    flags = ["--json"] if as_json_flag else []
    result = cli(
        "rollout", "export", "dates", "--out", out, "--db", backend.target, *flags, expect=2
    )
    assert result.stderr.endswith(
        "certflow: error: rollout dates has no identity (it was made from dates alone), so "
        "the database holds no certificate to export; nothing was written\n"
    )
    assert len(result.stderr.splitlines()) == 1
    assert folder(out) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/missing"], "missing: not an existing folder; create it first"),
        (["--out", "{tmp}/file"], "is a file"),
        ([], "Missing option '--out'"),
    ],
)
def test_export_refuses_a_bad_folder_and_writes_nothing(
    upload: Path, backend: Backend, tmp_path: Path, args: list[str], message: str
) -> None:
    cli(*new_args(upload, backend.target))
    place = tmp_path / "place"
    place.mkdir()
    (place / "file").write_text("x")
    given = [a.format(tmp=place) for a in args]
    result = cli("rollout", "export", "r1", *given, "--db", backend.target, expect=2)
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert folder(place) == {"file": b"x"}


def test_export_of_an_unknown_rollout_is_bad_input(
    upload: Path, backend: Backend, tmp_path: Path
) -> None:
    cli(*new_args(upload, backend.target))
    out = tmp_path / "out"
    out.mkdir()
    result = cli("rollout", "export", "nope", "--out", out, "--db", backend.target, expect=2)
    assert "nope" in result.stderr
    assert folder(out) == {}


# --- a database an earlier certflow wrote ----------------------------------------------------------


def test_a_database_of_an_earlier_certflow_shows_its_rollouts_have_no_identity(
    tmp_path: Path,
) -> None:
    db = tmp_path / "certflow.db"
    shutil.copyfile(OLD_DATABASE, db)
    when = "2026-07-01T15:00:00+00:00"
    # A command on it first (it upgrades the database, which a read never does).
    cli("rollout", "report", "distributing", "c", "installed", "--db", db, "--now", when)
    text = cli("rollout", "status", "distributing", "--db", db, "--now", when).stdout
    assert "Identity:         none: made from dates alone, no certificate recorded" in text
    data: dict[str, Any] = as_json(
        cli("rollout", "status", "distributing", "--db", db, "--now", when, "--json")
    )
    assert data["identity"] is None
    assert data["counts"]["installed"] == 2
    listed = cli("rollout", "list", "--db", db, "--now", when).stdout
    assert listed.count("(no identity)") == 2
    assert [r["identity"] for r in as_json(cli("rollout", "list", "--db", db, "--json"))] == [
        None,
        None,
    ]
    out = tmp_path / "out"
    out.mkdir()
    result = cli("rollout", "export", "public", "--out", out, "--db", db, expect=2)
    assert "rollout public has no identity" in result.stderr
    assert folder(out) == {}


def test_export_reads_only_it_works_on_a_read_only_database_and_leaves_nothing_beside_it(
    upload: Path, tmp_path: Path
) -> None:
    place = tmp_path / "db"
    place.mkdir()
    db = place / "certflow.db"
    cli(*new_args(upload, db))
    before = folder(place)
    db.chmod(0o444)
    place.chmod(0o555)
    out = tmp_path / "out"
    out.mkdir()
    try:
        cli("rollout", "export", "r1", "--out", out, "--db", db)
        assert folder(place) == before
    finally:
        place.chmod(0o755)
        db.chmod(0o644)
    assert sorted(folder(out)) == sorted(PUBLIC_FILES)
