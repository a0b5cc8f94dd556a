"""``certflow serve``: the web console on its own, on uvicorn (``docs/web.md``).

The token that signs in is read from a file (never from the command line, where ``ps``
and the shell's history would show it) and never printed. The database must exist: the
console creates rollouts in it, not the database itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import click

from certflow.cli._app import EXIT_OK, main
from certflow.core.errors import InvalidInput
from certflow.store import open_store, without_password

__all__ = ["parse_bind", "serve"]

#: Instants a little behind a rollout's clock are applied at it, as the command line's
#: own commands do on the real clock (``certflow.cli._rollout_store.REAL_CLOCK_SKEW``).
CLOCK_SKEW = timedelta(seconds=5)

_BIND = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as uvicorn takes it."""
    found = _BIND.match(text)
    port = int(found["port"]) if found else 0
    if found is None or not 0 < port < 65536:
        raise InvalidInput(f"--bind {text!r}: give HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080")
    return found["v6"] or found["host"], port


def read_token(path: Path) -> str:
    """The sign-in token: the first line of ``path`` (bounded, UTF-8), never echoed."""
    from certflow import certs  # cryptography: not for `certflow --help`, which loads this

    return certs.read_password(path).strip()


@main.command("serve")
@click.option(
    "--db",
    envvar="CERTFLOW_DB",
    default="certflow.db",
    metavar="PATH|URL",
    help="The database: an SQLite file path (or sqlite:///PATH), or a postgresql:// URL "
    "(default: ./certflow.db, or $CERTFLOW_DB). It must exist.",
)
@click.option(
    "--bind",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to listen. Put a TLS-terminating proxy in front of anything but 127.0.0.1.",
)
@click.option(
    "--token-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="A file whose first line is the sign-in token (16 characters or more; make one "
    "with `openssl rand -hex 32`). Changing it signs everybody out at the next restart.",
)
def serve(db: str, bind: str, token_file: Path) -> int:
    """Serve the web console: the rollouts, their details and actions, in a browser.

    Sign in with the token of --token-file. The console runs on the real clock; stop it
    with Ctrl-C.
    """
    import uvicorn

    from certflow.web import TokenSignIn, create_app

    host, port = parse_bind(bind)
    sign_in = TokenSignIn(read_token(token_file))
    open_store(db, create=False, read_only=True).close()  # a missing database: exit 2 now
    app = create_app(lambda: open_store(db, create=False, clock_skew=CLOCK_SKEW), sign_in=sign_in)
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"certflow console for {without_password(db)} on http://{shown}:{port}/ "
        f"(sign in with the token in {token_file})",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    return EXIT_OK
