"""RSA private keys: generation, encryption with a passphrase, decryption."""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from certflow.certs._errors import (
    DATA,
    PRIVATE_KEY,
    PRIVATE_KEY_TYPES,
    SECRET,
    MaterialError,
    expect,
    expect_optional,
)
from certflow.core.errors import InvalidInput

KeySize = Literal[2048, 3072, 4096]
#: The RSA key sizes the CSR tool generates.
KEY_SIZES: tuple[KeySize, ...] = (2048, 3072, 4096)


def generate_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA private key of 2048 (default), 3072 or 4096 bits, public exponent 65537."""
    if bits not in KEY_SIZES or not isinstance(bits, int) or isinstance(bits, bool):
        raise InvalidInput(f"RSA key size {bits!r} is not supported; use 2048, 3072 or 4096")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _passphrase(passphrase: str | bytes) -> bytes:
    expect("passphrase", passphrase, (str, bytes), SECRET)
    data = passphrase.encode() if isinstance(passphrase, str) else passphrase
    if not data:
        raise InvalidInput("the passphrase is empty")
    return data


def key_to_pem(key: PrivateKeyTypes, passphrase: str | bytes | None = None) -> bytes:
    """``key`` as PKCS#8 PEM, encrypted with ``passphrase`` (AES-256) when one is given."""
    expect("key", key, PRIVATE_KEY_TYPES, PRIVATE_KEY)
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(_passphrase(passphrase))
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_key(
    data: bytes, passphrase: str | bytes | None = None, *, source: str = "key"
) -> PrivateKeyTypes:
    """A private key from PEM or DER (PKCS#1 or PKCS#8, encrypted or not).

    Raises :class:`MaterialError` (``password_required``, ``bad_password``,
    ``unparseable``) naming ``source``.
    """
    from certflow.certs._load import load  # the loader owns format detection

    expect("data", data, bytes, DATA)
    expect_optional("passphrase", passphrase, (str, bytes), SECRET)
    material = load(data, password=passphrase, names=(source,))
    if material.private_key is None:
        raise MaterialError(source, "unsupported", "contains no private key")
    return material.private_key


def encrypt_key(
    data: bytes,
    passphrase: str | bytes,
    *,
    current_passphrase: str | bytes | None = None,
    source: str = "key",
) -> bytes:
    """The key in ``data`` as encrypted PKCS#8 PEM under ``passphrase``.

    An already encrypted key is opened with ``current_passphrase`` (re-encryption); without
    it, such a key raises :class:`MaterialError` with code ``password_required``.
    """
    _passphrase(passphrase)  # a bad new passphrase fails before the key is opened
    return key_to_pem(load_key(data, current_passphrase, source=source), passphrase)


def decrypt_key(data: bytes, passphrase: str | bytes, *, source: str = "key") -> bytes:
    """The encrypted key in ``data`` as unencrypted PKCS#8 PEM (what a web server reads).

    A wrong passphrase raises :class:`MaterialError` with code ``bad_password``.
    """
    expect("passphrase", passphrase, (str, bytes), SECRET)
    return key_to_pem(load_key(data, passphrase, source=source))
