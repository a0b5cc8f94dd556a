"""The webhook handler: each effect POSTed as signed JSON to the host product."""

from __future__ import annotations

import ssl
from datetime import datetime

import httpx

from certflow.store import Store, StoredEffect
from certflow.worker._config import WebhookSettings, shown_url
from certflow.worker._payload import DeliveryFailed, effect_body, sign

__all__ = ["WebhookHandler"]

# How much of a refusing answer's body the delivery record keeps.
_ANSWER_SHOWN = 200


class WebhookHandler:
    """POSTs :func:`~certflow.worker.effect_body` to ``settings.url`` with the headers
    ``Content-Type: application/json``, ``Certflow-Effect-Id`` and ``Certflow-Signature:
    sha256=<hex HMAC-SHA256 of the body with the secret>``.

    A 2xx answer is delivered; any other answer, a timeout (``settings.timeout`` for
    connecting, and for each read and write) or a refused connection raises
    :class:`DeliveryFailed`. One connection pool is kept for all deliveries (call
    :meth:`close` at the end).
    """

    name = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        self._client = httpx.Client(
            timeout=settings.timeout.total_seconds(), verify=verify, follow_redirects=False
        )
        self._shown = shown_url(settings.url)

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        body = effect_body(stored)
        headers = {
            "Content-Type": "application/json",
            "Certflow-Effect-Id": stored.id,
            "Certflow-Signature": sign(self.settings.secret, body),
        }
        try:
            answer = self._client.post(self.settings.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryFailed(
                f"{self._shown}: no answer within {self.settings.timeout.total_seconds():g}s"
            ) from None
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            raise DeliveryFailed(f"{self._shown}: {reason}") from None
        if not 200 <= answer.status_code < 300:
            text = " ".join(answer.text.split())[:_ANSWER_SHOWN]
            raise DeliveryFailed(
                f"{self._shown} answered HTTP {answer.status_code}" + (f": {text}" if text else "")
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
