"""The webhook handler against a real HTTP server on 127.0.0.1: signed POSTs, and each
way it fails (500, a hang past the timeout, a refused connection)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from certflow.worker import DeliveryFailed, WebhookHandler, WebhookSettings, verify
from tests.worker.conftest import WEBHOOK_SECRET
from tests.worker.servers import WebhookServer, free_port
from tests.worker.timeline import NO_STORE, T0, effect

SECRET = WEBHOOK_SECRET.encode()


def handler(url: str, timeout: float = 2.0) -> WebhookHandler:
    return WebhookHandler(WebhookSettings(url, SECRET, timedelta(seconds=timeout)))


def test_a_post_is_signed_and_names_the_effect(webhook: WebhookServer) -> None:
    send = handler(webhook.url)
    send(effect(effect_id="r:2:0"), NO_STORE, T0)
    [(headers, body)] = webhook.requests
    assert headers["Certflow-Effect-Id"] == "r:2:0"
    assert headers["Content-Type"] == "application/json"
    assert verify(SECRET, body, headers["Certflow-Signature"])
    assert not verify(b"another secret", body, headers["Certflow-Signature"])
    assert json.loads(body)["id"] == "r:2:0"
    send.close()


def test_an_answer_500_is_a_failure_naming_the_status(webhook: WebhookServer) -> None:
    webhook.mode = "500"
    with pytest.raises(DeliveryFailed, match=r"/hooks/certflow answered HTTP 500: the MDM is down"):
        handler(webhook.url)(effect(), NO_STORE, T0)


def test_a_hang_past_the_timeout_is_a_failure(webhook: WebhookServer) -> None:
    webhook.mode, webhook.hang = "hang", 2.0
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match=r"no answer within 0.3s"):
        handler(webhook.url, timeout=0.3)(effect(), NO_STORE, T0)
    assert time.monotonic() - started < 1.5


def test_a_refused_connection_is_a_failure() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"
    with pytest.raises(DeliveryFailed, match=r"127.0.0.1:\d+/hooks: .*(refused|Connect)"):
        handler(url)(effect(), NO_STORE, T0)


def test_a_password_in_the_url_is_never_in_the_error() -> None:
    url = f"http://user:pa55word@127.0.0.1:{free_port()}/hooks?token=t0ken"
    with pytest.raises(DeliveryFailed) as caught:
        handler(url)(effect(), NO_STORE, T0)
    assert "pa55word" not in str(caught.value)
    assert "t0ken" not in str(caught.value)
