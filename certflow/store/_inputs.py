"""What the store accepts from its callers, on every backend: rollout names, text a
database can store, counts (a page, a lease) and the outbox's delivery settings."""

from __future__ import annotations

import re
from datetime import timedelta

from certflow.core.errors import InvalidInput

__all__ = [
    "DELIVERY",
    "MOST",
    "can_store",
    "check_delivery",
    "check_rollout_name",
    "is_count",
    "storable",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MOST = 2**31 - 1  # a page or a lease larger than this is a mistake, on either backend


def storable(what: str, text: str) -> str:
    """``text`` if a database can store it, else a clear :class:`InvalidInput`: both
    backends take UTF-8 (a lone surrogate, which a non-UTF-8 byte on a command line
    becomes, has no UTF-8 form) and PostgreSQL's text has no NUL character, so neither
    backend stores one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} {text!r} is not valid UTF-8 text") from None
    if "\x00" in text:
        raise InvalidInput(f"{what} {text!r} contains a NUL character")
    return text


def can_store(text: str) -> bool:
    """Whether a database can store ``text`` (:func:`storable` says why not)."""
    try:
        storable("text", text)
    except InvalidInput:
        return False
    return True


def check_rollout_name(name: object) -> str:
    """``name`` if it is a valid rollout name, else a clear :class:`InvalidInput`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"rollout name {name!r} is not valid: use 1 to 100 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def is_count(value: object) -> bool:
    """Whether ``value`` is a whole number from 1 to ``MOST`` (``True`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MOST


#: The outbox's delivery settings by default: ``max_attempts`` failed deliveries make an
#: effect dead; after each failure a drainer waits ``retry_backoff``, doubled each time,
#: at most ``retry_backoff_limit``. So an effect whose handler keeps failing is retried
#: after 1, 2, 4, ... 32 minutes, then hourly, and is dead at its tenth failure, about
#: four hours after the first: long enough to ride out a restart or a mail server's
#: outage, short enough that an administrator sees it (``effects --dead``) the same day.
DELIVERY = (10, timedelta(minutes=1), timedelta(hours=1))


def check_delivery(
    max_attempts: object, retry_backoff: object, retry_backoff_limit: object
) -> tuple[int, timedelta, timedelta]:
    """The delivery settings, or a clear :class:`InvalidInput`."""
    if not isinstance(max_attempts, int) or not is_count(max_attempts):
        raise InvalidInput(
            f"max_attempts must be a whole number from 1 to {MOST}, got {max_attempts!r}"
        )
    spans: list[timedelta] = []
    for what, value in (
        ("retry_backoff", retry_backoff),
        ("retry_backoff_limit", retry_backoff_limit),
    ):
        if not isinstance(value, timedelta) or value < timedelta(0):
            raise InvalidInput(f"{what} must be a timedelta of 0 or more, got {value!r}")
        spans.append(value)
    first, limit = spans
    if limit < first:
        raise InvalidInput(f"retry_backoff_limit ({limit}) is shorter than retry_backoff ({first})")
    return max_attempts, first, limit
