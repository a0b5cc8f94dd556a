"""The Forecast page: the figures of :func:`certflow.sim.forecast` for a distributing
rollout, as it is and with one extension; refused for a pending or ended rollout;
computed off the store thread, bounded; everything it shows escaped."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from markupsafe import escape

import certflow as cf
import certflow.sim
from certflow.core.serialization import loads
from certflow.sim import AdminPolicy, forecast
from certflow.store import SqlStore
from certflow.web import _forecast
from certflow.web._runner import Bounded, Busy
from tests.certs.factory import DAY
from tests.web.conftest import Clock, Console, upload

DEVICES = [f"dev-{i:03d}" for i in range(120)]


@pytest.fixture
def running(console: Console, store: SqlStore, clock: Clock) -> Console:
    """A rollout ``r`` of DEVICES, distributing, reports on day 1, read on day 6."""
    assert console.create("r", upload(DEVICES)).status_code == 201
    assert console.post("/rollouts/r/do/distribute").status_code == 200
    store.apply_all(
        "r",
        [cf.DeviceInstalled(d) for d in DEVICES[:30]]
        + [cf.DeviceFailed(d, "profile rejected") for d in DEVICES[30:35]],
        clock.move(DAY),
    )
    clock.move(5 * DAY)
    return console


COMPUTING = 'id="forecast-computing"'
REFRESH = '<meta http-equiv="refresh" content="5">'


def _settled(console: Console, path: str = "/rollouts/r/forecast", **options: Any) -> Any:
    """The Forecast page once its forecast is computed: the page never waits for one,
    so it is requested again (as its refresh would) until it no longer says computing."""
    deadline = time.monotonic() + 60
    while True:
        response = console.get(path, **options)
        if COMPUTING not in response.text:
            assert REFRESH not in response.text  # done: the page stops reloading itself
            return response
        assert REFRESH in response.text
        assert time.monotonic() < deadline, "the forecast was never computed"
        time.sleep(0.02)


def _row(page: str, row_id: str) -> str:
    found = re.search(rf'<tr id="{row_id}">(.*?)</tr>', page, re.S)
    assert found is not None, f"no row {row_id}"
    return found[1]


def _expected(store: SqlStore, clock: Clock, retry_every: int | None = None) -> Any:
    pushes, reports = store.activity("r")
    return forecast(
        loads(store.dumps("r")),
        clock.now,
        pushes,
        reports,
        admin=AdminPolicy(retry_every=retry_every),
        runs=_forecast.RUNS,
        level=_forecast.LEVEL,
    )


def test_the_page_shows_both_branches_the_recommendation_constraints_and_tail(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    response = _settled(running, params={"retry_every": "3"})
    assert response.status_code == 200
    page = response.text
    found = _expected(store, clock, retry_every=3).as_dict()
    assert found["extended"] is not None  # day 6: manual extension is open
    for row_id, branch in (
        ("branch-as-is", found["as_is"]),
        ("branch-extended", found["extended"]),
    ):
        row = _row(page, row_id)
        cut = (
            f"{branch['cutoff_mean']:,.1f} ({branch['cutoff_low']:,} to {branch['cutoff_high']:,})"
        )
        assert cut in row
        assert f"day {branch['import_day_mean']:.1f}" in row
        assert f"{branch['forced_probability'] * 100:.0f}%" in row
    # The two branches differ where the engine moved the deadline: day 21, extended 28.
    assert "2026-03-22 12:00 UTC" in _row(page, "branch-as-is")
    assert "2026-03-29 12:00 UTC" in _row(page, "branch-extended")
    advice = found["recommendation"]
    verdict = "Extend" if advice["extend"] else "Do not extend"
    assert f"{verdict}: {escape(advice['reason'])}" in page
    assert found["constraints"]
    for text in found["constraints"]:
        assert f"<li>{escape(text)}</li>" in page
    tail = found["tail"]
    assert f"{tail['waiting']:,} devices await an answer" in page
    assert f"<strong>{tail['beyond']:,} of them longer than that</strong>" in page
    assert "rests on the model's extrapolation alone" in page
    assert "retry all failed devices every 3 days" in page
    # Per tail form the data allow, how many of the devices beyond the data answer.
    unsettled = re.search(r'<p id="unsettled">(.*?)</p>', page, re.S)
    assert unsettled is not None
    assert f"{tail['unsettled']:,} have been silent for less than twice" in unsettled[1]
    assert f"Of the {tail['beyond']:,}, the tail forms the data allow expect" in unsettled[1]
    for shape, count in tail["by_shape"].items():
        assert f"{count:,.1f} with a {_forecast.SHAPES[shape]}" in unsettled[1]
    assert ('id="unreliable"' in page) is (not found["reliable"])
    # Nothing was written: the forecast reads.
    assert [e.kind for e in store.journal("r")] == ["create", "command", "batch"]


def test_the_assumed_retries_change_the_forecast(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    none = _expected(store, clock).as_dict()["as_is"]
    page = _settled(running).text
    assert f"{none['cutoff_mean']:,.1f} (" in _row(page, "branch-as-is")
    assert "do nothing more (no retry, no import now)" in page
    bad = running.get("/rollouts/r/forecast", params={"retry_every": "5"})
    assert bad.status_code == 400
    assert "retry_every &#39;5&#39;: one of 0, 1, 2, 3, 7" in bad.text


def test_view_details_links_the_forecast_only_while_distributing(
    console: Console, clock: Clock
) -> None:
    assert console.create("r", upload(DEVICES)).status_code == 201
    assert 'id="forecast-link"' not in console.get("/rollouts/r").text
    assert console.post("/rollouts/r/do/distribute").status_code == 200
    assert 'id="forecast-link" href="/rollouts/r/forecast"' in console.get("/rollouts/r").text


def test_a_pending_or_ended_rollout_is_refused(
    console: Console, store: SqlStore, clock: Clock
) -> None:
    assert console.create("r", upload(DEVICES)).status_code == 201
    pending = console.get("/rollouts/r/forecast")
    assert pending.status_code == 409
    assert "rollout &#39;r&#39; is pending: only a distributing rollout" in pending.text
    store.apply("r", cf.Cancel(), clock.move(DAY))
    ended = console.get("/rollouts/r/forecast")
    assert ended.status_code == 409
    assert "is cancelled: only a distributing rollout" in ended.text
    assert 'id="forecast-link"' not in console.get("/rollouts/r").text
    assert console.get("/rollouts/nope/forecast").status_code == 404


def test_what_the_forecast_says_is_escaped(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page must keep text inert whatever the forecast's sentences hold (they quote
    # refusals and dates today; a host's rules could word them otherwise).
    attack = '<script>alert(1)</script>"\'><a href="javascript:alert(2)">x</a>'
    real = certflow.sim.forecast

    def tainted(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        return attrs.evolve(
            result,
            constraints=(attack,),
            advice=attrs.evolve(result.advice, reason=attack),
        )

    monkeypatch.setattr(certflow.sim, "forecast", tainted)
    page = _settled(running).text
    assert "<script>" not in page
    assert 'href="javascript:' not in page
    assert f"<li>{escape(attack)}</li>" in page
    assert escape(attack) in page[page.index('id="recommendation"') :]


def test_an_unreliable_forecast_says_so_first(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = certflow.sim.forecast
    caution = "<b>1,000</b> devices' answers alone would spread the cut-offs wider"

    def unreliable(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        return attrs.evolve(result, tail=attrs.evolve(result.tail, reliable=False, caution=caution))

    monkeypatch.setattr(certflow.sim, "forecast", unreliable)
    page = _settled(running).text
    mark = re.search(r'id="unreliable"><p>(.*?)</p>', page, re.S)
    assert mark is not None
    assert (
        mark[1]
        == f"<strong>Unreliable:</strong> {escape(caution)}. Read its intervals as too narrow."
    )
    assert page.index('id="unreliable"') < page.index('id="branches"')


def test_the_page_answers_at_once_and_the_forecast_runs_off_the_store_thread(
    running: Console, store: SqlStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    real = certflow.sim.forecast

    def slow(*args: Any, **kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        started.set()
        assert release.wait(30), "the test never released the forecast"
        return real(*args, **kwargs)

    monkeypatch.setattr(certflow.sim, "forecast", slow)
    try:
        # The first request answers while the simulation is held: it does not run in
        # the request, and the page says since when it is computed, and reloads itself.
        first = running.get("/rollouts/r/forecast")
        assert first.status_code == 200
        assert COMPUTING in first.text
        assert REFRESH in first.text
        assert "is being computed, since 2026-03-07 12:00 UTC" in first.text
        assert 'id="branch-as-is"' not in first.text
        assert started.wait(30)
        # Reloaded meanwhile: the same computation, not a second one queued.
        again = running.get("/rollouts/r/forecast")
        assert COMPUTING in again.text
        # The forecast holds its thread; View Details reads the store meanwhile.
        assert running.get("/rollouts/r").status_code == 200
    finally:
        release.set()
    page = _settled(running).text
    assert len(calls) == 1
    assert calls[0].startswith("certflow-forecast")
    found = _expected(store, clock).as_dict()["as_is"]
    assert f"{found['cutoff_mean']:,.1f} (" in _row(page, "branch-as-is")


def test_the_forecasts_store_reads_do_not_hold_the_pages(
    running: Console, store: SqlStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forecast's inputs (a replay of the journal: seconds at a million devices) are
    read in a thread with a store of its own: the pages read theirs meanwhile."""
    started, release = threading.Event(), threading.Event()
    readers: list[str] = []
    real = SqlStore.activity

    def slow(self: SqlStore, name: str) -> Any:
        readers.append(threading.current_thread().name)
        started.set()
        assert release.wait(30), "the test never released the read"
        return real(self, name)

    monkeypatch.setattr(SqlStore, "activity", slow)
    try:
        assert COMPUTING in running.get("/rollouts/r/forecast").text
        assert started.wait(30)
        # Held in the middle of the forecast's store read: every page still answers.
        for path in ("/rollouts/r", "/rollouts/r/history", "/rollouts/r/effects", "/"):
            assert running.get(path).status_code == 200, path
    finally:
        release.set()
    page = _settled(running).text
    assert readers == ["certflow-long-reads_0"]
    found = _expected(store, clock).as_dict()["as_is"]
    assert f"{found['cutoff_mean']:,.1f} (" in _row(page, "branch-as-is")


