"""What a simulated fleet does and what its administrator does: frozen value classes.

A :class:`DeviceModel` says how devices answer a push of the root; an
:class:`AdminPolicy` says when the administrator bulk-retries, extends or imports now;
a :class:`Setup` bundles both with the fleet size and the rollout's
:class:`~certflow.Policy`. All three are plain data (picklable, so a sweep can send
them to worker processes) and check their fields when built
(:class:`~certflow.InvalidInput` names the field).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs

from certflow.core.errors import InvalidInput
from certflow.core.policy import Policy

__all__ = ["FAILURE_REASONS", "AdminPolicy", "DeviceModel", "Setup"]

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)

# Why a device fails to install the root, with relative weights: what MDM consoles
# report most often for a pushed trust profile.
FAILURE_REASONS: tuple[tuple[str, int], ...] = (
    ("certificate store locked", 30),
    ("user declined profile", 25),
    ("device offline", 20),
    ("profile installation timed out", 12),
    ("insufficient storage", 8),
    ("MDM agent out of date", 5),
)


def _share(name: str, value: float, *, open_low: bool = False) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    if not (0 < value <= 1 if open_low else 0 <= value <= 1):
        bounds = "(0, 1]" if open_low else "[0, 1]"
        raise InvalidInput(f"{name} must lie in {bounds}, got {value!r}")


@attrs.frozen
class DeviceModel:
    """How the devices of a fleet answer a push of the root.

    After a push, a device waits for its first online day (each day it is online with
    ``online_chance``, independently; the day of the push counts), then installs after a
    log-normal delay (median ``install_median``, log-scale spread ``install_sigma``).
    Each answer is a failure with ``failure_probability`` (a reason drawn from
    :data:`FAILURE_REASONS`), else an install. A share ``never_answer`` of the fleet
    never answers any push. ``churn`` is the share of the fleet that unenrols at a
    uniform instant of the first two weeks; as many new devices enrol then.
    """

    online_chance: float = 0.8
    install_median: timedelta = 4 * _HOUR
    install_sigma: float = 1.0
    failure_probability: float = 0.05
    never_answer: float = 0.01
    churn: float = 0.002

    def __attrs_post_init__(self) -> None:
        _share("DeviceModel.online_chance", self.online_chance, open_low=True)
        _share("DeviceModel.failure_probability", self.failure_probability)
        _share("DeviceModel.never_answer", self.never_answer)
        _share("DeviceModel.churn", self.churn)
        if not isinstance(self.install_median, timedelta) or self.install_median <= timedelta(0):
            raise InvalidInput(
                f"DeviceModel.install_median must be a positive timedelta, got "
                f"{self.install_median!r}"
            )
        if not isinstance(self.install_sigma, int | float) or not self.install_sigma >= 0:
            raise InvalidInput(
                f"DeviceModel.install_sigma must be a number >= 0, got {self.install_sigma!r}"
            )


@attrs.frozen
class AdminPolicy:
    """What the administrator does at the daily review (``review_at`` into each day, from day 1).

    * ``retry_every``: bulk-retry failed devices (``RetryAllFailed``) on day
      ``retry_from``, then every ``retry_every`` days, when some device failed;
      ``None``: never.
    * ``extend_on_day``: extend manually once (``ExtendManually``) at the first review
      from that day on where the rollout allows it and fewer than ``extend_below``
      percent of the in-scope devices trust the root; ``None``: never.
    * ``import_now_at``: import now (``ImportNow``) at the first review from day
      ``import_now_from`` on where at least that percentage trusts the root; ``None``:
      never.

    The default does none of these: the rollout runs on its own timeline.
    """

    retry_every: int | None = None
    retry_from: int = 1
    extend_on_day: int | None = None
    extend_below: float = 100.0
    import_now_at: float | None = None
    import_now_from: int = 1
    review_at: timedelta = _HOUR

    def __attrs_post_init__(self) -> None:
        for name in ("retry_every", "extend_on_day"):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < 1):
                raise InvalidInput(
                    f"AdminPolicy.{name} must be None or a whole day >= 1, got {value!r}"
                )
        for name in ("retry_from", "import_now_from"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise InvalidInput(f"AdminPolicy.{name} must be a whole day >= 1, got {value!r}")
        for name in ("extend_below", "import_now_at"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not 0 <= value <= 100
            ):
                raise InvalidInput(
                    f"AdminPolicy.{name} must be a percentage in [0, 100], got {value!r}"
                )
        if not isinstance(self.review_at, timedelta) or not timedelta(0) <= self.review_at < _DAY:
            raise InvalidInput(
                f"AdminPolicy.review_at must be a timedelta in [0, 1 day), got {self.review_at!r}"
            )


@attrs.frozen
class Setup:
    """One simulated rollout: the fleet, its behaviour, the administrator, the rules.

    ``step`` is how often the host ingests device reports (a report is delivered at the
    first step at or after it happened); the review instant must fall on a step. The old
    certificate expires ``existing_expires_after`` after ``start`` (which matters to the
    ``distributed_and_expired`` import rule).
    """

    devices: int = 10_000
    model: DeviceModel = attrs.Factory(DeviceModel)
    admin: AdminPolicy = attrs.Factory(AdminPolicy)
    policy: Policy = attrs.Factory(Policy)
    start: datetime = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    existing_expires_after: timedelta = 40 * _DAY
    step: timedelta = _HOUR

    def __attrs_post_init__(self) -> None:
        if type(self.devices) is not int or self.devices < 1:
            raise InvalidInput(f"Setup.devices must be a whole number >= 1, got {self.devices!r}")
        for name, kind in (("model", DeviceModel), ("admin", AdminPolicy), ("policy", Policy)):
            if not isinstance(getattr(self, name), kind):
                raise InvalidInput(
                    f"Setup.{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.start, datetime) or self.start.utcoffset() is None:
            raise InvalidInput(f"Setup.start must be a timezone-aware datetime, got {self.start!r}")
        if not isinstance(self.step, timedelta) or not timedelta(0) < self.step <= _DAY:
            raise InvalidInput(f"Setup.step must be a timedelta in (0, 1 day], got {self.step!r}")
        if _DAY % self.step or self.admin.review_at % self.step:
            raise InvalidInput(
                f"Setup.step ({self.step}) must divide a day and the review time "
                f"({self.admin.review_at}), so that every review falls on a step"
            )
        if not isinstance(self.existing_expires_after, timedelta):
            raise InvalidInput(
                "Setup.existing_expires_after must be a timedelta, got "
                f"{self.existing_expires_after!r}"
            )
