"""The ``certflow`` command line, run as a user runs it: ``python -m certflow ...``."""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certflow.certs import inspect_csr, load_key
from tests.certs.factory import DAY, HOST, NOW, Pki, key_pem, pem, pki, rsa_key

FLAGS = [
    "--country", "IN", "--state", "Tamil Nadu", "--locality", "Chennai",
    "--org", "Example Ltd", "--common-name", "mdm.example.com",
    "--san", "192.0.2.1, *.dev.example.com",
]  # fmt: skip


#: The address space of one run: far more than certflow needs, little enough that an
#: unbounded read ends in a MemoryError (a failed test) instead of exhausting the machine.
MEMORY = 1024**3


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def certflow(
    *args: str | Path, cwd: Path, stdin: str = "", expect: int = 0, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the command line; check its exit code and that no traceback ever shows."""
    done = subprocess.run(
        [sys.executable, "-m", "certflow", *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_limit_memory,
    )
    assert "Traceback" not in done.stderr + done.stdout
    assert done.returncode == expect, done.stderr
    if expect == 2:
        assert done.stderr.startswith("certflow: error: ")
    return done


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pki]:
    """A folder with the upload of a good PKI in several forms."""
    folder = tmp_path_factory.mktemp("upload")
    p = pki()
    (folder / "server.crt").write_bytes(pem(p.leaf))
    (folder / "chain.pem").write_bytes(pem(p.root, p.intermediate))  # wrong order on purpose
    (folder / "server.key").write_bytes(key_pem(p.leaf_key))
    (folder / "server.pfx").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"mdm",
            p.leaf_key,  # type: ignore[arg-type]
            p.leaf,
            [p.intermediate, p.root],
            serialization.BestAvailableEncryption(b"pfx-pass"),
        )
    )
    (folder / "pfx-pass.txt").write_text("pfx-pass\n")
    (folder / "junk.cer").write_bytes(b"\x00\x01junk" * 50)
    return folder, p


COMMANDS = [
    [], ["csr"], ["csr", "new"], ["csr", "show"], ["csr", "openssl-config"], ["key"],
    ["key", "encrypt"], ["key", "decrypt"], ["cert"], ["cert", "inspect"], ["cert", "check"],
    ["cert", "export"], ["simulate"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "certflow")
def test_help_everywhere(command: list[str], tmp_path: Path) -> None:
    done = certflow(*command, "--help", cwd=tmp_path)
    assert done.stdout.startswith(f"Usage: certflow {' '.join(command)}".rstrip())


def test_console_script_is_installed(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "certflow"
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "csr" in done.stdout


def test_simulate_runs_the_main_job_and_refuses_a_bad_fleet_size(tmp_path: Path) -> None:
    done = certflow("simulate", "--devices", "200", "--seed", "3", cwd=tmp_path)
    assert "view details" in done.stdout.lower()
    assert "import" in done.stdout
    quiet = certflow("simulate", "--devices", "200", "--seed", "3", "--quiet", cwd=tmp_path)
    assert quiet.stdout.startswith("seed 3:")
    assert "--devices" in certflow("simulate", "--devices", "0", cwd=tmp_path, expect=2).stderr


def test_unknown_command_and_missing_option(tmp_path: Path) -> None:
    assert "No such command 'bogus'" in certflow("bogus", cwd=tmp_path, expect=2).stderr
    assert "--host" in certflow("cert", "check", "x.pem", cwd=tmp_path, expect=2).stderr


def test_csr_new_with_flags_backs_up_the_existing_key(tmp_path: Path) -> None:
    certflow("csr", "new", *FLAGS, "--out", tmp_path, cwd=tmp_path)
    key_file, csr_file = tmp_path / "server.key", tmp_path / "server.csr"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first_key = key_file.read_bytes()
    info = inspect_csr(csr_file.read_bytes())
    assert info.ok
    assert [str(entry) for entry in info.sans] == [
        "mdm.example.com",
        "192.0.2.1",
        "*.dev.example.com",
    ]
    assert (
        info.subject.rfc4514_string()
        == "CN=mdm.example.com,O=Example Ltd,L=Chennai,ST=Tamil Nadu,C=IN"
    )

    done = certflow("csr", "new", *FLAGS, "--out", tmp_path, "--bits", "3072", cwd=tmp_path)
    assert f"Backed up server.key to {tmp_path / 'server.key.bak'}" in done.stdout
    assert (tmp_path / "server.key.bak").read_bytes() == first_key
    assert stat.S_IMODE((tmp_path / "server.key.bak").stat().st_mode) == 0o600
    assert key_file.read_bytes() != first_key
    assert inspect_csr(csr_file.read_bytes()).key_size == 3072

    done = certflow("csr", "new", *FLAGS, "--out", tmp_path, "--json", cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["backups"] == [
        str(tmp_path / "server.key.bak.1"),
        str(tmp_path / "server.csr.bak.1"),
    ]
    assert (tmp_path / "server.key.bak").read_bytes() == first_key  # never overwritten


def test_csr_new_prompts_like_the_source_tool(tmp_path: Path) -> None:
    answers = "UK\ngb\nEngland\nLondon\nExample plc\n\nmdm.example.co.uk\nwww.example.co.uk\n"
    done = certflow("csr", "new", cwd=tmp_path, stdin=answers)
    assert "did you mean GB" in done.stderr  # asked again, no need to start over
    info = inspect_csr((tmp_path / "server.csr").read_bytes())
    assert [str(entry) for entry in info.sans] == ["mdm.example.co.uk", "www.example.co.uk"]
    assert (
        info.subject.rfc4514_string()
        == "CN=mdm.example.co.uk,O=Example plc,L=London,ST=England,C=GB"
    )


def test_csr_new_with_encrypted_key(tmp_path: Path) -> None:
    certflow(
        "csr", "new", *FLAGS, "--encrypt", "--new-password-file", "-", cwd=tmp_path, stdin="k3y\n"
    )
    assert load_key((tmp_path / "server.key").read_bytes(), "k3y").key_size == 2048  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--country", "UK", *FLAGS[2:]], "country 'UK' is not an ISO 3166-1 alpha-2"),
        (["--no-input", "--country", "IN"], "missing --state, --locality, --org, --common-name"),
        ([*FLAGS, "--san", "a.*.example.com"], "whole left-most label"),
        ([*FLAGS, "--bits", "1024"], "'1024' is not one of"),
        ([*FLAGS, "--out", "no/such/folder"], "not an existing folder"),
    ],
)
def test_csr_new_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    assert message in certflow("csr", "new", *args, cwd=tmp_path, expect=2).stderr
    assert not (tmp_path / "server.key").exists()


def test_csr_show(tmp_path: Path) -> None:
    certflow("csr", "new", *FLAGS, cwd=tmp_path)
    done = certflow("csr", "show", "server.csr", cwd=tmp_path)
    assert "Signature: sha256WithRSAEncryption, valid" in done.stdout
    data = json.loads(certflow("csr", "show", "server.csr", "--json", cwd=tmp_path).stdout)
    assert (data["ok"], data["key_size"], data["common_name"]) == (True, 2048, "mdm.example.com")
    damaged = bytearray((tmp_path / "server.csr").read_bytes())
    (tmp_path / "bad.csr").write_bytes(damaged.replace(b"-----END", b"x-----END", 1))
    assert "server.csr" not in certflow("csr", "show", "bad.csr", cwd=tmp_path, expect=2).stderr


def test_csr_show_tampered_signature_exits_1(tmp_path: Path) -> None:
    certflow("csr", "new", *FLAGS, cwd=tmp_path)
    from cryptography import x509

    der = bytearray(
        x509.load_pem_x509_csr((tmp_path / "server.csr").read_bytes()).public_bytes(
            serialization.Encoding.DER
        )
    )
    der[-5] ^= 0xFF
    (tmp_path / "tampered.der").write_bytes(bytes(der))
    done = certflow("csr", "show", "tampered.der", cwd=tmp_path, expect=1)
    assert "INVALID" in done.stdout
    assert done.stdout.splitlines()[-1] == (
        "Result:    NOT usable: its signature does not verify: the request was altered, or not "
        "signed by the key it carries"
    )
    data = json.loads(
        certflow("csr", "show", "tampered.der", "--json", cwd=tmp_path, expect=1).stdout
    )
    assert data["problems"] == [
        "its signature does not verify: the request was altered, or not signed by the key it "
        "carries"
    ]


def test_openssl_config(tmp_path: Path) -> None:
    done = certflow("csr", "openssl-config", *FLAGS, cwd=tmp_path)
    assert (
        "[ alt_names ]\nDNS.1 = mdm.example.com\nIP.1 = 192.0.2.1\nDNS.2 = *.dev.example.com\n"
        in done.stdout
    )
    certflow("csr", "openssl-config", *FLAGS, "--out", "opensslsan.conf", cwd=tmp_path)
    assert (tmp_path / "opensslsan.conf").read_text() == done.stdout


def test_key_encrypt_and_decrypt(tmp_path: Path) -> None:
    (tmp_path / "server.key").write_bytes(key_pem(rsa_key()))
    (tmp_path / "pass.txt").write_text("secret\n")
    certflow(
        "key",
        "encrypt",
        "server.key",
        "--out",
        "enc.key",
        "--new-password-file",
        "pass.txt",
        cwd=tmp_path,
    )
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "enc.key").read_bytes()
    assert stat.S_IMODE((tmp_path / "enc.key").stat().st_mode) == 0o600
    done = certflow(
        "key",
        "decrypt",
        "enc.key",
        "--out",
        "server.key",
        "--passphrase-file",
        "-",
        cwd=tmp_path,
        stdin="secret\n",
    )
    assert "Backed up server.key" in done.stderr
    assert (tmp_path / "server.key.bak").read_bytes() == key_pem(rsa_key())
    assert (tmp_path / "server.key").read_bytes() == key_pem(rsa_key())


def test_key_decrypt_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    (tmp_path / "enc.key").write_bytes(
        rsa_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    wrong = certflow(
        "key",
        "decrypt",
        "enc.key",
        "--out",
        "-",
        "--passphrase-file",
        "-",
        cwd=tmp_path,
        stdin="wrong\n",
        expect=2,
    )
    assert (
        wrong.stderr == "certflow: error: enc.key: wrong password for the encrypted private key\n"
    )
    missing = certflow("key", "decrypt", "enc.key", "--out", "-", cwd=tmp_path, expect=2)
    assert missing.stderr == (
        "certflow: error: Key password needed: give it with --password-file (or '-' for stdin) "
        "(see 'certflow key decrypt --help')\n"
    )
    done = certflow(
        "key",
        "decrypt",
        "enc.key",
        "--out",
        "-",
        "--passphrase-file",
        "-",
        cwd=tmp_path,
        stdin="right\n",
    )
    assert done.stdout.encode() == key_pem(rsa_key())


def test_cert_inspect_orders_the_upload(files: tuple[Path, Pki]) -> None:
    folder, _ = files
    data = json.loads(
        certflow(
            "cert", "inspect", "chain.pem", "server.crt", "server.key", "--json", cwd=folder
        ).stdout
    )
    assert [c["role"] for c in data["certificates"]] == ["leaf", "intermediate", "root"]
    assert data["certificates"][0]["sans"] == [HOST]
    assert data["private_key"] == {"type": "RSA 2048 bits", "matches_leaf": True}
    text = certflow(
        "cert", "inspect", "server.pfx", "--password-file", "pfx-pass.txt", cwd=folder
    ).stdout
    assert text.startswith(f"Leaf: CN={HOST},O=certflow tests\n")
    assert "Private key: RSA 2048 bits, matches the leaf" in text


def test_cert_inspect_bad_input(files: tuple[Path, Pki]) -> None:
    folder, _ = files
    missing = certflow("cert", "inspect", "server.pfx", cwd=folder, expect=2)
    assert "server.pfx: this PKCS#12 (PFX) file is password-protected" in missing.stderr
    assert (
        "junk.cer: not a certificate"
        in certflow("cert", "inspect", "junk.cer", cwd=folder, expect=2).stderr
    )
    assert (
        "nope.pem: no such file"
        in certflow("cert", "inspect", "nope.pem", cwd=folder, expect=2).stderr
    )
    (folder / "wrong.txt").write_text("nope\n")
    wrong = certflow(
        "cert", "inspect", "server.pfx", "--password-file", "wrong.txt", cwd=folder, expect=2
    )
    assert "wrong password" in wrong.stderr


AT = NOW.isoformat()


def test_cert_check_good(files: tuple[Path, Pki]) -> None:
    folder, _ = files
    done = certflow(
        "cert",
        "check",
        "server.crt",
        "chain.pem",
        "--key",
        "server.key",
        "--host",
        HOST,
        "--at",
        AT,
        cwd=folder,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == f"Checked for {HOST} at 2026-03-01 12:00 UTC"
    assert lines[1] == f"Hosts: {HOST} covered"
    assert lines[2].split() == ["SEVERITY", "CODE", "MESSAGE"]
    assert lines[3].split()[:2] == ["info", "trust_private"]
    assert lines[-1].startswith(
        "Result: ok (0 errors, 0 warnings); recommended import: Distribute Root"
    )


def test_cert_check_errors_exit_1(files: tuple[Path, Pki]) -> None:
    folder, p = files
    later = (p.leaf.not_valid_after_utc + 2 * DAY).isoformat()
    done = certflow(
        "cert",
        "check",
        "server.pfx",
        "--password-file",
        "pfx-pass.txt",
        "--host",
        "10.0.0.9",
        "--at",
        later,
        cwd=folder,
        expect=1,
    )
    table = [line.split()[:2] for line in done.stdout.splitlines()[3:-1]]
    assert table == [["error", "expired"], ["error", "host_mismatch"], ["info", "trust_private"]]
    assert "Result: NOT usable (2 errors, 0 warnings)" in done.stdout


def test_cert_check_json(files: tuple[Path, Pki]) -> None:
    folder, _ = files
    done = certflow(
        "cert",
        "check",
        "server.crt",
        "--host",
        HOST,
        "--at",
        "2026-03-01T17:30:00+05:30",
        "--json",
        cwd=folder,
        expect=1,
    )
    data = json.loads(done.stdout)
    assert data["ok"] is False
    assert data["checked_at"] == AT  # the same instant, in UTC
    assert {f["code"] for f in data["findings"]} == {
        "no_private_key",
        "chain_incomplete",
        "trust_private",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["server.crt", "--host", HOST, "--at", "yesterday"],
            "'yesterday' is not an ISO 8601 time",
        ),
        (["server.crt", "--host", "bad host"], "host 'bad host'"),
        (["junk.cer", "--host", HOST], "junk.cer: "),
        (
            ["server.crt", "--host", HOST, "--key", "server.crt"],
            "server.crt: contains no private key",
        ),
    ],
)
def test_cert_check_bad_input_exits_2(
    args: list[str], message: str, files: tuple[Path, Pki]
) -> None:
    folder, _ = files
    assert message in certflow("cert", "check", *args, cwd=folder, expect=2).stderr


# --- what a first real user hit: bounded reads, regular files only, honest names -------------


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    """``enc.key`` (passphrase ``right``) and ``pass.txt`` holding the passphrase."""
    (tmp_path / "enc.key").write_bytes(key_pem_encrypted(b"right"))
    (tmp_path / "pass.txt").write_text("right\n")
    return tmp_path


def key_pem_encrypted(passphrase: bytes) -> bytes:
    return rsa_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


@pytest.mark.parametrize("kind", ["/dev/full", "link to /dev/zero", "fifo", "folder"])
def test_key_decrypt_refuses_an_out_that_is_not_a_regular_file(
    kind: str, encrypted_key: Path
) -> None:
    folder = encrypted_key
    out = folder / "out.key"
    if kind == "/dev/full":
        out = Path("/dev/full")
    elif kind == "link to /dev/zero":
        out.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out.mkdir()
    before = sorted(os.listdir(out.parent))
    done = certflow(
        "key", "decrypt", "enc.key", "--out", out, "--passphrase-file", "pass.txt",
        cwd=folder, expect=2, timeout=30,
    )  # fmt: skip
    assert done.stderr.startswith(f"certflow: error: {out} exists and is ")
    assert "certflow only replaces regular files" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert sorted(os.listdir(out.parent)) == before  # no backup, no temporary file


def test_a_passphrase_file_is_read_with_a_bound(encrypted_key: Path) -> None:
    done = certflow(
        "key", "decrypt", "enc.key", "--out", "-", "--passphrase-file", "/dev/zero",
        cwd=encrypted_key, expect=2, timeout=30,
    )  # fmt: skip
    assert done.stderr == (
        "certflow: error: /dev/zero: larger than 4 KiB; a password file holds one line of text\n"
    )
    with open("/dev/zero", "rb") as zeros:
        from_stdin = subprocess.run(
            [sys.executable, "-m", "certflow", "key", "decrypt", "enc.key", "--out", "-",
             "--passphrase-file", "-"],
            cwd=encrypted_key, stdin=zeros, capture_output=True, timeout=30, check=False,
            preexec_fn=_limit_memory,
        )  # fmt: skip
    assert from_stdin.returncode == 2
    assert from_stdin.stderr == (
        b"certflow: error: standard input: larger than 4 KiB; a password file holds one line "
        b"of text\n"
    )


def test_a_passphrase_file_that_is_not_utf8_is_a_clear_error(encrypted_key: Path) -> None:
    (encrypted_key / "latin1.txt").write_bytes(b"r\xe9ght\n")
    done = certflow(
        "key", "decrypt", "enc.key", "--out", "-", "--passphrase-file", "latin1.txt",
        cwd=encrypted_key, expect=2,
    )  # fmt: skip
    assert done.stderr == (
        "certflow: error: latin1.txt: the password is not UTF-8 text (byte 0xe9 at offset 1); "
        "save the file as UTF-8\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["key", "decrypt", "enc.key", "--passphrase-file", "pass.txt"],
        ["key", "encrypt", "plain.key", "--new-passphrase-file", "pass.txt"],
        ["csr", "openssl-config", *FLAGS],
    ],
    ids=["key decrypt", "key encrypt", "csr openssl-config"],
)
def test_an_out_into_a_missing_folder_names_the_target(
    command: list[str], encrypted_key: Path
) -> None:
    (encrypted_key / "plain.key").write_bytes(key_pem(rsa_key()))
    done = certflow(*command, "--out", "no/such/out.key", cwd=encrypted_key, expect=2)
    assert done.stderr == (
        "certflow: error: no/such/out.key: cannot write it: the folder no/such does not exist\n"
    )


#: What ``--out`` names, for every command that has one: a folder (``DIR``) for the commands
#: that write several files, a file (``FILE``) for those that write one.
OUT_TAKES = {
    "csr new": "DIR",
    "cert export": "DIR",
    "rollout export": "DIR",
    "csr openssl-config": "FILE",
    "key decrypt": "FILE",
    "key encrypt": "FILE",
}


def test_every_out_option_says_whether_it_takes_a_folder_or_a_file() -> None:
    import click
    from click.testing import CliRunner

    from certflow.cli._lazy import subcommands

    def walk(group: click.Group, path: str) -> Iterator[tuple[str, click.Command]]:
        for name, command in subcommands(group).items():
            spelled = f"{path} {name}".strip()
            if isinstance(command, click.Group):
                yield from walk(command, spelled)
            else:
                yield spelled, command

    found = {
        name: param
        for name, command in walk(main_group(), "")
        for param in command.params
        if "--out" in param.opts
    }
    assert set(found) == set(OUT_TAKES), "a command with --out that this table does not know"
    for name, param in found.items():
        takes = OUT_TAKES[name]
        assert param.metavar == takes, name
        help_text = getattr(param, "help", "") or ""
        assert help_text.startswith("The folder " if takes == "DIR" else "The file "), name
        shown = CliRunner().invoke(
            main_group(), [*name.split(), "--help"], prog_name="certflow", terminal_width=200
        )
        assert f"--out {takes}" in shown.stdout, name


def main_group() -> Any:
    from certflow.cli import main

    return main


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["csr", "new"], "{tmp}/gone: not an existing folder; create it first"),
        (["cert", "export", "server.crt"], "{tmp}/gone: not an existing folder; create it first"),
        (
            ["rollout", "export", "r1", "--db", "{tmp}/certflow.db"],
            "{tmp}/gone: not an existing folder; create it first",
        ),
        (
            ["csr", "openssl-config"],
            "{tmp}/gone/x: cannot write it: the folder {tmp}/gone does not exist",
        ),
    ],
    ids=["csr new", "cert export", "rollout export", "csr openssl-config"],
)
def test_a_missing_out_folder_is_one_line_naming_it_before_any_question(
    command: list[str], message: str, tmp_path: Path
) -> None:
    """No subject flags: the CSR commands would ask for the subject, and the missing
    folder is said first; `rollout export` says it before it looks at the database."""
    from click.testing import CliRunner

    (tmp_path / "server.crt").write_bytes(pem(pki().leaf))
    target = f"{tmp_path}/gone" + ("/x" if "openssl-config" in command else "")
    args = [a.format(tmp=tmp_path) for a in command]
    result = CliRunner().invoke(
        main_group(), [*args, "--out", target], prog_name="certflow", input=""
    )
    assert result.exit_code == 2
    assert result.stderr == f"certflow: error: {message.format(tmp=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.crt"]


# --- one spelling for each option -----------------------------------------------------------


@pytest.fixture(scope="module")
def options_folder(files: tuple[Path, Pki], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The upload files, plus a plain key, an encrypted key and a password file."""
    folder = tmp_path_factory.mktemp("options")
    source, _ = files
    for path in source.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "plain.key").write_bytes(key_pem(rsa_key()))
    (folder / "enc.key").write_bytes(key_pem_encrypted(b"right"))
    (folder / "pass.txt").write_text("right\n")
    return folder


