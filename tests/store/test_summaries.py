"""The page reads (``journal_page``, ``effect_summaries``) on both backends: they say what
the whole reads say (``journal``, ``effects``) of every entry and effect, with the device
and command lists counted and cut by the database; and what the database returns to
Python for a page does not grow with the fleet.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import attrs
import pytest

import certflow as cf
from certflow.core import evaluator as ev
from certflow.core.errors import InvalidInput
from certflow.core.serialization import loads
from certflow.store import PostgresStore, SqliteStore, UnknownRollout
from certflow.store._journal import FIRST_IDS
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day

AnyStore = SqliteStore | PostgresStore


def _history(store: AnyStore, devices: int) -> None:
    """Rollout ``r`` of ``devices`` devices: created, distributed (one push of every
    device), a batch of reports, one command, and a tick past the acknowledgement wait
    (a timeout naming every device that did not answer) and the first notice."""
    store.create("r", build(devices, policy=cf.Policy(ack_timeout=6 * HOUR)))
    store.apply("r", cf.DistributeRoot(), T0)
    store.apply_all("r", [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "full")], T0 + HOUR)
    store.apply("r", cf.Retry("d1"), T0 + 2 * HOUR)
    store.advance("r", day(6.5))


def _forget_summaries(backend: Backend) -> None:
    """The rows as a store before schema 7 wrote them: without their summaries."""
    backend.query("DELETE FROM journal_summaries")
    backend.query("DELETE FROM outbox_summaries")


@pytest.mark.parametrize("written", ["with summaries", "before schema 7"])
def test_journal_page_says_what_the_journal_says(backend: Backend, written: str) -> None:
    with backend.open() as store:
        _history(store, 7)
        if written == "before schema 7":
            _forget_summaries(backend)
        whole = list(store.journal("r"))
        page = store.journal_page("r")
        assert [e.seq for e in page] == [e.seq for e in reversed(whole)]
        kinds = set()
        for summary, entry in zip(page, reversed(whole), strict=True):
            kinds.add(entry.kind)
            assert (summary.rollout, summary.at, summary.kind, summary.state) == (
                "r",
                entry.at,
                entry.kind,
                entry.state,
            )
            assert summary.effects == len(entry.effects)
            if entry.kind == "create":
                assert summary.devices == len(entry.body["devices"]["ids"]) == 7
            else:
                assert summary.devices is None
            if entry.kind == "batch":
                assert summary.commands == ()
                assert summary.command_count == len(entry.commands) == 2
                assert summary.command_kinds == dict(
                    Counter(type(c).__name__ for c in entry.commands)
                )
            else:
                assert summary.commands == entry.commands
                assert summary.command_kinds == {}
        assert kinds == {"create", "command", "batch", "advance"}
        if written == "before schema 7":
            assert {summary.counts for summary in page} == {None}


def test_pages_straddle_the_entries_written_before_schema_7(backend: Backend) -> None:
    """A database migrated to schema 7 mid-rollout: its first entries have no summary,
    the later ones have; pages of any size list them all, newest first, each once."""
    with backend.open() as store:
        _history(store, 7)
        whole = store.journal_page("r")
        backend.query("DELETE FROM journal_summaries WHERE seq <= 3")
        store.close()
    with backend.open() as store:
        for size in (1, 2, 3, len(whole)):
            paged: list[Any] = []
            before = None
            while page := store.journal_page("r", before=before, limit=size):
                paged += page
                before = page[-1].seq
            assert [attrs.evolve(e, counts=None) for e in paged] == [
                attrs.evolve(e, counts=None) for e in whole
            ]
            assert [e.counts is None for e in paged] == [e.seq <= 3 for e in whole]


def test_each_entry_summary_counts_the_devices_after_it(backend: Backend) -> None:
    """The counts written with each entry are those of the rollout replayed through the
    evaluator to that entry (the chart draws them instead of replaying)."""
    with backend.open() as store:
        _history(store, 7)
        store.apply_all("r", [cf.DeviceInstalled(f"d{i}") for i in range(2, 5)], day(7))
        store.advance("r", day(22))
        whole = list(store.journal("r"))
        page = {summary.seq: summary for summary in store.journal_page("r")}
        rollout = None
        for entry in whole:
            if rollout is None:
                rollout = loads(json.dumps(entry.body))
            elif entry.kind == "advance":
                rollout = ev.advance(rollout, entry.at).rollout
            else:
                rollout = ev.apply_all(rollout, entry.commands, entry.at).rollout
            counted = {state: n for state, n in rollout.counts().items() if n}
            assert {k: n for k, n in (page[entry.seq].counts or {}).items() if n} == counted
        assert page[whole[-1].seq].state is cf.RolloutState.FORCED  # 3 never answered


def test_journal_page_pages_newest_first(backend: Backend) -> None:
    with backend.open() as store:
        _history(store, 3)
        last = max(e.seq for e in store.journal("r"))
        first = store.journal_page("r", limit=2)
        assert [e.seq for e in first] == [last, last - 1]
        rest = store.journal_page("r", before=first[-1].seq, limit=100)
        assert [e.seq for e in rest] == list(range(last - 2, 0, -1))
        assert store.journal_page("r", before=1) == []
        for wrong in ({"limit": 0}, {"before": -1}, {"limit": True}):
            with pytest.raises(InvalidInput):
                store.journal_page("r", **wrong)
        with pytest.raises(UnknownRollout):
            store.journal_page("nope")


@pytest.mark.parametrize(
    ("written", "shown"),
    [("with summaries", 2), ("before schema 7", 2), ("with summaries", FIRST_IDS + 1)],
    ids=["with summaries", "before schema 7", "more ids than a summary keeps"],
)
def test_effect_summaries_say_what_effects_say(backend: Backend, written: str, shown: int) -> None:
    with backend.open() as store:
        _history(store, FIRST_IDS + 7)
        if written == "before schema 7":
            _forget_summaries(backend)
        store.acknowledge([store.effects("r")[0].id], day(7))
        whole = store.effects("r", include_acknowledged=True)
        summaries = store.effect_summaries("r", shown=shown)
        assert [s.stored.id for s in summaries] == [e.id for e in whole]
        named = set()
        for summary, stored in zip(summaries, whole, strict=True):
            ids = getattr(stored.effect, "device_ids", None)
            if ids is None:
                assert summary.devices is None
                assert summary.stored == stored
            else:
                named.add(type(stored.effect).__name__)
                assert summary.devices == len(ids)
                cut = attrs.evolve(stored.effect, device_ids=ids[:shown])
                assert summary.stored == attrs.evolve(stored, effect=cut)
            assert summary.stored.status == stored.status
        # The push of the whole fleet and the timeout of the five that did not answer.
        assert {"PushRoot", "AcknowledgementTimedOut"} <= named
        assert {s.stored.status for s in summaries} >= {"acknowledged", "pending"}
        counted = [s for s in store.effect_summaries("r", shown=0) if s.devices is not None]
        assert [getattr(s.stored.effect, "device_ids", None) for s in counted] == [()] * len(
            counted
        )
        assert [s.devices for s in counted] == [s.devices for s in summaries if s.devices]


def _returned(store: AnyStore, read: Any, words: tuple[str, ...] = ("json", "summar")) -> int:
    """The characters of every row the page's statements returned to Python (those
    whose SQL holds one of ``words``: the bodies' JSON functions, the summary tables)."""
    original = store._q
    sizes: list[int] = []

    class Rows:
        def __init__(self, rows: list[Any]) -> None:
            self.rows = rows

        def fetchall(self) -> list[Any]:
            return self.rows

        def fetchone(self) -> Any:
            return self.rows[0] if self.rows else None

    def spy(sql: str, params: Any = ()) -> Any:
        rows = original(sql, params).fetchall()
        if any(word in sql for word in words):  # the page's statements, not the row's
            sizes.append(sum(len(str(value)) for row in rows for value in row))
        return Rows(rows)

    store._q = spy  # type: ignore[method-assign]
    try:
        read()
    finally:
        del store._q
    assert sizes, "the page read ran no statement through the spy"
    return sum(sizes)


