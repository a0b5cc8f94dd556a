"""The host around one rollout: a step clock, scheduled device answers, an administrator.

Shared by :mod:`certflow.sim.fleet` (answers drawn from a :class:`DeviceModel`) and
:mod:`certflow.sim.forecast` (answers drawn from a fitted survival curve). It decides no
rule: every change goes through :func:`certflow.advance`, :func:`certflow.apply` and the
batch path :func:`certflow.apply_all` (or is a :func:`certflow.preview`'s rollout, which
is apply's answer), and the host only performs the effects. Whether a command would be
taken, and what it would do, is the engine's answer too: the administrator's bulk retry
is sent only when its preview pushes someone again.

Answers are drawn with numpy a whole push at a time and bucketed by the step at which
the host ingests them, so a step costs one ``apply_all`` over the reports due then.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from certflow.core import commands as c
from certflow.core.effects import (
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    ReenrollmentRequired,
)
from certflow.core.evaluator import advance, apply, apply_all
from certflow.core.plan import DeviceState
from certflow.core.preview import preview
from certflow.core.rollout import Rollout
from certflow.core.summary import summarize
from certflow.sim.models import FAILURE_REASONS, AdminPolicy

DAY = timedelta(days=1)
REASONS = tuple(reason for reason, _ in FAILURE_REASONS)
_WEIGHTS = np.array([weight for _, weight in FAILURE_REASONS], dtype=float)
REASON_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
Answers = tuple[Floats, Bools]
"""Per pushed device: seconds from the push to its answer (``inf``: never), and whether
the answer is a failure."""
Responder = Callable[[Sequence[str], np.random.Generator], Answers]
"""Draws the answers to one push of the root to these devices."""


class Host:
    """Steps one rollout forward until it ends, performing its effects."""

    def __init__(
        self,
        rollout: Rollout,
        t0: datetime,
        now: datetime,
        step: timedelta,
        admin: AdminPolicy,
        responder: Responder,
        rng: np.random.Generator,
        *,
        journal: bool = False,
        trace: bool = False,
        extend_anyway: bool = False,
    ) -> None:
        self.rollout = rollout
        self.t0 = t0
        self.step = step
        self.step_seconds = step.total_seconds()
        self.per_day = DAY // step
        self.review = admin.review_at // step
        self.admin = admin
        # A forecast's extended branch extends even a complete fleet: the question is
        # what the extension does, not whether an administrator would bother.
        self.extend_anyway = extend_anyway
        self.responder = responder
        self.rng = rng
        # The host's last step at or before `now`: the next step comes after it.
        self.index = (now - t0) // step
        self.now = now
        self.installs: dict[int, list[str]] = {}
        self.failures: dict[int, tuple[list[str], list[str]]] = {}
        self.unenrol: dict[int, list[str]] = {}
        self.enrol: dict[int, list[str]] = {}
        self.gone: set[str] = set()
        # Steps that have reports to deliver: the host skips the steps in between
        # (advance catches up whatever falls due there, each at its own instant).
        self.busy: list[int] = []
        self.effects: list[Effect] = []
        self.pushes: dict[str, list[datetime]] | None = {} if journal else None
        self.reports: dict[str, list[datetime]] | None = {} if journal else None
        self.trace: list[tuple[float, dict[DeviceState, int]]] | None = [] if trace else None
        self.notices = 0
        self.postponed = 0
        self.bulk_retries = 0
        self.extensions = 0
        self.imported_now = False
        self.import_at: datetime | None = None
        self.forced: bool | None = None
        self.reenrollment_required = 0
        self.percent_at_import: float | None = None
        if self.trace is not None:
            self.trace.append(((now - t0) / DAY, rollout.counts()))

    # --- scheduling ----------------------------------------------------------------

    def schedule_answers(self, ids: Sequence[str], at: datetime, answers: Answers) -> None:
        """Bucket each pushed device's answer at the first step at or after it happens."""
        delays, fails = answers
        if self.pushes is not None:
            for device_id in ids:
                self.pushes.setdefault(device_id, []).append(at)
        answering = np.flatnonzero(np.isfinite(delays))
        if not len(answering):
            return
        base = (at - self.t0) / self.step
        due = np.ceil(base + delays[answering] / self.step_seconds).astype(np.int64)
        np.maximum(due, self.index + 1, out=due)
        order = np.argsort(due, kind="stable")
        due = due[order]
        chosen = answering[order]
        every = np.empty(len(ids), dtype=object)
        every[:] = list(ids)
        chosen_ids = every[chosen]
        chosen_fails = fails[chosen]
        failing = int(chosen_fails.sum())
        reasons = (
            self.rng.choice(len(REASONS), size=len(chosen), p=REASON_WEIGHTS)
            if failing
            else np.zeros(len(chosen), dtype=np.int64)
        )
        steps, starts = np.unique(due, return_index=True)
        ends = [*starts[1:].tolist(), len(due)]
        for step, start, end in zip(steps.tolist(), starts.tolist(), ends, strict=True):
            group = chosen_ids[start:end]
            failed = chosen_fails[start:end]
            if step not in self.installs and step not in self.failures:
                heapq.heappush(self.busy, step)
            if failing and failed.any():
                self.installs.setdefault(step, []).extend(group[~failed].tolist())
                bucket = self.failures.setdefault(step, ([], []))
                bucket[0].extend(group[failed].tolist())
                bucket[1].extend(REASONS[r] for r in reasons[start:end][failed].tolist())
            else:
                self.installs.setdefault(step, []).extend(group.tolist())

    def schedule_churn(self, leaving: dict[int, list[str]], joining: dict[int, list[str]]) -> None:
        """Devices that unenrol, and that enrol, at each step (step -> ids)."""
        for step, ids in leaving.items():
            self.unenrol.setdefault(step, []).extend(ids)
            heapq.heappush(self.busy, step)
        for step, ids in joining.items():
            self.enrol.setdefault(step, []).extend(ids)
            heapq.heappush(self.busy, step)

    # --- effects -------------------------------------------------------------------

    def perform(self, effects: Sequence[Effect]) -> None:
        """Record ``effects`` and act on them as the modelled host would (pushes reach
        their devices, whose answers are scheduled)."""
        for effect in effects:
            self.effects.append(effect)
            if isinstance(effect, PushRoot):
                ids = effect.device_ids
                self.schedule_answers(ids, effect.due_at, self.responder(ids, self.rng))
            elif isinstance(effect, Notify):
                self.notices += 1
            elif isinstance(effect, ImportPostponed):
                self.postponed += 1
            elif isinstance(effect, ImportCertificate):
                self.import_at = effect.due_at
                self.forced = effect.forced
            elif isinstance(effect, ReenrollmentRequired):
                self.reenrollment_required += len(effect.device_ids)

    def do(self, command: c.Command, now: datetime) -> None:
        """Apply ``command`` at ``now`` and perform its effects."""
        self.rollout, effects = apply(self.rollout, command, now)
        self.perform(effects)

    # --- one step ------------------------------------------------------------------

    def reports_due(self, now: datetime) -> list[c.Command]:
        """What the fleet reports at this step; nothing from devices that have left."""
        index, gone = self.index, self.gone
        batch: list[c.Command] = []
        for device_id in self.unenrol.pop(index, ()):
            gone.add(device_id)
            batch.append(c.Unenroll(device_id))
        batch.extend(c.Enroll(device_id) for device_id in self.enrol.pop(index, ()))
        installed = self.installs.pop(index, None)
        if installed:
            batch.extend(c.DeviceInstalled(d) for d in installed if d not in gone)
        failed = self.failures.pop(index, None)
        if failed:
            batch.extend(
                c.DeviceFailed(d, reason)
                for d, reason in zip(*failed, strict=True)
                if d not in gone
            )
        if self.reports is not None:
            for command in batch:
                if isinstance(command, c.DeviceInstalled | c.DeviceFailed):
                    self.reports.setdefault(command.device_id, []).append(now)
        return batch

    def administrator(self, now: datetime, day: int) -> None:
        """What the modelled administrator does on ``day``: import now, extend, retry."""
        admin, rollout = self.admin, self.rollout
        wants_import = admin.import_now_at is not None and day >= admin.import_now_from
        wants_extension = (
            admin.extend_on_day is not None and self.extensions == 0 and day >= admin.extend_on_day
        )
        wants_retry = (
            admin.retry_every is not None
            and day >= admin.retry_from
            and (day - admin.retry_from) % admin.retry_every == 0
        )
        if not (wants_import or wants_extension or wants_retry):
            return  # a quiet review: no summary needed
        summary = summarize(rollout, now)
        percent = summary.percent_complete
        if wants_import and admin.import_now_at is not None and percent >= admin.import_now_at:
            self.imported_now = True
            self.do(c.ImportNow(), now)
            return
        if (
            wants_extension
            and summary.manual_extension_available
            and (percent < admin.extend_below or self.extend_anyway)
        ):
            self.extensions += 1
            self.do(c.ExtendManually(), now)
        if wants_retry:
            # The engine says whether the rollout takes a bulk retry (the certificate
            # kind's guard) and whom it pushes again: nobody when no push failed.
            retry = preview(self.rollout, c.RetryAllFailed(), now)
            if retry.rollout is not None and any(isinstance(e, PushRoot) for e in retry.effects):
                self.bulk_retries += 1
                self.rollout = retry.rollout
                self.perform(retry.effects)

    @property
    def ended(self) -> bool:
        """Whether the rollout reached a terminal state."""
        return self.rollout.state.terminal

    def run(self, until: datetime | None = None, limit: timedelta = 120 * DAY) -> None:
        """Step until the rollout ends, ``until`` is reached, or ``limit`` after t0."""
        last = (
            (limit // self.step)
            if until is None
            else min(limit // self.step, (until - self.t0) // self.step)
        )
        per_day, review, busy = self.per_day, self.review, self.busy
        while not self.ended and self.index < last:
            # The next step at which something happens: reports, a review, a new day
            # (when tracing), or the last step.
            index = self.index
            day = index // per_day
            following = day * per_day + review
            if following <= index or day == 0:
                following = max(day + 1, 1) * per_day + review
            if self.trace is not None:
                following = min(following, (day + 1) * per_day)
            while busy and busy[0] <= index:
                heapq.heappop(busy)
            if busy:
                following = min(following, busy[0])
            self.index = min(following, last)
            now = self.now = self.t0 + self.index * self.step
            self.rollout, effects = advance(self.rollout, now)
            self.perform(effects)
            if not self.ended:
                batch = self.reports_due(now)
                if batch:
                    self.rollout, effects = apply_all(self.rollout, batch, now)
                    self.perform(effects)
            day, into = divmod(self.index, per_day)
            if not self.ended and into == review and day >= 1:
                self.administrator(now, day)
            if self.ended and self.percent_at_import is None:
                self.percent_at_import = summarize(self.rollout, now).percent_complete
            if self.trace is not None and (into == 0 or self.ended):
                self.trace.append(((now - self.t0) / DAY, self.rollout.counts()))
