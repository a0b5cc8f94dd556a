"""What the demo prints besides its events: the "view details" page, and the spans and
figures its lines show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certflow.core.plan import DeviceState
from certflow.demo import SimulationResult, format_summary
from certflow.demo._text import moved, shown, trusting


def test_the_extension_is_told_by_how_far_it_moved_the_deadline() -> None:
    day = datetime(2026, 7, 22, 9, 0, tzinfo=UTC)
    assert moved(day, day + timedelta(days=7)) == "+7 days"
    assert moved(day, day + timedelta(days=3, hours=12)) == "+3 days 12 h"
    assert moved(None, day) == "-"
    assert shown(None) == "-"


def test_trust_is_counted_over_the_devices_in_scope() -> None:
    counts = {DeviceState.INSTALLED: 3, DeviceState.PUSHED: 1, DeviceState.REMOVED: 5}
    assert trusting(counts) == (3, 4)


def test_the_view_details_page_lists_states_devices_and_failure_reasons(
    simulated: tuple[SimulationResult, str],
) -> None:
    result, text = simulated
    page = format_summary(result.summary, rows=3)
    lines = page.splitlines()
    assert lines[0] == f"state: {result.summary.state.value}"
    assert f"  {'total':<18} {result.rollout.device_count:>9,}" in lines
    first = lines.index("first 3 devices:")
    assert len(lines[first + 2 : lines.index("", first)]) == 3
    assert "failure reasons (last reported, devices that ever failed):" in lines
    # The story ends with the page (ten devices listed).
    assert text.rstrip("\n").endswith(format_summary(result.summary))