def test_what_a_page_returns_does_not_grow_with_the_fleet(backend: Backend) -> None:
    # Ids of one width (d00000...), so that only the number of devices differs.
    returned = {}
    # Fleets above the ids that an effect's summary keeps (FIRST_IDS).
    for devices in (100, 5_000):
        with backend.fresh() as store:
            ids = [f"d{i:05d}" for i in range(devices)]
            store.create("r", build(ids, policy=cf.Policy(ack_timeout=6 * HOUR)))
            store.apply("r", cf.DistributeRoot(), T0)
            store.apply_all("r", [cf.DeviceInstalled(d) for d in ids[: devices // 2]], T0 + HOUR)
            store.advance("r", day(6.5))
            journal = _returned(store, lambda: store.journal_page("r"))
            effects = _returned(store, lambda: store.effect_summaries("r"))
            returned[devices] = (journal, effects)
            whole = sum(len(e.body.get("devices", {}).get("ids", [])) for e in store.journal("r"))
            assert whole == devices  # the whole read does carry every id
    # The same rows but for the digits of the counts (100 and 5,000: one more, a few
    # times over), where the whole body would be 5,000 ids (tens of kilobytes) more.
    (small_j, small_e), (big_j, big_e) = returned[100], returned[5_000]
    assert big_j - small_j <= 20, returned
    assert big_e - small_e <= 20, returned


def test_a_summary_is_made_once_and_the_delivery_record_is_read_each_time(
    backend: Backend,
) -> None:
    """An entry's and a body's summary is kept by the store (they never change): a page
    read again parses no body; what changes (an effect's status, new entries) is read."""
    with backend.open() as store:
        _history(store, 3000)
        assert _returned(store, lambda: store.journal_page("r")) > 0
        assert _returned(store, lambda: store.effect_summaries("r")) > 0
        again = {"journal": store.journal_page, "effects": store.effect_summaries}
        for read in again.values():
            # No body parsed again (the summary tables' rows are a page's few bytes).
            with pytest.raises(AssertionError, match="no statement"):
                _returned(store, lambda read=read: read("r"), ("json",))
        push = store.effect_summaries("r")[0]
        assert push.stored.status == "pending"
        assert push.devices == 3000
        store.acknowledge([push.stored.id], day(7))
        store.apply("r", cf.Retry("d1"), day(7))
        assert store.effect_summaries("r")[0].stored.status == "acknowledged"
        assert store.effect_summaries("r")[0].stored.acked_at == day(7)
        newest = store.journal_page("r", limit=1)[0]
        assert newest.commands == (cf.Retry("d1"),)
        assert newest.seq == max(e.seq for e in store.journal("r"))
