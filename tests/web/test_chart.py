"""View Details' chart: the journal folded into device counts per day from the
distribution's start, with the effects that mark notices, checkpoints and the import."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import certflow as cf
from certflow.core.plan import DeviceState
from certflow.store import SqliteStore
from certflow.web._chart import Counted, read, render, trace_of
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


def test_batches_of_reports_fold_to_the_stores_own_counts(tmp_path: Path) -> None:
    ids = [f"d{i}" for i in range(40)]
    with SqliteStore(tmp_path / "c.db") as store:
        store.create("r", build(40, at=T0 - DAY))
        store.apply("r", cf.DistributeRoot(), T0)
        for day in range(1, 10):
            chunk = ids[(day - 1) * 4 : day * 4]
            reports: list[cf.Command] = [cf.DeviceInstalled(d) for d in chunk[:3]]
            reports.append(cf.DeviceFailed(chunk[3], "declined"))
            store.apply_all("r", reports, T0 + day * DAY - HOUR)  # a batch entry
            if day % 3 == 0:
                store.apply("r", cf.RetryAllFailed(), T0 + day * DAY)
        entries = list(store.journal("r"))
        now = T0 + 9 * DAY + HOUR
        trace, effects, _, _ = trace_of(entries, now)
        assert {entry.kind for entry in entries} >= {"batch", "command"}
        assert trace.counts[-1] == store.info("r", now).counts
        # Day 8's count is the journal's as it stood then (24 reports of 32 installed).
        assert trace.counts[8][DeviceState.INSTALLED] == 24
    retries = [effect for effect in effects if type(effect).__name__ == "PushRoot"]
    assert len(retries) == 4  # the distribution's push and three bulk retries


def _history(store: SqliteStore) -> None:
    """Forty devices over 21 days: daily batches of reports, bulk retries, notices,
    postponed checkpoints and the import."""
    ids = [f"d{i}" for i in range(40)]
    store.create("r", build(40, at=T0 - DAY))
    store.apply("r", cf.DistributeRoot(), T0)
    for day in range(1, 10):
        chunk = ids[(day - 1) * 4 : day * 4]
        reports: list[cf.Command] = [cf.DeviceInstalled(d) for d in chunk[:3]]
        reports.append(cf.DeviceFailed(chunk[3], "declined"))
        store.apply_all("r", reports, T0 + day * DAY - HOUR)
        if day % 3 == 0:
            store.apply("r", cf.RetryAllFailed(), T0 + day * DAY)
    store.advance("r", T0 + 22 * DAY)


def test_the_summaries_chart_what_the_journal_folds_to(tmp_path: Path) -> None:
    """The counts written with each entry give the trace and the marks that folding the
    whole journal gives, and reading them carries no device list."""
    now = T0 + 22 * DAY + HOUR
    with SqliteStore(tmp_path / "c.db") as store:
        _history(store)
        counted = read(store, "r", now)
        folded = trace_of(list(store.journal("r")), now)
    assert isinstance(counted, Counted)
    assert counted.length == len(counted.steps) > 10
    trace, effects, start, started = trace_of(counted, now)
    assert (trace, start, started) == (folded[0], *folded[2:])
    # The marks: each effect, the device lists cut (the chart draws no device).
    assert [(type(e), e.due_at) for e in effects] == [(type(e), e.due_at) for e in folded[1]]
    assert {"Notify", "ImportPostponed", "ImportCertificate"} <= {type(e).__name__ for e in effects}
    assert b"forced import, day 21" in render("r", counted, now)


def test_a_journal_without_summaries_is_folded(tmp_path: Path) -> None:
    """Entries written before schema 7 (the journal's first ones, in a database
    migrated since) have no counts: the whole journal is read."""
    now = T0 + 22 * DAY + HOUR
    with SqliteStore(tmp_path / "c.db") as store:
        _history(store)
    db = sqlite3.connect(tmp_path / "c.db")
    with db:
        db.execute("DELETE FROM journal_summaries WHERE seq <= 3")
    db.close()
    with SqliteStore(tmp_path / "c.db") as store:
        found = read(store, "r", now)
        assert found == list(store.journal("r"))
