"""What the store accepts from its callers, on every backend: rollout names, text a
database can store, and counts (a page, a lease)."""

from __future__ import annotations

import re

from certflow.core.errors import InvalidInput

__all__ = ["MOST", "can_store", "check_rollout_name", "is_count", "storable"]

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
