"""RSA keys, CSRs, writing server.key/server.csr, and the legacy openssl configuration."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from hypothesis import HealthCheck, given, settings

from certflow.certs import (
    CsrInfo,
    MaterialError,
    Subject,
    create_csr,
    csr_to_pem,
    decrypt_key,
    encrypt_key,
    generate_key,
    inspect_csr,
    key_to_pem,
    load_key,
    openssl_config,
    read_csr,
    write_key_and_csr,
)
from certflow.core.errors import InvalidInput

from .factory import ec_key, rsa_key
from .strategies import subjects

SUBJECT = Subject.create(
    country="IN",
    state="Tamil Nadu",
    locality="Chennai",
    organization="Example Pvt Ltd",
    organizational_unit="IT",
    common_name="mdm.example.com",
    sans="mdm.example.com, *.devices.example.com, 192.0.2.10, 2001:db8::10",
)


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_generate_key_sizes(bits: int) -> None:
    key = generate_key(bits)
    assert key.key_size == bits
    assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("bits", [1024, 2047, 8192])
def test_other_key_sizes_are_refused(bits: int) -> None:
    with pytest.raises(InvalidInput, match=f"RSA key size {bits} is not supported"):
        generate_key(bits)


def test_csr_carries_subject_sans_and_verifies() -> None:
    info = inspect_csr(csr_to_pem(create_csr(SUBJECT, rsa_key())))
    assert info == CsrInfo(
        subject=SUBJECT.x509_name(),
        sans=SUBJECT.sans,
        key_type="RSA",
        key_size=2048,
        signature_valid=True,
        signature_algorithm="sha256WithRSAEncryption",
    )
    assert info.ok
    assert info.common_name == "mdm.example.com"


def test_csr_der_is_read_too() -> None:
    csr = create_csr(SUBJECT, rsa_key())
    assert inspect_csr(csr.public_bytes(serialization.Encoding.DER)).signature_valid


def test_tampered_csr_signature_is_invalid() -> None:
    der = bytearray(create_csr(SUBJECT, rsa_key()).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    info = inspect_csr(bytes(der))
    assert not info.signature_valid
    assert not info.ok
    assert info.problems == (
        "its signature does not verify: the request was altered, or not signed by the key it "
        "carries",
    )


def test_a_small_rsa_key_says_why_the_csr_is_unusable() -> None:
    info = inspect_csr(_foreign_csr(rsa_key(1024)))
    assert info.problems == ("its RSA key has 1024 bits; at least 2048 are needed",)
    assert inspect_csr(create_csr(SUBJECT, rsa_key())).problems == ()


def _foreign_csr(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    """A CSR certflow would not make (another tool's key), as PEM."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(SUBJECT.x509_name())
        .sign(key, hashes.SHA256())
    )
    return csr_to_pem(csr)


def test_csr_needs_an_rsa_key() -> None:
    with pytest.raises(InvalidInput, match="RSA"):
        create_csr(SUBJECT, ec_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(("data", "code"), [(b"", "empty"), (b"junk", "unparseable")])
def test_bad_csr_input(data: bytes, code: str) -> None:
    with pytest.raises(MaterialError) as caught:
        read_csr(data, source="request.csr")
    assert caught.value.code == code
    assert str(caught.value).startswith("request.csr: ")


def test_encrypt_then_decrypt_round_trip() -> None:
    plain = key_to_pem(rsa_key())
    encrypted = encrypt_key(plain, "s3cret")
    assert b"ENCRYPTED PRIVATE KEY" in encrypted
    assert decrypt_key(encrypted, "s3cret") == plain
    assert load_key(decrypted := decrypt_key(encrypted, b"s3cret")).public_key() == (
        rsa_key().public_key()
    )
    assert b"ENCRYPTED" not in decrypted


def test_decrypting_with_a_wrong_passphrase() -> None:
    encrypted = key_to_pem(rsa_key(), "right")
    with pytest.raises(MaterialError) as caught:
        decrypt_key(encrypted, "wrong", source="server.key")
    assert caught.value.code == "bad_password"
    assert str(caught.value).startswith("server.key: wrong password")


def test_loading_an_encrypted_key_without_passphrase() -> None:
    with pytest.raises(MaterialError) as caught:
        load_key(key_to_pem(rsa_key(), "right"), source="server.key")
    assert caught.value.code == "password_required"
    assert "server.key" in str(caught.value)


def test_empty_passphrase_is_refused_for_encryption() -> None:
    with pytest.raises(InvalidInput, match="passphrase is empty"):
        encrypt_key(key_to_pem(rsa_key()), "")


def test_encrypting_an_encrypted_key_asks_for_its_password() -> None:
    with pytest.raises(MaterialError) as caught:
        encrypt_key(key_to_pem(rsa_key(), "one"), "two")
    assert caught.value.code == "password_required"


def test_an_encrypted_key_is_re_encrypted_with_its_current_passphrase() -> None:
    again = encrypt_key(key_to_pem(rsa_key(), "one"), "two", current_passphrase="one")
    assert load_key(again, "two").public_key() == rsa_key().public_key()
    with pytest.raises(MaterialError) as caught:
        encrypt_key(key_to_pem(rsa_key(), "one"), "two", current_passphrase="three")
    assert caught.value.code == "bad_password"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_key_and_csr_backs_up_and_never_overwrites_a_backup(tmp_path: Path) -> None:
    first, second, third = rsa_key(2048, 0), rsa_key(2048, 3), rsa_key(2048, 4)
    written = write_key_and_csr(tmp_path, first, create_csr(SUBJECT, first))
    assert written.backups == ()
    assert _mode(written.key) == 0o600
    assert _mode(written.csr) == 0o644
    v1_key, v1_csr = written.key.read_bytes(), written.csr.read_bytes()

    written = write_key_and_csr(tmp_path, second, create_csr(SUBJECT, second))
    assert written.backups == (tmp_path / "server.key.bak", tmp_path / "server.csr.bak")
    assert (tmp_path / "server.key.bak").read_bytes() == v1_key
    assert (tmp_path / "server.csr.bak").read_bytes() == v1_csr
    assert _mode(tmp_path / "server.key.bak") == 0o600
    v2_key = written.key.read_bytes()

    written = write_key_and_csr(tmp_path, third, create_csr(SUBJECT, third))
    assert written.backups == (tmp_path / "server.key.bak.1", tmp_path / "server.csr.bak.1")
    assert (tmp_path / "server.key.bak").read_bytes() == v1_key  # untouched
    assert (tmp_path / "server.key.bak.1").read_bytes() == v2_key
    assert load_key(written.key.read_bytes()).public_key() == third.public_key()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "server.csr",
        "server.csr.bak",
        "server.csr.bak.1",
        "server.key",
        "server.key.bak",
        "server.key.bak.1",
    ]  # no temporary files left behind


