"""Generate the pages of docs/cli/ from real runs of the ``certflow`` command line.

``make docs`` runs this script; ``tests/cli/test_docs.py`` fails when a page is stale.
Every transcript is the output of the installed ``certflow`` console script, run by bash
in a fresh folder per page. The output is the same on every run: the example certificates
are built from fixed keys (``cli_docs_keys.pem``), serial numbers and dates, the checks
run at a fixed ``--now``, and the folder's path never shows.

Usage: ``python tools/cli_docs.py [FOLDER]`` (default: docs/cli next to this script).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
KEYS = HERE / "cli_docs_keys.pem"
DEFAULT_FOLDER = HERE.parent / "docs" / "cli"

#: The instant every check of the pages runs at.
NOW = "2026-03-01T12:00:00Z"
NOW_EPOCH = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
HOST = "mdm.example.com"
NAT = "203.0.113.10"
SUBJECT = (
    "--country IN --state 'Tamil Nadu' --locality Chennai --org 'Example Pvt Ltd' "
    f"--common-name {HOST} --san 'mdm.example.in, 192.0.2.10'"
)


@dataclass(frozen=True)
class Run:
    """A shell command whose transcript goes into a page (output, then the exit code)."""

    command: str


Block = str | Run


# --- the example files ----------------------------------------------------------------------


def _keys() -> list[rsa.RSAPrivateKey]:
    found = []
    for block in KEYS.read_text().split("-----BEGIN PRIVATE KEY-----")[1:]:
        pem = "-----BEGIN PRIVATE KEY-----" + block.split("-----END PRIVATE KEY-----")[0]
        key = serialization.load_pem_private_key(
            (pem + "-----END PRIVATE KEY-----\n").encode(), None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        found.append(key)
    return found


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Pvt Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    common_name: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    serial: int,
    start: datetime,
    days: int,
) -> x509.Certificate:
    """A certificate; PKCS#1 v1.5 signatures are deterministic, so are its bytes."""
    issuer_name, signer = (_name(common_name), key) if issuer is None else (
        issuer[0].subject, issuer[1]
    )  # fmt: skip
    ca = issuer is None or common_name.endswith("CA")
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        usage = x509.KeyUsage(True, True, False, False, False, False, False, False, False)
        builder = (
            builder.add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        )
    return builder.sign(signer, hashes.SHA256())


def write_examples(folder: Path) -> None:
    """The files an administrator has after the CA answered, in ``folder``."""
    root_key, intermediate_key, server_key = _keys()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    root = _certificate("Example Root CA", root_key, None, 1, start, 3652)
    intermediate = _certificate(
        "Example Issuing CA", intermediate_key, (root, root_key), 2, start, 3000
    )
    issued = datetime(2026, 2, 19, 12, tzinfo=UTC)
    leaf = _certificate(HOST, server_key, (intermediate, intermediate_key), 3, issued, 90)
    pem = serialization.Encoding.PEM
    (folder / "server.crt").write_bytes(leaf.public_bytes(pem))
    # The CA's chain file lists the root first: certflow orders it anyway.
    (folder / "chain.pem").write_bytes(root.public_bytes(pem) + intermediate.public_bytes(pem))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "server.pfx").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"mdm", server_key, leaf, [intermediate, root],
            serialization.BestAvailableEncryption(b"pfx-pass"),
        )
    )  # fmt: skip
    (folder / "pfx-pass.txt").write_text("pfx-pass\n")
    (folder / "pass.txt").write_text("s3cret\n")
    (folder / "new-pass.txt").write_text("n3w-s3cret\n")
    (folder / "junk.cer").write_bytes(b"\x00\x01junk" * 50)


def write_rollout_examples(folder: Path) -> None:
    """The rest of a rollout's upload: the server's current certificate, the device list
    and two report files (one of them with mistakes)."""
    _, intermediate_key, _ = _keys()
    current = _certificate(HOST, intermediate_key, None, 4, datetime(2025, 4, 10, tzinfo=UTC), 365)
    (folder / "current.crt").write_bytes(current.public_bytes(serialization.Encoding.PEM))
    (folder / "devices.txt").write_text("\n".join(DEVICES) + "\n")
    (folder / "reports.csv").write_text(
        'android-03,installed\nmac-04,installed\nwin-05,failed,"disk full, 0 bytes free"\n'
    )
    (folder / "bad-reports.csv").write_text(
        "android-06,installed\nmac-07,done\n,failed\nwin-08,installed,why\nandroid-06,failed,x\n"
    )


