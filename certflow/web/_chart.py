"""View Details' chart: device states per day, from the journal, as SVG.

The journal is folded through the in-memory evaluator (as the store's own ``replay``
does), the counts sampled at each day from the distribution's start, and the effects it
emitted kept: the simulation library's :func:`certflow.sim.chart.states_chart` draws
them (the notices, the postponed checkpoints and the import marked) and matplotlib's SVG
backend writes the file. A chart is kept per rollout until its journal grows.
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

import matplotlib

from certflow.core import evaluator as ev
from certflow.core.effects import Effect
from certflow.core.plan import DeviceState
from certflow.core.serialization import loads
from certflow.sim import Trace
from certflow.sim.chart import states_chart
from certflow.store import JournalEntry, StoreError

if TYPE_CHECKING:
    from certflow.web._app import Console

__all__ = ["render", "render_cached", "trace_of"]

DAY = timedelta(days=1)
#: Charts kept (per rollout and journal length).
KEPT = 32
_cache: OrderedDict[tuple[int, str, int, str], bytes] = OrderedDict()
_lock = threading.Lock()
_draw_lock = threading.Lock()


def trace_of(
    entries: Sequence[JournalEntry], now: datetime
) -> tuple[Trace, list[Effect], datetime, bool]:
    """The device counts at each day from the start (the distribution's, else the
    creation), the effects the journal's entries emitted, the start, and whether it is
    the distribution's."""
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
    trace = Trace(tuple(days), tuple(counts))
    return trace, effects, start, rollout.phase.started_at is not None


def render(name: str, entries: Sequence[JournalEntry], now: datetime) -> bytes:
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
    console: Console, name: str, entries: Sequence[JournalEntry], now: datetime
) -> bytes:
    """:func:`render`, drawn in a worker thread (matplotlib is slow, the event loop is
    not to wait), kept until the journal grows or the day changes."""
    key = (id(console), name, len(entries), f"{now:%Y-%m-%d}")
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
