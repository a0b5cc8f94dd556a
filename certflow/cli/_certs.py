"""``certflow cert``, and what the certificate commands share: passwords (options, files,
prompts) and reading and loading what an administrator uploads.

``certflow csr`` is in :mod:`certflow.cli._csr` and ``certflow key`` in
:mod:`certflow.cli._key`; ``certflow rollout`` loads its upload and prints its check
with the helpers here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certflow.cli._app import (
    EXIT_FINDINGS,
    EXIT_OK,
    F,
    json_option,
    main,
    parse_now,
    print_json,
    writing,
)
from certflow.core.errors import InvalidInput
from certflow.core.instants import show

# The certificate stack (certflow.certs, cryptography: about 130 ms) is imported inside
# the functions that use it: the rollout commands import this module for its password
# options and helpers, and must start without it (issue 18, item 7).
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    from certflow import certs


def _ask(
    label: str, *, default: str | None = None, hide: bool = False, confirm: bool = False
) -> str:
    try:
        answer: str = click.prompt(
            label,
            default=default,
            hide_input=hide,
            confirmation_prompt=confirm,
            show_default=bool(default),
            err=True,  # stdout stays clean for results and --json
        )
    except click.Abort:
        if sys.stdin.isatty():
            raise
        raise click.UsageError(f"no answer on standard input for: {label}") from None
    return answer


# One spelling per option across commands, whatever the command; the other common word
# ("passphrase") is accepted too. --password-file always opens what is read (a PFX, an
# encrypted key); --new-password-file always protects what is written (server.key, a PFX).
PASSWORD_FILE = "--password-file"
NEW_PASSWORD_FILE = "--new-password-file"
_SECRET_FILE = click.Path(dir_okay=False, path_type=Path, allow_dash=True)

_password_file = click.option(
    PASSWORD_FILE,
    "--passphrase-file",
    "password_file",
    type=_SECRET_FILE,
    help="Read the password of encrypted input (PFX, keys) from this file ('-': stdin).",
)


def _new_password_file(what: str) -> Callable[[F], F]:
    return click.option(
        NEW_PASSWORD_FILE,
        "--new-passphrase-file",
        "new_password_file",
        type=_SECRET_FILE,
        help=f"Read the password {what} from this file ('-': stdin) instead of prompting.",
    )


def _read_secret(path: Path | None, label: str, option: str, *, confirm: bool = False) -> str:
    """A password from a file ('-' for standard input: its first line) or a hidden prompt."""
    from certflow import certs

    if path is not None:
        if str(path) == "-":
            return certs.read_password(sys.stdin.buffer, name="standard input")
        return certs.read_password(path)
    if not sys.stdin.isatty():
        raise click.UsageError(f"{label} needed: give it with {option} (or '-' for stdin)")
    return _ask(label, hide=True, confirm=confirm)


def _password(password_file: Path | None) -> str | None:
    if password_file is None:
        return None
    return _read_secret(password_file, "Password", PASSWORD_FILE)


def _load(files: Sequence[Path], password: str | None) -> certs.Material:
    """Load files; asks for a password at the terminal when one turns out to be needed."""
    from certflow import certs

    try:
        return certs.load(*files, password=password)
    except certs.MaterialError as error:
        if error.code != "password_required" or password is not None:
            raise
        if not sys.stdin.isatty():
            raise click.UsageError(f"{error}; give it with {PASSWORD_FILE}") from None
        return certs.load(*files, password=_ask(f"Password for {error.source}", hide=True))


def out_folder(out: Path) -> Path:
    """``--out`` of a command that writes several files: a folder that exists, checked
    before any work or question (one line naming it otherwise)."""
    if not out.is_dir():
        raise InvalidInput(f"{out}: not an existing folder; create it first")
    return out


def out_file(out: Path | str) -> None:
    """``--out`` of a command that writes one file ('-': standard output): a place that
    can be written, in a folder that exists, checked before any work or question."""
    if str(out) != "-":
        from certflow import certs

        certs.check_target(out)


def _read_file(path: Path) -> bytes:
    """At most LIMIT bytes of ``path``, with the loader's clear errors."""
    from certflow import certs

    return certs.read_bounded(path)


