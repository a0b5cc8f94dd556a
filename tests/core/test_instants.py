"""Instants and durations: what is accepted, and how they read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

import certflow as cf
from certflow.core.instants import has_seconds, require_aware, require_utc, show, show_span

TOKYO = timezone(timedelta(hours=9))


def test_an_aware_instant_is_returned_as_it_is() -> None:
    instant = datetime(2026, 7, 1, 18, 0, tzinfo=TOKYO)
    assert require_aware("now", instant) is instant


def test_require_utc_gives_the_same_instant_in_utc() -> None:
    utc = require_utc("now", datetime(2026, 7, 1, 18, 0, tzinfo=TOKYO))
    assert (utc, utc.tzinfo) == (datetime(2026, 7, 1, 9, 0, tzinfo=UTC), UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-07-01", "now must be a timezone-aware datetime, got '2026-07-01'"),
        (
            datetime(2026, 7, 1, 9, 0),
            "now is a naive datetime (2026-07-01T09:00:00); certflow needs a timezone-aware "
            "instant, e.g. datetime(..., tzinfo=timezone.utc)",
        ),
    ],
)
def test_anything_but_an_aware_datetime_is_refused_naming_the_argument(
    value: object, message: str
) -> None:
    for check in (require_aware, require_utc):
        with pytest.raises(cf.InvalidInput) as refused:
            check("now", value)
        assert str(refused.value) == message


@pytest.mark.parametrize(
    ("instant", "text"),
    [
        (datetime(2026, 7, 7, 9, 0, tzinfo=UTC), "2026-07-07 09:00 UTC"),
        (datetime(2026, 7, 7, 18, 0, tzinfo=TOKYO), "2026-07-07 09:00 UTC"),
        (datetime(2026, 7, 7, 9, 0, 5, tzinfo=UTC), "2026-07-07 09:00:05 UTC"),
        (datetime(2026, 7, 7, 9, 0, 0, 1, tzinfo=UTC), "2026-07-07 09:00:00 UTC"),
    ],
)
def test_show_reads_in_utc_with_seconds_only_when_there_are_some(
    instant: datetime, text: str
) -> None:
    assert show(instant) == text


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "0 s"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=3, seconds=5), "3 min 5 s"),
        (timedelta(hours=3, minutes=5, seconds=7), "3 h 5 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=6, hours=2, minutes=9, seconds=1), "6 days 2 h"),
        (timedelta(days=2, minutes=30), "2 days"),
        (-timedelta(hours=2), "-2 h"),
        (timedelta(seconds=59.9), "59 s"),
    ],
)
def test_show_span_reads_in_the_two_largest_units(span: timedelta, text: str) -> None:
    assert show_span(span) == text


@pytest.fixture
def local_zone_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone set to Asia/Tokyo, so that UTC and local time differ."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_tokyo")
def test_utc_never_means_the_machine_s_local_zone() -> None:
    instant = datetime(2026, 7, 1, 18, 0, tzinfo=TOKYO)
    assert require_utc("now", instant).utcoffset() == timedelta(0)
    assert show(instant) == "2026-07-01 09:00 UTC"


def test_a_page_shows_its_instants_at_one_precision_and_counts_days_as_counts() -> None:
    whole = datetime(2026, 3, 1, 5, 34, tzinfo=UTC)
    odd = datetime(2026, 3, 1, 5, 34, 1, tzinfo=UTC)
    assert (show(whole), show(odd)) == ("2026-03-01 05:34 UTC", "2026-03-01 05:34:01 UTC")
    assert has_seconds(whole, None, odd)
    assert not has_seconds(whole, None)
    assert show(whole, seconds=True) == "2026-03-01 05:34:00 UTC"
    assert show(odd, seconds=False) == "2026-03-01 05:34 UTC"  # cut to its minute
    assert show_span(timedelta(days=1_492, hours=3)) == "1,492 days 3 h"
