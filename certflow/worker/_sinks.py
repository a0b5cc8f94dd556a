"""Handlers that write to local files what the SMTP and webhook handlers would send:
each e-mail as an ``.eml`` file (:class:`MailFolder`), each webhook body as a line of a
JSON Lines file (:class:`BodyLog`). For a trial run, a demo (``make demo``), or an
operator checking a configuration's routes before pointing it at real servers: the
bytes are those the real handlers produce."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from certflow.store import Store, StoredEffect
from certflow.worker._mail import compose
from certflow.worker._payload import effect_body

__all__ = ["BodyLog", "MailFolder"]

# What a file name keeps of an effect id ("demo:12:0" -> "demo-12-0"): the rollout name
# may hold any character a path may not.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MailFolder:
    """Takes the place of ``smtp``: each effect's message, composed exactly as
    :class:`~certflow.worker.SmtpHandler` composes it (:func:`~certflow.worker.compose`:
    the attachment read from the store at delivery), is written to ``folder`` as
    ``NNNN-ID.eml`` (``NNNN`` counts the messages written, so the folder lists them in
    delivery order). ``written`` holds their paths."""

    name = "smtp"

    def __init__(self, folder: Path, *, sender: str, to: Sequence[str]) -> None:
        self.folder = folder
        self.sender = sender
        self.to = tuple(to)
        self.written: list[Path] = []

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        message = compose(stored, store, now, sender=self.sender, to=self.to)
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = _UNSAFE.sub("-", stored.id).strip("-") or "effect"
        path = self.folder / f"{len(self.written) + 1:04d}-{stem}.eml"
        path.write_bytes(message.as_bytes())
        self.written.append(path)


class BodyLog:
    """Takes the place of ``webhook``: each effect's body, the bytes
    :class:`~certflow.worker.WebhookHandler` would POST (:func:`~certflow.worker.
    effect_body`), is appended to ``path`` as one line. ``count`` says how many."""

    name = "webhook"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(effect_body(stored) + b"\n")
        self.count += 1
