"""The security rules of web.md, one test (or more) for each: authentication everywhere,
a CSRF token on every POST, no GET that changes anything, values from outside rendered
inert, the headers, bounded uploads kept nowhere, and no secret echoed."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from starlette.routing import Route

import certflow as cf
from certflow.store import SqlStore
from certflow.web import HEADERS, create_app
from tests.backends import SqliteBackend
from tests.certs.factory import DAY, HOST, build, pem, pki, san
from tests.web.conftest import Clock, Console, TestClient, Upload, upload

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "javascript:alert(3)",
    "' onmouseover='alert(4)",
]
PARAMS = {"name": "r", "action": "extend", "what": "acknowledge", "path": "/console.css"}


def every_route(console: Console) -> list[tuple[str, str]]:
    """Every (method, path) of the console, its parameters filled in."""
    app = console.client.app
    found = []
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route):
            path = route.path_format.format(**{k: PARAMS[k] for k in route.param_convertors})
            found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


@pytest.fixture
def rollout(console: Console, clock: Clock) -> Console:
    assert console.create("r", upload([f"d{i}" for i in range(5)])).status_code == 201
    console.post("/rollouts/r/do/distribute")
    return console


def test_no_page_or_action_answers_without_authentication(rollout: Console) -> None:
    routes = every_route(rollout)
    assert len(routes) >= 12
    for method, path in routes:
        response = rollout.client.request(method, path)  # no administrator named
        assert response.status_code == 401, (method, path)
        assert "Sign-in required" in response.text
        assert "d0" not in response.text  # nothing of the rollout
    # The stylesheet alone is public: it holds no data, and the sign-in page needs it.
    assert rollout.client.get("/static/console.css").status_code == 200


def test_an_authenticate_that_refuses_refuses_even_a_well_formed_post(
    opener: Any, clock: Clock, store: SqlStore
) -> None:
    app = create_app(opener, authenticate=lambda request: None, clock=clock)
    with TestClient(app) as client:
        response = client.post("/new", data={"csrf_token": "0" * 64, "name": "x"})
    assert response.status_code == 401
    assert store.rollouts() == []


def test_no_post_without_this_sessions_csrf_token(rollout: Console, store: SqlStore) -> None:
    before = store.info("r")
    client = rollout.client
    no_token = client.post("/rollouts/r/do/cancel", headers=rollout.headers)
    assert no_token.status_code == 403
    assert "security token is missing or not this session" in no_token.text
    forged = client.post(
        "/rollouts/r/do/cancel", data={"csrf_token": "a" * 64}, headers=rollout.headers
    )
    assert forged.status_code == 403
    # Another administrator's token, in this browser, is worth nothing.
    bob = Console(client, user="bob")
    bobs = bob.token()
    as_alice = client.post(
        "/rollouts/r/do/cancel", data={"csrf_token": bobs}, headers=rollout.headers
    )
    assert as_alice.status_code == 403
    # Alice's token from another browser (another CSRF cookie) is worth nothing either.
    token = rollout.token()
    client.cookies.clear()
    elsewhere = client.post(
        "/rollouts/r/do/cancel", data={"csrf_token": token}, headers=rollout.headers
    )
    assert elsewhere.status_code == 403
    assert store.info("r") == before


def test_the_csrf_cookie_is_httponly_and_same_site_strict(console: Console) -> None:
    console.client.cookies.clear()
    response = console.get("/new")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("certflow_csrf=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie


def test_no_get_changes_anything(rollout: Console, db: Path, clock: Clock) -> None:
    clock.move(6 * DAY)  # past the notice: a read projects it, and must store nothing
    tables = SqliteBackend(db).tables()
    for method, path in every_route(rollout):
        if method == "GET":
            rollout.get(path)
    for action in ("import-now", "proceed", "extend", "cancel"):
        rollout.get(f"/rollouts/r/confirm/{action}")  # the previews are rolled back
    rollout.get("/rollouts/r/devices.csv")
    assert SqliteBackend(db).tables() == tables
    # The actions are POST only.
    assert rollout.client.get("/rollouts/r/do/cancel", headers=rollout.headers).status_code == 405


def _inert(page: str) -> None:
    assert "<script" not in page
    assert "<img src=x" not in page  # the console's own chart aside, no image tag
    assert not re.search(r"""(href|src|action)=["']?\s*javascript:""", page)
    assert "onmouseover='" not in page
    assert "onerror=alert(2)>" not in page


