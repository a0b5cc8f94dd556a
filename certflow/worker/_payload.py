"""What a handler sends: the effect as one JSON document, its signature, and the
interface every handler implements."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Protocol

from certflow.core.errors import CertflowError
from certflow.core.serialization import encode
from certflow.store import Store, StoredEffect

__all__ = [
    "DeliveryFailed",
    "Handler",
    "effect_body",
    "effect_document",
    "sign",
    "verify",
]


class DeliveryFailed(CertflowError):
    """A handler could not deliver an effect; the message is what the outbox records
    (``last_error``), so it names the target and the problem and never a secret."""


class Handler(Protocol):
    """What the worker runs for each effect routed to it.

    ``name`` is the handler's name in the routes and in the delivery record. Calling it
    delivers ``stored`` (``store`` is there to read what the effect is about, ``now`` is
    the worker's pass instant): returning is success; raising (best:
    :class:`DeliveryFailed`) is a failure, retried after a back-off. It may be called
    again for the same effect id (at-least-once): a target deduplicates by that id.
    """

    name: str

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None: ...


def effect_document(stored: StoredEffect) -> dict[str, Any]:
    """The effect as the webhook and the exec command get it: ``id``, ``kind``,
    ``rollout``, ``due_at`` (ISO 8601, UTC), then the effect's own fields, as
    :func:`certflow.core.serialization.encode` writes them."""
    fields = encode(stored.effect)
    fields.pop("type", None)
    fields.pop("due_at", None)
    return {
        "id": stored.id,
        "kind": type(stored.effect).__name__,
        "rollout": stored.rollout,
        "due_at": stored.due_at.isoformat(),
        **fields,
    }


def effect_body(stored: StoredEffect) -> bytes:
    """:func:`effect_document` as the bytes sent (compact JSON, UTF-8): the same bytes
    every time the effect is delivered, so the signature is the same too."""
    text = json.dumps(effect_document(stored), separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def sign(secret: bytes, body: bytes) -> str:
    """The ``Certflow-Signature`` header's value: ``sha256=`` and the hex HMAC-SHA256 of
    ``body`` with ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` with ``secret`` (what a receiver
    checks, in constant time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)
