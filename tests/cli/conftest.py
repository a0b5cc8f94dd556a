"""The certificate fixtures, shared with the certificate tests, and the store's backends
(SQLite and PostgreSQL) for the command-line tests."""

from tests.backends import backend as backend
from tests.certs.conftest import good, openssl

__all__ = ["backend", "good", "openssl"]