# --- cert -----------------------------------------------------------------------------------


@main.group()
def cert() -> None:
    """Inspect and check the certificate files an administrator uploads."""


def _cert_data(role: str, certificate: x509.Certificate) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes

    from certflow import certs

    public_key = certs.describe_key(certificate)  # "unsupported" if cryptography cannot read it
    return {
        "role": role,
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "sans": [str(entry) for entry in certs.sans_from_extension(certificate.extensions)],
        "key": public_key,
        "signature_algorithm": certs.signature_algorithm_name(certificate),
        "sha256": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
    }


def _material_data(material: certs.Material) -> dict[str, Any]:
    from certflow import certs

    roles = [("leaf", material.leaf)] if material.leaf is not None else []
    roles += [("intermediate", c) for c in material.intermediates]
    roles += [("root", material.root)] if material.root is not None else []
    roles += [("other", c) for c in material.others]
    key = material.private_key
    return {
        "sources": list(material.sources),
        "certificates": [_cert_data(role, c) for role, c in roles],
        "private_key": None
        if key is None
        else {
            "type": certs.describe_key(key),
            "matches_leaf": material.leaf is not None and certs.key_matches(material.leaf, key),
        },
    }


@cert.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_password_file
@json_option
def cert_inspect(files: tuple[Path, ...], password_file: Path | None, as_json: bool) -> int:
    """Show what the files contain: leaf, intermediates, root and key, identified and ordered.

    Accepts PFX/P12, CER/CRT (PEM or DER), chain files (PEM or PKCS#7) and keys, in any mix.
    """
    data = _material_data(_load(files, _password(password_file)))
    if as_json:
        print_json(data)
        return EXIT_OK
    if not data["certificates"]:
        click.echo("No certificates.")
    for entry in data["certificates"]:
        click.echo(f"{entry['role'].capitalize()}: {entry['subject'] or '(empty subject)'}")
        click.echo(f"  issuer:    {entry['issuer']}")
        click.echo(f"  valid:     {entry['not_before']} .. {entry['not_after']}")
        if entry["sans"]:
            click.echo(f"  names:     {', '.join(entry['sans'])}")
        click.echo(f"  key:       {entry['key']}, signed {entry['signature_algorithm']}")
        click.echo(f"  sha256:    {entry['sha256']}")
    key = data["private_key"]
    if key is None:
        click.echo("Private key: none")
    else:
        match = "matches the leaf" if key["matches_leaf"] else "does NOT match the leaf"
        click.echo(f"Private key: {key['type']}, {match}")
    return EXIT_OK