# (command, arguments): every error of the certificate commands that names an option.
ERRORS_NAMING_OPTIONS: list[tuple[list[str], list[str]]] = [
    (["csr", "new"], ["--no-input", "--country", "IN"]),
    (["csr", "new"], [*FLAGS, "--new-password-file", "pass.txt"]),
    (["csr", "new"], [*FLAGS, "--encrypt"]),
    (["csr", "new"], [*FLAGS, "--bits", "1024"]),
    (["csr", "openssl-config"], ["--no-input"]),
    (["key", "decrypt"], ["enc.key", "--out", "-"]),
    (["key", "decrypt"], ["enc.key"]),
    (["key", "encrypt"], ["enc.key", "--out", "-"]),
    (["key", "encrypt"], ["enc.key", "--out", "-", "--password-file", "pass.txt"]),
    (["key", "encrypt"], ["plain.key", "--out", "-"]),
    (["key", "encrypt"], ["plain.key", "--out", "-", "--passphrase-file", "pass.txt"]),
    (["cert", "inspect"], ["server.pfx"]),
    (["cert", "check"], ["server.pfx", "--host", HOST]),
    (["cert", "check"], ["server.crt"]),
    (["cert", "check"], ["server.crt", "--host", HOST, "--now", "yesterday"]),
    (["cert", "check"], ["server.crt", "--host", HOST, "--at", "yesterday"]),
    (["cert", "export"], ["server.pfx", "--out", "."]),
    (["cert", "export"], ["server.pfx", "--password-file", "pfx-pass.txt", "--out", "."]),
    (["cert", "export"], ["server.crt"]),
]


