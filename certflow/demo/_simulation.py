"""The demo's story: :func:`run` and the host around one rollout (:class:`_Simulation`):
its clock, its fleet's behaviour, its administrator, and the timeline it prints.

How a run goes is told in :mod:`certflow.demo`; where the rollout lives is
:mod:`certflow.demo._hosts`, whether it takes a report :mod:`certflow.demo._answers`.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import Enum
from typing import TextIO

from certflow.certs import rollout_for
from certflow.core import commands as c
from certflow.core.effects import (
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    ReenrollmentRequired,
    RestartRequired,
)
from certflow.core.identity import short
from certflow.core.instants import show, show_span
from certflow.core.plan import DeviceState
from certflow.core.policy import CertificateKind
from certflow.core.rollout import Rollout
from certflow.core.summary import Summary, summarize
from certflow.core.wording import describe_trust, narrate
from certflow.demo._answers import Answers
from certflow.demo._hosts import Host, InMemory, Stored
from certflow.demo._pki import HOST, material
from certflow.demo._scenario import DAY, HOUR, Scenario, SimulationResult
from certflow.demo._text import format_summary, moved, shown, trusting
from certflow.sim.fleet import Trace
from certflow.sim.models import FAILURE_REASONS
from certflow.store import SqlStore

_REASONS = tuple(reason for reason, _ in FAILURE_REASONS)
_REASON_WEIGHTS = tuple(weight for _, weight in FAILURE_REASONS)
_PLATFORMS = ("win", "mac", "ios", "android")
_PLATFORM_WEIGHTS = (45, 20, 20, 15)


class _Kind(Enum):
    INSTALLED = "installed"
    FAILED = "failed"
    ENROLL = "enroll"
    UNENROLL = "unenroll"
    REENROLLED = "reenrolled"


class _Profile(Enum):
    PROMPT = "prompt"
    OFFLINE = "offline"
    FLAKY = "flaky"
    SILENT = "silent"
    PREINSTALLED = "preinstalled"


# One scheduled event: (instant, sequence number, kind, device id, failure reason).
# The sequence number keeps the heap order total and deterministic.
_Event = tuple[datetime, int, _Kind, str, str]


class _Simulation:
    """The host around one rollout: its clock, its fleet's behaviour, its administrator."""

    def __init__(
        self,
        devices: int,
        seed: int,
        scenario: Scenario,
        out: TextIO,
        quiet: bool,
        store: SqlStore | None = None,
        name: str = "demo",
    ):
        self.scenario = scenario
        self.random = random.Random(seed)
        self.out = out
        self.quiet = quiet
        self.seed = seed
        self.start = scenario.start
        self.queue: list[_Event] = []
        self.sequence = 0
        self.effects: list[Effect] = []
        self.profile: dict[str, _Profile] = {}
        self.online_at: dict[str, datetime] = {}
        self.attempts_seen: dict[str, int] = {}
        self.figures: Counter[str] = Counter()
        self.forced: bool | None = None
        self.import_at: datetime | None = None
        self.restart_due: datetime | None = None
        self.server_restarted = False
        self.last_retry: datetime | None = None
        self.extended = False
        created = self._create(devices)
        self.host: Host = InMemory(created) if store is None else Stored(store, name, created)
        self.answers = Answers(self.host)
        if store is not None and not quiet:
            print(
                f"store: rollout {name!r} in {store.location}; every step is one transaction, "
                "every effect is delivered from its outbox",
                file=self.out,
            )
        self.trace: list[tuple[float, dict[DeviceState, int]]] = [(0.0, self.host.counts())]

    # --- Output --------------------------------------------------------------------

    def day(self, instant: datetime) -> float:
        return (instant - self.start) / DAY

    def say(self, instant: datetime, text: str) -> None:
        if not self.quiet:
            print(f"day {self.day(instant):4.1f}  {text}", file=self.out)

    def heading(self, text: str) -> None:
        if not self.quiet:
            print(f"\n== {text} ==", file=self.out)

    # --- The fleet -----------------------------------------------------------------

    def _create(self, devices: int) -> Rollout:
        rng, sc = self.random, self.scenario
        width = max(5, len(str(devices)))
        platforms = rng.choices(_PLATFORMS, _PLATFORM_WEIGHTS, k=devices)
        ids = [f"{p}-{i:0{width}d}" for i, p in enumerate(platforms, 1)]
        bounds = (
            (_Profile.PREINSTALLED, sc.share_preinstalled),
            (_Profile.OFFLINE, sc.share_offline),
            (_Profile.FLAKY, sc.share_flaky),
            (_Profile.SILENT, sc.share_silent),
        )
        for device_id in ids:
            draw = rng.random()
            profile = _Profile.PROMPT
            for candidate, share in bounds:
                if draw < share:
                    profile = candidate
                    break
                draw -= share
            self.profile[device_id] = profile
            if profile is _Profile.OFFLINE:
                self.online_at[device_id] = self.start + rng.uniform(1, 32) * DAY
        preinstalled = [d for d in ids if self.profile[d] is _Profile.PREINSTALLED]

        # Churn: some devices leave during the rollout, as many new ones enrol.
        churn = math.ceil(devices * sc.share_churn)
        for device_id in rng.sample(ids, min(churn, devices)):
            self.schedule(self.start + rng.uniform(0.5, 12) * DAY, _Kind.UNENROLL, device_id)
        for n in range(1, churn + 1):
            new_id = f"new-{rng.choice(_PLATFORMS)}-{n:04d}"
            self.profile[new_id] = _Profile.PROMPT
            self.schedule(self.start + rng.uniform(0.5, 12) * DAY, _Kind.ENROLL, new_id)

        demo_material, existing = material(self.start, self.start + sc.existing_expires_after)
        rollout = rollout_for(
            demo_material,
            existing,
            ids,
            now=self.start,
            kind=CertificateKind.MDM_SERVER,
            trusted_device_ids=preinstalled,
            host=HOST,
        )
        self.heading(f"Setup (seed {self.seed})")
        profiles = Counter(self.profile[d].value for d in ids)
        if not self.quiet:
            print(
                f"fleet: {devices:,} devices ("
                + ", ".join(f"{n:,} {name}" for name, n in sorted(profiles.items()))
                + f"); {churn} will unenrol and {churn} new devices will enrol",
                file=self.out,
            )
            print(
                f"start: {show(self.start)}; old certificate expires "
                f"{show(self.start + sc.existing_expires_after)}; "
                f"device reports ingested every {show_span(sc.step)}",
                file=self.out,
            )
            identity = rollout.plan.identity
            if identity is not None:
                certificate, root = identity.certificate, identity.root
                print(
                    f"certificate: {certificate.subject} ({short(certificate.fingerprint)}), "
                    f"valid to {show(certificate.not_after)}; root to distribute: "
                    f"{root.subject} ({short(root.fingerprint)})",
                    file=self.out,
                )
        return rollout

    def schedule(self, at: datetime, kind: _Kind, device_id: str, reason: str = "") -> None:
        self.sequence += 1
        heapq.heappush(self.queue, (at, self.sequence, kind, device_id, reason))

    def delay(self, median: timedelta, sigma: float = 1.1) -> timedelta:
        return median * self.random.lognormvariate(0.0, sigma)

    def reason(self) -> str:
        return self.random.choices(_REASONS, _REASON_WEIGHTS)[0]

    def answer_push(self, device_id: str, attempt: int, at: datetime) -> None:
        """Schedule what a pushed device will answer, from its profile."""
        profile = self.profile.get(device_id, _Profile.PROMPT)
        sc = self.scenario
        if profile is _Profile.SILENT:
            return
        if profile is _Profile.OFFLINE:
            back = max(at, self.online_at[device_id])
            self.schedule(back + self.delay(HOUR, 0.8), _Kind.INSTALLED, device_id)
        elif profile is _Profile.FLAKY and (
            attempt == 1 or self.random.random() >= sc.retry_success
        ):
            self.schedule(at + self.delay(3 * HOUR), _Kind.FAILED, device_id, self.reason())
        else:
            self.schedule(at + self.delay(sc.install_median), _Kind.INSTALLED, device_id)

    # --- One step --------------------------------------------------------------------

    def perform(self, effects: Sequence[Effect]) -> None:
        """Tell and perform the rollout's effects, as a host would."""
        for effect in effects:
            self.effects.append(effect)
            at = effect.due_at
            told = True
            if isinstance(effect, PushRoot):
                for device_id in effect.device_ids:
                    self.answer_push(device_id, effect.attempt, at)
                # A newcomer's first push is told by its enrolment.
                told = len(effect.device_ids) > 1 or effect.attempt > 1 or at == self.start
            elif isinstance(effect, Notify):
                self.figures["notices"] += 1
            elif isinstance(effect, ImportPostponed):
                self.figures["postponed"] += 1
            elif isinstance(effect, ImportCertificate):
                self.forced = effect.forced
                self.import_at = at
                self.heading("Import")
            elif isinstance(effect, ReenrollmentRequired):
                self.figures["reenrollment_required"] += len(effect.device_ids)
                self.plan_reenrolments(effect.device_ids, at)
            elif isinstance(effect, RestartRequired):
                self.restart_due = at + 30 * timedelta(minutes=1)
            if told and not self.quiet:
                trusted, in_scope = self.trust()
                self.say(at, narrate(effect, trusted=trusted, in_scope=in_scope))

    def plan_reenrolments(self, device_ids: Sequence[str], at: datetime) -> None:
        """After the import, cut-off devices come back and are re-enrolled (or never)."""
        for device_id in device_ids:
            profile = self.profile.get(device_id, _Profile.PROMPT)
            if profile is _Profile.SILENT or self.random.random() >= self.scenario.reenroll_share:
                continue
            back = max(at, self.online_at.get(device_id, at))
            self.schedule(back + self.delay(DAY, 0.7), _Kind.REENROLLED, device_id)

    def trust(self) -> tuple[int, int]:
        """How many devices trust the root, of how many in scope."""
        return trusting(self.host.counts())

    def progress(self) -> str:
        return describe_trust(*self.trust())

    def due_commands(self, now: datetime) -> list[c.Command]:
        """The reports that arrived up to ``now``, minus those the rollout would refuse.

        Whether the rollout takes a report is the engine's answer (:class:`Answers`):
        nothing from a device once it unenrolled, no install or failure once the import
        cut it off (it must re-enrol instead), and so on, as the declarations say. A
        device that unenrols in this batch says nothing after it.
        """
        state = self.host.state()
        batch: list[c.Command] = []
        leaving: set[str] = set()
        while self.queue and self.queue[0][0] <= now:
            at, _, kind, device_id, reason = heapq.heappop(self.queue)
            if kind is _Kind.ENROLL:
                self.figures["enrolled"] += 1
                self.say(at, f"enrol {device_id} (new device)")
                batch.append(c.Enroll(device_id))
                continue
            if device_id in leaving:
                continue
            # A device enrolled in this batch has nothing else due yet: its push comes
            # back from the batch. So every id here is known to the rollout.
            command = _report(kind, device_id, reason)
            if not self.answers.taken(command, state, now):
                continue  # e.g. cut off by the import: its re-enrolment was planned then
            if kind is _Kind.UNENROLL:
                self.figures["unenrolled"] += 1
                self.say(at, f"unenrol {device_id} (left management)")
                leaving.add(device_id)
            elif kind is _Kind.REENROLLED:
                self.figures["reenrolled"] += 1
            elif kind is _Kind.FAILED:
                self.figures["failures"] += 1
            batch.append(command)
        return batch

    def administrator(self, now: datetime) -> None:
        """The administrator's morning review, one hour after each day starts (from day 1)."""
        host = self.host
        if not host.state().running:
            return
        summary = host.overview(now)
        if (
            self.scenario.extend
            and not self.extended
            and summary.manual_extension_available
            and summary.percent_complete < 100.0
        ):
            effects = host.apply(c.ExtendManually(), now)
            self.extended = True
            after = host.overview(now)
            # How far it moved the deadline: the engine's dates, before and after.
            self.say(
                now,
                f"admin: manual extension ({moved(summary.deadline, after.deadline)}) at "
                f"{summary.percent_complete:.1f}% - "
                f"next checkpoint {shown(after.next_checkpoint)}, "
                f"deadline {shown(after.deadline)}",
            )
            self.perform(effects)
        # A bulk retry when the rollout would take one and it would push someone again
        # (a failed device): its preview says both.
        due = self.last_retry is None or now - self.last_retry >= self.scenario.retry_every
        if due and _pushed(host.preview(c.RetryAllFailed(), now).effects):
            effects = host.apply(c.RetryAllFailed(), now)
            retried = _pushed(effects)
            self.last_retry = now
            self.figures["bulk_retries"] += 1
            self.figures["retried_pushes"] += retried
            self.say(now, f"admin: bulk retry of {retried:,} failed device(s)")
            self.perform(effects)

    def step(self, now: datetime) -> None:
        """Everything that happens at one step instant, in the order a host sees it."""
        self.perform(self.host.advance(now))
        if self.restart_due is not None and now >= self.restart_due:
            effects = self.host.apply(c.ServerRestarted(), now)
            self.restart_due = None
            self.server_restarted = True
            self.say(now, "server restarted: it now serves the new certificate")
            self.perform(effects)
        batch = self.due_commands(now)
        if batch:
            self.perform(self.host.apply_all(batch, now))
        if (now - self.start) % DAY == HOUR and now > self.start + DAY:
            self.administrator(now)
        if (now - self.start) % DAY == timedelta(0) and now > self.start:
            self.say(now, f"status: {self.status_line()}")
            self.trace.append((self.day(now), self.host.counts()))

    def status_line(self) -> str:
        counts = self.host.counts()
        shown = ", ".join(f"{state.value} {n:,}" for state, n in counts.items() if n)
        return f"{self.host.state().value}; {self.progress()}; {shown}"

    # --- The whole run ---------------------------------------------------------------

    def run(self) -> SimulationResult:
        sc = self.scenario
        self.heading("Timeline")
        self.say(self.start, "admin: distribute root certificate (recommended)")
        self.perform(self.host.apply(c.DistributeRoot(), self.start))
        now = self.start
        # The deadline moves with extensions; the hard stop guards against a scenario
        # that never ends (it cannot happen with the default policy).
        hard_stop = self.start + 120 * DAY
        while now < hard_stop:
            now += sc.step
            self.step(now)
            if self.import_at is not None and now >= self.import_at + sc.after_import:
                break
            if self.host.state().terminal and self.import_at is None:
                break  # ended without an import (cancelled): nothing more will happen
        rollout = self.host.rollout()
        summary = summarize(rollout, now)
        if isinstance(self.host, Stored) and not self.quiet:
            pending = len(self.host.store.effects(self.host.name))
            print(
                f"\noutbox: {self.host.delivered:,} effects delivered and acknowledged, "
                f"{pending} pending",
                file=self.out,
            )
        if not self.quiet:
            self.heading(f"View details (day {self.day(now):.1f})")
            print(format_summary(summary), file=self.out)
        else:
            print(self.one_line(summary), file=self.out)
        figures = self.figures
        return SimulationResult(
            rollout=rollout,
            effects=tuple(self.effects),
            summary=summary,
            devices=rollout.device_count - figures["enrolled"],
            seed=self.seed,
            notices=figures["notices"],
            checkpoints_postponed=figures["postponed"],
            manual_extensions=summary.manual_extensions,
            bulk_retries=figures["bulk_retries"],
            retried_pushes=figures["retried_pushes"],
            enrolled=figures["enrolled"],
            unenrolled=figures["unenrolled"],
            forced=self.forced,
            import_day=None if self.import_at is None else self.day(self.import_at),
            reenrollment_required=figures["reenrollment_required"],
            reenrolled=figures["reenrolled"],
            server_restarted=self.server_restarted,
            trace=Trace(
                days=(*(d for d, _ in self.trace), self.day(now)),
                counts=(*(counts for _, counts in self.trace), rollout.counts()),
            ),
        )

    def one_line(self, summary: Summary) -> str:
        if self.import_at is None:
            ended = f"rollout {summary.state.value}"
        else:
            kind = "forced import" if self.forced else "import"
            ended = f"{kind} on day {self.day(self.import_at):.1f}"
        return (
            f"seed {self.seed}: {ended}; {trusting(summary.counts)[0]:,} of "
            f"{summary.in_scope:,} in-scope devices trust the root "
            f"({summary.percent_complete:.1f}%), "
            f"{self.figures['reenrollment_required']:,} needed re-enrolment, "
            f"{self.figures['reenrolled']:,} re-enrolled"
        )


