"""The console's pages over HTTP: the rollout list, New rollout's checks, View Details
(the head of status, the device table's keyset pages and filters, the CSV of the
selection), History, Effects and the chart; on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import attrs
import pytest

import certflow as cf
from certflow.core.plan import DeviceState
from certflow.store import SqlStore
from certflow.web import _pages, _words, create_app
from tests.backends import Backend
from tests.certs.factory import DAY
from tests.core.strategies import T0, build
from tests.web.conftest import Clock, Console, TestClient, header_user, upload

DEVICES = [f"dev-{i:03d}" for i in range(120)]


def rows(page: str) -> list[str]:
    """The device ids of a page's device table, in order."""
    table = page[page.index('id="devices"') :]
    return re.findall(r'<th scope="row" class="device">([^<]*)</th>', table)


@pytest.fixture
def running(console: Console, store: SqlStore, clock: Clock) -> Console:
    """A rollout ``r`` of DEVICES, distributing, with a few reports in."""
    assert console.create("r", upload(DEVICES)).status_code == 201
    assert console.post("/rollouts/r/do/distribute").status_code == 200
    at = clock.move(DAY)
    store.apply_all(
        "r",
        [cf.DeviceInstalled(d) for d in DEVICES[:30]]
        + [cf.DeviceFailed(d, "profile rejected") for d in DEVICES[30:35]],
        at,
    )
    return console


def test_the_rollout_list_shows_state_progress_checkpoint_and_expiry(running: Console) -> None:
    page = running.get("/").text
    assert '<a href="/rollouts/r">r</a>' in page
    assert "distributing" in page
    assert "25.0%" in page  # 30 of 120 trust the root
    assert "2026-03-08 12:00 UTC" in page  # the first checkpoint, day 7
    assert "expires 2026-04-30 12:00 UTC" in page  # the current certificate, 60 days