def test_a_forecast_is_kept_until_the_journal_grows_or_the_day_changes(
    running: Console, store: SqlStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = certflow.sim.forecast
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(certflow.sim, "forecast", counted)
    before = _settled(running).text
    assert len(calls) == 1
    # Kept: served again at once, no simulation; another retry choice is its own.
    kept = running.get("/rollouts/r/forecast")
    assert COMPUTING not in kept.text
    assert REFRESH not in kept.text
    assert _row(kept.text, "branch-as-is") == _row(before, "branch-as-is")
    assert len(calls) == 1
    _settled(running, params={"retry_every": "1"})
    assert len(calls) == 2
    # The journal grows: the last forecast is shown, marked, while the new one computes.
    store.apply_all("r", [cf.DeviceInstalled(d) for d in DEVICES[35:90]], clock.now)
    stale = running.get("/rollouts/r/forecast").text
    if COMPUTING in stale:  # else already done: the thread can beat the request
        assert "A newer forecast is being computed" in stale
        assert "below, the last one, from 2026-03-07 12:00 UTC" in stale
        assert _row(stale, "branch-as-is") == _row(before, "branch-as-is")
    after = _settled(running).text
    assert len(calls) == 3
    found = _expected(store, clock).as_dict()["as_is"]
    assert f"{found['cutoff_mean']:,.1f} (" in _row(after, "branch-as-is")
    assert _row(after, "branch-as-is") != _row(before, "branch-as-is")
    # The next day: computed again, at the new instant.
    clock.move(DAY)
    assert "At 2026-03-08 12:00 UTC" in _settled(running).text
    assert len(calls) == 4


def test_a_failed_forecast_is_said_once_then_tried_again(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = certflow.sim.forecast
    failures = [cf.InvalidInput("no fit for these waits")]

    def failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(certflow.sim, "forecast", failing)
    deadline = time.monotonic() + 60
    while COMPUTING in (page := running.get("/rollouts/r/forecast")).text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert page.status_code == 400
    assert "no fit for these waits" in page.text
    assert 'id="branch-as-is"' in _settled(running).text


def test_forecasts_beyond_the_bound_are_refused_not_queued(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = running.client.app
    monkeypatch.setattr(app.state.console, "forecasts", Bounded(0, "test"))  # type: ignore[attr-defined]
    busy = running.get("/rollouts/r/forecast")
    assert busy.status_code == 503
    assert "at most 0" in busy.text


def test_a_full_forecast_thread_leaves_the_last_forecast_shown(
    running: Console, store: SqlStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _settled(running).text
    store.apply_all("r", [cf.DeviceInstalled(d) for d in DEVICES[35:40]], clock.now)
    app = running.client.app
    monkeypatch.setattr(app.state.console, "forecasts", Bounded(0, "test"))  # type: ignore[attr-defined]
    page = running.get("/rollouts/r/forecast")
    assert page.status_code == 200
    assert 'id="forecast-busy"' in page.text
    assert "at most 0" in page.text
    assert REFRESH not in page.text
    assert _row(page.text, "branch-as-is") == _row(before, "branch-as-is")


@pytest.fixture
def bounded() -> Iterator[Bounded]:
    pool = Bounded(2, "test")
    yield pool
    pool.close()


def test_bounded_takes_its_limit_and_refuses_more_until_one_ends(bounded: Bounded) -> None:
    gate = threading.Event()

    async def scenario() -> list[object]:
        held = [asyncio.ensure_future(bounded.run(lambda: gate.wait(30))) for _ in range(2)]
        await asyncio.sleep(0)  # both submitted: one running, one waiting
        with pytest.raises(Busy, match="2 computations are already running or waiting"):
            await bounded.run(lambda: 1)
        gate.set()
        done: list[object] = list(await asyncio.gather(*held))
        done.append(await bounded.run(lambda: "free again"))
        return done

    assert asyncio.run(scenario()) == [True, True, "free again"]
