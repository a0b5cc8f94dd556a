"""Rollouts for the worker's tests, and the 21-day timeline replayed instant by instant."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

import certflow as cf
from certflow.store import Store, StoredEffect
from tests.core.strategies import HOUR, T0, build, day

__all__ = ["HOUR", "NO_STORE", "T0", "TIMELINE", "day", "effect", "start"]

#: What a handler that reads nothing of the store (webhook, exec) is given as its store.
NO_STORE = cast(Store, None)

# The instants a cron job running `certflow worker --once` would pass at: the start,
# the acknowledgement timeout, then each day to the deadline (day 21) and after it.
TIMELINE: list[datetime] = [T0, T0 + 7 * HOUR] + [day(n) for n in range(1, 23)]


def start(store: object, name: str = "r", devices: int = 5) -> None:
    """Rollout ``name``: distribution started at T0 with a 6-hour acknowledgement
    timeout; d0 installs the root and d1 fails within the hour, the others never answer.
    Its 21 days then emit a push, a timeout, a notice before each checkpoint, two
    postponements, and at the deadline the forced import, re-enrolment and restart."""
    store.create(name, build(devices, identified=True, policy=cf.Policy(ack_timeout=6 * HOUR)))  # type: ignore[attr-defined]
    store.apply(name, cf.DistributeRoot(), T0)  # type: ignore[attr-defined]
    store.apply_all(  # type: ignore[attr-defined]
        name, [cf.DeviceInstalled("d0"), cf.DeviceFailed("d1", "no space left")], T0 + HOUR
    )


def effect(kind: cf.Effect | None = None, effect_id: str = "r:2:0") -> StoredEffect:
    """A stored effect as a lease returns it, for a handler called on its own."""
    value = kind or cf.PushRoot(("d0", "d1"), 1, T0)
    return StoredEffect(effect_id, effect_id.rsplit(":", 2)[0], value, None, 0, None, attempts=1)


def later(instant: datetime, seconds: float) -> datetime:
    return instant + timedelta(seconds=seconds)
