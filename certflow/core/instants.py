"""Instants: timezone-aware datetimes only, compared as exact elapsed time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certflow.core.errors import InvalidInput

__all__ = ["DAY", "has_seconds", "require_aware", "require_utc", "show", "show_span"]

DAY = timedelta(days=1)


def require_aware(name: str, value: object) -> datetime:
    """``value`` if it is a timezone-aware datetime, else a clear :class:`InvalidInput`."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a timezone-aware datetime, got {value!r}")
    if value.utcoffset() is None:
        raise InvalidInput(
            f"{name} is a naive datetime ({value.isoformat()}); certflow needs a timezone-aware "
            "instant, e.g. datetime(..., tzinfo=timezone.utc)"
        )
    return value


def require_utc(name: str, value: object) -> datetime:
    """:func:`require_aware`, then the same instant expressed in UTC (for reports in UTC)."""
    return require_aware(name, value).astimezone(UTC)


def show(instant: datetime, *, seconds: bool | None = None) -> str:
    """An instant as administrators read it: ``2026-07-07 09:00 UTC``, with its seconds
    if it has any (``seconds=None``). A page that shows several instants passes one
    ``seconds`` for all of them (:func:`has_seconds` of them all), so that ``05:34:01``
    never stands beside ``05:34``; without seconds, an instant is cut to its minute."""
    utc = instant.astimezone(UTC)
    if seconds is None:
        seconds = has_seconds(utc)
    return f"{utc.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} UTC"


def has_seconds(*instants: datetime | None) -> bool:
    """Whether any of ``instants`` falls within a minute (seconds or a fraction)."""
    return any(i is not None and (i.second or i.microsecond) for i in instants)


def show_span(span: timedelta) -> str:
    """A duration as ``6 days 2 h`` / ``3 h 5 min`` / ``45 s``."""
    seconds = int(span.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days:,} day" + ("s" if days != 1 else ""))  # "1,492 days", as counts
    if hours:
        parts.append(f"{hours} h")
    if minutes and not days:
        parts.append(f"{minutes} min")
    if secs and not days and not hours:
        parts.append(f"{secs} s")
    return sign + (" ".join(parts) if parts else "0 s")