# --- running and rendering ------------------------------------------------------------------


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFLOW")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "80"  # click wraps --help to the terminal: the pages use 80 columns
    env["LC_ALL"] = "C.UTF-8"
    return env


def transcript(run: Run, folder: Path) -> str:
    """``run`` as a console block: the command, its output (standard error merged in the
    order it was written) and its exit code."""
    done = subprocess.run(
        ["bash", "-c", f"{{ {run.command}\n}} 2>&1"],
        cwd=folder,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout.replace(f"{folder}/", "").replace(str(folder), ".")
    assert "Traceback" not in output, output
    return f"```console\n$ {run.command}\n{output}$ echo $?\n{done.returncode}\n```"


def render_page(blocks: Sequence[Block], folder: Path) -> str:
    """One page: its prose and the transcripts of its runs, in order, in ``folder``."""
    parts = [block if isinstance(block, str) else transcript(block, folder) for block in blocks]
    return "\n\n".join(part.strip("\n") for part in parts) + "\n"


def render() -> dict[str, str]:
    """Every page of docs/cli/, by file name."""
    pages = {}
    with tempfile.TemporaryDirectory(prefix="certflow-docs-") as tmp:
        for name, blocks in PAGES.items():
            folder = Path(tmp) / name.removesuffix(".md")
            folder.mkdir()
            if name not in EMPTY_FOLDER:
                write_examples(folder)
            if name in ROLLOUT_FOLDER:
                write_rollout_examples(folder)
            pages[name] = render_page(blocks, folder)
    return pages


def main(argv: Sequence[str]) -> int:
    """Write every page into the folder ``argv[1]`` (default: docs/cli)."""
    folder = Path(argv[1]) if len(argv) > 1 else DEFAULT_FOLDER
    for name, text in render().items():
        (folder / name).write_text(text)
    return 0


# --- the pages ------------------------------------------------------------------------------

#: Pages that start in an empty folder (a new key and CSR), not among the example files.
EMPTY_FOLDER = {"csr-new.md", "csr-openssl-config.md"}
#: Pages that also get the current certificate, a device list and report files.
ROLLOUT_FOLDER = {"rollout.md"}
DEVICES = ["ipad-01", "ipad-02", "android-03", "mac-04", "win-05", "android-06", "mac-07", "win-08"]
ROLLOUT = "mdm-2026"


def _at(days: float, hours: float = 0) -> str:
    """The instant ``days`` and ``hours`` after the examples' NOW, as --now takes it."""
    instant = datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(days=days, hours=hours)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


ROLLOUT_SUBCOMMANDS = [
    "new", "distribute", "proceed", "import-now", "extend", "cancel", "report", "retry",
    "enroll", "unenroll", "reenrolled", "restarted", "tick", "effects", "ack", "status",
    "history", "list", "forecast", "export",
]  # fmt: skip

PAGES: dict[str, list[Block]] = {
    "certflow.md": [
        """# `certflow` — the command line

`certflow` (also `python -m certflow`) makes keys and CSRs the way the source document's
generateCSR tool does, inspects and checks the certificate files a CA sends back, so a bad
certificate is refused before a rollout starts, and exports the files the server installs
and the devices trust.

Every command has `--help`; output is for people by default, and `--json` (where offered)
prints JSON for programs. Errors are one line on standard error, `certflow: error: <message>`,
never a traceback.

Options are spelled the same in every command: `--password-file FILE` opens encrypted input
(a PFX, an encrypted key), `--new-password-file FILE` protects what is written (`server.key`,
`server.pfx`); `-` reads standard input, and without the option a terminal prompts.
`--passphrase-file` and `--new-passphrase-file` are accepted too. The instant of a check is
`--now` (`--at` is accepted too), ISO 8601 with a UTC offset in every command
(`2028-02-01T09:00Z`, `2028-02-01T10:00+01:00`): a time without one is refused, never
guessed, and the message suggests spellings that work. A file is read up to 1 MiB (a
password file: 4 KiB);
an `--out` that exists is replaced only if it is a regular file, after a backup.

These pages are generated from real runs by `make docs` (`tools/cli_docs.py`), and a test
fails when one is out of date.

## Exit codes

| code | meaning |
|---|---|
| 0 | done; for `cert check` and `csr show`: nothing wrong found |
| 1 | `cert check` found at least one error; `csr show` found the CSR unusable; `rollout`: the rules refused the command, or an import was not confirmed |
| 2 | usage error or bad input: unknown option, unreadable or damaged file, wrong or missing password, invalid subject, an `--out` that is not a regular file |
| 75 | a temporary failure: a busy or unreachable database (try again) |
| 130 | interrupted (Ctrl-C, or end of input at a terminal prompt) |
| 141 | the reader closed the pipe (`| head`) before the command was done |

The one table for scripts, with `--json`'s error objects, is
[scripting.md](../scripting.md#exit-codes).

## Commands

- [`certflow csr new`](csr-new.md) — RSA key + CSR into `server.key` / `server.csr`, backing up old ones
- [`certflow csr show`](csr-show.md) — inspect and verify a CSR
- [`certflow csr openssl-config`](csr-openssl-config.md) — the legacy `opensslsan.conf`
- [`certflow key decrypt`](key-decrypt.md) / [`certflow key encrypt`](key-encrypt.md)
- [`certflow cert inspect`](cert-inspect.md) — what the uploaded files contain, ordered
- [`certflow cert check`](cert-check.md) — the server-certificate checks, as a table
- [`certflow cert export`](cert-export.md) — `server.crt`, the chain, the root for devices, `server.pfx`
- [`certflow simulate`](simulate.md) — the seeded rollout simulation (see [simulation.md](../simulation.md))
- [`certflow rollout`](rollout.md) — a rollout stored in a database, driven step by step (every subcommand's help: [rollout-help.md](rollout-help.md))
- [`certflow worker`](worker.md) — keeps a database's time and delivers its effects (see [worker.md](../worker.md))
- [`certflow serve`](serve.md) — the web console on its own (see [web.md](../web.md))""",
        Run("certflow --help"),
        "A mistyped command:",
        Run("certflow bogus"),
    ],
    "csr-new.md": [
        """# `certflow csr new`

Generates an RSA key (2048 bits by default; `--bits 3072|4096`) and a CSR whose subject is
country, state, locality, organisation, optional organisational unit and common name, and
whose subject alternative names are the common name plus `--san` (comma-separated DNS
names, `*.` wildcards, IPv4/IPv6 addresses; internationalised names in their IDNA 2008
`xn--` form). Writes `server.key` (mode 0600) and `server.csr` into `--out` (default: the
current folder).

Existing `server.key` / `server.csr` are copied first to `server.key.bak` /
`server.csr.bak`, then `.bak.1`, ... — one number for both files of a run, and an earlier
backup is never overwritten — and the new files replace the old ones atomically.
`--encrypt` encrypts the key with a password (prompted, or `--new-password-file FILE`, `-`
for standard input).

When a required subject option is missing, the command asks for every field like the
source tool (a wrong country code is asked again rather than making you start over);
`--no-input` turns missing options into an error for scripts.""",
        Run("certflow csr new --help"),
        "With flags (a script):",
        Run(f"certflow csr new {SUBJECT}"),
        "Run again: the previous key and CSR are backed up first.",
        Run(f"certflow csr new {SUBJECT} --bits 3072"),
        "And once more, for programs; the first backups are kept, the new ones share `.bak.1`:",
        Run(f"certflow csr new {SUBJECT} --json"),
        Run("stat -c '%A %n' server.key* server.csr*"),
        "With an encrypted key:",
        Run(f"certflow csr new {SUBJECT} --out . --encrypt --new-password-file pass.txt"),
        (
            "Interactive, like generateCSR (answers typed at the prompts; piped in here, so the "
            "prompts, which go to standard error, run together on one line):"
        ),
        Run(
            "mkdir uk; printf 'UK\\ngb\\nEngland\\nLondon\\nExample plc\\n\\nmdm.example.co.uk"
            "\\nwww.example.co.uk\\n' | certflow csr new --out uk"
        ),
        "Bad input exits 2 and writes nothing:",
        Run(
            "certflow csr new --country UK --state s --locality l --org o --common-name "
            "mdm.example.com"
        ),
        Run("certflow csr new --no-input --country IN"),
        Run(
            "certflow csr new --country IN --state 'Tamil Nadu' --locality Chennai --org Example "
            "--common-name mdm.example.com --san 'a.*.example.com'"
        ),
        Run(f"certflow csr new {SUBJECT} --out /dev/null"),
    ],
    "csr-show.md": [
        """# `certflow csr show`

Shows what a CSR (PEM or DER) asks for — subject, names, key type and size — and verifies
its signature: the equivalent of the source's openssl verification command. Exits 1 when the
CSR cannot be used, and says why: the signature does not verify, or the key is not RSA of at
least 2048 bits.""",
        Run("certflow csr show --help"),
        Run(f"certflow csr new {SUBJECT} >/dev/null; certflow csr show server.csr"),
        Run("certflow csr show server.csr --json"),
        "A CSR made elsewhere with a small key:",
        Run(
            "openssl req -new -newkey rsa:1024 -nodes -keyout small.key -subj /CN=mdm.example.com "
            "-out small.csr 2>/dev/null; certflow csr show small.csr"
        ),
        Run("certflow csr show server.crt"),
    ],
    "csr-openssl-config.md": [
        """# `certflow csr openssl-config`

Prints the `opensslsan.conf` of the source document's legacy path (product versions before
11.1.2242.01) for the same subject options as `csr new` (prompting for missing ones the
same way). Special characters are escaped for OpenSSL's config parser; the SANs keep their
order. `openssl req` on it yields a CSR with the same subject and SANs as `certflow csr new`
(the test suite checks this against the real `openssl` binary). With `--out`, an existing
file is backed up first.""",
        Run("certflow csr openssl-config --help"),
        Run(f"certflow csr openssl-config {SUBJECT}"),
        Run(f"certflow csr openssl-config {SUBJECT} --out opensslsan.conf"),
        Run(
            "openssl req -new -config opensslsan.conf -newkey rsa:2048 -nodes -keyout legacy.key "
            "-out legacy.csr 2>/dev/null; certflow csr show legacy.csr"
        ),
    ],
    "key-encrypt.md": [
        """# `certflow key encrypt`

Encrypts a private key (PEM or DER, PKCS#1 or PKCS#8) with a password (PKCS#8, AES-256).
The new password is prompted (twice) at a terminal, or read from `--new-password-file FILE`
(`-` for standard input). A key that is already encrypted is re-encrypted: its current
password comes from `--password-file FILE` (or a prompt). `--out` is backed up first if it
exists, and written with mode 0600; `--out -` prints the key.""",
        Run("certflow key encrypt --help"),
        Run("certflow key encrypt server.key --out server.enc.key --new-password-file pass.txt"),
        Run("head -1 server.enc.key"),
        "A new password for the encrypted key:",
        Run(
            "certflow key encrypt server.enc.key --out server.enc.key --password-file pass.txt "
            "--new-password-file new-pass.txt"
        ),
        Run("certflow key encrypt server.enc.key --out again.key --new-password-file pass.txt"),
        Run(
            "certflow key encrypt server.key --out again.key --password-file pass.txt "
            "--new-password-file new-pass.txt"
        ),
    ],
    "key-decrypt.md": [
        """# `certflow key decrypt`

Decrypts an encrypted private key — the second operation of the source's generateCSR tool —
into an unencrypted PKCS#8 key, which is what the web server reads. The password comes from
`--password-file FILE` (`-` for standard input) or a prompt. `--out` is backed up first if
it exists, written with mode 0600, and must be a regular file (never a device or a FIFO);
`--out -` prints the key. A wrong password exits 2.""",
        Run("certflow key decrypt --help"),
        Run(
            "certflow key encrypt server.key --out server.enc.key --new-password-file pass.txt "
            "2>/dev/null; printf 's3cret\\n' | certflow key decrypt server.enc.key --out "
            "server.dec.key --password-file -"
        ),
        Run(
            "printf 'wrong\\n' | certflow key decrypt server.enc.key --out server.dec.key "
            "--password-file -"
        ),
        Run("certflow key decrypt server.enc.key --out -"),
        Run("certflow key decrypt server.enc.key --out /dev/full --password-file pass.txt"),
        Run("certflow key decrypt server.enc.key --out - --password-file /dev/zero"),
    ],
    "cert-inspect.md": [
        """# `certflow cert inspect`

Loads one or more files — PFX/P12, CER/CRT in PEM or DER, chain files (PEM or PKCS#7, DER or
BER) and keys — detects each format from the content, merges them and shows the leaf,
intermediates and root in order, whatever order the files list them in, and whether the
private key matches the leaf. A password (PFX, encrypted keys) comes from `--password-file`
or is prompted at a terminal.""",
        Run("certflow cert inspect --help"),
        "The chain file lists the root first; the output is ordered anyway:",
        Run("certflow cert inspect chain.pem server.crt server.key"),
        Run("certflow cert inspect server.pfx --password-file pfx-pass.txt --json"),
        Run("certflow cert inspect server.pfx"),
        Run("certflow cert inspect junk.cer"),
    ],
    "cert-check.md": [
        f"""# `certflow cert check`

Runs the server-certificate checks of certificate-rules.md (see [certs.md](../certs.md)) on
the uploaded files for every address clients use, `--host` (repeat it: the vendor's rule is
the host name *and* the NAT address), at `--now` (ISO 8601; default the current time; no
zone means UTC), and prints each host's verdict and a table of findings: errors first, then
warnings, then the trust information that decides the import mode. `--key FILE` adds the
private key when it is not among the files (the `server.key` of the CSR flow).

Exit code 0 when there is no error (warnings allowed), 1 when any check finds an error,
2 for bad input. The examples run at `--now {NOW}`.""",
        Run("certflow cert check --help"),
        "A good certificate from a private CA, for its host name:",
        Run(f"certflow cert check server.crt chain.pem --key server.key --host {HOST} --now {NOW}"),
        (
            "The same PFX a year later, for the host name and the NAT address: every problem at "
            "once, and the host verdicts are still honest for the expired certificate."
        ),
        Run(
            f"certflow cert check server.pfx --password-file pfx-pass.txt --host {HOST} "
            f"--host {NAT} --now 2027-03-01T00:00:00Z"
        ),
        "Without the chain and the key:",
        Run(f"certflow cert check server.crt --host {HOST} --now {NOW} --json"),
        "A file without a certificate gets no import recommendation:",
        Run(f"certflow cert check server.key --host {HOST} --now {NOW}"),
        Run("certflow cert check server.crt --host 'bad host'"),
    ],
    "cert-export.md": [
        """# `certflow cert export`

Writes, from any uploaded material (the same files `cert inspect` reads), what the server
installs and what the devices must trust, into the folder `--out`:

| file | content |
|---|---|
| `server.crt` | the server certificate, PEM (the name the vendor procedure gives it) |
| `chain.pem` | the intermediates, PEM, the one that issued the certificate first |
| `fullchain.pem` | the certificate and the intermediates, PEM: what a TLS server sends |
| `root.cer` | the root to distribute to devices, DER |
| `root.pem` | the same root, PEM |
| `server.pfx` | certificate, private key, intermediates and root, encrypted (mode 0600), when the key is among the files |

The root is the one supplied, the certificate itself when it is self-signed, or the public
root (certifi's store) that issued the chain. A file the material has nothing for is listed
as such, with the reason. The password of `server.pfx` comes from `--new-password-file`
(or a prompt); `--password-file` opens encrypted input. Everything is checked before
anything is written; existing files are backed up first, under one number.""",
        Run("certflow cert export --help"),
        Run(
            "mkdir exported; certflow cert export server.crt chain.pem server.key --out exported "
            "--new-password-file new-pass.txt"
        ),
        Run(
            "certflow cert export server.pfx --password-file pfx-pass.txt --new-password-file "
            "new-pass.txt --out exported --json"
        ),
        "Without the key there is no `server.pfx` (and no password to give):",
        Run("mkdir public; certflow cert export server.crt chain.pem --out public"),
        "OpenSSL accepts the chain (at the examples' instant, `-attime` in seconds since 1970):",
        Run(
            f"openssl verify -attime {NOW_EPOCH} -CAfile exported/root.pem -untrusted "
            "exported/chain.pem exported/server.crt"
        ),
        Run("certflow cert export chain.pem --out exported"),
    ],
    "rollout.md": [
        f"""# `certflow rollout` — a stored rollout from the command line

`certflow rollout` drives a rollout kept in a database (SQLite: one file, see
[store.md](../store.md)) from creation to the end, one command per step: what an
administrator does in the product's pages, and what a host's scheduler and workers do.
The spellings are a contract (scripts depend on them); every subcommand's `--help` is in
[rollout-help.md](rollout-help.md).

Every subcommand takes `--db PATH` (default `./certflow.db`, or `$CERTFLOW_DB`; a
`sqlite:///PATH` URL is accepted), `--now TIME` (ISO 8601 *with* an offset, e.g.
`2026-03-01T12:00:00Z`; default the current time: the command line reads the clock, the
core never does) and `--json`. Only `new` creates a database; every other subcommand
refuses a missing one (it does not create an empty file).

## Exit codes and messages

| code | meaning |
|---|---|
| 0 | done |
| 1 | the rules refused the command (`certflow: refused: <why>`), the new certificate failed a check (`new`: the findings are printed), or a confirmation was declined (`certflow: not imported: ...`) |
| 2 | bad input (`certflow: error: <message>`): unknown rollout, device or effect id, a malformed file, a time earlier than the rollout's clock, a `--now` without an offset, a missing, corrupt or newer database |
| 75 | a temporary failure (`certflow: error: <message>`, saying to try again): the database was locked by another writer past the busy timeout, the server could not be reached, or the file changed while it was read; nothing was changed, so the same command can simply run again |
| 130 | interrupted: "nothing was applied"; after the commit, "applied; interrupted afterwards" and 0 |
| 141 | the reader closed the pipe (`| head`) before the command was done |

Under `--json` every error and refusal is also a JSON object on standard output
([scripting.md](../scripting.md)).

Results go to standard output; errors, refusals, prompts and progress bars to standard
error, so `--json` output can always be piped. Nothing is ever half-applied: each command
is one transaction of the store. A command that changes nothing (a duplicate report,
enrolling an enrolled device, a bulk retry with nothing failed, `restarted` when no
restart is required, a `tick` with nothing due) says "no change", exits 0 and records
nothing (`--json`: `"changed": false`).

## Choices where the contract is silent

- **`--now`** must carry an offset (a naive time is refused rather than guessed); it is
  converted to UTC. Without it the command reads the real clock, and then an instant up
  to 5 seconds behind the rollout's clock is taken as the rollout's clock (processes on
  one machine read slightly different clocks, and one may wait for another's write); an
  explicit `--now` earlier than the rollout's clock is refused (exit 2).
- **Reads never write.** `status`, `list`, `history`, `effects` and `forecast` open the
  database read-only: they work on a read-only file or folder, leave no file beside it,
  and read a database of an older certflow as it is (the first command upgrades it).
  `status` and `list` show the rollout at `--now`: if timers fell due that no `tick` has
  stored, what they show is what a tick at `--now` would leave, and they say so (a
  `Projected:` line, a `*` in the list; `--json`: `"projected": true`); nothing is
  stored, and the effects appear once a tick runs. `effects` and `history` show what is
  stored.
- **`new`** loads `--cert` files with `certflow.certs` (any mix of PFX, CER/CRT, chain and
  key files; the password from `--password`, `--password-file`, or a prompt at a
  terminal), checks them for every `--host` at `--now` like `certflow cert check`, and on
  any error finding prints the findings (or, with `--json`, the check's report) and exits
  1 without creating anything. `--existing` is the server's current certificate (only its
  expiry is used). `--public-root/--private-root` override what the chain says about the
  root: `rollout_for` decides from the chain alone, so with an override the rollout is
  built again with `certflow.new_rollout` from the same dates (and the identity's root
  says the same). The database is created only once everything has been checked. The
  rollout records what it rolls out (its identity: the certificate's SHA-256
  fingerprint, subject, names, issuer and validity, the root's, the hosts, and the
  public certificates; never the key), and `new` prints it.
- **The device list** (`--devices`) is UTF-8 text, one id per line; spaces around an id and
  blank lines are ignored; a duplicate is refused, listing every duplicate with its line
  and the line it repeats. Like every file certflow reads, it goes through the one bounded
  reader (`certflow.certs.read_bounded`), here with a 256 MiB limit.
- **A report file** (`report NAME --file CSV`) has lines `device,installed` or
  `device,failed[,reason]`: CSV, so quotes are allowed, and a reason may also hold
  unquoted commas (everything after the second comma); the outcome is case-insensitive;
  blank lines are ignored; there is no header line. A device reported twice in one file is
  a bad line. Every bad line is listed with its number, then (if the lines are well formed)
  every device the rollout does not know; one bad line refuses the whole file. The reports
  are then applied in order in one transaction; a report the rules refuse refuses the file
  (exit 1), naming its line. A single `report NAME DEVICE failed` without `--reason` records
  an empty reason.
- **`proceed` and `import-now`** list, on standard error, the in-scope devices that do not
  trust the new root (pending, pushed, failed, re-enrolment required): their number and the
  first 10 ids; then ask. They ask only when someone would lose communication: not when
  every in-scope device trusts the root, nor for a publicly trusted root (already on every
  device; the plan says so). `--yes` answers yes (the list is still printed). Declining
  exits 1 with nothing changed; with no terminal and no answer on standard input the
  command exits 2 and says to give `--yes`. The rules decide after the answer: a command
  they refuse exits 1 then.
- **`retry`** takes one DEVICE or `--all-failed`, never both. **`tick`** with NAME advances
  that rollout to `--now` (an error if `--now` is before its clock); without, every rollout
  with something due, each in its own transaction; with nothing due it says "no change".
- **`effects`** prints one line per effect: its id (`ROLLOUT:SEQ:N`, stable: give it to
  `ack`), the instant it fell due, and what to do, with its delivery record: failed
  deliveries, the last error and the next attempt (a failing effect backs off). `--all`
  lists every effect with what became of it: acknowledged (when), superseded (the end of
  the rollout made it moot: a cancelled rollout's pushes and notices, an imported one's
  notices; never delivered), dead (its delivery failed too often; no longer retried).
  `--dead` lists the dead ones; `--revive ID...` makes them pending again, each with its
  retries anew (an id already pending is left as it is; an unknown, foreign or
  acknowledged one refuses them all). **`ack`** takes ids of that rollout only; an unknown
  id refuses them all; acknowledging twice is harmless and reported as such.
- **`status`** is the View Details page: state, completion, counts per device state,
  started, next notice, next checkpoint, deadline, the manual extension (available now, or
  from when), restart required; then a page of devices in creation order with state,
  attempts, last push, last report and failure reason. `--state` (repeatable) filters,
  `--limit` (1 to 10,000, default 50) sizes the page, `--after DEVICE` starts after that
  device (keyset paging: the next page costs the same at any depth); a full page ends with
  the command for the next one. `--json` gives the same fields, `counts` as device state →
  number, and `next_after` (the `--after` of the next page, or null). Both show what the
  rollout rolls out (`identity` under `--json`: fingerprints, subjects, names, validity,
  hosts; the PEM text is `export`'s), or that it has no identity (made from dates alone,
  or stored before rollouts recorded one); `list` shows the certificate too.
- **`export`** writes the rollout's public certificates from the database into `--out`
  (an existing folder), named and written as `certflow cert export` writes them:
  `root.pem` and `root.cer` (DER), the root to distribute; `chain.pem`, `fullchain.pem`
  and `server.crt`. Existing files are backed up first; there is never a `server.pfx`
  (a rollout holds no key). A rollout without identity exits 2 and writes nothing.
- **`history`** prints the journal, one entry per line: sequence number, instant, what
  happened, the rollout state after it, and the ids of the effects it emitted. `--json`
  prints JSON lines (one object per entry), for `jq` and friends; the first carries the
  created rollout's whole document, so that the export alone replays the rollout.
- **`forecast`** (a distributing rollout) fits how long devices took to answer their
  pushes so far, from the journal, and simulates the rest through the real evaluator:
  per coming checkpoint the chance of the import, and the devices a forced import would
  cut off, as it is and with one manual extension (see [forecast.md](../forecast.md)).
  It writes nothing.
- **Progress**: creating a rollout of 10,000 devices or more, and checking a report file of
  10,000 lines or more, draw a progress bar on standard error when both standard output
  and standard error are terminals and `--json` is not given; applying a report file is one
  transaction, announced by one line.

## A whole rollout

The upload: the new certificate with its chain and key, the server's current certificate
(expiring 2026-04-10), and the devices. Every command below runs at an explicit `--now`,
the rollout's t0 being {_at(0)}.""",
        Run("cat devices.txt"),
        Run(
            f"certflow rollout new {ROLLOUT} --cert server.crt --cert chain.pem --cert server.key "
            f"--existing current.crt --devices devices.txt --host {HOST} --now {_at(0)}"
        ),
        "The root is private, so it is distributed first:",
        Run(f"certflow rollout distribute {ROLLOUT} --now {_at(0)}"),
        "Devices answer, one by one (what an MDM worker would send) or as a file:",
        Run(f"certflow rollout report {ROLLOUT} ipad-01 installed --now {_at(0, 2)}"),
        Run(
            f"certflow rollout report {ROLLOUT} ipad-02 failed --reason 'profile declined' "
            f"--now {_at(0, 3)}"
        ),
        Run("cat reports.csv"),
        Run(f"certflow rollout report {ROLLOUT} --file reports.csv --now {_at(1)}"),
        Run(f"certflow rollout retry {ROLLOUT} ipad-02 --now {_at(1, 1)}"),
        Run(f"certflow rollout status {ROLLOUT} --now {_at(1, 2)}"),
        "A failed report again, then only the failed devices, one per page, and the next page:",
        Run(f"certflow rollout report {ROLLOUT} ipad-02 failed --now {_at(1, 3)}"),
        Run(f"certflow rollout status {ROLLOUT} --state failed --limit 1 --now {_at(1, 3)}"),
        Run(
            f"certflow rollout status {ROLLOUT} --state failed --limit 1 --after ipad-02 "
            f"--now {_at(1, 3)} --json"
        ),
        "The manual extension opens on day 6; before that the rules refuse it (exit 1):",
        Run(f"certflow rollout extend {ROLLOUT} --now {_at(5)}"),
        Run(f"certflow rollout extend {ROLLOUT} --now {_at(6)}"),
        "Read past a due timer, `status` shows what a tick would leave, and stores nothing:",
        Run(f"certflow rollout status {ROLLOUT} --limit 1 --now {_at(14, 1)}"),
        "A scheduler ticks; the first checkpoint (day 14 now) finds devices not trusting the root:",
        Run(f"certflow rollout tick --now {_at(14, 1)}"),
        "A tick with nothing due, or a report repeated, changes nothing and says so:",
        Run(f"certflow rollout tick --now {_at(14, 1)}"),
        Run(f"certflow rollout report {ROLLOUT} ipad-01 installed --now {_at(14, 1)}"),
        "The host performs the effects and acknowledges them (twice is harmless):",
        Run(f"certflow rollout effects {ROLLOUT}"),
        Run(f"certflow rollout ack {ROLLOUT} {ROLLOUT}:2:0 {ROLLOUT}:6:0 --now {_at(14, 2)}"),
        Run(f"certflow rollout ack {ROLLOUT} {ROLLOUT}:2:0 --now {_at(14, 2)}"),
        "Importing now cuts off the devices that do not trust the root, so it asks first:",
        Run(f"echo n | certflow rollout import-now {ROLLOUT} --now {_at(15)}"),
        Run(f"certflow rollout import-now {ROLLOUT} --yes --now {_at(15)}"),
        Run(f"certflow rollout restarted {ROLLOUT} --now {_at(15, 1)}"),
        Run(f"certflow rollout reenrolled {ROLLOUT} win-05 --now {_at(16)}"),
        Run(f"certflow rollout status {ROLLOUT} --state reenroll_required --now {_at(16)}"),
        Run(f"certflow rollout history {ROLLOUT}"),
        Run(f"certflow rollout history {ROLLOUT} --json | head -3"),
        Run(f"certflow rollout list --now {_at(16)}"),
        "The root to distribute, the chain and the certificate, from the database:",
        Run(f"mkdir certs && certflow rollout export {ROLLOUT} --out certs"),
        """## Bad input

A report file with mistakes is refused whole, every bad line listed; nothing is applied:""",
        Run("cat bad-reports.csv"),
        Run(f"certflow rollout report {ROLLOUT} --file bad-reports.csv --now {_at(16)}"),
        Run(f"certflow rollout report {ROLLOUT} laptop-99 installed --now {_at(16)}"),
        Run(f"certflow rollout report {ROLLOUT} mac-07 installed --now {_at(2)}"),
        Run(f"certflow rollout report {ROLLOUT} mac-07 installed --now 2026-03-20T12:00:00"),
        Run(f"certflow rollout status other --now {_at(16)}"),
        Run("certflow rollout list --db elsewhere.db"),
        Run("printf 'not a database' > junk.db; certflow rollout list --db junk.db"),
    ],
    "rollout-help.md": [
        """# `certflow rollout` subcommands

The `--help` of every subcommand of [`certflow rollout`](rollout.md), which describes the
choices behind them and runs a whole rollout.""",
        Run("certflow rollout --help"),
        *[Run(f"certflow rollout {name} --help") for name in ROLLOUT_SUBCOMMANDS],
    ],
    "simulate.md": [
        """# `certflow simulate`

The main job of `make demo`: a seeded, reproducible simulation of a rollout over a fleet,
through the real evaluator. What it prints and how to simulate in a notebook is described in
[simulation.md](../simulation.md).""",
        Run("certflow simulate --help"),
        "One run, one line:",
        Run("certflow simulate --devices 2000 --seed 3 --quiet"),
        "A sweep of 50 modelled runs on every core (the last line, the wall time, is left out "
        "here because it changes from run to run):",
        Run("certflow simulate --devices 2000 --runs 50 | head -n 5"),
        "As JSON, with a chart of the device states per day:",
        Run("certflow simulate --devices 2000 --json --chart states.svg | head -n 8"),
        "A chart file must be PNG or SVG:",
        Run("certflow simulate --chart states.pdf"),
    ],
    "worker.md": [
        """# `certflow worker`

The long-running process that ticks every rollout of a database when something falls due
and delivers its effects by e-mail, webhook and command, as its TOML configuration routes
them. The configuration, the handlers, the guarantees and how to run it under systemd,
cron or Kubernetes are in [worker.md](../worker.md).""",
        Run("certflow worker --help"),
        "A configuration that cannot be read is one line, exit 2, before anything is delivered:",
        Run("certflow worker --db certflow.db --config nosuch.toml --once"),
    ],
    "serve.md": [
        """# `certflow serve`

The web console on its own, on uvicorn: the rollouts, View Details, the actions and their
confirmations. A host product mounts the same application instead
(`certflow.web.create_app`); both are described in [web.md](../web.md). The token that
signs in is read from a file, never from the command line.""",
        Run("certflow serve --help"),
        "Without its token file it does not start:",
        Run("certflow serve --db certflow.db --token-file nosuch.token"),
    ],
}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
