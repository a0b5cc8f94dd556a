"""The worker's log: one line per tick and per delivery attempt, as JSON for machines or
text for people, and never a secret (every value passes through :meth:`EventLog.redact`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import IO, Any, Literal

__all__ = ["LOGGER", "EventLog", "LogFormat"]

#: The name of the :mod:`logging` logger the worker writes its events to.
LOGGER = "certflow.worker"
LogFormat = Literal["json", "text"]


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "event": record.getMessage(),
                **fields,
            },
            ensure_ascii=False,
            default=str,
        )


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        shown = " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        return f"{stamp} {record.levelname.lower():<7} {record.getMessage()} {shown}".rstrip()


def _quoted(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class EventLog:
    """Writes events: ``event(name, **fields)`` is one line. ``secrets`` are replaced by
    ``***`` wherever they would appear (an error message quoting a URL or a server's
    answer, say)."""

    def __init__(
        self,
        form: LogFormat = "text",
        *,
        secrets: Iterable[str] = (),
        stream: IO[str] | None = None,
        name: str = LOGGER,
    ) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.logger = logging.getLogger(name)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        for old in list(self.logger.handlers):
            self.logger.removeHandler(old)
        handler = logging.StreamHandler(stream or sys.stderr)
        formatter = _Json() if form == "json" else _Text()
        # Log times are UTC, as every instant certflow shows.
        formatter.converter = _utc
        handler.setFormatter(formatter)
        self.logger.addHandler(handler)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def event(self, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
        """One line: the event's ``name`` and its ``fields`` (``None`` left out)."""
        clean = {
            key: self.redact(value) if isinstance(value, str) else value
            for key, value in fields.items()
            if value is not None
        }
        self.logger.log(level, name, extra={"fields": clean})


def _utc(seconds: float | None) -> Any:
    import time

    return time.gmtime(seconds)