def _pushed(effects: Sequence[Effect]) -> int:
    """How many devices ``effects`` push the root to."""
    return sum(len(e.device_ids) for e in effects if isinstance(e, PushRoot))


_COMMANDS: dict[_Kind, type[c.DeviceInstalled | c.Unenroll | c.Reenrolled | c.Enroll]] = {
    _Kind.INSTALLED: c.DeviceInstalled,
    _Kind.UNENROLL: c.Unenroll,
    _Kind.REENROLLED: c.Reenrolled,
    _Kind.ENROLL: c.Enroll,
}


def _report(kind: _Kind, device_id: str, reason: str) -> c.DeviceCommand:
    """The command a device's report (or its leaving, or its re-enrolment) is."""
    if kind is _Kind.FAILED:
        return c.DeviceFailed(device_id, reason)
    return _COMMANDS[kind](device_id)


def run(
    devices: int = 10_000,
    seed: int = 7,
    out: TextIO = sys.stdout,
    *,
    quiet: bool = False,
    scenario: Scenario | None = None,
    store: SqlStore | None = None,
    name: str = "demo",
) -> SimulationResult:
    """Simulate a rollout over ``devices`` devices, printing its timeline to ``out``.

    The same ``devices``, ``seed`` and ``scenario`` always print the same text and give
    the same result. ``quiet`` prints one line instead of the timeline and summary.
    With a ``store``, the rollout is created in it as ``name`` and every step goes
    through it and its outbox (the timeline is the same).
    """
    if devices < 1:
        raise ValueError(f"devices must be at least 1, got {devices}")
    simulation = _Simulation(devices, seed, scenario or Scenario(), out, quiet, store, name)
    return simulation.run()