def _options(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))


@pytest.mark.parametrize(
    ("command", "args"), ERRORS_NAMING_OPTIONS, ids=lambda v: " ".join(v) if v else ""
)
def test_every_option_an_error_names_is_an_option_of_that_command(
    command: list[str], args: list[str], options_folder: Path
) -> None:
    done = certflow(*command, *args, cwd=options_folder, expect=2)
    named = _options(done.stderr)
    assert named, f"the error names no option: {done.stderr}"
    offered = _options(certflow(*command, "--help", cwd=options_folder).stdout)
    assert named <= offered, f"{done.stderr} names {named - offered}, not in --help"


def test_password_options_are_spelled_the_same_in_every_command(options_folder: Path) -> None:
    for command in (
        ["key", "decrypt"], ["key", "encrypt"], ["cert", "inspect"], ["cert", "check"],
        ["cert", "export"],
    ):  # fmt: skip
        offered = _options(certflow(*command, "--help", cwd=options_folder).stdout)
        assert {"--password-file", "--passphrase-file"} <= offered, command
    for command in (["csr", "new"], ["key", "encrypt"], ["cert", "export"]):
        offered = _options(certflow(*command, "--help", cwd=options_folder).stdout)
        assert {"--new-password-file", "--new-passphrase-file"} <= offered, command