@cert.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--host",
    "hosts",
    required=True,
    multiple=True,
    help="An address clients use: host name or NAT address. Repeat it for each of them.",
)
@click.option(
    "--now",
    "--at",
    "at",
    help="Check at this ISO 8601 time with a UTC offset (default: the current time).",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private key, when not among FILES (e.g. server.key of the CSR).",
)
@_password_file
@json_option
def cert_check(
    files: tuple[Path, ...],
    hosts: tuple[str, ...],
    at: str | None,
    key_file: Path | None,
    password_file: Path | None,
    as_json: bool,
) -> int:
    """Check the certificate for the server at every --host; exit 1 when a check finds an error.

    Checks validity period (< 397 days), RSA key of 2048+ bits, key present and matching,
    the time window, host coverage by SAN (for each --host: the vendor's rule is the host
    name and the NAT address), the chain to a root, key usage, weak signatures, expiry within
    30 days, and whether the root is public or private (enterprise).
    """
    from certflow import certs

    instant = parse_now(at)
    password = _password(password_file)
    material = _load(files, password)
    private_key: PrivateKeyTypes | None = None
    if key_file is not None:
        private_key = _load([key_file], password).private_key
        if private_key is None:
            raise certs.MaterialError(str(key_file), "unsupported", "contains no private key")
    report = certs.check(material, hosts=hosts, now=instant, key=private_key)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _print_report(report: certs.Report) -> None:
    from certflow import certs

    modes = {
        certs.ImportMode.PROCEED_TO_IMPORT: "Proceed to Import",
        certs.ImportMode.DISTRIBUTE_ROOT_FIRST: "Distribute Root Certificate first",
    }
    click.echo(f"Checked for {', '.join(report.hosts)} at {show(report.checked_at)}")
    if certs.Code.NO_CERTIFICATE not in report.codes:
        uncovered = report.uncovered_hosts
        verdicts = [f"{h} {'NOT covered' if h in uncovered else 'covered'}" for h in report.hosts]
        click.echo(f"Hosts: {', '.join(verdicts)}")
    order = {certs.Severity.ERROR: 0, certs.Severity.WARNING: 1, certs.Severity.INFO: 2}
    findings = sorted(report.findings, key=lambda f: order[f.severity])
    width = max([len("CODE"), *(len(f.code.value) for f in findings)])
    click.echo(f"{'SEVERITY':<9} {'CODE':<{width}}  MESSAGE")
    for finding in findings:
        click.echo(f"{finding.severity.value:<9} {finding.code.value:<{width}}  {finding.message}")
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = "ok" if report.ok else "NOT usable"
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    mode = report.recommended_mode
    advice = "" if mode is None else f"; recommended import: {modes[mode]}"
    click.echo(f"Result: {verdict} ({counts}){advice}")


@cert.command("export")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write the files into (it must exist); existing files are backed up first.",
)
@_password_file
@_new_password_file("of server.pfx")
@json_option
def cert_export(
    files: tuple[Path, ...],
    out: Path,
    password_file: Path | None,
    new_password_file: Path | None,
    as_json: bool,
) -> int:
    """Write the files the server installs and the devices trust, from any uploaded material.

    server.crt (the certificate, as the vendor procedure names it), chain.pem (the
    intermediates), fullchain.pem (both), root.cer (DER) and root.pem (the root to
    distribute to devices) and, when the private key is among FILES, server.pfx (all of
    them, password-protected, mode 0600). Existing files are backed up first.
    """
    from certflow import certs

    out_folder(out)
    material = _load(files, _password(password_file))
    pfx_password = None
    if material.private_key is not None:
        pfx_password = _read_secret(
            new_password_file, "Password of server.pfx", NEW_PASSWORD_FILE, confirm=True
        )
    with writing(f"writing files into {out}"):
        exported = certs.export(material, out, pfx_password=pfx_password)
    print_exported(exported, out, as_json)
    return EXIT_OK


def print_exported(exported: certs.Exported, out: Path, as_json: bool, **extra: object) -> None:
    """What an export wrote, backed up and skipped (``extra`` leads the JSON object);
    ``certflow rollout export`` prints it so too."""
    if as_json:
        print_json(
            {
                **extra,
                "folder": str(out),
                "written": [
                    {"file": str(f.path), "content": f.content, "mode": f"0{f.mode:o}"}
                    for f in exported.files
                ],
                "backups": [str(path) for path in exported.backups],
                "skipped": [{"file": name, "reason": why} for name, why in exported.skipped],
            }
        )
        return
    for path in exported.backups:
        click.echo(f"Backed up {path.name.rsplit('.bak', 1)[0]} to {path}")
    width = max(len(str(f.path)) for f in exported.files)
    for f in exported.files:
        click.echo(f"Wrote {f.path!s:<{width}}  {f.content}, mode 0{f.mode:o}")
    for name, why in exported.skipped:
        click.echo(f"No {name}: {why}")
