"""One simulated rollout of a modelled fleet, through the real evaluator, to its import.

:func:`simulate` builds a fleet of ``Setup.devices`` devices, starts the distribution at
``Setup.start`` and steps the rollout (hourly by default) until it is imported, forced or
cancelled. The devices answer as their :class:`~certflow.sim.models.DeviceModel` says;
the administrator acts as the :class:`~certflow.sim.models.AdminPolicy` says. Every
state change is :func:`certflow.advance`, :func:`certflow.apply` or the batch path
:func:`certflow.apply_all`; the simulation decides no rule.

Randomness: one ``numpy.random.Generator`` seeded with ``seed`` (PCG64), drawn in a
fixed order, so the same setup and seed give the same run.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime, timedelta
from typing import Any

import attrs
import numpy as np

from certflow.core import commands as c
from certflow.core.effects import Effect, ImportCertificate, ImportPostponed, Notify
from certflow.core.errors import InvalidInput
from certflow.core.evaluator import new_rollout
from certflow.core.plan import DeviceState
from certflow.core.policy import CertificateKind
from certflow.core.rollout import Rollout
from certflow.core.wording import describe_effect
from certflow.sim._host import DAY, Answers, Host, Responder
from certflow.sim.models import DeviceModel, Setup

__all__ = ["Outcome", "Simulation", "Snapshot", "Trace", "model_responder", "simulate"]

_CHURN_WINDOW = 14  # days: unenrolments and enrolments happen in the first two weeks


@attrs.frozen
class Outcome:
    """The figures of one run: what a sweep tabulates.

    ``import_day`` is days from t0 to the import (``None`` if the rollout never
    imported); ``forced`` whether the import cut devices off; ``reenrollment_required``
    how many; ``imported_now`` whether the administrator's ``ImportNow`` made it.
    """

    seed: int
    devices: int
    import_day: float | None
    forced: bool | None
    reenrollment_required: int
    percent_at_import: float | None
    notices: int
    checkpoints_postponed: int
    manual_extensions: int
    bulk_retries: int
    imported_now: bool

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values."""
        return attrs.asdict(self)

    def __str__(self) -> str:
        if self.import_day is None:
            ended = "no import"
        else:
            kind = "forced import" if self.forced else "import"
            by = " (import now)" if self.imported_now else ""
            ended = f"{kind}{by} on day {self.import_day:g}"
        return (
            f"seed {self.seed}: {ended}; {self.reenrollment_required:,} of {self.devices:,} "
            f"devices need re-enrolment; {self.notices} notices, "
            f"{self.manual_extensions} manual extension(s), {self.bulk_retries} bulk retries"
        )


@attrs.frozen
class Trace:
    """Device states over time: ``counts[i]`` at ``days[i]`` (each day, and at the end)."""

    days: tuple[float, ...]
    counts: tuple[dict[DeviceState, int], ...]


@attrs.frozen
class Snapshot:
    """The rollout as the host knew it at ``now``: what a forecast starts from.

    ``pushes`` and ``reports`` map each device to the instants it was pushed and the
    instants its reports were ingested, as a store's journal would hold them.
    """

    now: datetime
    rollout: Rollout = attrs.field(repr=False)
    pushes: dict[str, tuple[datetime, ...]] = attrs.field(repr=False)
    reports: dict[str, tuple[datetime, ...]] = attrs.field(repr=False)


@attrs.frozen
class Simulation:
    """One simulated rollout: its figures, the final rollout, every effect, and (if asked)
    the trace of device states and a snapshot."""

    setup: Setup
    outcome: Outcome
    rollout: Rollout = attrs.field(repr=False)
    effects: tuple[Effect, ...] = attrs.field(repr=False)
    trace: Trace | None = attrs.field(default=None, repr=False)
    snapshot: Snapshot | None = attrs.field(default=None, repr=False)

    @property
    def start(self) -> datetime:
        """The run's first instant (t0)."""
        return self.setup.start

    def timeline(self) -> list[tuple[float, str]]:
        """The run's notices, postponed checkpoints and import, as (day, text)."""
        return [
            ((effect.due_at - self.start) / DAY, describe_effect(effect))
            for effect in self.effects
            if isinstance(effect, Notify | ImportPostponed | ImportCertificate)
        ]


