"""View Details' chart: device states per day, from the journal, as SVG.

The store writes each journal entry with a summary that holds the device counts after it
(schema 7), so the chart reads those few bytes per entry and the effects that mark the
notices, the postponed checkpoints and the import (:meth:`SqlStore.journal_page` and
:meth:`SqlStore.effect_summaries`): what it reads does not grow with the fleet. A journal
written before schema 7 has no counts; it is folded through the in-memory evaluator (as
the store's own ``replay`` does). The counts are sampled at each day from the
distribution's start; the simulation library's :func:`certflow.sim.chart.states_chart`
draws them and matplotlib's SVG backend writes the file. A chart is kept per rollout
until its journal grows or the day changes.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs
import matplotlib

from certflow.core import evaluator as ev
from certflow.core.effects import Effect
from certflow.core.plan import DeviceState
from certflow.core.serialization import loads
from certflow.sim import Trace
from certflow.sim.chart import states_chart
from certflow.store import EntrySummary, JournalEntry, SqlStore, StoreError

if TYPE_CHECKING:
    from certflow.web._app import Console

__all__ = ["Counted", "read", "render", "render_cached", "trace_of"]

DAY = timedelta(days=1)
#: Charts kept (per rollout and journal length).
KEPT = 32
_cache: OrderedDict[tuple[int, str, int, str], bytes] = OrderedDict()
_lock = threading.Lock()
_draw_lock = threading.Lock()


#: Journal entries read per page of summaries.
PAGE = 1000


@attrs.frozen
class Counted:
    """What the chart draws, read from the store's summaries: the device counts after
    each journal entry (oldest first), the effects of the rollout, the instant its
    distribution started (``None``: not started) and the journal's length."""

    steps: list[tuple[datetime, dict[DeviceState, int]]]
    effects: list[Effect]
    started_at: datetime | None
    length: int


def read(store: SqlStore, name: str, now: datetime) -> Counted | list[JournalEntry]:
    """The chart's input for rollout ``name``: the summaries' counts when every entry has
    them, else the whole journal (written before schema 7) to fold. Runs in the store's
    thread."""
    summaries: list[EntrySummary] = []
    before: int | None = None
    while True:
        page = store.journal_page(name, before=before, limit=PAGE)
        summaries += page
        if len(page) < PAGE:
            break
        before = page[-1].seq
    if any(summary.counts is None for summary in summaries):
        return list(store.journal(name))
    summaries.reverse()
    steps = [(summary.at, summary.counts or {}) for summary in summaries]
    effects = [summary.stored.effect for summary in store.effect_summaries(name, shown=0)]
    started_at = store.overview(name, max(now, steps[-1][0])).started_at
    return Counted(steps, effects, started_at, len(summaries))


def trace_of(
    entries: Counted | Sequence[JournalEntry], now: datetime
) -> tuple[Trace, list[Effect], datetime, bool]:
    """The device counts at each day from the start (the distribution's, else the
    creation), the effects the journal's entries emitted, the start, and whether it is
    the distribution's."""
    if isinstance(entries, Counted):
        start = entries.started_at or entries.steps[0][0]
        trace = _sampled(entries.steps, start, now)
        return trace, entries.effects, start, entries.started_at is not None
    if not entries or entries[0].kind != "create":
        name = entries[0].rollout if entries else "?"
        raise StoreError(f"rollout {name!r}: its journal does not start with its creation")
    rollout = loads(json.dumps(entries[0].body))
    steps: list[tuple[datetime, dict[DeviceState, int]]] = [(entries[0].at, rollout.counts())]
    effects: list[Effect] = []
    for entry in entries[1:]:
        # As the store's replay folds it: a command catches up the timers due before it
        # (their effects are the step's), and a batch goes through apply_all at once
        # (equal to its commands applied in turn; measured on the 28-day journal of
        # benchmarks/bench_web.py, the fold took 29 ms command by command, 9 ms so).
        if entry.kind == "advance":
            step = ev.advance(rollout, entry.at)
        elif entry.kind == "command":
            step = ev.apply(rollout, entry.commands[0], entry.at)
        else:
            step = ev.apply_all(rollout, entry.commands, entry.at)
        rollout = step.rollout
        effects += step.effects
        steps.append((entry.at, rollout.counts()))
    start = rollout.phase.started_at or entries[0].at
    return _sampled(steps, start, now), effects, start, rollout.phase.started_at is not None


def _sampled(
    steps: Sequence[tuple[datetime, dict[DeviceState, int]]], start: datetime, now: datetime
) -> Trace:
    """The counts as they stood at each whole day from ``start``, and at ``now``."""
    end = max(now, steps[-1][0])
    days: list[float] = []
    counts: list[dict[DeviceState, int]] = []
    index = 0
    day = 0
    while start + day * DAY <= end:
        instant = start + day * DAY
        while index + 1 < len(steps) and steps[index + 1][0] <= instant:
            index += 1
        days.append(float(day))
        counts.append(steps[index][1])
        day += 1
    days.append((end - start) / DAY)
    counts.append(steps[-1][1])
    return Trace(tuple(days), tuple(counts))


def render(name: str, entries: Counted | Sequence[JournalEntry], now: datetime) -> bytes:
    """The chart of rollout ``name`` from its journal ``entries`` at ``now``, as SVG."""
    trace, effects, start, started = trace_of(entries, now)
    since = "distribution start" if started else "creation"
    figure = states_chart(trace, effects, start, title=f"{name}: device states per day")
    axes = figure.axes[0]
    axes.set_xlabel(f"day (from the {since}, {start:%Y-%m-%d %H:%M} UTC)")
    # The constrained layout costs most of a drawing (measured: about two thirds of
    # 250 ms); the chart's one axes and its legend on the right have fixed places. None,
    # not "none": "none" leaves a placeholder engine, and savefig then draws the whole
    # figure once more before printing it (profiled: about a quarter of a render).
    figure.set_layout_engine(None)
    axes.set_position((0.09, 0.11, 0.59, 0.81))
    out = io.BytesIO()
    # Text as SVG text, not glyph outlines: a fifth less drawing and half the bytes; the
    # browser sets it in the system's sans-serif. rcParams are global: the lock keeps
    # the setting to this drawing (and matplotlib's font caches to one thread at a time).
    with _draw_lock, matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


async def render_cached(
    console: Console, name: str, entries: Counted | Sequence[JournalEntry], now: datetime
) -> bytes:
    """:func:`render`, drawn in a worker thread (matplotlib is slow, the event loop is
    not to wait), kept until the journal grows or the day changes."""
    length = entries.length if isinstance(entries, Counted) else len(entries)
    key = (id(console), name, length, f"{now:%Y-%m-%d}")
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    svg = await asyncio.to_thread(render, name, entries, now)
    with _lock:
        _cache[key] = svg
        while len(_cache) > KEPT:
            _cache.popitem(last=False)
    return svg
