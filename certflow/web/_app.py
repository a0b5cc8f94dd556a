"""The console as an ASGI application: :func:`create_app` and what every page shares.

Every route goes through :meth:`Console.route`: the host's ``authenticate`` first (no
name, no page), then for a POST the CSRF token, then the page; an error becomes a page
that names the thing and the problem (a refusal by the rules: the engine's reason and
hint, :func:`certflow.core.wording.describe_refusal`). Links are made from the route's
name and the prefix the console is mounted under (``root_path``), never absolute.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from certflow.certs import MaterialError
from certflow.core.errors import CommandRefused, InvalidInput, TimeWentBackwards, UnknownDevice
from certflow.core.instants import require_utc
from certflow.store import StoreError, UnknownRollout
from certflow.web import _words
from certflow.web._background import Latest
from certflow.web._runner import Bounded, Busy, StoreRunner, StoreSource
from certflow.web._security import (
    CSRF_FIELD,
    Authenticate,
    SecurityHeaders,
    TokenSignIn,
    check_csrf,
    csrf_token,
    set_csrf_cookie,
    user_of,
)
from certflow.web._uploads import Form, Limit, TooLarge, read_form

__all__ = ["Clock", "Console", "Handler", "create_app"]

#: The console's clock: the current instant, timezone-aware (tests move it).
Clock = Callable[[], datetime]
#: A page or an action: the console, the request, the signed-in administrator, the form
#: (``None`` for a GET).
Handler = Callable[["Console", Request, str, Form | None], Awaitable[Response]]


#: Forecasts kept (per rollout and assumed retries): a few kilobytes each.
KEPT_FORECASTS = 64


def _now() -> datetime:
    return datetime.now(UTC)


class Console:
    """What every page of one console shares: the store thread, the clock, the templates,
    the secret and the host's ``authenticate``."""

    def __init__(
        self,
        store: StoreSource,
        authenticate: Authenticate,
        clock: Clock,
        secret: bytes,
        sign_in: TokenSignIn | None,
    ) -> None:
        self.store = StoreRunner(store)
        #: Reads of seconds (the forecast's inputs), in a thread and store of their own
        #: when the console opens its stores, so that the pages do not wait behind them.
        self.long_reads = self.store.long_reads()
        #: The forecast's thread: seconds of numpy for a big fleet, kept off the store
        #: thread; one running and one waiting at most.
        self.forecasts = Bounded(2, "certflow-forecast")
        #: The Forecast pages computed last, per rollout and assumed retries, and the
        #: ones computing (in :attr:`forecasts`): the page never waits for one.
        self.forecast_pages: Latest[tuple[datetime, dict[str, Any]]] = Latest(
            lambda: self.forecasts, KEPT_FORECASTS
        )
        self.authenticate = authenticate
        self._clock = clock
        self.secret = secret
        self.sign_in = sign_in
        self.router = Router()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("certflow.web", "templates"),
            autoescape=True,  # every value from outside is escaped, in every template
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals.update(when=_words.when, colours=_words.STATE_COLOURS)

    def now(self) -> datetime:
        """The clock's instant, checked to be timezone-aware."""
        return require_utc("the console's clock", self._clock())

    # --- links -----------------------------------------------------------------------------

    def path(
        self, request: Request, route: str, query: Mapping[str, str] = {}, **params: Any
    ) -> str:
        """The path of ``route`` under the prefix the console is mounted at."""
        path = str(request.scope.get("root_path", "")) + str(
            self.router.url_path_for(route, **params)
        )
        wanted = {key: value for key, value in query.items() if value}
        return f"{path}?{urlencode(wanted)}" if wanted else path

    def redirect(
        self, request: Request, route: str, query: Mapping[str, str] = {}, **params: Any
    ) -> Response:
        """303 See Other to ``route``: a POST is answered by a GET of the result."""
        return RedirectResponse(self.path(request, route, query, **params), status_code=303)

    # --- pages -----------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        user: str | None,
        context: Mapping[str, Any] = {},
        status: int = 200,
    ) -> Response:
        """``template`` filled with ``context``, the links and the form token."""

        def link(route: str, query: Mapping[str, str] = {}, **params: Any) -> str:
            return self.path(request, route, query, **params)

        page = self.templates.get_template(template).render(
            {
                "link": link,
                "user": user,
                "csrf_field": CSRF_FIELD,
                "csrf": csrf_token(request, self.secret, user or ""),
                "signed_in_by_token": self.sign_in is not None,
                **context,
            }
        )
        response = HTMLResponse(page, status_code=status)
        set_csrf_cookie(request, response)
        return response

    def problem(
        self, request: Request, user: str | None, title: str, message: str, status: int, **more: Any
    ) -> Response:
        """A page saying what went wrong (``message`` names the thing and the problem)."""
        context = {"title": title, "message": message, **more}
        return self.render(request, "problem.html", user, context, status)

    # --- routes ----------------------------------------------------------------------------

    def route(
        self,
        path: str,
        handler: Handler,
        name: str,
        *,
        post: bool = False,
        limits: Mapping[str, Limit] | None = None,
    ) -> Route:
        """``handler`` at ``path``: GET (reads only) or POST (CSRF-checked), signed-in only."""

        async def endpoint(request: Request) -> Response:
            user = await user_of(request, self.authenticate)
            if user is None:
                return self.unauthenticated(request)
            form: Form | None = None
            try:
                if post:
                    # The token is one of the form's fields, so the form is read first:
                    # bounded as it streams, kept in memory, and nothing acts on it
                    # before the token is checked.
                    form = await read_form(request, limits or {})
                    if not check_csrf(request, self.secret, user, form.as_dict()):
                        return self.problem(
                            request,
                            user,
                            "Form expired",
                            "the form's security token is missing or not this session's "
                            "(the page was open too long, or the request came from another "
                            "site); nothing was done. Go back, reload the page and try again.",
                            403,
                        )
                return await handler(self, request, user, form)
            except TooLarge as error:
                return self.problem(request, user, "Upload too large", str(error), 413)
            except CommandRefused as error:
                return self.problem(
                    request, user, "Refused", _words.refusal_text(error), 409, refusal=error
                )
            except UnknownRollout as error:
                return self.problem(request, user, "No such rollout", str(error), 404)
            except UnknownDevice as error:
                return self.problem(
                    request, user, "No such device", _words.refusal_text(error), 404
                )
            except TimeWentBackwards as error:
                return self.problem(request, user, "Clock behind the rollout", str(error), 409)
            except (InvalidInput, MaterialError) as error:
                return self.problem(request, user, "Not accepted", str(error), 400)
            except StoreError as error:
                return self.problem(request, user, "Database unavailable", str(error), 503)
            except Busy as error:
                return self.problem(request, user, "Busy", str(error), 503)

        return Route(path, endpoint, methods=["POST"] if post else ["GET"], name=name)

    def unauthenticated(self, request: Request) -> Response:
        """No name from ``authenticate``: the sign-in form (``certflow serve``), else 401."""
        if self.sign_in is not None and request.method == "GET":
            return self.redirect(request, "sign_in", {"next": request.url.path})
        return self.problem(
            request,
            None,
            "Sign-in required",
            "this console needs a signed-in administrator; sign in and try again",
            401,
        )