def test_the_rollout_list_is_paged_by_name(
    console: Console, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of ROLLOUTS_PAGE rollouts by name, a link to the next one after its last
    name and back to the first; the page's lines are the store's paged read (one read,
    no view() per rollout)."""
    monkeypatch.setattr(_pages, "ROLLOUTS_PAGE", 4)
    names = [f"r{k:02d}" for k in range(10)]
    for name in reversed(names):
        store.create(name, build(2))
    store.apply("r05", cf.DistributeRoot(), T0)

    def listed(page: str) -> list[str]:
        return re.findall(r'<th scope="row"><a href="/rollouts/([^"]*)">', page)

    def views(*args: object, **kwargs: object) -> object:
        raise AssertionError("the list reads no view per rollout")

    monkeypatch.setattr(SqlStore, "view", views)
    first = console.get("/").text
    assert listed(first) == names[:4]
    assert 'href="/?after=r03">Next page</a>' in first
    assert "First page" not in first
    second = console.get("/", params={"after": "r03"}).text
    assert listed(second) == names[4:8]
    assert "distributing" in second  # r05, read with its overview
    assert '<a href="/">First page</a>' in second
    assert 'href="/?after=r07">Next page</a>' in second
    last = console.get("/", params={"after": "r07"}).text
    assert listed(last) == names[8:]
    assert "Next page" not in last
    beyond = console.get("/", params={"after": "r99"}).text
    assert "No rollouts after r99." in beyond
    assert "No rollouts yet" not in beyond


def test_new_rollout_reports_the_checks_as_cert_check_does_and_creates_nothing(
    console: Console, store: SqlStore
) -> None:
    checked = console.create("r", upload(DEVICES), step="check")
    assert checked.status_code == 200
    assert "Result: ok (0 errors, 0 warnings)" in checked.text
    assert re.search(r'id="recommended-mode">Distribute Root Certificate first<', checked.text)
    assert "trust_private" in checked.text  # the finding's code, as `cert check` prints it
    assert store.rollouts() == []


def test_a_certificate_with_errors_is_refused_with_its_findings(
    console: Console, store: SqlStore
) -> None:
    refused = console.create("r", upload(DEVICES), hosts="other.example.com")
    assert refused.status_code == 422
    assert "host_mismatch" in refused.text
    assert "other.example.com NOT covered" in refused.text
    assert "Result: NOT usable" in refused.text
    assert store.rollouts() == []


def test_created_rollout_offers_the_recommended_mode(console: Console, store: SqlStore) -> None:
    created = console.create("r", upload(DEVICES))
    assert created.status_code == 201
    assert "Created rollout <strong>r</strong> (pending) for 120 devices" in created.text
    assert 'action="/rollouts/r/do/distribute"' in created.text
    assert store.info("r").devices == 120


def test_view_details_shows_the_head_of_status(running: Console) -> None:
    page = running.get("/rollouts/r").text
    assert 'id="rollout-state">distributing<' in page
    assert "25.0% (30 of 120 in-scope devices trust the root)" in page
    assert re.search(r'id="next-checkpoint">2026-03-08 12:00 UTC<', page)
    assert re.search(r'id="deadline">2026-03-22 12:00 UTC<', page)
    assert "expires 2026-04-30 12:00 UTC" in page
    assert "not yet, from 2026-03-07 12:00 UTC" in page  # the manual extension
    assert "<dt>Restart required</dt><dd>no</dd>" in page
    assert "CN=mdm.example.com" in page
    assert "(private)" in page
    assert re.search(r'id="count-failed">5<', page)
    # The chart is the package's SVG, linked under the console's own path.
    assert 'src="/rollouts/r/chart.svg"' in page


def test_the_device_table_pages_by_keyset_and_filters(running: Console) -> None:
    first = running.get("/rollouts/r").text
    assert rows(first) == DEVICES[:50]
    assert 'href="/rollouts/r?after=dev-049"' in first
    second = running.get("/rollouts/r", params={"after": "dev-049"}).text
    assert rows(second) == DEVICES[50:100]
    last = running.get("/rollouts/r", params={"after": "dev-099"}).text
    assert rows(last) == DEVICES[100:]
    assert 'rel="next"' not in last
    failed = running.get("/rollouts/r", params={"state": "failed"}).text
    assert rows(failed) == DEVICES[30:35]
    assert "profile rejected" in failed
    prefixed = running.get("/rollouts/r", params={"prefix": "dev-11"}).text
    assert rows(prefixed) == DEVICES[110:120]
    both = running.get("/rollouts/r", params={"state": "installed", "prefix": "dev-02"}).text
    assert rows(both) == DEVICES[20:30]


def test_a_prefix_search_stops_at_its_budget_and_offers_to_go_on(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pages, "SCAN", 40)
    page = running.get("/rollouts/r", params={"prefix": "dev-1"}).text
    assert rows(page) == []  # dev-000..dev-039 hold none
    assert "The search read 40 devices." in page
    assert 'href="/rollouts/r?prefix=dev-1&amp;after=dev-039"' in page
    further = running.get("/rollouts/r", params={"prefix": "dev-1", "after": "dev-079"}).text
    assert rows(further) == DEVICES[100:120]


def test_an_unknown_state_or_rollout_is_a_page_that_says_so(running: Console) -> None:
    bad = running.get("/rollouts/r", params={"state": "lost"})
    assert bad.status_code == 400
    assert "state &#39;lost&#39; is not a device state" in bad.text
    missing = running.get("/rollouts/nope")
    assert missing.status_code == 404
    assert "no rollout named &#39;nope&#39;" in missing.text


def test_the_csv_is_the_whole_selection_streamed(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_pages, "CSV_CHUNK", 7)  # many store calls, one file
    response = running.get("/rollouts/r/devices.csv", params={"state": "installed"})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="r-installed-devices.csv"' in response.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == ["device", "state", "attempts", "last_push", "last_report", "reason"]
    assert [row[0] for row in table[1:]] == DEVICES[:30]
    assert {row[1] for row in table[1:]} == {"installed"}
    everything = list(csv.reader(io.StringIO(running.get("/rollouts/r/devices.csv").text)))
    assert [row[0] for row in everything[1:]] == DEVICES
    failed = [row for row in everything if row[1] == "failed"]
    assert {row[5] for row in failed} == {"profile rejected"}
    prefixed = running.get("/rollouts/r/devices.csv", params={"prefix": "dev-10"}).text
    assert [r[0] for r in list(csv.reader(io.StringIO(prefixed)))[1:]] == DEVICES[100:110]


def test_history_lists_the_journal_newest_first(running: Console) -> None:
    page = running.get("/rollouts/r/history").text
    lines = re.findall(r"<td>([^<]*)</td><td><span class=\"rollout-state", page)
    assert lines == [
        "a batch of 35: a report that a device failed x5, a report that a device "
        "installed the root x30",
        "Distribute Root Certificate",
        "created with 120 devices",
    ]


def test_effects_lists_pending_and_acknowledged_effects_in_words(running: Console) -> None:
    page = running.get("/rollouts/r/effects").text
    assert "push root to 120 devices (attempt 1), root SHA-256" in page
    assert "pending (1)" in page
    acknowledged = running.get("/rollouts/r/effects", params={"show": "acknowledged"}).text
    assert "No acknowledged effects." in acknowledged


def test_history_and_effects_read_the_page_reads_not_the_whole_lists(
    running: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two pages read the store's summaries (lists counted and cut in the database):
    the whole reads, which decode every device id, are not called."""

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("a page read a whole list")

    monkeypatch.setattr(SqlStore, "journal", whole)
    monkeypatch.setattr(SqlStore, "effects", whole)
    assert "created with 120 devices" in running.get("/rollouts/r/history").text
    page = running.get("/rollouts/r/effects", params={"show": "all"}).text
    assert "push root to 120 devices (attempt 1)" in page


def test_history_is_paged_newest_first(running: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pages, "HISTORY_PAGE", 2)
    first = running.get("/rollouts/r/history").text
    assert re.findall(r'<td class="num">(\d+)</td><td>', first) == ["3", "2"]
    assert 'href="/rollouts/r/history?before=2">Older entries' in first
    assert "Newest entries" not in first
    older = running.get("/rollouts/r/history", params={"before": "2"}).text
    assert re.findall(r'<td class="num">(\d+)</td><td>', older) == ["1"]
    assert "created with 120 devices" in older
    assert "Older entries" not in older
    assert 'href="/rollouts/r/history">Newest entries' in older
    assert running.get("/rollouts/r/history", params={"before": "x"}).status_code == 400


@pytest.mark.parametrize("kind", [cf.ReenrollmentRequired, cf.AcknowledgementTimedOut])
def test_a_cut_device_list_reads_as_the_whole_list(kind: type) -> None:
    ids = tuple(f"dev-{i:03d}" for i in range(10))
    effect = kind(ids, T0)
    cut = attrs.evolve(effect, device_ids=ids[: _words.SHOWN])
    text = _words.summary_text(cut, 10)
    assert text == _words.effect_text(effect)
    assert "dev-000, dev-001, dev-002, ... (7 more)" in text
    push = cf.PushRoot(ids, 1, T0)
    assert _words.summary_text(attrs.evolve(push, device_ids=ids[:3]), 10) == (
        _words.effect_text(push)
    )
    assert _words.summary_text(cut, None) == _words.effect_text(cut)
    with pytest.raises(ValueError, match="the first 3"):
        _words.summary_text(attrs.evolve(effect, device_ids=ids[:1]), 10)


def test_the_chart_is_svg_drawn_by_matplotlib(running: Console) -> None:
    response = running.get("/rollouts/r/chart.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<?xml")
    assert "Matplotlib v" in response.text  # its SVG backend wrote it
    # The stacked layers are the state colours: installed and failed devices are drawn.
    assert "#4c9a2a" in response.text
    assert "#e4572e" in response.text
    assert "<script" not in response.text


@pytest.fixture
def on_backend(backend: Backend, clock: Clock) -> Iterator[tuple[Console, Backend]]:
    app = create_app(lambda: backend.open(), authenticate=header_user, clock=clock)
    with TestClient(app) as client:
        yield Console(client), backend


def test_the_pages_read_the_same_on_both_backends(
    on_backend: tuple[Console, Backend], clock: Clock
) -> None:
    console, backend = on_backend
    assert console.create("r", upload(DEVICES[:60])).status_code == 201
    assert console.post("/rollouts/r/do/distribute").status_code == 200
    with backend.open() as store:
        store.apply("r", cf.DeviceFailed("dev-007", "no answer"), clock.move(DAY))
        assert store.info("r").counts[DeviceState.FAILED] == 1
    details = console.get("/rollouts/r", params={"state": "failed"}).text
    assert rows(details) == ["dev-007"]
    assert rows(console.get("/rollouts/r", params={"after": "dev-049"}).text) == DEVICES[50:60]
    table = list(csv.reader(io.StringIO(console.get("/rollouts/r/devices.csv").text)))
    assert len(table) == 61
    assert "Distribute Root Certificate" in console.get("/rollouts/r/history").text
    assert console.get("/rollouts/r/chart.svg").status_code == 200
