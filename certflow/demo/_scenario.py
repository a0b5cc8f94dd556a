"""What a demo run is given and what it gives back: :class:`Scenario` and
:class:`SimulationResult`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs

from certflow.core.effects import Effect
from certflow.core.rollout import Rollout
from certflow.core.summary import Summary
from certflow.sim.fleet import Trace

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


@attrs.frozen
class Scenario:
    """The knobs of a simulated fleet and administrator; the defaults make ``make demo``.

    Shares are fractions of the initial fleet. ``start`` is the instant the rollout is
    created and distribution starts; ``step`` how often the host ingests reports.
    """

    start: datetime = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    step: timedelta = HOUR
    share_preinstalled: float = 0.02
    """Devices whose image already ships the root: recorded as trusted at creation."""
    share_offline: float = 0.08
    """Devices offline for 1 to 32 days; they install when they come back."""
    share_flaky: float = 0.05
    """Devices whose first push fails; each later push succeeds with ``retry_success``."""
    share_silent: float = 0.012
    """Devices that never answer (lost, in a drawer, wiped)."""
    share_churn: float = 0.001
    """Devices that unenrol during the rollout; as many new devices enrol."""
    retry_success: float = 0.7
    install_median: timedelta = 5 * HOUR
    """Median delay between a push and the install on an online device."""
    retry_every: timedelta = 3 * DAY
    """The administrator bulk-retries failed devices at most this often."""
    extend: bool = True
    """Whether the administrator extends once when the day-6 notice comes."""
    existing_expires_after: timedelta = 40 * DAY
    """The old certificate expires this long after ``start``."""
    after_import: timedelta = 7 * DAY
    """How long the simulation goes on after the import (re-enrolments)."""
    reenroll_share: float = 0.8
    """Share of cut-off devices that come back and are re-enrolled after the import."""

    def __attrs_post_init__(self) -> None:
        shares = (self.share_preinstalled, self.share_offline, self.share_flaky, self.share_silent)
        if any(not 0 <= s <= 1 for s in (*shares, self.share_churn)) or sum(shares) > 1:
            raise ValueError("Scenario shares must lie in [0, 1] and sum to at most 1")
        if self.start.utcoffset() is None:
            raise ValueError("Scenario.start must be timezone-aware")
        if self.step <= timedelta(0):
            raise ValueError("Scenario.step must be positive")


@attrs.frozen
class SimulationResult:
    """What a simulation did: the final rollout, every effect, and the key figures."""

    rollout: Rollout
    effects: tuple[Effect, ...]
    summary: Summary
    devices: int
    seed: int
    notices: int
    checkpoints_postponed: int
    manual_extensions: int
    bulk_retries: int
    retried_pushes: int
    enrolled: int
    unenrolled: int
    forced: bool | None
    import_day: float | None
    reenrollment_required: int
    reenrolled: int
    server_restarted: bool
    trace: Trace = attrs.field(repr=False)
    """Device states at the start of each day (from t0), and at the end."""
