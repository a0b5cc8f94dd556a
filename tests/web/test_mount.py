"""The console mounted under /admin/certflow in a small host application (Starlette, its
own session and its own ``authenticate``), as docs/web.md shows it: every link, form,
redirect and cookie stays under the prefix."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from certflow.store import SqlStore
from certflow.web import create_app
from tests.web.conftest import Clock, Console, TestClient, upload

PREFIX = "/admin/certflow"


def host_app(opener: Callable[[], SqlStore], clock: Clock, mount_name: str | None) -> Starlette:
    """The host: its own sign-in (a session cookie), its own pages, the console mounted."""

    async def login(request: Request) -> Response:
        request.session["admin"] = request.query_params["as"]
        return PlainTextResponse("signed in")

    async def home(request: Request) -> Response:
        return PlainTextResponse("the host's own page")

    def authenticate(request: Request) -> str | None:
        # The host's own check: its session, set by its own sign-in.
        name = request.session.get("admin")
        return name if isinstance(name, str) else None

    console = create_app(opener, authenticate=authenticate, clock=clock)
    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login),
            Mount(PREFIX, app=console, name=mount_name),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="host-secret", same_site="strict")],
    )


@pytest.fixture(params=[None, "certflow"], ids=["unnamed", "named"])
def mounted(
    request: pytest.FixtureRequest, opener: Callable[[], SqlStore], clock: Clock
) -> Iterator[Console]:
    with TestClient(host_app(opener, clock, request.param)) as client:
        yield Console(client, prefix=PREFIX, user="")


def test_the_host_signs_in_and_the_console_follows_its_session(mounted: Console) -> None:
    assert mounted.get("/").status_code == 401
    mounted.client.get("/login", params={"as": "carol"})
    page = mounted.get("/")
    assert page.status_code == 200
    assert "Signed in as <strong>carol</strong>" in page.text
    assert mounted.client.get("/").text == "the host's own page"


def test_every_link_form_and_redirect_stays_under_the_prefix(
    mounted: Console, store: SqlStore
) -> None:
    mounted.client.get("/login", params={"as": "carol"})
    created = mounted.create("r", upload(["a", "b", "c"]))
    assert created.status_code == 201
    done = mounted.post("/rollouts/r/do/distribute")
    assert done.url.path == f"{PREFIX}/rollouts/r"
    assert store.info("r").state.value == "distributing"
    for path in ("/", "/new", "/rollouts/r", "/rollouts/r/history", "/rollouts/r/effects"):
        page = mounted.get(path).text
        targets = re.findall(r'(?:href|src|action)="([^"]*)"', page)
        assert targets, path
        assert all(t.startswith(PREFIX + "/") or t == "#main" for t in targets), (path, targets)
    assert mounted.client.get(f"{PREFIX}/static/console.css").status_code == 200
    assert mounted.get("/rollouts/r/chart.svg").headers["content-type"] == "image/svg+xml"


def test_the_consoles_cookie_is_for_its_own_pages(mounted: Console) -> None:
    mounted.client.get("/login", params={"as": "carol"})
    mounted.client.cookies.delete("certflow_csrf")
    response = mounted.get("/new")
    assert f"Path={PREFIX}" in response.headers["set-cookie"]