def test_written_key_can_be_encrypted(tmp_path: Path) -> None:
    written = write_key_and_csr(
        tmp_path, rsa_key(), create_csr(SUBJECT, rsa_key()), passphrase="pw"
    )
    assert b"ENCRYPTED PRIVATE KEY" in written.key.read_bytes()
    assert load_key(written.key.read_bytes(), "pw").public_key() == rsa_key().public_key()


def test_key_is_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        written = write_key_and_csr(tmp_path, rsa_key(), create_csr(SUBJECT, rsa_key()))
    finally:
        os.umask(old)
    assert _mode(written.key) == 0o600


def test_write_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not an existing folder"):
        write_key_and_csr(tmp_path / "nope", rsa_key(), create_csr(SUBJECT, rsa_key()))


def _openssl_csr(openssl: str, config: str, folder: Path) -> x509.CertificateSigningRequest:
    (folder / "opensslsan.conf").write_text(config, encoding="utf-8")
    (folder / "server.key").write_bytes(key_to_pem(rsa_key()))
    subprocess.run(
        [openssl, "req", "-new", "-config", "opensslsan.conf", "-key", "server.key",
         "-out", "server.csr"],
        cwd=folder,
        check=True,
        capture_output=True,
    )  # fmt: skip
    return x509.load_pem_x509_csr((folder / "server.csr").read_bytes())


def _same_request(
    ours: x509.CertificateSigningRequest, theirs: x509.CertificateSigningRequest
) -> None:
    assert [(a.oid, a.value) for a in theirs.subject] == [(a.oid, a.value) for a in ours.subject]
    assert inspect_csr(theirs).sans == inspect_csr(ours).sans
    assert theirs.is_signature_valid


def test_openssl_config_gives_the_same_csr(openssl: str, tmp_path: Path) -> None:
    config = openssl_config(SUBJECT)
    assert "DNS.2 = *.devices.example.com" in config
    assert "IP.2 = 2001:db8::10" in config
    _same_request(create_csr(SUBJECT, rsa_key()), _openssl_csr(openssl, config, tmp_path))


def test_openssl_config_newkey_command_works(openssl: str, tmp_path: Path) -> None:
    (tmp_path / "opensslsan.conf").write_text(openssl_config(SUBJECT), encoding="utf-8")
    subprocess.run(
        [openssl, "req", "-new", "-config", "opensslsan.conf", "-newkey", "rsa:2048", "-nodes",
         "-keyout", "server.key", "-out", "server.csr"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )  # fmt: skip
    info = inspect_csr((tmp_path / "server.csr").read_bytes())
    assert (info.key_size, info.sans, info.subject) == (2048, SUBJECT.sans, SUBJECT.x509_name())


def test_openssl_config_escapes_special_characters(openssl: str, tmp_path: Path) -> None:
    subject = Subject.create(
        country="FR",
        state="Île-de-France",
        locality="Paris # 1 $HOME \\ \"q\" 'a'",
        organization="Ça & Co; = ok",
        common_name="10.9.8.7",
    )
    _same_request(
        create_csr(subject, rsa_key()), _openssl_csr(openssl, openssl_config(subject), tmp_path)
    )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=subjects())
def test_openssl_config_matches_for_generated_subjects(
    openssl: str, tmp_path: Path, subject: Subject
) -> None:
    _same_request(
        create_csr(subject, rsa_key()), _openssl_csr(openssl, openssl_config(subject), tmp_path)
    )


def test_the_backups_of_one_run_share_a_number(tmp_path: Path) -> None:
    first, second, third = rsa_key(2048, 0), rsa_key(2048, 3), rsa_key(2048, 4)
    write_key_and_csr(tmp_path, first, create_csr(SUBJECT, first))
    write_key_and_csr(tmp_path, second, create_csr(SUBJECT, second))  # server.*.bak
    (tmp_path / "server.key.bak").unlink()  # an administrator tidied up one backup
    written = write_key_and_csr(tmp_path, third, create_csr(SUBJECT, third))
    assert written.backups == (tmp_path / "server.key.bak.1", tmp_path / "server.csr.bak.1")
    assert not (tmp_path / "server.key.bak").exists()  # the lone number is not reused
