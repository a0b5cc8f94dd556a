"""What the demo prints besides its events: the "view details" page
(:func:`format_summary`), and the figures, instants and spans its lines show."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from certflow.core.instants import show, show_span
from certflow.core.plan import DeviceState
from certflow.core.summary import Summary


def trusting(counts: dict[DeviceState, int]) -> tuple[int, int]:
    """How many devices trust the root, of how many in scope, as the states declare."""
    in_scope = sum(n for state, n in counts.items() if state.in_scope)
    return sum(n for state, n in counts.items() if state.in_scope and state.trusts), in_scope


def shown(instant: datetime | None) -> str:
    return "-" if instant is None else show(instant)


def moved(before: datetime | None, after: datetime | None) -> str:
    """How far a command moved an instant, as ``+7 days``."""
    if before is None or after is None:
        return "-"
    return ("+" if after >= before else "") + show_span(after - before)


def format_summary(summary: Summary, rows: int = 10) -> str:
    """The "view details" page as text: state, timeline, counts, devices, failure reasons.

    Lists the first ``rows`` devices and, over every device, how many ever failed for
    each reason and how many of those trust the root now. Reads every device record
    once (for the reasons), so it is O(fleet size).
    """
    lines = [
        f"state: {summary.state.value}"
        + (" (server restart pending)" if summary.restart_required else ""),
        f"in scope: {summary.in_scope:,} devices; {summary.percent_complete:.1f}% trust the root",
    ]
    if summary.started_at is not None:
        lines.append(f"distribution started: {show(summary.started_at)}")
    if summary.next_checkpoint is not None and summary.deadline is not None:
        lines.append(
            f"next checkpoint: {show(summary.next_checkpoint)}; deadline: {show(summary.deadline)}"
        )
    available = "available" if summary.manual_extension_available else "not available"
    lines.append(f"manual extensions used: {summary.manual_extensions}; extension {available}")
    lines.append("")
    lines.append("devices per state:")
    total = sum(summary.counts.values())
    for state, count in summary.counts.items():
        lines.append(f"  {state.value:<18} {count:>9,}")
    lines.append(f"  {'total':<18} {total:>9,}")
    lines.append("")
    lines.append(f"first {rows} devices:")
    lines.append(f"  {'device':<16} {'state':<18} {'attempts':>8}  last failure reason")
    for record in summary.devices(limit=rows):
        lines.append(
            f"  {record.device_id:<16} {record.state.value:<18} {record.attempts:>8}  "
            f"{record.last_failure_reason or '-'}"
        )
    reasons: Counter[str] = Counter()
    recovered: Counter[str] = Counter()
    for record in summary.devices():
        if record.last_failure_reason is not None:
            reasons[record.last_failure_reason] += 1
            if record.state.trusts:
                recovered[record.last_failure_reason] += 1
    lines.append("")
    lines.append("failure reasons (last reported, devices that ever failed):")
    if not reasons:
        lines.append("  none")
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {reason:<32} {count:>7,}  ({recovered[reason]:,} now trust the root)")
    return "\n".join(lines)
