"""``certflow key``: encrypt or decrypt a private key with a password."""

from __future__ import annotations

from pathlib import Path

import click

from certflow.cli._app import EXIT_OK, applied, main
from certflow.cli._certs import (
    NEW_PASSWORD_FILE,
    PASSWORD_FILE,
    _new_password_file,
    _password,
    _password_file,
    _read_file,
    _read_secret,
    out_file,
)

# The certificate stack (certflow.certs, cryptography) is imported by the commands that
# run, not by `certflow --help`, which imports this module for the group's short help.


@main.group()
def key() -> None:
    """Encrypt or decrypt a private key with a password."""


def _write_key(out: str, data: bytes) -> None:
    from certflow import certs

    if out == "-":
        click.echo(data.decode(), nl=False)
        return
    target = Path(out)
    saved = certs.backup(target)
    certs.atomic_write(target, data, mode=0o600)
    applied()
    if saved is not None:
        click.echo(f"Backed up {target} to {saved}", err=True)
    click.echo(f"Wrote {target} (mode 0600)", err=True)


_key_in = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
_key_out = click.option(
    "--out",
    required=True,
    metavar="FILE",
    help="The file to write the key to (its folder must exist; '-': standard output); an "
    "existing file is backed up first.",
)


@key.command("decrypt")
@_key_in
@_key_out
@_password_file
def key_decrypt(file: Path, out: str, password_file: Path | None) -> int:
    """Decrypt an encrypted private key (what the web server reads)."""
    from certflow import certs

    out_file(out)  # before asking for anything
    passphrase = _read_secret(password_file, "Key password", PASSWORD_FILE)
    _write_key(out, certs.decrypt_key(_read_file(file), passphrase, source=str(file)))
    return EXIT_OK


@key.command("encrypt")
@_key_in
@_key_out
@_password_file
@_new_password_file("to encrypt the key with")
def key_encrypt(
    file: Path, out: str, password_file: Path | None, new_password_file: Path | None
) -> int:
    """Encrypt a private key with a password (PKCS#8, AES-256).

    A key that is already encrypted is re-encrypted: its current password comes from
    --password-file (or a prompt), the new one from --new-password-file (or a prompt).
    """
    from certflow import certs

    out_file(out)  # before asking for anything
    data = _read_file(file)
    current = _password(password_file)
    try:
        certs.load_key(data, source=str(file))  # refuse a damaged key before asking
    except certs.MaterialError as error:
        if error.code != "password_required":
            raise
        if current is None:
            current = _read_secret(None, f"Current password of {file}", PASSWORD_FILE)
    else:
        if current is not None:
            raise click.UsageError(
                f"{file} is not encrypted, so {PASSWORD_FILE} (the password of an encrypted "
                f"key) does not apply; give the new password with {NEW_PASSWORD_FILE}"
            )
    certs.load_key(data, current, source=str(file))  # a wrong current password fails here
    passphrase = _read_secret(new_password_file, "New password", NEW_PASSWORD_FILE, confirm=True)
    _write_key(
        out, certs.encrypt_key(data, passphrase, current_passphrase=current, source=str(file))
    )
    return EXIT_OK
