"""Fixtures of the certificate tests (certificates come from :mod:`.factory`)."""

from __future__ import annotations

import shutil

import pytest

from .factory import Pki, pki


@pytest.fixture(scope="session")
def good() -> Pki:
    """A valid private PKI: root -> intermediate -> RSA-2048 leaf for mdm.example.com."""
    return pki()


@pytest.fixture(scope="session")
def openssl() -> str:
    """The path of the ``openssl`` binary (CI installs it; its absence is a failure)."""
    path = shutil.which("openssl") or "/usr/bin/openssl"
    assert shutil.which(path), "the openssl binary is required (apt-get install openssl)"
    return path
