"""View Details' chart: the journal folded into device counts per day from the
distribution's start, with the effects that mark notices, checkpoints and the import."""

from __future__ import annotations

from pathlib import Path

import certflow as cf
from certflow.core.plan import DeviceState
from certflow.store import SqliteStore
from certflow.web._chart import render, trace_of
from tests.core.strategies import DAY, HOUR, T0, build


def test_the_counts_per_day_follow_the_journal(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        store.create("r", build(4, at=T0 - DAY))
        store.apply("r", cf.DistributeRoot(), T0)
        store.apply("r", cf.DeviceInstalled("d0"), T0 + 2 * HOUR)  # day 0
        store.apply("r", cf.DeviceFailed("d1", "no"), T0 + DAY + HOUR)  # day 1
        store.apply("r", cf.DeviceInstalled("d2"), T0 + 3 * DAY + HOUR)  # day 3
        store.advance("r", T0 + 7 * DAY)  # the first checkpoint: postponed
        entries = list(store.journal("r"))
    trace, effects, start, started = trace_of(entries, T0 + 7 * DAY + HOUR)
    assert (start, started) == (T0, True)
    assert trace.days[:8] == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    installed = [counts[DeviceState.INSTALLED] for counts in trace.counts]
    failed = [counts[DeviceState.FAILED] for counts in trace.counts]
    # Each day's count is the rollout as it stood at that day's instant.
    assert installed[:5] == [0, 1, 1, 1, 2]
    assert failed[:3] == [0, 0, 1]
    assert trace.days[-1] == 7 + 1 / 24  # and where it stands now
    kinds = {type(effect).__name__ for effect in effects}
    assert {"PushRoot", "Notify", "ImportPostponed"} <= kinds


def test_a_rollout_not_yet_started_is_charted_from_its_creation(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "c.db") as store:
        store.create("r", build(2, at=T0))
        entries = list(store.journal("r"))
    trace, effects, start, started = trace_of(entries, T0 + 2 * DAY)
    assert (start, started, effects) == (T0, False, [])
    assert trace.counts[0][DeviceState.PENDING] == 2
    assert b"Matplotlib v" in render("r", entries, T0 + 2 * DAY)
