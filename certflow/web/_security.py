"""The console's security rules (``docs/web.md``): who is signed in, the CSRF token of
every form, the token sign-in of ``certflow serve``, and the headers of every response.

* **Authentication** is the host's: ``authenticate(request)`` returns the
  administrator's name or ``None``; nothing of the console answers without a name.
* **CSRF**: the console gives each browser a random id in a cookie of its own
  (``HttpOnly``, ``SameSite=Strict``); a form's token is the HMAC of that id and the
  administrator's name under the console's secret. A POST whose token does not match
  the cookie and the name is refused before anything is read or done, so a token taken
  from one browser or one administrator is worth nothing in another.
* **The token sign-in** (``certflow serve``): the token from the file signs in through a
  form; the session is a cookie signed (itsdangerous) under a key derived from the token,
  so that changing the token file signs everybody out.
* **Headers**: a content security policy allowing nothing inline and no framing, and
  the older headers that say the same to older browsers.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from certflow.core.errors import InvalidInput

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "HEADERS",
    "SESSION_COOKIE",
    "Authenticate",
    "SecurityHeaders",
    "TokenSignIn",
    "check_csrf",
    "cookie_path",
    "csrf_token",
    "user_of",
]

#: The host's check of a request: the administrator's name, or ``None`` (refused). It may
#: be a coroutine function.
Authenticate = Callable[[Request], "str | Awaitable[str | None] | None"]

#: The cookie holding the browser's CSRF id, to which every form's token is bound.
CSRF_COOKIE = "certflow_csrf"
#: The form field in which every POST carries its CSRF token.
CSRF_FIELD = "csrf_token"
#: The signed session cookie of ``certflow serve``'s token sign-in (:class:`TokenSignIn`).
SESSION_COOKIE = "certflow_session"
#: The shortest sign-in token accepted.
MIN_TOKEN = 16
#: How long a sign-in of ``certflow serve`` lasts.
SESSION_SECONDS = 12 * 3600

#: Every response of the console carries these.
HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: :data:`HEADERS` on every response; pages are never cached (they
    show a rollout as it is now, and may be behind a sign-in)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def cookie_path(request: Request) -> str:
    """The console's cookies are for its own pages: the prefix it is mounted under."""
    return str(request.scope.get("root_path", "")) or "/"


async def user_of(request: Request, authenticate: Authenticate) -> str | None:
    """The administrator the host's ``authenticate`` names for ``request``, or ``None``."""
    answer = authenticate(request)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is None or answer == "":
        return None
    if not isinstance(answer, str):
        raise TypeError(f"authenticate must return a name (str) or None, got {answer!r}")
    return answer


# --- CSRF --------------------------------------------------------------------------------------


def _browser_id(request: Request) -> str:
    """The browser's CSRF id: its cookie's, or a new one the response will set."""
    known = request.cookies.get(CSRF_COOKIE, "")
    if len(known) == 43 and known.replace("-", "").replace("_", "").isalnum():
        return known
    fresh: str | None = getattr(request.state, "csrf_new", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.csrf_new = fresh
    return fresh


def csrf_token(request: Request, secret: bytes, user: str) -> str:
    """The token every form of this browser and administrator carries."""
    message = f"{_browser_id(request)}\0{user}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_csrf(request: Request, secret: bytes, user: str, form: dict[str, Any]) -> bool:
    """Whether a POST's token is this browser's and this administrator's."""
    if CSRF_COOKIE not in request.cookies:
        return False
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, csrf_token(request, secret, user))


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Give the browser the CSRF id a page's forms were signed with, if it is new."""
    fresh = getattr(request.state, "csrf_new", None)
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            path=cookie_path(request),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


# --- the token sign-in of `certflow serve` ------------------------------------------------------


class TokenSignIn:
    """``certflow serve``'s sign-in: one secret token, read from a file by the caller.

    :meth:`authenticate` is the ``authenticate`` of :func:`certflow.web.create_app`: the
    session cookie, signed under a key derived from the token, names ``user``.
    """

    def __init__(self, token: str, *, user: str = "administrator") -> None:
        if len(token.strip()) < MIN_TOKEN:
            raise InvalidInput(
                f"the sign-in token is {len(token.strip())} characters long; it must be at "
                f"least {MIN_TOKEN} (make one with: openssl rand -hex 32)"
            )
        self._token = token.encode()
        self.user = user
        key = hmac.new(self._token, b"certflow console session", hashlib.sha256).digest()
        self._serializer = URLSafeTimedSerializer(key, salt="certflow-session")

    def matches(self, given: str) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        return hmac.compare_digest(given.encode(), self._token)

    def session(self) -> str:
        """A new session cookie's value."""
        return self._serializer.dumps({"user": self.user, "id": secrets.token_urlsafe(16)})

    def authenticate(self, request: Request) -> str | None:
        """The signed-in administrator of ``request``, or ``None``."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        user = data.get("user") if isinstance(data, dict) else None
        return user if isinstance(user, str) else None
