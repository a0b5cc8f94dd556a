"""What the console's tests share: a PKI's upload, a clock the test moves, consoles over a
real store (SQLite, and PostgreSQL where cheap), and a client that signs its forms."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import pytest
from cryptography import x509
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request

with warnings.catch_warnings():
    # Starlette would rather drive its test client with httpx2; the lock has httpx, which
    # it still supports (and says so with this warning, at import).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from certflow.store import SqliteStore, SqlStore
from certflow.web import create_app
from tests.backends import backend as backend  # the fixture: both backends, in turn
from tests.certs.factory import DAY, HOST, NOW, build, key_pem, pem, pki, rsa_key

__all__ = ["Clock", "Console", "TestClient", "Upload", "header_user", "upload"]

USER_HEADER = "X-Test-User"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


class Clock:
    """The console's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def move(self, span: timedelta) -> datetime:
        self.now += span
        return self.now


def header_user(request: Request) -> str | None:
    """The tests' host: the administrator is named by a header (absent: not signed in)."""
    return request.headers.get(USER_HEADER) or None


@attrs.frozen
class Upload:
    """The files an administrator uploads for a new rollout."""

    material: list[tuple[str, bytes]]
    existing: tuple[str, bytes]
    devices: tuple[str, bytes]


def upload(devices: list[str], *, host: str = HOST) -> Upload:
    """A checked certificate (private PKI: leaf, intermediate, root, key) for ``host``,
    the server's current certificate (expiring in 60 days) and the device list."""
    made = pki(host)
    current = build(
        host,
        key=rsa_key(2048, 3),
        issuer=(made.intermediate, made.intermediate_key),
        sans=(x509.DNSName(host),),
        not_before=NOW - 300 * DAY,
        not_after=NOW + 60 * DAY,
    )
    return Upload(
        material=[
            ("server.crt", pem(made.leaf)),
            ("chain.pem", pem(made.intermediate, made.root)),
            ("server.key", key_pem(made.leaf_key)),
        ],
        existing=("current.crt", pem(current)),
        devices=("devices.txt", "\n".join(devices).encode()),
    )


class Console:
    """A TestClient on a console, signed in as ``user``, that fills in form tokens."""

    def __init__(self, client: TestClient, prefix: str = "", user: str = "alice") -> None:
        self.client = client
        self.prefix = prefix
        self.headers = {USER_HEADER: user}

    def get(self, path: str, **options: Any) -> httpx.Response:
        return cast(
            httpx.Response, self.client.get(self.prefix + path, headers=self.headers, **options)
        )

    def token(self, page: str = "/new") -> str:
        found = CSRF.search(self.get(page).text)
        assert found is not None, f"no form token on {page}"
        return found[1]

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, page: str = "/new", **options: Any
    ) -> httpx.Response:
        fields = {"csrf_token": self.token(page), **(data or {})}
        response = self.client.post(
            self.prefix + path, data=fields, headers=self.headers, follow_redirects=True, **options
        )
        return cast(httpx.Response, response)

    def create(
        self, name: str, files: Upload, *, hosts: str = HOST, step: str = "create"
    ) -> httpx.Response:
        parts = [("material", item) for item in files.material]
        parts += [("existing", files.existing), ("devices", files.devices)]
        fields = {"csrf_token": self.token("/new"), "name": name, "hosts": hosts, "step": step}
        response = self.client.post(
            self.prefix + "/new", data=fields, files=parts, headers=self.headers
        )
        return cast(httpx.Response, response)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "console.db"


@pytest.fixture
def opener(db: Path) -> Callable[[], SqlStore]:
    return lambda: SqliteStore(db)


@pytest.fixture
def console(opener: Callable[[], SqlStore], clock: Clock) -> Iterator[Console]:
    app = create_app(opener, authenticate=header_user, clock=clock)
    with TestClient(app) as client:
        yield Console(client)


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    """The test's own store on the console's database (another connection, as a worker's)."""
    with SqliteStore(db) as opened:
        yield opened