def create_app(
    store: StoreSource,
    *,
    authenticate: Authenticate | None = None,
    clock: Clock = _now,
    secret: bytes | None = None,
    sign_in: TokenSignIn | None = None,
) -> Starlette:
    """The web console over ``store``: an ASGI application to mount under any prefix.

    ``store``: a function that opens the store (``lambda: open_store(url)``; called in
    the console's own store thread, and once more, at the first forecast, in the thread
    of the reads that take seconds, so that the pages do not wait behind those), or a
    store that may be used from another thread than the one that opened it (a
    PostgresStore; a SqliteStore cannot), which then serves both in turn. ``authenticate``:
    the host's check of a request (its session, its SSO), returning the administrator's
    name, or ``None`` to refuse; it may be a coroutine function. ``sign_in``: the token
    sign-in of ``certflow serve`` instead (then ``authenticate`` is its session's).
    ``clock``: the current instant (timezone-aware). ``secret``: the key of the forms'
    CSRF tokens; give the same one to every node of a host, else each console makes its
    own (its forms are then valid on it alone, until it restarts).
    """
    from certflow.web import _actions, _forecast, _pages  # the pages import this module

    if sign_in is not None:
        if authenticate is not None:
            raise InvalidInput("create_app: give authenticate or sign_in, not both")
        authenticate = sign_in.authenticate
    if authenticate is None or not callable(authenticate):
        raise InvalidInput(
            "create_app: authenticate is required: the host's check of a request, "
            "returning the administrator's name or None"
        )
    if secret is None:
        secret = secrets.token_bytes(32)
    console = Console(store, authenticate, clock, secret, sign_in)
    routes: list[BaseRoute] = [
        *_pages.routes(console),
        *_actions.routes(console),
        *_forecast.routes(console),
        Mount("/static", StaticFiles(packages=[("certflow.web", "static")]), name="static"),
    ]
    console.router.routes.extend(routes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.forecasts.close()
        if console.long_reads is not console.store:
            console.long_reads.close()
        console.store.close()

    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
    app.state.console = console
    return app
