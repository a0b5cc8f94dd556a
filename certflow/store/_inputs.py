"""What the store accepts from its callers, on every backend: rollout names, text a
database can store, counts (a page, a lease) and the outbox's delivery settings."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

from certflow.core.errors import InvalidInput, quoted

__all__ = [
    "DELIVERY",
    "MOST",
    "can_store",
    "check_delivery",
    "check_rollout_name",
    "is_count",
    "storable",
]

#: The longest rollout name, in characters (code points).
NAME_LENGTH = 100
#: The rule, as every message states it and :func:`check_rollout_name` checks it.
NAME_RULE = (
    f"1 to {NAME_LENGTH} characters, each a letter or a combining mark (any script: "
    "Unicode categories L and M), a decimal digit (category Nd), '.', '_' or '-'; the "
    "first a letter or a digit; in Unicode NFC form"
)
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
    """``name`` if it is a valid rollout name (:data:`NAME_RULE`), else a clear
    :class:`InvalidInput` naming the first thing wrong. Names appear in effect ids
    (``NAME:SEQ:N``, so no ``:``), on command lines and in URLs (no space, no
    punctuation a shell reads); NFC, so that one name typed two ways is one name."""
    problem = _name_problem(name)
    if problem:
        raise InvalidInput(
            f"rollout name {quoted(name)} is not valid: {problem}; a rollout name is {NAME_RULE}"
        )
    return name  # type: ignore[return-value]  # _name_problem found it is a str


def _name_problem(name: object) -> str:
    """What is wrong with ``name`` as a rollout name, or ``""``."""
    if not isinstance(name, str):
        return f"it is of type {type(name).__name__}, not text"
    if not name:
        return "it is empty"
    if len(name) > NAME_LENGTH:
        return f"it is {len(name):,} characters long"
    for position, char in enumerate(name, start=1):
        kind = unicodedata.category(char)
        if position == 1 and kind[0] != "L" and kind != "Nd":
            return f"it starts with {_character(char)}"
        if kind[0] not in "LM" and kind != "Nd" and char not in "._-":
            return f"character {position} is {_character(char)}"
    if not unicodedata.is_normalized("NFC", name):
        return "it is not in NFC form (a letter and its accent typed apart)"
    return ""


def _character(char: str) -> str:
    """``'é' (U+00E9 LATIN SMALL LETTER E WITH ACUTE)``."""
    name = unicodedata.name(char, "")
    return f"{char!r} (U+{ord(char):04X}{' ' + name if name else ''})"


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
