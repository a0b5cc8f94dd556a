"""The web console: the vendor's pages over a certflow store, for any host (``docs/web.md``).

``create_app(store, authenticate=...)`` is a Starlette ASGI application that a host
mounts under any prefix; ``authenticate(request)`` is the host's own check, returning
the administrator's name or ``None``. ``certflow serve`` runs it on its own, signing in
with a token (:class:`TokenSignIn`). Install it with ``pip install 'certflow[web]'``.

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from certflow.store import open_store
    from certflow.web import create_app

    console = create_app(lambda: open_store("/var/lib/mdm/certflow.db"),
                         authenticate=lambda request: request.session.get("admin"))
    app = Starlette(routes=[Mount("/admin/certflow", app=console)])
"""

from __future__ import annotations

from certflow.web._app import Clock, create_app
from certflow.web._runner import StoreSource
from certflow.web._security import HEADERS, Authenticate, TokenSignIn
from certflow.web._uploads import DEVICE_LIST_LIMIT

__all__ = [
    "DEVICE_LIST_LIMIT",
    "HEADERS",
    "Authenticate",
    "Clock",
    "StoreSource",
    "TokenSignIn",
    "create_app",
]
