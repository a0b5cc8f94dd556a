"""``certflow csr``: make a key and a CSR, show and verify a CSR, and the legacy OpenSSL
configuration."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from certflow.cli._app import (
    EXIT_FINDINGS,
    EXIT_OK,
    F,
    applied,
    json_option,
    main,
    print_json,
    writing,
)
from certflow.cli._certs import (
    NEW_PASSWORD_FILE,
    _ask,
    _new_password_file,
    _read_file,
    _read_secret,
    out_file,
    out_folder,
)

# The certificate stack (certflow.certs, cryptography) is imported by the commands that
# run, not by `certflow --help`, which imports this module for the group's short help.
if TYPE_CHECKING:
    from certflow import certs


@main.group()
def csr() -> None:
    """Create and inspect certificate signing requests (the generateCSR tool)."""


_SUBJECT_FIELDS = [
    ("country", "Country code (ISO 3166-1 alpha-2, e.g. US, GB, IN)"),
    ("state", "State or province"),
    ("locality", "Locality (city)"),
    ("org", "Organization"),
    ("org_unit", "Organizational unit (optional)"),
    ("common_name", "Common name (server host name or address)"),
    ("san", "Subject alternative names, separated by commas (the common name is added)"),
]


def _subject_options(command: F) -> F:
    options = [
        click.option("--country", help="ISO 3166-1 alpha-2 country code, e.g. US."),
        click.option("--state", help="State or province, in full."),
        click.option("--locality", help="Locality (city)."),
        click.option("--org", help="Organization name."),
        click.option("--org-unit", help="Organizational unit (optional; public CAs ignore it)."),
        click.option("--common-name", help="The server's host name or address."),
        click.option("--san", help="More names, comma-separated: DNS names, *.wildcards, IPs."),
        click.option(
            "--no-input", is_flag=True, help="Never prompt: a missing subject option is an error."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _subject(values: dict[str, Any]) -> certs.Subject:
    """The subject from options, prompting (like the source tool) for what is missing."""
    from certflow import certs

    no_input = bool(values.pop("no_input", False))
    if values.get("country") is not None:
        certs.normalize_country(values["country"])  # a wrong flag fails before any prompt
    optional = ("org_unit", "san")
    missing = [f for f, _ in _SUBJECT_FIELDS if values.get(f) is None and f not in optional]
    if missing and no_input:
        flags = ", ".join("--" + field.replace("_", "-") for field in missing)
        raise click.UsageError(f"missing {flags} (required with --no-input)")
    interactive = bool(missing)  # all required flags given: a script, never prompt
    answers: dict[str, str] = {}
    for field, label in _SUBJECT_FIELDS:
        given = values.get(field)
        if given is None and not interactive:
            given = ""
        while given is None:
            answer = _ask(label, default="" if field in optional else None)
            if field == "country":  # re-ask instead of making the user start over
                try:
                    certs.normalize_country(answer)
                except certs.SubjectError as error:
                    click.echo(f"certflow: {error}", err=True)
                    continue
            given = answer
        answers[field] = given
    return certs.Subject.create(
        country=answers["country"],
        state=answers["state"],
        locality=answers["locality"],
        organization=answers["org"],
        organizational_unit=answers["org_unit"],
        common_name=answers["common_name"],
        sans=answers["san"],
    )


_bits = click.option(
    "--bits",
    type=click.Choice(["2048", "3072", "4096"]),
    default="2048",
    show_default=True,
    help="RSA key size.",
)


@csr.command("new")
@_subject_options
@_bits
@click.option(
    "--out",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The folder to write server.key and server.csr into (it must exist); existing "
    "ones are backed up first.",
)
@click.option("--encrypt", is_flag=True, help="Encrypt server.key with a password.")
@_new_password_file("of server.key (with --encrypt)")
@json_option
def csr_new(
    bits: str,
    out: Path,
    encrypt: bool,
    new_password_file: Path | None,
    as_json: bool,
    **subject_options: Any,
) -> int:
    """Generate an RSA key and a CSR: writes server.key (mode 0600) and server.csr into --out.

    Options left out are asked for, as the source's generateCSR tool does (--no-input makes
    them errors instead). Existing server.key / server.csr are copied to server.key.bak /
    server.csr.bak (then .bak.1, ..., one number for both) first; an earlier backup is never
    overwritten.
    """
    from certflow import certs

    if new_password_file is not None and not encrypt:
        raise click.UsageError(f"{NEW_PASSWORD_FILE} needs --encrypt")
    out_folder(out)  # before the questions, not after them
    subject = _subject(subject_options)
    passphrase = (
        _read_secret(new_password_file, "Key password", NEW_PASSWORD_FILE, confirm=True)
        if encrypt
        else None
    )
    key = certs.generate_key(int(bits))
    request = certs.create_csr(subject, key)
    with writing(f"writing server.key and server.csr into {out}"):
        written = certs.write_key_and_csr(out, key, request, passphrase=passphrase)
    if as_json:
        print_json(
            {
                "key": str(written.key),
                "csr": str(written.csr),
                "backups": [str(path) for path in written.backups],
                "key_size": key.key_size,
                "key_encrypted": passphrase is not None,
                "subject": subject.x509_name().rfc4514_string(),
                "sans": [str(entry) for entry in subject.sans],
            }
        )
        return EXIT_OK
    for path in written.backups:
        click.echo(f"Backed up {path.name.rsplit('.bak', 1)[0]} to {path}")
    state = "encrypted" if passphrase is not None else "not encrypted"
    click.echo(f"Wrote {written.key} (RSA {key.key_size} bits, {state}, mode 0600)")
    click.echo(f"Wrote {written.csr}")
    click.echo(f"Subject: {subject.x509_name().rfc4514_string()}")
    click.echo(f"Names:   {', '.join(str(entry) for entry in subject.sans)}")
    click.echo("Next: submit server.csr to your CA; keep server.key, the certificate needs it.")
    return EXIT_OK


def _csr_data(info: certs.CsrInfo) -> dict[str, Any]:
    return {
        "ok": info.ok,
        "subject": info.subject.rfc4514_string(),
        "common_name": info.common_name,
        "sans": [str(entry) for entry in info.sans],
        "key_type": info.key_type,
        "key_size": info.key_size,
        "signature_algorithm": info.signature_algorithm,
        "signature_valid": info.signature_valid,
        "problems": list(info.problems),
    }


@csr.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def csr_show(file: Path, as_json: bool) -> int:
    """Show and verify a CSR: subject, names, key size, signature (exit 1 when unusable)."""
    from certflow import certs

    info = certs.inspect_csr(_read_file(file), source=str(file))
    if as_json:
        print_json(_csr_data(info))
    else:
        rows = [
            ("Subject", info.subject.rfc4514_string() or "(empty)"),
            ("Names", ", ".join(str(entry) for entry in info.sans) or "(none)"),
            ("Key", f"{info.key_type} {info.key_size or '?'} bits"),
            (
                "Signature",
                f"{info.signature_algorithm}, {'valid' if info.signature_valid else 'INVALID'}",
            ),
        ]
        for label, value in rows:
            click.echo(f"{label + ':':<11}{value}")
        click.echo("Result:    " + ("ok" if info.ok else f"NOT usable: {'; '.join(info.problems)}"))
    return EXIT_OK if info.ok else EXIT_FINDINGS


@csr.command("openssl-config")
@_subject_options
@_bits
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    default="-",
    help="The file to write the configuration to (its folder must exist; default '-': "
    "standard output); an existing file is backed up first.",
)
def csr_openssl_config(bits: str, out: Path, **subject_options: Any) -> int:
    """Print the legacy opensslsan.conf for `openssl req` (older product versions).

    It yields a CSR with the same subject and names as `certflow csr new`.
    """
    from certflow import certs

    out_file(out)  # before the questions, not after them
    text = certs.openssl_config(_subject(subject_options), bits=int(bits))
    if str(out) == "-":
        click.echo(text, nl=False)
    else:
        saved = certs.backup(out)
        certs.atomic_write(out, text.encode(), mode=0o644)
        applied()
        if saved is not None:
            click.echo(f"Backed up {out} to {saved}", err=True)
        click.echo(f"Wrote {out}", err=True)
    return EXIT_OK
