"""The store's batch path (issue 18, item 7: a report file of a million devices): runs of
device commands of one type go through the interpreter's dispatch once, their texts
checked all at once, with Python's cyclic collector paused while a large batch runs.
What the batch does is held to the evaluator by the differential tests (test_sql,
test_variants); these hold what the shortcuts must not change: the first problem of a
batch, in batch order, is the one raised, and the collector comes back as it was.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import certflow as cf
from certflow.store import _collector
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build

NOW = T0 + HOUR


@pytest.fixture
def distributing(backend: Backend) -> Iterator[Any]:
    with backend.open() as store:
        store.create("r", build(4))
        store.apply("r", cf.DistributeRoot(), T0)
        yield store


@pytest.mark.parametrize(
    ("batch", "raised", "message"),
    [
        # A refusal before a text no database can store: the refusal, as one by one.
        (
            [cf.DeviceInstalled("d0"), cf.DeviceInstalled("ghost"), cf.DeviceInstalled("d\x00")],
            cf.UnknownDevice,
            "ghost",
        ),
        # The text first: its InvalidInput, before the unknown device is looked at.
        (
            [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d\x00"), cf.DeviceInstalled("ghost")],
            cf.InvalidInput,
            "contains a NUL character",
        ),
        (
            [cf.DeviceFailed("d0", "full"), cf.DeviceFailed("d1", "bad \udcff")],
            cf.InvalidInput,
            "the reason 'bad \\\\udcff' is not valid UTF-8 text",
        ),
        (
            [cf.DeviceInstalled("d0"), cf.Enroll("\udcff"), cf.DeviceInstalled("d1")],
            cf.InvalidInput,
            "device id '\\\\udcff' is not valid UTF-8 text",
        ),
    ],
    ids=["refusal-first", "text-first", "reason", "enrolment"],
)
def test_the_first_problem_in_batch_order_is_raised_and_nothing_applied(
    distributing: Any, batch: list[cf.Command], raised: type[Exception], message: str
) -> None:
    before = distributing.dumps("r")
    with pytest.raises(raised, match=message):
        distributing.apply_all("r", batch, NOW)
    assert distributing.dumps("r") == before


def test_a_text_no_database_can_store_is_raised_even_when_refusals_are_skipped(
    distributing: Any,
) -> None:
    batch = [cf.DeviceInstalled("ghost"), cf.DeviceInstalled("d0"), cf.DeviceInstalled("d\x00")]
    before = distributing.dumps("r")
    with pytest.raises(cf.InvalidInput, match="contains a NUL character"):
        distributing.apply_all("r", batch, NOW, refused="skip")
    assert distributing.dumps("r") == before
    done = distributing.apply_all("r", batch[:2], NOW, refused="skip")
    assert [r.position for r in done.refused] == [0]
    assert distributing.device("r", "d0").state is cf.DeviceState.INSTALLED


def test_runs_of_each_type_keep_the_batch_order(distributing: Any) -> None:
    """Runs of reports, a rollout command between them, then reports again: each
    command in its place (the retry pushes d1 again; the report after it answers it)."""
    batch = [
        cf.DeviceFailed("d1", "declined"),
        cf.DeviceInstalled("d0"),
        cf.Retry("d1"),
        cf.RetryAllFailed(),  # nothing failed by then: no push
        cf.DeviceInstalled("d1"),
        cf.DeviceInstalled("d1"),
    ]
    done = distributing.apply_all("r", batch, NOW)
    assert [type(e.effect).__name__ for e in done] == ["PushRoot"]
    (entry,) = [e for e in distributing.journal("r") if e.kind == "batch"]
    assert entry.commands == tuple(batch)
    assert distributing.device("r", "d1").attempts == 2
    assert distributing.device("r", "d1").state is cf.DeviceState.INSTALLED
    assert distributing.dumps("r") == cf.dumps(distributing.replay("r"))


def test_the_collector_is_paused_during_a_large_batch_and_restored(
    distributing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    fetch = distributing._fetch_devices

    def noted(rollout: int, device_ids: list[str]) -> Any:
        seen.append(gc.isenabled())
        return fetch(rollout, device_ids)

    distributing._fetch_devices = noted
    monkeypatch.setattr(_collector, "LARGE", 3)
    distributing.apply_all("r", [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d1")], NOW)
    assert seen == [True]  # below LARGE: left alone
    with pytest.raises(cf.UnknownDevice):
        distributing.apply_all("r", [cf.DeviceInstalled(d) for d in ("d2", "d3", "x")], NOW)
    assert seen == [True, False]
    assert gc.isenabled()  # back after the batch that raised


def test_the_collector_comes_back_when_the_last_batch_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two batches at once (two threads) and a host that disabled the collector itself."""
    assert gc.isenabled()
    first, second = _collector.paused(_collector.LARGE), _collector.paused(_collector.LARGE)
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second still runs
    second.__exit__(None, None, None)
    assert gc.isenabled()
    with _collector.paused(_collector.LARGE - 1):
        assert gc.isenabled()
    gc.disable()
    try:
        with _collector.paused(_collector.LARGE):
            assert not gc.isenabled()
        assert not gc.isenabled()  # the host's choice stays
    finally:
        gc.enable()
    # Threads that overlap in any order leave it enabled.
    ready = threading.Barrier(4)

    def batch() -> None:
        with _collector.paused(_collector.LARGE):
            ready.wait()

    threads = [threading.Thread(target=batch) for _ in range(3)]
    for thread in threads:
        thread.start()
    ready.wait()
    assert not gc.isenabled()
    for thread in threads:
        thread.join()
    assert gc.isenabled()
