"""The demo: a seeded story of one realistic rollout, driven through the real evaluator.

``certflow simulate`` (``make demo``) runs :func:`run`, which distributes a new root to a simulated
fleet (10,000 devices by default), prints the timeline as it happens and ends with the
"view details" summary. Nothing here is part of the pure core: randomness
(``random.Random(seed)``) and the simulated clock live in this module, and the rollout
only ever sees commands and instants through :func:`certflow.advance`,
:func:`certflow.apply` and :func:`certflow.apply_all`.

How the simulation works
------------------------
Time moves in fixed steps (one hour by default) from a fixed, timezone-aware start.
At each step the host (this module):

1. advances the rollout to the step's instant and prints what fell due (notices,
   checkpoints, the import);
2. delivers, in one :func:`certflow.apply_all` batch, every device report that arrived
   since the previous step and that the rollout would take (the engine says so: a
   preview of the report, see :class:`_Answers`; a device cut off by the import
   re-enrols instead). A report is delivered at the first step at or after the
   instant it happened, as a server that ingests device reports periodically would;
   a report that arrives in the hour before a checkpoint is therefore seen after it;
3. performs the effects: each :class:`~certflow.PushRoot` schedules the pushed devices'
   answers, drawn from each device's behaviour profile;
4. acts as the administrator: reviews the summary every morning while the rollout is
   running, bulk-retries every few days when the retry's preview would push failed
   devices again, extends the rollout once when the day-6 notice comes and the summary
   offers it (saying what the extension moved, from the dates before and after), and
   restarts the server when the import asks for it.

Device profiles: most devices install within hours (log-normal delay); some are offline
for days and install when they come back; some fail with a realistic reason and
succeed on a later push with some probability; a few never answer; a few carry the
root already (device image). A few devices enrol or unenrol during the rollout. After
the import, devices that did not trust the root come back over the following week and
are re-enrolled (``Reenrolled``), except those that are gone for good.

Two hosts run the same story (:func:`run`): in memory (``store=None``: the pure
functions on a :class:`~certflow.Rollout` value), or through a
:class:`~certflow.store.SqliteStore` (``make demo``; or any store): every report batch, tick and
administrator's command is a transaction of the store, and every effect reaches the
simulation through the store's outbox (:func:`certflow.store.drain`), whose handlers
perform it: print the notice e-mail, push the root (schedule the devices' answers).
Both hosts print the same timeline for the same seed.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import typing
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol, TextIO

import attrs

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
from certflow.core.evaluator import advance, apply, apply_all, new_rollout
from certflow.core.instants import show, show_span
from certflow.core.machines import RULES, Rules
from certflow.core.plan import DeviceState, RolloutState
from certflow.core.policy import CertificateKind
from certflow.core.preview import Preview, preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import loads
from certflow.core.summary import Overview, Summary, summarize
from certflow.core.wording import describe_trust, narrate
from certflow.sim.fleet import Trace
from certflow.sim.models import FAILURE_REASONS
from certflow.store import SqlStore, drain

__all__ = [
    "Scenario",
    "SimulationResult",
    "format_summary",
    "run",
]

_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)

_REASONS = tuple(reason for reason, _ in FAILURE_REASONS)
_REASON_WEIGHTS = tuple(weight for _, weight in FAILURE_REASONS)
_PLATFORMS = ("win", "mac", "ios", "android")
_PLATFORM_WEIGHTS = (45, 20, 20, 15)


@attrs.frozen
class Scenario:
    """The knobs of a simulated fleet and administrator; the defaults make ``make demo``.

    Shares are fractions of the initial fleet. ``start`` is the instant the rollout is
    created and distribution starts; ``step`` how often the host ingests reports.
    """

    start: datetime = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    step: timedelta = _HOUR
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
    install_median: timedelta = 5 * _HOUR
    """Median delay between a push and the install on an online device."""
    retry_every: timedelta = 3 * _DAY
    """The administrator bulk-retries failed devices at most this often."""
    extend: bool = True
    """Whether the administrator extends once when the day-6 notice comes."""
    existing_expires_after: timedelta = 40 * _DAY
    """The old certificate expires this long after ``start``."""
    after_import: timedelta = 7 * _DAY
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


class _Host(Protocol):
    """Where the simulated rollout lives: what the simulation reads and does to it."""

    def state(self) -> RolloutState: ...
    def device_state(self, device_id: str) -> DeviceState: ...
    def counts(self) -> dict[DeviceState, int]: ...
    def device_count(self) -> int: ...
    def overview(self, now: datetime) -> Overview: ...
    def advance(self, now: datetime) -> Sequence[Effect]: ...
    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]: ...
    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]: ...
    def preview(self, command: c.Command, now: datetime) -> Preview: ...
    def rollout(self) -> Rollout: ...


class _InMemory:
    """The rollout as a value, moved by the pure functions."""

    def __init__(self, rollout: Rollout) -> None:
        self._rollout = rollout

    def state(self) -> RolloutState:
        return self._rollout.state

    def device_state(self, device_id: str) -> DeviceState:
        return self._rollout.device_state(device_id)

    def counts(self) -> dict[DeviceState, int]:
        return self._rollout.counts()

    def device_count(self) -> int:
        return self._rollout.device_count

    def overview(self, now: datetime) -> Overview:
        return summarize(self._rollout, now)

    def advance(self, now: datetime) -> Sequence[Effect]:
        self._rollout, effects = advance(self._rollout, now)
        return effects

    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]:
        self._rollout, effects = apply(self._rollout, command, now)
        return effects

    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]:
        self._rollout, effects = apply_all(self._rollout, commands, now)
        return effects

    def preview(self, command: c.Command, now: datetime) -> Preview:
        return preview(self._rollout, command, now)

    def rollout(self) -> Rollout:
        return self._rollout


_EFFECT_TYPES: tuple[type, ...] = typing.get_args(Effect)  # every kind of effect


class _Stored:
    """The rollout in a store: each step is a transaction, and the effects come back
    through the outbox, delivered by :func:`~certflow.store.drain` and acknowledged."""

    def __init__(self, store: SqlStore, name: str, rollout: Rollout) -> None:
        self.store = store
        self.name = name
        self.delivered = 0
        store.create(name, rollout)

    def _delivered(self, now: datetime) -> list[Effect]:
        performed: list[Effect] = []

        def handle(effect_id: str, effect: Effect) -> None:
            performed.append(effect)

        report = drain(self.store, dict.fromkeys(_EFFECT_TYPES, handle), now, rollout=self.name)
        if report.failed or report.unhandled:
            raise RuntimeError(f"the demo's outbox did not drain: {report}")
        self.delivered += len(report.delivered)
        return performed

    def state(self) -> RolloutState:
        return self.store.info(self.name).state

    def device_state(self, device_id: str) -> DeviceState:
        return self.store.device(self.name, device_id).state

    def counts(self) -> dict[DeviceState, int]:
        return dict(self.store.info(self.name).counts)

    def device_count(self) -> int:
        return self.store.info(self.name).devices

    def overview(self, now: datetime) -> Overview:
        return self.store.overview(self.name, now)

    def advance(self, now: datetime) -> Sequence[Effect]:
        self.store.tick(now)  # as a scheduler would: only when something is due
        return self._delivered(now)

    def apply(self, command: c.Command, now: datetime) -> Sequence[Effect]:
        self.store.execute(self.name, command, now)
        return self._delivered(now)

    def apply_all(self, commands: Sequence[c.Command], now: datetime) -> Sequence[Effect]:
        self.store.execute_many(self.name, commands, now)
        return self._delivered(now)

    def preview(self, command: c.Command, now: datetime) -> Preview:
        return self.store.preview(self.name, command, now)

    def rollout(self) -> Rollout:
        return loads(self.store.dumps(self.name))


def _decided_per_state(rules: Rules = RULES) -> frozenset[str]:
    """The device commands that no guard decides (no guarded row, no guarded gate): the
    rollout's state and the device's alone decide whether such a command is taken."""
    guarded = {row.trigger for row in rules.device.transitions if row.guards}
    guarded |= {g.trigger for state in rules.rollout.states for g in state.gates if g.guards}
    return frozenset(
        trigger.command
        for trigger in rules.device.triggers
        if trigger.command is not None and trigger.name not in guarded
    )


class _Answers:
    """Whether the rollout would take a device's report now: the engine's answer.

    The host previews the very report (:func:`certflow.preview`, or the store's own
    :meth:`~certflow.store.SqlStore.preview`, which runs it and rolls it back). For a
    report that no guard decides, the answer is kept for that kind of report from a
    device in that state while the rollout is in that state (what decides it, by the
    declarations), so a whole run previews a few dozen reports, not every one.
    """

    def __init__(self, host: _Host, rules: Rules = RULES) -> None:
        self.host = host
        self.per_state = _decided_per_state(rules)
        self.known: dict[tuple[RolloutState, DeviceState, type], bool] = {}

    def taken(self, command: c.DeviceCommand, state: RolloutState, now: datetime) -> bool:
        """Whether ``command`` would be taken at ``now`` by the rollout, in ``state``."""
        kind = type(command)
        if kind.__name__ not in self.per_state:
            return self.host.preview(command, now).accepted
        key = (state, self.host.device_state(command.device_id), kind)
        known = self.known.get(key)
        if known is None:
            known = self.known[key] = self.host.preview(command, now).accepted
        return known


def _trusting(counts: dict[DeviceState, int]) -> tuple[int, int]:
    """How many devices trust the root, of how many in scope, as the states declare."""
    in_scope = sum(n for state, n in counts.items() if state.in_scope)
    return sum(n for state, n in counts.items() if state.in_scope and state.trusts), in_scope


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
        self.host: _Host = _InMemory(created) if store is None else _Stored(store, name, created)
        self.answers = _Answers(self.host)
        if store is not None and not quiet:
            print(
                f"store: rollout {name!r} in {store.location}; every step is one transaction, "
                "every effect is delivered from its outbox",
                file=self.out,
            )
        self.trace: list[tuple[float, dict[DeviceState, int]]] = [(0.0, self.host.counts())]

    # --- Output --------------------------------------------------------------------

    def day(self, instant: datetime) -> float:
        return (instant - self.start) / _DAY

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
                self.online_at[device_id] = self.start + rng.uniform(1, 32) * _DAY
        preinstalled = [d for d in ids if self.profile[d] is _Profile.PREINSTALLED]

        # Churn: some devices leave during the rollout, as many new ones enrol.
        churn = math.ceil(devices * sc.share_churn)
        for device_id in rng.sample(ids, min(churn, devices)):
            self.schedule(self.start + rng.uniform(0.5, 12) * _DAY, _Kind.UNENROLL, device_id)
        for n in range(1, churn + 1):
            new_id = f"new-{rng.choice(_PLATFORMS)}-{n:04d}"
            self.profile[new_id] = _Profile.PROMPT
            self.schedule(self.start + rng.uniform(0.5, 12) * _DAY, _Kind.ENROLL, new_id)

        rollout = new_rollout(
            ids,
            existing_not_after=self.start + sc.existing_expires_after,
            new_not_before=self.start - 2 * _DAY,
            new_not_after=self.start + 396 * _DAY,
            root_publicly_trusted=False,
            created_at=self.start,
            kind=CertificateKind.MDM_SERVER,
            trusted_device_ids=preinstalled,
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
            self.schedule(back + self.delay(_HOUR, 0.8), _Kind.INSTALLED, device_id)
        elif profile is _Profile.FLAKY and (
            attempt == 1 or self.random.random() >= sc.retry_success
        ):
            self.schedule(at + self.delay(3 * _HOUR), _Kind.FAILED, device_id, self.reason())
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
            self.schedule(back + self.delay(_DAY, 0.7), _Kind.REENROLLED, device_id)

    def trust(self) -> tuple[int, int]:
        """How many devices trust the root, of how many in scope."""
        return _trusting(self.host.counts())

    def progress(self) -> str:
        return describe_trust(*self.trust())

    def due_commands(self, now: datetime) -> list[c.Command]:
        """The reports that arrived up to ``now``, minus those the rollout would refuse.

        Whether the rollout takes a report is the engine's answer (:class:`_Answers`):
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
                f"admin: manual extension ({_moved(summary.deadline, after.deadline)}) at "
                f"{summary.percent_complete:.1f}% - "
                f"next checkpoint {_shown(after.next_checkpoint)}, "
                f"deadline {_shown(after.deadline)}",
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
        if (now - self.start) % _DAY == _HOUR and now > self.start + _DAY:
            self.administrator(now)
        if (now - self.start) % _DAY == timedelta(0) and now > self.start:
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
        hard_stop = self.start + 120 * _DAY
        while now < hard_stop:
            now += sc.step
            self.step(now)
            if self.import_at is not None and now >= self.import_at + sc.after_import:
                break
            if self.host.state().terminal and self.import_at is None:
                break  # ended without an import (cancelled): nothing more will happen
        rollout = self.host.rollout()
        summary = summarize(rollout, now)
        if isinstance(self.host, _Stored) and not self.quiet:
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
            f"seed {self.seed}: {ended}; {_trusting(summary.counts)[0]:,} of "
            f"{summary.in_scope:,} in-scope devices trust the root "
            f"({summary.percent_complete:.1f}%), "
            f"{self.figures['reenrollment_required']:,} needed re-enrolment, "
            f"{self.figures['reenrolled']:,} re-enrolled"
        )


def _shown(instant: datetime | None) -> str:
    return "-" if instant is None else show(instant)


def _moved(before: datetime | None, after: datetime | None) -> str:
    """How far a command moved an instant, as ``+7 days``."""
    if before is None or after is None:
        return "-"
    return ("+" if after >= before else "") + show_span(after - before)


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