def model_responder(model: DeviceModel, never: frozenset[str] | set[str]) -> Responder:
    """Answers drawn from ``model``; the devices in ``never`` never answer."""
    median = model.install_median.total_seconds()
    day = DAY.total_seconds()

    def answer(ids: Any, rng: np.random.Generator) -> Answers:
        n = len(ids)
        # Whole days offline first (the day of the push counts), then the install delay.
        waits = rng.geometric(model.online_chance, n) - 1
        delays = waits * day + median * np.exp(model.install_sigma * rng.standard_normal(n))
        if never:
            delays[np.fromiter((d in never for d in ids), dtype=bool, count=n)] = np.inf
        fails = rng.random(n) < model.failure_probability
        return delays, fails

    return answer


def simulate(
    setup: Setup,
    seed: int = 0,
    *,
    trace: bool = False,
    snapshot_at: timedelta | None = None,
) -> Simulation:
    """Simulate one rollout of ``setup`` with ``seed`` until it imports (or 120 days pass).

    ``trace`` records the device states each day (for charts); ``snapshot_at`` (a span
    after the start) also records, at that instant, the rollout and each device's push
    and report instants, as a forecast would receive them.
    """
    if type(seed) is not int:
        raise InvalidInput(f"seed must be an int, got {seed!r}")
    if snapshot_at is not None and (
        not isinstance(snapshot_at, timedelta) or snapshot_at <= timedelta(0)
    ):
        raise InvalidInput(f"snapshot_at must be a positive timedelta, got {snapshot_at!r}")
    rng = np.random.default_rng(seed)
    start, model, n = setup.start, setup.model, setup.devices
    width = max(5, len(str(n)))
    ids = [f"dev-{i:0{width}d}" for i in range(1, n + 1)]
    silent = rng.random(n) < model.never_answer
    never = {ids[i] for i in np.flatnonzero(silent).tolist()}
    rollout = new_rollout(
        ids,
        existing_not_after=start + setup.existing_expires_after,
        new_not_before=start - DAY,
        new_not_after=start + 396 * DAY,
        root_publicly_trusted=False,
        created_at=start,
        kind=CertificateKind.MDM_SERVER,
        policy=setup.policy,
    )
    host = Host(
        rollout,
        start,
        start,
        setup.step,
        setup.admin,
        model_responder(model, never),
        rng,
        journal=snapshot_at is not None,
        trace=trace,
    )
    churn = math.ceil(n * model.churn) if model.churn else 0
    if churn:
        window = _CHURN_WINDOW * host.per_day
        leaving: dict[int, list[str]] = {}
        joining: dict[int, list[str]] = {}
        for index in rng.choice(n, size=min(churn, n), replace=False).tolist():
            leaving.setdefault(int(rng.integers(1, window)), []).append(ids[index])
        for k in range(1, churn + 1):
            joining.setdefault(int(rng.integers(1, window)), []).append(f"new-{k:0{width}d}")
        host.schedule_churn(leaving, joining)
    host.do(c.DistributeRoot(), start)
    snapshot = None
    if snapshot_at is not None:
        host.run(until=start + snapshot_at)
        snapshot = Snapshot(
            now=host.now,
            rollout=host.rollout,
            pushes={d: tuple(at) for d, at in (host.pushes or {}).items()},
            reports={d: tuple(at) for d, at in (host.reports or {}).items()},
        )
    host.run()
    outcome = Outcome(
        seed=seed,
        devices=n,
        import_day=None if host.import_at is None else (host.import_at - start) / DAY,
        forced=host.forced,
        reenrollment_required=host.reenrollment_required,
        percent_at_import=host.percent_at_import if host.import_at is not None else None,
        notices=host.notices,
        checkpoints_postponed=host.postponed,
        manual_extensions=host.extensions,
        bulk_retries=host.bulk_retries,
        imported_now=host.imported_now,
    )
    recorded = None
    if host.trace is not None:
        recorded = Trace(
            days=tuple(day for day, _ in host.trace),
            counts=tuple(counts for _, counts in host.trace),
        )
    return Simulation(setup, outcome, host.rollout, tuple(host.effects), recorded, snapshot)


def __getattr__(name: str) -> Any:
    if name == "Run":
        warnings.warn(
            "certflow.sim.fleet.Run is deprecated and will be removed in certflow 0.3: it is "
            "certflow.sim.Simulation",
            DeprecationWarning,
            stacklevel=2,
        )
        return Simulation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
