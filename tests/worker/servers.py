"""Real servers on 127.0.0.1 for the worker's tests, started by the tests (no mocks):
an SMTP server (aiosmtpd) that requires STARTTLS and authentication, with a throwaway CA
from trustme, and an HTTP server for the webhook that answers 2xx, 500, hangs past a
timeout, or is closed (the connection is refused)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

__all__ = ["SmtpServer", "WebhookServer", "free_port"]

USER = "certflow"
PASSWORD = "smtp-s3cret-Pa55"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1: STARTTLS required before AUTH and MAIL, one user
    (``USER``/``PASSWORD``); ``ca_file`` is the CA a client trusts. :meth:`stop` and
    :meth:`start` take it down and back up on the same port."""

    def __init__(self, folder: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = folder / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self.context)
        self.port = free_port()
        self.mailbox = _Mailbox()
        self.controller: Controller | None = None

    @staticmethod
    def _authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 credentials invalid")

    def start(self) -> None:
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=self.context,
            require_starttls=True,
            auth_require_tls=True,
            auth_required=True,
            authenticator=self._authenticate,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self.mailbox.lock:
            return list(self.mailbox.messages)


class WebhookServer:
    """A threaded HTTP server on 127.0.0.1 recording each POST (headers and body).

    ``mode``: ``"ok"`` (204), ``"500"``, ``"hang"`` (answers after ``hang`` seconds, past
    the client's timeout). :meth:`close` stops listening: connections are refused.
    ``fail_ids``: effect ids answered 500 while the rest are answered by ``mode``."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hang = 3.0
        self.fail_ids: set[str] = set()
        self.answer = b"the MDM is down"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with outer.lock:
                    outer.requests.append((dict(self.headers.items()), body))
                    mode = outer.mode
                    failing = self.headers.get("Certflow-Effect-Id") in outer.fail_ids
                if mode == "hang":
                    time.sleep(outer.hang)
                status = 500 if mode == "500" or failing else 204
                text = outer.answer if status == 500 else b""
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the client gave up waiting (a hang past its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read self.requests

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/certflow"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def ids(self) -> list[str]:
        return [b["id"] for b in self.bodies()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
