"""The certificate fixtures, shared with the certificate tests."""

from tests.certs.conftest import good, openssl

__all__ = ["good", "openssl"]
