"""``certflow serve``: the token comes from a file and signs in through a form that sets
a signed session cookie; bad options are one line, exit 2; the token is never printed.

uvicorn's ``run`` is replaced by a catcher, so the console ``serve`` would run is driven
over HTTP here; the browser test (``test_browser.py``) serves it for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner, Result

import certflow.cli._serve as serve  # registers `certflow serve` on the group
from certflow.cli import main
from certflow.core.errors import InvalidInput
from certflow.store import SqliteStore
from tests.web.conftest import CSRF, TestClient

TOKEN = "correct-horse-battery-staple-42"


def run(*args: str | Path, expect: int = 0) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args], prog_name="certflow")
    assert "Traceback" not in result.output
    assert result.exit_code == expect, result.output
    return result


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `certflow serve` hands uvicorn, for a database and a token file."""
    SqliteStore(tmp_path / "c.db").close()
    (tmp_path / "token").write_text(TOKEN + "\n")
    caught: dict[str, Any] = {}

    def catch(app: Any, **options: Any) -> None:
        caught.update(options, app=app)

    monkeypatch.setattr(uvicorn, "run", catch)
    result = run("serve", "--db", tmp_path / "c.db", "--token-file", tmp_path / "token")
    assert TOKEN not in result.output
    assert "on http://127.0.0.1:8080/" in result.stderr
    caught["output"] = result.output
    return caught


def test_serve_listens_where_bind_says(served: dict[str, Any]) -> None:
    assert (served["host"], served["port"]) == ("127.0.0.1", 8080)


def test_the_token_signs_in_through_the_form(served: dict[str, Any]) -> None:
    with TestClient(served["app"]) as client:
        first = client.get("/rollouts/x", follow_redirects=False)
        assert first.status_code == 303
        assert first.headers["location"] == "/sign-in?next=%2Frollouts%2Fx"
        form = client.get("/sign-in").text
        token = CSRF.search(form)
        assert token is not None
        assert 'type="password"' in form
        wrong = client.post(
            "/sign-in", data={"csrf_token": token[1], "token": "guess<b>", "next": "/"}
        )
        assert wrong.status_code == 401
        assert "guess" not in wrong.text
        assert TOKEN not in wrong.text
        forged = client.post("/sign-in", data={"csrf_token": "0" * 64, "token": TOKEN})
        assert forged.status_code == 403
        right = client.post(
            "/sign-in",
            data={"csrf_token": token[1], "token": TOKEN, "next": "/new"},
            follow_redirects=False,
        )
        assert right.status_code == 303
        assert right.headers["location"] == "/new"
        cookie = right.headers["set-cookie"]
        assert cookie.startswith("certflow_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert TOKEN not in cookie
        page = client.get("/")
        assert "Signed in as <strong>administrator</strong>" in page.text
        # Signing out ends the session.
        out_token = CSRF.search(page.text)
        assert out_token is not None
        client.post("/sign-out", data={"csrf_token": out_token[1]})
        assert client.get("/", follow_redirects=False).status_code == 303


def test_a_forged_session_cookie_signs_nobody_in(served: dict[str, Any]) -> None:
    with TestClient(served["app"]) as client:
        client.cookies.set("certflow_session", "eyJ1c2VyIjoiYWRtaW5pc3RyYXRvciJ9.x.y")
        assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_goes_back_only_to_the_consoles_own_pages(served: dict[str, Any]) -> None:
    with TestClient(served["app"]) as client:
        token = CSRF.search(client.get("/sign-in").text)
        assert token is not None
        for away in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
            done = client.post(
                "/sign-in",
                data={"csrf_token": token[1], "token": TOKEN, "next": away},
                follow_redirects=False,
            )
            assert done.headers["location"] == "/"


def test_bad_options_are_one_line_and_exit_2(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "c.db").close()
    (tmp_path / "short").write_text("abc\n")
    (tmp_path / "token").write_text(TOKEN)
    short = run("serve", "--db", tmp_path / "c.db", "--token-file", tmp_path / "short", expect=2)
    assert "the sign-in token is 3 characters long; it must be at least 16" in short.stderr
    missing = run("serve", "--db", tmp_path / "c.db", "--token-file", tmp_path / "nope", expect=2)
    assert str(tmp_path / "nope") in missing.stderr
    no_db = run("serve", "--db", tmp_path / "x.db", "--token-file", tmp_path / "token", expect=2)
    assert "no certflow database there" in no_db.stderr
    bind = run(
        "serve", "--db", tmp_path / "c.db", "--token-file", tmp_path / "token",
        "--bind", "localhost", expect=2,
    )  # fmt: skip
    assert "--bind 'localhost': give HOST:PORT" in bind.stderr
    # No option takes the token itself: it would show in ps and the shell's history.
    run("serve", "--token", TOKEN, expect=2)


def test_bind_reads_ipv4_ipv6_and_names() -> None:
    assert serve.parse_bind("0.0.0.0:80") == ("0.0.0.0", 80)
    assert serve.parse_bind("[::1]:8443") == ("::1", 8443)
    assert serve.parse_bind("console.internal:8080") == ("console.internal", 8080)
    for bad in ("[::1]", "host:0", "host:70000", ":80"):
        with pytest.raises(InvalidInput, match="give HOST:PORT"):
            serve.parse_bind(bad)
