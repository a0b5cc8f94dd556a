"""Hypothesis strategies and builders shared by the test modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

import certflow as cf

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def build(
    devices: int | list[str] = 3,
    *,
    at: datetime = T0,
    existing_expires_in: timedelta = 60 * DAY,
    new_valid_for: timedelta = 300 * DAY,
    public: bool = False,
    kind: cf.CertificateKind = cf.CertificateKind.MDM_SERVER,
    policy: cf.Policy | None = None,
    trusted: tuple[str, ...] = (),
) -> cf.Rollout:
    """A pending rollout created at ``at`` with devices ``d0``, ``d1``, …"""
    ids = [f"d{i}" for i in range(devices)] if isinstance(devices, int) else devices
    return cf.new_rollout(
        ids,
        existing_not_after=at + existing_expires_in,
        new_not_before=at - DAY,
        new_not_after=at - DAY + new_valid_for,
        root_publicly_trusted=public,
        created_at=at,
        kind=kind,
        policy=policy,
        trusted_device_ids=trusted,
    )


def distributing(devices: int | list[str] = 3, **kwargs: Any) -> cf.Rollout:
    """A rollout whose distribution started at ``T0`` (day 0)."""
    return cf.apply(build(devices, **kwargs), cf.DistributeRoot(), T0).rollout


def day(n: float) -> datetime:
    """Day ``n`` of a distribution started at ``T0``."""
    return T0 + n * DAY


device_counts = st.integers(min_value=0, max_value=40)

# Spans from a second to two years, biased towards the interesting hours and days.
spans = st.one_of(
    st.integers(min_value=1, max_value=59).map(lambda s: timedelta(seconds=s)),
    st.integers(min_value=1, max_value=72).map(lambda h: h * HOUR),
    st.integers(min_value=1, max_value=30).map(lambda d: d * DAY),
    st.integers(min_value=0, max_value=730 * 86400).map(lambda s: timedelta(seconds=s)),
)


@st.composite
def policies(draw: st.DrawFn) -> cf.Policy:
    """Valid policies: the default most of the time, otherwise a random timeline."""
    if draw(st.booleans()):
        ack = draw(st.none() | st.integers(1, 96).map(lambda h: h * HOUR))
        rule = draw(st.sampled_from(cf.ImportRule))
        return cf.Policy(import_rule=rule, ack_timeout=ack)
    notice = draw(st.integers(1, 48)) * HOUR
    gaps = draw(st.lists(st.integers(notice // HOUR + 1, 400), min_size=1, max_size=4))
    checkpoints: list[timedelta] = []
    for gap in gaps:
        checkpoints.append((checkpoints[-1] if checkpoints else timedelta(0)) + gap * HOUR)
    return cf.Policy(
        checkpoints=tuple(checkpoints),
        notice_before=notice,
        manual_extension=notice + draw(st.integers(1, 300)) * HOUR,
        manual_extension_opens=draw(st.integers(0, 300)) * HOUR + timedelta(seconds=1),
        import_rule=draw(st.sampled_from(cf.ImportRule)),
        ack_timeout=draw(st.none() | st.integers(1, 96).map(lambda h: h * HOUR)),
    )


# Every administrator's command, and the device commands as builders of a device id: what
# the property tests of the evaluator and of the store draw from.
ADMIN_COMMANDS: tuple[cf.Command, ...] = (
    cf.DistributeRoot(),
    cf.ProceedToImport(),
    cf.ImportNow(),
    cf.ExtendManually(),
    cf.Cancel(),
    cf.RetryAllFailed(),
    cf.ServerRestarted(),
)
DEVICE_COMMANDS: tuple[Callable[[str], cf.Command], ...] = (
    cf.DeviceInstalled,
    lambda d: cf.DeviceFailed(d, "profile refused ✓"),
    cf.Retry,
    cf.Enroll,
    cf.Unenroll,
    cf.Reenrolled,
)