def test_values_from_outside_are_rendered_inert(
    console: Console, store: SqlStore, clock: Clock
) -> None:
    made = pki(HOST)
    hostile_leaf = build(
        HOSTILE[0],
        key=made.leaf_key,
        issuer=(made.intermediate, made.intermediate_key),
        sans=san(HOST),
    )
    files = upload([*HOSTILE, "plain"])
    files = Upload(
        material=[
            ("<script>x</script>.crt", pem(hostile_leaf)),
            *files.material[1:],
        ],
        existing=files.existing,
        devices=files.devices,
    )
    created = console.create("r", files)
    assert created.status_code == 201
    _inert(created.text)
    console.post("/rollouts/r/do/distribute")
    store.apply_all(
        "r",
        [cf.DeviceFailed(device, HOSTILE[i - 1]) for i, device in enumerate(HOSTILE)],
        clock.move(DAY),
    )
    pages = [
        console.get(path).text
        for path in (
            "/",
            "/rollouts/r",
            "/rollouts/r?state=failed",
            "/rollouts/r/history",
            "/rollouts/r/effects?show=all",
            "/rollouts/r/confirm/import-now",
        )
    ]
    pages.append(console.get("/rollouts/r", params={"prefix": HOSTILE[1], "after": ""}).text)
    for page in pages:
        _inert(page)
    details = pages[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in details  # shown, as text
    subject = re.search(r"<dt>Certificate</dt><dd>([^<]*)<", details)
    assert subject is not None, details[details.find("<dt>Certificate") :][:300]
    # The subject too (RFC 4514 escapes '<' and '>' with a backslash; HTML escapes them).
    assert subject[1].startswith("CN=\\&lt;script\\&gt;alert(1)\\&lt;/script\\&gt;")
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in details
    # A device id in a form field stays one attribute value.
    assert 'value="&#39; onmouseover=&#39;alert(4)"' in pages[2]
    # The refusal's words name the device as data, escaped like the rest.
    missing = console.post("/rollouts/r/retry", {"device_id": HOSTILE[0] + "-unknown"})
    _inert(missing.text)
    # In the CSV, a cell that a spreadsheet would run as a formula stays text.
    export = console.get("/rollouts/r/devices.csv").text
    assert "javascript:alert(3)" in export


def test_a_formula_in_a_device_id_or_reason_is_text_in_the_csv(
    console: Console, store: SqlStore, clock: Clock
) -> None:
    console.create("r", upload(["=HYPERLINK(1)", "+1", "plain"]))
    console.post("/rollouts/r/do/distribute")
    store.apply("r", cf.DeviceFailed("plain", "@SUM(A1)"), clock.move(DAY))
    lines = console.get("/rollouts/r/devices.csv").text.splitlines()
    assert lines[1].startswith("'=HYPERLINK(1),")
    assert lines[2].startswith("'+1,")
    assert lines[3].endswith(",'@SUM(A1)")


def test_every_response_carries_the_security_headers(rollout: Console) -> None:
    responses = [
        rollout.get("/"),
        rollout.get("/rollouts/r"),
        rollout.get("/rollouts/r/chart.svg"),
        rollout.get("/rollouts/r/forecast"),
        rollout.get("/rollouts/r/devices.csv"),
        rollout.get("/rollouts/nope"),  # an error page
        rollout.client.get("/"),  # refused: not signed in
        rollout.client.get("/static/console.css"),
    ]
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers[name] == value
    policy = HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert HEADERS["X-Frame-Options"] == "DENY"
    assert HEADERS["X-Content-Type-Options"] == "nosniff"
    assert responses[1].headers["cache-control"] == "no-store"


def test_no_page_holds_inline_script_or_style(rollout: Console) -> None:
    pages = ("/", "/new", "/rollouts/r", "/rollouts/r/history", "/rollouts/r/effects")
    responses = [(path, rollout.get(path)) for path in pages]
    # The Forecast page twice: saying the forecast is computed (it refreshes itself with
    # a meta element, not a script), then, requested again until done, the forecast.
    forecast = "/rollouts/r/forecast"
    computing = rollout.get(forecast)
    assert 'id="forecast-computing"' in computing.text
    responses.append((forecast, computing))
    deadline = time.monotonic() + 60
    while 'id="forecast-computing"' in (done := rollout.get(forecast)).text:
        assert time.monotonic() < deadline, "the forecast was never computed"
        time.sleep(0.02)
    assert 'id="branch-as-is"' in done.text
    responses.append((forecast, done))
    for path, response in responses:
        assert response.status_code == 200, path
        page = response.text
        assert "<script" not in page
        assert "<style" not in page
        assert " style=" not in page
        assert not re.search(r" on[a-z]+=", page)


def test_uploads_are_written_nowhere(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an upload was about to be written to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    assert console.create("r", upload(["a", "b"])).status_code == 201


def test_an_upload_over_its_limit_is_refused_naming_it(console: Console) -> None:
    too_many = upload(["a"])
    big = Upload(
        material=too_many.material,
        existing=too_many.existing,
        devices=("devices.txt", b"x" * (1024 * 1024 + 1)),
    )
    big = Upload(
        material=[("huge.crt", b"-" * (1024 * 1024 + 1))],
        existing=big.existing,
        devices=big.devices,
    )
    refused = console.create("r", big)
    assert refused.status_code == 413
    assert "certificate material &#39;huge.crt&#39;: larger than 1 MiB" in refused.text
    declared = console.client.post(
        "/new",
        content=b"x",
        headers={
            **console.headers,
            "content-type": "multipart/form-data; boundary=b",
            "content-length": str(10**10),
        },
    )
    assert declared.status_code == 413
    assert "over the" in declared.text


def _pfx(password: bytes) -> bytes:
    made = pki(HOST)
    return pkcs12.serialize_key_and_certificates(
        b"server",
        made.leaf_key,  # type: ignore[arg-type]
        made.leaf,
        [made.intermediate, made.root],
        serialization.BestAvailableEncryption(password),
    )


def test_no_password_is_echoed_into_a_page(console: Console, store: SqlStore) -> None:
    secret = "s3cr3t-<b>pass</b>"
    files = upload(["a", "b"])
    pfx = _pfx(b"right-password-1")
    fields = {
        "csrf_token": console.token("/new"),
        "name": "r",
        "hosts": HOST,
        "step": "create",
        "password": secret,
    }
    parts = [
        ("material", ("server.pfx", pfx)),
        ("existing", files.existing),
        ("devices", files.devices),
    ]
    wrong = console.client.post("/new", data=fields, files=parts, headers=console.headers)
    assert wrong.status_code == 400
    assert "s3cr3t" not in wrong.text
    assert "right-password" not in wrong.text
    fields["password"] = "right-password-1"
    fields["csrf_token"] = console.token("/new")
    right = console.client.post("/new", data=fields, files=parts, headers=console.headers)
    assert right.status_code == 201
    for page in (
        right.text,
        console.get("/rollouts/r").text,
        console.get("/rollouts/r/history").text,
    ):
        assert "right-password" not in page
