"""How ``certflow rollout`` shows numbers, instants and table cells: one place, so that
text and ``--json`` agree.

* **Instants**: :func:`certflow.core.instants.show` (``2026-03-01 12:00 UTC``), one
  precision per page (:class:`Clock`): seconds everywhere on it when any instant shown
  has them. ``--json`` gives ISO 8601 with the instant's full precision.
* **Counts**: thousands separated (``2,002``), durations likewise (``1,492 days``).
* **Percentages**: rounded to one decimal, half to even, once (:func:`percent`); the
  text shows that number with ``%`` and ``--json`` gives the same number, so 74.85 is
  74.8 in both (docs/scripting.md).
* **Cells**: padded by terminal cells (``wcwidth``), not by characters: a device id of
  wide characters (``端末-7``, an emoji) keeps its columns aligned.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from wcwidth import wcswidth

from certflow.core.instants import has_seconds, show

__all__ = ["Clock", "cells", "count", "pad", "percent", "percent_text"]


class Clock:
    """The instants of one page, shown at one precision: with seconds if any has some."""

    def __init__(self, instants: Iterable[datetime | None]) -> None:
        self.seconds = has_seconds(*instants)

    def __call__(self, instant: datetime | None) -> str:
        """``instant`` at the page's precision, or ``-`` for none."""
        return "-" if instant is None else show(instant, seconds=self.seconds)


def count(number: int) -> str:
    """``2,002``."""
    return f"{number:,}"


def percent(value: float) -> float:
    """A percentage as certflow states it, in text and in ``--json``: one decimal."""
    return round(value, 1)


def percent_text(value: float) -> str:
    """``74.8%``: :func:`percent`'s number."""
    return f"{percent(value):.1f}%"


def cells(text: str) -> int:
    """The terminal cells ``text`` takes: 2 for a wide character, 0 for a combining
    one. A character with no width of its own (a control character, which only an id
    stored before the id rule may hold) counts as one."""
    width = wcswidth(text)
    return width if width >= 0 else sum(max(wcswidth(c), 1) for c in text)


def pad(text: str, width: int, align: str = "<") -> str:
    """``text`` padded with spaces to ``width`` cells, left (``<``) or right (``>``)."""
    fill = " " * max(width - cells(text), 0)
    return text + fill if align == "<" else fill + text
