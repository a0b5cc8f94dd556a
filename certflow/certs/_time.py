"""Instants: certflow never reads the clock, so every time is passed in and must be aware."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certflow.core.instants import require_aware as _require_aware


def require_aware(name: str, value: object) -> datetime:
    """``value`` as an aware UTC datetime, or a clear :class:`InvalidInput`."""
    return _require_aware(name, value).astimezone(UTC)


def show(instant: datetime) -> str:
    """An instant as administrators read it: ``2026-07-07 09:00:00 UTC``."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def show_span(span: timedelta) -> str:
    """A duration as ``397 days 0 h`` (minutes and seconds only when not zero)."""
    seconds = int(span.total_seconds())
    sign = "-" if seconds < 0 else ""
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{days} day{'' if days == 1 else 's'} {hours} h"
    if minutes or secs:
        text += f" {minutes} min"
    if secs:
        text += f" {secs} s"
    return sign + text