# --- re-encrypting an encrypted key ---------------------------------------------------------


def test_key_encrypt_takes_the_current_password_of_an_encrypted_key(options_folder: Path) -> None:
    (options_folder / "new.txt").write_text("n3w\n")
    certflow(
        "key", "encrypt", "enc.key", "--out", "re.key", "--password-file", "pass.txt",
        "--new-password-file", "new.txt", cwd=options_folder,
    )  # fmt: skip
    again = (options_folder / "re.key").read_bytes()
    assert load_key(again, "n3w").public_key() == rsa_key().public_key()
    wrong = certflow(
        "key", "encrypt", "enc.key", "--out", "-", "--password-file", "new.txt",
        "--new-password-file", "new.txt", cwd=options_folder, expect=2,
    )  # fmt: skip
    assert wrong.stderr == (
        "certflow: error: enc.key: wrong password for the encrypted private key\n"
    )
    missing = certflow("key", "encrypt", "enc.key", "--out", "-", cwd=options_folder, expect=2)
    assert missing.stderr == (
        "certflow: error: Current password of enc.key needed: give it with --password-file "
        "(or '-' for stdin) (see 'certflow key encrypt --help')\n"
    )


# --- a real openssl CA ----------------------------------------------------------------------


def _run(*args: str | Path, cwd: Path) -> None:
    subprocess.run([*map(str, args)], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def openssl_ca(openssl: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root and an intermediate made with the real openssl, which signs server.csr twice:
    ``server.crt`` (SHA-256, the vendor procedure's name) and ``sha1.crt`` (SHA-1)."""
    folder = tmp_path_factory.mktemp("openssl-ca")
    (folder / "ca.ext").write_text(
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    (folder / "leaf.ext").write_text(
        f"subjectAltName=DNS:{HOST},IP:192.0.2.7\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key",
         "-out", "root.pem", "-subj", "/O=Example/CN=Example Root CA", "-days", "3650",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    _run(openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "inter.key",
         "-out", "inter.csr", "-subj", "/O=Example/CN=Example Issuing CA", cwd=folder)  # fmt: skip
    _run(openssl, "x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key",
         "-set_serial", "2", "-days", "3000", "-sha256", "-extfile", "ca.ext",
         "-out", "inter.pem", cwd=folder)  # fmt: skip
    certflow("csr", "new", *FLAGS, cwd=folder)  # the vendor procedure: server.key, server.csr
    for name, digest, serial in (("server.crt", "-sha256", "3"), ("sha1.crt", "-sha1", "4")):
        _run(openssl, "x509", "-req", "-in", "server.csr", "-CA", "inter.pem", "-CAkey",
             "inter.key", "-set_serial", serial, "-days", "90", digest, "-extfile", "leaf.ext",
             "-out", name, cwd=folder)  # fmt: skip
    return folder


def test_cert_check_of_a_sha1_leaf_from_openssl_blames_the_signature(openssl_ca: Path) -> None:
    done = certflow(
        "cert", "check", "sha1.crt", "inter.pem", "root.pem", "--key", "server.key",
        "--host", HOST, "--json", cwd=openssl_ca, expect=1,
    )  # fmt: skip
    findings = {f["code"]: f["message"] for f in json.loads(done.stdout)["findings"]}
    assert set(findings) == {"chain_incomplete", "weak_signature", "trust_private"}
    assert findings["chain_incomplete"].startswith(
        "the chain could not be verified because of the weak signature: the certificate is "
        "signed with SHA-1"
    )
    assert "not supplied" not in findings["chain_incomplete"]
    only_intermediate = certflow(
        "cert", "check", "sha1.crt", "inter.pem", "--key", "server.key", "--host", HOST,
        cwd=openssl_ca, expect=1,
    )  # fmt: skip
    assert "because of the weak signature" in only_intermediate.stdout
    # the root is what is missing, and the only certificate the message calls missing
    assert only_intermediate.stdout.count("not supplied") == 1
    assert (
        "besides, 'CN=Example Root CA,O=Example', which issued 'Example Issuing CA', was not "
        "supplied" in only_intermediate.stdout
    )
    good = certflow(
        "cert", "check", "server.crt", "inter.pem", "root.pem", "--key", "server.key",
        "--host", HOST, cwd=openssl_ca,
    )  # fmt: skip
    assert "Result: ok (0 errors, 0 warnings)" in good.stdout


# --- no raw warning on the terminal ---------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["default", "-W error"])
def test_an_openssl_pkcs7_bundle_puts_no_warning_on_the_terminal(
    strict: bool, openssl_ca: Path
) -> None:
    _run("openssl", "crl2pkcs7", "-nocrl", "-certfile", "server.crt", "-certfile", "inter.pem",
         "-certfile", "root.pem", "-out", "bundle.p7b", cwd=openssl_ca)  # fmt: skip
    flags = ["-W", "error"] if strict else []
    done = subprocess.run(
        [sys.executable, *flags, "-m", "certflow", "cert", "inspect", "bundle.p7b", "--json"],
        cwd=openssl_ca, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    roles = [c["role"] for c in json.loads(done.stdout)["certificates"]]
    assert roles == ["leaf", "intermediate", "root"]


# --- IDNA 2008 ------------------------------------------------------------------------------


def test_csr_new_and_cert_check_use_idna_2008(tmp_path: Path) -> None:
    flags = [*FLAGS[:8], "--common-name", "mdm.straße.de", "--san", "Faß.de", "--json"]
    data = json.loads(certflow("csr", "new", *flags, cwd=tmp_path).stdout)
    assert data["sans"] == ["mdm.xn--strae-oqa.de", "xn--fa-hia.de"]
    assert data["subject"].startswith("CN=mdm.xn--strae-oqa.de,")
    p = pki("mdm.xn--strae-oqa.de")
    (tmp_path / "idn.pem").write_bytes(pem(p.leaf, p.intermediate, p.root) + key_pem(p.leaf_key))
    for host, code in (("mdm.straße.de", 0), ("mdm.strasse.de", 1)):
        certflow("cert", "check", "idn.pem", "--host", host, "--now", NOW.isoformat(),
                 cwd=tmp_path, expect=code)  # fmt: skip


# --- several hosts --------------------------------------------------------------------------


def test_cert_check_checks_and_reports_every_host(files: tuple[Path, Pki]) -> None:
    folder, _ = files
    args = ["cert", "check", "server.pfx", "--password-file", "pfx-pass.txt", "--now", AT]
    done = certflow(*args, "--host", HOST, "--host", "10.0.0.9", "--host", "www.example.com",
                    cwd=folder, expect=1)  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0] == f"Checked for {HOST}, 10.0.0.9, www.example.com at 2026-03-01 12:00 UTC"
    assert lines[1] == f"Hosts: {HOST} covered, 10.0.0.9 NOT covered, www.example.com NOT covered"
    mismatches = [line for line in lines if line.startswith("error     host_mismatch")]
    assert [line.split()[2] for line in mismatches] == ["10.0.0.9", "www.example.com"]
    data = json.loads(certflow(*args, "--host", "10.0.0.9", "--host", HOST, "--json",
                               cwd=folder, expect=1).stdout)  # fmt: skip
    assert (data["hosts"], data["uncovered_hosts"]) == (["10.0.0.9", HOST], ["10.0.0.9"])
    assert certflow(*args, "--host", HOST, "--host", HOST.upper(), cwd=folder).stdout.startswith(
        f"Checked for {HOST} at"
    )


# --- paired backups -------------------------------------------------------------------------


def test_csr_new_backs_up_key_and_csr_under_one_number(tmp_path: Path) -> None:
    certflow("csr", "new", *FLAGS, cwd=tmp_path)
    certflow("csr", "new", *FLAGS, cwd=tmp_path)
    (tmp_path / "server.key.bak").unlink()
    data = json.loads(certflow("csr", "new", *FLAGS, "--json", cwd=tmp_path).stdout)
    assert data["backups"] == ["server.key.bak.1", "server.csr.bak.1"]


# --- wording --------------------------------------------------------------------------------


def test_cert_check_without_a_certificate_recommends_no_import_mode(
    files: tuple[Path, Pki],
) -> None:
    folder, _ = files
    done = certflow("cert", "check", "server.key", "--host", HOST, "--now", AT, cwd=folder,
                    expect=1)  # fmt: skip
    assert done.stdout.splitlines() == [
        f"Checked for {HOST} at 2026-03-01 12:00 UTC",
        "SEVERITY  CODE            MESSAGE",
        "error     no_certificate  no server certificate: only a private key was given; upload "
        "the certificate the CA issued",
        "Result: NOT usable (1 error, 0 warnings)",
    ]
    data = json.loads(certflow("cert", "check", "server.key", "--host", HOST, "--now", AT,
                               "--json", cwd=folder, expect=1).stdout)  # fmt: skip
    assert data["recommended_mode"] is None


# --- cert export ----------------------------------------------------------------------------


def test_cert_export_from_an_openssl_ca_gives_files_openssl_accepts(
    openssl: str, openssl_ca: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (tmp_path / "pfx.txt").write_text("pfx-s3cret\n")
    done = certflow(
        "cert", "export", openssl_ca / "server.crt", openssl_ca / "inter.pem",
        openssl_ca / "root.pem", openssl_ca / "server.key", "--out", out,
        "--new-password-file", tmp_path / "pfx.txt", "--json", cwd=tmp_path,
    )  # fmt: skip
    data = json.loads(done.stdout)
    names = ["server.crt", "chain.pem", "fullchain.pem", "root.cer", "root.pem", "server.pfx"]
    assert [Path(f["file"]).name for f in data["written"]] == names
    assert [f["mode"] for f in data["written"]] == ["0644"] * 5 + ["0600"]
    assert (data["backups"], data["skipped"]) == ([], [])
    assert stat.S_IMODE((out / "server.pfx").stat().st_mode) == 0o600

    def ok(*args: str) -> str:
        return subprocess.run(
            [openssl, *args], cwd=out, check=True, capture_output=True, text=True
        ).stdout

    assert ok("verify", "-CAfile", "root.pem", "-untrusted", "chain.pem", "server.crt") == (
        "server.crt: OK\n"
    )
    assert ok("verify", "-CAfile", "root.pem", "-untrusted", "fullchain.pem", "server.crt") == (
        "server.crt: OK\n"
    )
    assert "CN=Example Root CA" in ok("x509", "-inform", "DER", "-in", "root.cer", "-noout",
                                      "-subject").replace(" = ", "=")  # fmt: skip
    certs_in_pfx = ok("pkcs12", "-in", "server.pfx", "-passin", "pass:pfx-s3cret", "-nokeys")
    assert certs_in_pfx.count("BEGIN CERTIFICATE") == 3
    key_in_pfx = ok("pkcs12", "-in", "server.pfx", "-passin", "pass:pfx-s3cret", "-nocerts",
                    "-nodes")  # fmt: skip
    assert "BEGIN PRIVATE KEY" in key_in_pfx

    again = certflow("cert", "export", openssl_ca / "server.crt", openssl_ca / "inter.pem",
                     openssl_ca / "root.pem", "--out", out, cwd=tmp_path)  # fmt: skip
    assert again.stdout.splitlines() == [
        f"Backed up server.crt to {out}/server.crt.bak",
        f"Backed up chain.pem to {out}/chain.pem.bak",
        f"Backed up fullchain.pem to {out}/fullchain.pem.bak",
        f"Backed up root.cer to {out}/root.cer.bak",
        f"Backed up root.pem to {out}/root.pem.bak",
        f"Wrote {out}/server.crt     the server certificate (PEM), mode 0644",
        f"Wrote {out}/chain.pem      the intermediates (PEM), mode 0644",
        f"Wrote {out}/fullchain.pem  the server certificate and the intermediates (PEM), mode 0644",
        f"Wrote {out}/root.cer       the root to distribute to devices (DER), mode 0644",
        f"Wrote {out}/root.pem       the root to distribute to devices (PEM), mode 0644",
        "No server.pfx: the material holds no private key",
    ]


def test_cert_export_from_a_pfx(files: tuple[Path, Pki], tmp_path: Path) -> None:
    folder, p = files
    done = certflow("cert", "export", "server.pfx", "--password-file", "pfx-pass.txt",
                    "--new-password-file", "-", "--out", tmp_path, cwd=folder,
                    stdin="new-pass\n")  # fmt: skip
    assert "server.pfx" in done.stdout
    bundle = pkcs12.load_pkcs12((tmp_path / "server.pfx").read_bytes(), b"new-pass")
    assert bundle.cert is not None
    assert bundle.cert.certificate == p.leaf
    assert (tmp_path / "root.pem").read_bytes() == pem(p.root)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["server.pfx", "--password-file", "pfx-pass.txt", "--out", "."],
         "Password of server.pfx needed: give it with --new-password-file (or '-' for stdin)"),
        (["server.crt", "--out", "missing"], "missing: not an existing folder; create it first"),
        (["chain.pem", "--out", "."], "no server certificate among the material"),
    ],
    ids=["no pfx password", "missing folder", "no certificate"],
)  # fmt: skip
def test_cert_export_bad_input_writes_nothing(
    args: list[str], message: str, files: tuple[Path, Pki], tmp_path: Path
) -> None:
    folder, _ = files
    work = tmp_path / "work"
    work.mkdir()
    for path in folder.iterdir():
        (work / path.name).write_bytes(path.read_bytes())
    before = sorted(p.name for p in work.iterdir())
    assert message in certflow("cert", "export", *args, cwd=work, expect=2).stderr
    assert sorted(p.name for p in work.iterdir()) == before


# --- at a terminal --------------------------------------------------------------------------


def _at_a_terminal(args: list[str], answers: list[str], cwd: Path) -> tuple[int, str]:
    """Run certflow on a pseudo-terminal, answering each prompt; (exit code, what it showed)."""
    import pty
    import select
    import signal

    pid, fd = pty.fork()
    if pid == 0:  # the child: the pseudo-terminal is its terminal
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "certflow", *args])
    shown, pending = b"", list(answers)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            assert ready, f"no output for 60 s; so far: {shown!r}"
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            # click writes "Label:", then getpass flushes the terminal's input and writes the
            # final space: only an answer typed after that space is read.
            if pending and shown.endswith(b": "):
                os.write(fd, pending.pop(0).encode() + b"\n")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # a failed test must not wait for a child that waits
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode().replace("\r\n", "\n")


def test_cert_export_asks_for_the_passwords_at_a_terminal(
    files: tuple[Path, Pki], tmp_path: Path
) -> None:
    folder, p = files
    code, shown = _at_a_terminal(
        ["cert", "export", str(folder / "server.pfx"), "--out", str(tmp_path)],
        ["pfx-pass", "new-pass", "new-pass"],
        tmp_path,
    )
    assert code == 0, shown
    assert f"Password for {folder / 'server.pfx'}:" in shown
    assert "Password of server.pfx:" in shown
    assert "Repeat for confirmation:" in shown
    assert "new-pass" not in shown  # hidden input
    bundle = pkcs12.load_pkcs12((tmp_path / "server.pfx").read_bytes(), b"new-pass")
    assert bundle.cert is not None
    assert bundle.cert.certificate == p.leaf


def test_key_encrypt_asks_for_the_current_password_at_a_terminal(
    encrypted_key: Path,
) -> None:
    code, shown = _at_a_terminal(
        ["key", "encrypt", "enc.key", "--out", "re.key"],
        ["right", "n3w", "n3w"],
        encrypted_key,
    )
    assert code == 0, shown
    assert "Current password of enc.key:" in shown
    assert load_key((encrypted_key / "re.key").read_bytes(), "n3w").public_key() == (
        rsa_key().public_key()
    )
