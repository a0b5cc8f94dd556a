"""A slow, obvious reference model of rollout-rules.md, transcribed by hand.

Independence is the point. Nothing here is read from certflow's declarations
(``certflow.core.machines``) or its internals: the tables below are typed out from
``shared/spec/rollout-rules.md`` and ``docs/decisions.md``, and a test
(``test_reference_model.py``) compares them with the declarations, so a wrong row in
either shows up as a difference instead of passing twice. From certflow the model uses
only public value classes to build expected values (effects, records, the phase), the
policy's fields, and the error classes it expects.

How it works, deliberately simple and slow:

* the rollout machine is a ``transitions`` machine built from :data:`ROLLOUT_TABLE`;
  guards are its ``conditions``/``unless`` (methods of :class:`ReferenceRollout`), so
  the rows of one source and trigger exclude each other and their order is irrelevant;
* devices are :class:`Device` objects in a plain dict, in creation then enrolment order;
  a device moves by looking its ``(state, trigger)`` up in :data:`DEVICE_ROWS`;
* time is scanned event by event: the earliest due timer fires, then the next one is
  looked for again;
* a refusal raises :class:`Refused`, carrying the exact certflow error class the
  evaluator must raise, and restores the model to what it was before the call;
* ``taken`` lists the rollout rows taken, for tests that aim at a row.

Where the spec speaks of days 7, 14 and 21, the model uses the policy's checkpoints
(the last is the deadline), so a policy with one checkpoint meets the deadline straight
from ``distributing``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from transitions import Machine, MachineError

import certflow as cf

# --- The transcription --------------------------------------------------------------------


class Row(NamedTuple):
    """A rollout row as ``transitions`` takes it: every condition holds, no ``unless`` does."""

    source: str
    trigger: str
    dest: str
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()


ROLLOUT_STATES = ("pending", "distributing", "extended", "imported", "forced", "cancelled")
RUNNING = ("distributing", "extended")  # time moves the rollout only here
OUTCOMES = ("imported", "forced")  # an import ended the rollout
ENDED = ("imported", "forced", "cancelled")

# Conditions (methods of ReferenceRollout):
#   valid_now                     the new certificate is valid now
#   lasts_through_a_deadline_now  ... and stays valid through the deadline of a start now
#   all_trust                     every in-scope device trusts the root (or it is public)
#   import_condition              the policy's import rule holds now
#   extension_opened              now >= t0 + manual_extension_opens
#   lasts_through_moved_deadline  the new certificate outlives the deadline moved once more
#   retry_allowed                 the rollout replaces an MDM server certificate


def _running_rows(state: str) -> list[Row]:
    return [
        # Time: an acknowledgement timeout and a notice leave the rollout where it is.
        Row(state, "ack_timeout", state),
        Row(state, "notify", state),
        # "checkpoint, import condition holds -> imported / forced, see Outcome":
        # the condition decides *when*, trust alone decides *which*.
        Row(state, "checkpoint", "imported", ("import_condition", "all_trust")),
        Row(state, "checkpoint", "forced", ("import_condition",), ("all_trust",)),
        # "checkpoint, condition fails -> extended" (the next checkpoint is ahead).
        Row(state, "checkpoint", "extended", (), ("import_condition",)),
        # "Expiry of the existing certificate": that instant is itself a checkpoint (when
        # it falls after t0 and before the deadline), and "the import happens there
        # (outcome by trust, as always)".
        Row(state, "expiry", "imported", ("all_trust",)),
        Row(state, "expiry", "forced", (), ("all_trust",)),
        # "deadline -> imported / forced, whatever the condition".
        Row(state, "deadline", "imported", ("all_trust",)),
        Row(state, "deadline", "forced", (), ("all_trust",)),
        # "import now -> imported / forced, immediately, whatever the condition".
        Row(state, "import_now", "imported", ("all_trust",)),
        Row(state, "import_now", "forced", (), ("all_trust",)),
        # "manual extension (from day 6 on) -> same state"; refused if the new
        # certificate would expire before the moved deadline.
        Row(
            state,
            "extend_manually",
            state,
            ("extension_opened", "lasts_through_moved_deadline"),
        ),
        # "bulk retry of all failed" (retry exists only for MDM server certificates).
        Row(state, "retry_all_failed", state, ("retry_allowed",)),
        Row(state, "cancel", "cancelled"),
    ]


ROLLOUT_TABLE: tuple[Row, ...] = (
    # "administrator: distribute root -> distributing; t0 = now". The certificate must be
    # valid at t0 and through the deadline.
    Row(
        "pending", "distribute_root", "distributing", ("valid_now", "lasts_through_a_deadline_now")
    ),
    # "proceed to import -> imported only if every in-scope device already trusts the
    # root (or it is public), else forced". The certificate must be valid now.
    Row("pending", "proceed_to_import", "imported", ("valid_now", "all_trust")),
    Row("pending", "proceed_to_import", "forced", ("valid_now",), ("all_trust",)),
    Row("pending", "cancel", "cancelled"),
    *(row for state in RUNNING for row in _running_rows(state)),
)
"""The rollout machine, with its guards."""

ROLLOUT_ROWS: frozenset[tuple[str, str, str]] = frozenset(
    (row.source, row.trigger, row.dest) for row in ROLLOUT_TABLE
)
"""The rollout machine as ``(source, trigger, dest)`` rows."""

DEVICE_STATES = ("pending", "pushed", "installed", "failed", "removed", "reenroll_required")
IN_SCOPE_NOT_REMOVED = ("pending", "pushed", "installed", "failed", "reenroll_required")

DEVICE_ROWS: frozenset[tuple[str, str, str]] = frozenset(
    {
        # The spec's device table.
        ("pending", "push", "pushed"),  # distribution starts, or enrols while distributing
        ("pushed", "report_installed", "installed"),
        ("pushed", "report_failed", "failed"),  # reason kept
        ("pushed", "ack_timeout", "failed"),
        ("failed", "retry", "pushed"),  # single or bulk retry; attempt + 1
        ("pushed", "retry", "pushed"),  # single retry of a device that never answered
        *((state, "unenroll", "removed") for state in IN_SCOPE_NOT_REMOVED),
        # "not installed, at import" (in scope: removed devices are out of it).
        ("pending", "import", "reenroll_required"),
        ("pushed", "import", "reenroll_required"),
        ("failed", "import", "reenroll_required"),
        ("reenroll_required", "reenrolled", "installed"),
        # Rows docs/decisions.md adds.
        ("pending", "report_installed", "installed"),  # it already trusts the root
        ("failed", "report_installed", "installed"),  # a late confirmation
        ("removed", "enroll", "pending"),  # it comes back
    }
)
"""The device machine as ``(source, trigger, dest)`` rows."""

PUSHING_TRIGGERS = frozenset({"push", "retry"})
"""Device triggers whose rows push the root (effect, attempt + 1, a new latest push)."""

DEVICE_IGNORED: frozenset[tuple[str, str]] = frozenset(
    {
        # Duplicates change nothing and emit nothing (docs/decisions.md).
        ("installed", "report_installed"),
        ("failed", "report_failed"),  # the first reason is kept
        ("removed", "unenroll"),
        *((state, "enroll") for state in IN_SCOPE_NOT_REMOVED),
        ("installed", "reenrolled"),
    }
)
"""``(device state, trigger)`` pairs that are silent no-ops."""

GATES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    # Which device triggers each rollout state lets through, and their conditions.
    # Pending: a device may already trust the root; devices come and go.
    "pending": {"report_installed": (), "enroll": (), "unenroll": ()},
    # While distributing: reports, retries (MDM server certificates only), enrolments.
    "distributing": {
        "report_installed": (),
        "report_failed": (),
        "retry": ("retry_allowed",),
        "enroll": (),
        "unenroll": (),
    },
    "extended": {
        "report_installed": (),
        "report_failed": (),
        "retry": ("retry_allowed",),
        "enroll": (),
        "unenroll": (),
    },
    # After an import: late confirmations, enrolments, re-enrolments; no failures or
    # retries (docs/decisions.md, "After an import").
    "imported": {"report_installed": (), "enroll": (), "unenroll": (), "reenrolled": ()},
    "forced": {"report_installed": (), "enroll": (), "unenroll": (), "reenrolled": ()},
    # After a cancel the rollout no longer tracks devices.
    "cancelled": {},
}
"""Per rollout state, the device triggers let through and the conditions they need."""

FOLLOW_UPS: Mapping[tuple[str, str], tuple[str, ...]] = {
    # "device enrols while distributing -> pushed (effect: push root)".
    ("distributing", "enroll"): ("push",),
    ("extended", "enroll"): ("push",),
    # After the import a device enrols against the new certificate: it trusts it.
    ("imported", "enroll"): ("report_installed",),
    ("forced", "enroll"): ("report_installed",),
}
"""Device triggers applied right after a gated trigger that moved the device."""

TIMERS: Mapping[str, tuple[str, ...]] = {
    # At one instant: acknowledgement timeouts, then the notice, then the checkpoint
    # (so that a checkpoint sees the devices that timed out at its own instant).
    # A checkpoint at the very instant of the expiry decides first (and imports, since
    # the certificate has expired by then).
    "distributing": ("ack_timeout", "notice", "checkpoint", "expiry", "deadline"),
    "extended": ("ack_timeout", "notice", "checkpoint", "expiry", "deadline"),
}
"""Per rollout state, the timers that run in it, in the order they fire at one instant."""

TIMER_TRIGGERS = {
    "ack_timeout": "ack_timeout",
    "notice": "notify",
    "checkpoint": "checkpoint",
    "expiry": "expiry",
    "deadline": "deadline",
}

ROLLOUT_COMMANDS: Mapping[type, str] = {
    cf.DistributeRoot: "distribute_root",
    cf.ProceedToImport: "proceed_to_import",
    cf.ImportNow: "import_now",
    cf.ExtendManually: "extend_manually",
    cf.RetryAllFailed: "retry_all_failed",
    cf.Cancel: "cancel",
}
DEVICE_COMMANDS: Mapping[type, str] = {
    cf.DeviceInstalled: "report_installed",
    cf.DeviceFailed: "report_failed",
    cf.Retry: "retry",
    cf.Enroll: "enroll",
    cf.Unenroll: "unenroll",
    cf.Reenrolled: "reenrolled",
}

TIMEOUT_REASON = "<no acknowledgement>"
"""The model's failure reason for a timeout; the evaluator words it (see :func:`normalised`)."""


def normalised(records: Iterable[cf.DeviceRecord]) -> list[cf.DeviceRecord]:
    """The evaluator's records with a timeout's reason replaced by :data:`TIMEOUT_REASON`.

    The wording (``no acknowledgement within 1 h``) is the evaluator's to choose; a
    device report in the tests never starts that way.
    """
    out = []
    for r in records:
        reason = r.last_failure_reason
        if reason is not None and reason.startswith("no acknowledgement within "):
            reason = TIMEOUT_REASON
        out.append(cf.DeviceRecord(r.device_id, r.state, r.attempts, reason))
    return out


# --- The model ---------------------------------------------------------------------------


class Refused(Exception):
    """The model refuses: the evaluator must raise exactly ``expected``."""

    def __init__(self, expected: type[cf.CertflowError], why: str) -> None:
        super().__init__(f"{expected.__name__}: {why}")
        self.expected = expected
        self.why = why
        self.command: object | None = None  # the refused command, if a command was


@dataclasses.dataclass
class Device:
    """One device: its state, pushes of the root, last failure reason, latest push."""

    state: str = "pending"
    attempts: int = 0
    reason: str | None = None
    pushed_at: datetime | None = None


class ReferenceRollout:
    """The reference: mutable, simple, transcribed from the spec's words.

    ``rows``, ``device_rows``, ``ignored``, ``gates`` and ``follow_ups`` default to the
    transcription above; pass edited ones to build a model of edited rules.
    """

    state: str  # kept by the transitions machine
    trigger: Callable[[str], bool]  # bound by the transitions machine

    def __init__(
        self,
        ids: Sequence[str],
        *,
        existing_not_after: datetime,
        new_not_before: datetime,
        new_not_after: datetime,
        public: bool,
        kind: cf.CertificateKind,
        policy: cf.Policy,
        created_at: datetime,
        trusted: Iterable[str] = (),
        rows: Iterable[Row] = ROLLOUT_TABLE,
        device_rows: Iterable[tuple[str, str, str]] = DEVICE_ROWS,
        ignored: Iterable[tuple[str, str]] = DEVICE_IGNORED,
        gates: Mapping[str, Mapping[str, tuple[str, ...]]] = GATES,
        follow_ups: Mapping[tuple[str, str], tuple[str, ...]] = FOLLOW_UPS,
    ) -> None:
        self.devices: dict[str, Device] = {d: Device() for d in ids}
        self.moves = 0  # device moves and arrivals: a command that makes none may be a no-op
        for d in trusted:
            self.devices[d].state = "installed"
        self.existing_not_after = existing_not_after
        self.new_not_before = new_not_before
        self.new_not_after = new_not_after
        self.public = public
        self.kind = kind
        self.policy = policy
        self.clock = created_at
        self.now = created_at  # the instant conditions are asked about
        self.t0: datetime | None = None
        self.checkpoints_done = 0
        self.extension = timedelta(0)
        self.manual_extensions = 0
        self.announced: set[datetime] = set()  # checkpoint instants already announced
        self.last_announced: datetime | None = None
        # When the next decision became the next one (distribution start, a checkpoint
        # that extends, a manual extension): "announced ... at the moment it becomes the
        # next checkpoint when less time remains then".
        self.decision_since: datetime | None = None
        self.ended_at: datetime | None = None
        self.restart_required = False
        self.taken: list[tuple[str, str, str]] = []  # rollout rows taken, in order
        self.device_next = {(s, t): d for s, t, d in device_rows}
        self.ignored = frozenset(ignored)
        self.gates = gates
        self.follow_ups = follow_ups
        self.table = tuple(rows)
        Machine(
            model=self,
            states=list(ROLLOUT_STATES),
            initial="pending",
            transitions=[
                {
                    "trigger": r.trigger,
                    "source": r.source,
                    "dest": r.dest,
                    "conditions": list(r.conditions),
                    "unless": list(r.unless),
                }
                for r in self.table
            ],
            auto_transitions=False,
        )

    # --- conditions (named in the tables) ------------------------------------------------

    def in_scope(self) -> list[Device]:
        """The devices in scope: enrolled and not removed."""
        return [d for d in self.devices.values() if d.state != "removed"]

    def all_trust(self) -> bool:
        """Every in-scope device trusts the root (an empty scope does), or it is public."""
        return self.public or all(d.state == "installed" for d in self.in_scope())

    def import_condition(self) -> bool:
        """The policy's import rule, at ``now``."""
        distributed = self.all_trust()
        expired = self.now >= self.existing_not_after
        if self.policy.import_rule is cf.ImportRule.DISTRIBUTED_AND_EXPIRED:
            return distributed and expired
        return distributed or expired

    def valid_now(self) -> bool:
        """The new certificate is valid at ``now``."""
        return self.new_not_before <= self.now <= self.new_not_after

    def lasts_through_a_deadline_now(self) -> bool:
        """The new certificate stays valid through the deadline of a start at ``now``."""
        return self.new_not_after >= self.now + self.policy.checkpoints[-1]

    def extension_opened(self) -> bool:
        """Manual extension has opened: day 6 (the policy's) from t0, never moved."""
        assert self.t0 is not None
        return self.now >= self.t0 + self.policy.manual_extension_opens

    def lasts_through_moved_deadline(self) -> bool:
        """The new certificate stays valid through the deadline one extension would set."""
        return self.new_not_after >= self.deadline_at() + self.policy.manual_extension

    def retry_allowed(self) -> bool:
        """Retry exists only for MDM server certificates."""
        return self.kind is cf.CertificateKind.MDM_SERVER

    # --- the timeline ---------------------------------------------------------------------

    def checkpoint_at(self) -> datetime:
        """The next checkpoint, extensions included."""
        assert self.t0 is not None
        return self.t0 + self.policy.checkpoints[self.checkpoints_done] + self.extension

    def next_is_final(self) -> bool:
        """Whether the next checkpoint is the deadline."""
        return self.checkpoints_done == len(self.policy.checkpoints) - 1

    def deadline_at(self) -> datetime:
        """The deadline, extensions included."""
        assert self.t0 is not None
        return self.t0 + self.policy.checkpoints[-1] + self.extension

    def expiry_at(self) -> datetime | None:
        """The existing certificate's expiry as a checkpoint: rule distributed_or_expired
        only, strictly after t0 and strictly before the current deadline."""
        if self.policy.import_rule is not cf.ImportRule.DISTRIBUTED_OR_EXPIRED:
            return None
        assert self.t0 is not None
        if self.t0 < self.existing_not_after < self.deadline_at():
            return self.existing_not_after
        return None

    def decision_at(self) -> datetime:
        """The next instant time may import: the next checkpoint, or the expiry when it
        comes first ("a checkpoint that the expiry pre-empts is never reached")."""
        checkpoint, expiry = self.checkpoint_at(), self.expiry_at()
        return expiry if expiry is not None and expiry < checkpoint else checkpoint

    def _notice(self) -> cf.Notify:
        """The notice of the next decision, stating the fleet as it is now."""
        decision = self.decision_at()
        expiry = decision == self.expiry_at() and decision != self.checkpoint_at()
        final = not expiry and self.next_is_final()
        in_scope = self.in_scope()
        trusting = len(in_scope) if self.public else sum(d.state == "installed" for d in in_scope)
        failed = 0 if self.public else sum(d.state == "failed" for d in in_scope)
        unanswered = 0 if self.public else sum(d.state == "pushed" for d in in_scope)
        opened = self.extension_opened() and self.lasts_through_moved_deadline()
        # What the decision will do if nothing changes: asked of the rules at its instant.
        now, self.now = self.now, decision
        imports = expiry or final or self.import_condition()
        trust = self.all_trust()
        self.now = now
        if not imports:
            outcome, cut_off = "postpone", 0
        elif trust:
            outcome, cut_off = "import", 0
        else:
            outcome, cut_off = "forced import", len(in_scope) - trusting
        return cf.Notify(
            self.checkpoints_done + 1,
            decision,
            final,
            self.now,
            expiry=expiry,
            in_scope=len(in_scope),
            trusting=trusting,
            failed=failed,
            unanswered=unanswered,
            outcome=outcome,
            cut_off=cut_off,
            extension_available=opened,
        )

    def _latest_push_times_out(self, device: Device) -> datetime | None:
        if self.policy.ack_timeout is None or device.pushed_at is None:
            return None
        if (device.state, "ack_timeout") not in self.device_next:
            return None
        return device.pushed_at + self.policy.ack_timeout

    def _due(self, timer: str) -> datetime | None:
        if timer == "ack_timeout":
            found = [self._latest_push_times_out(d) for d in self.devices.values()]
            return min((when for when in found if when is not None), default=None)
        if timer == "notice":
            decision = self.decision_at()
            if decision in self.announced:
                return None
            assert self.decision_since is not None
            return max(decision - self.policy.notice_before, self.decision_since)
        if timer == "checkpoint":
            return None if self.next_is_final() else self.checkpoint_at()
        if timer == "expiry":
            return self.expiry_at()
        if timer == "deadline":
            return self.deadline_at()
        raise AssertionError(timer)

    def next_event(self) -> tuple[datetime, str] | None:
        """The next timer to fire and its instant; ties go to the earlier-listed timer."""
        best: tuple[datetime, str] | None = None
        for timer in TIMERS.get(self.state, ()):
            when = self._due(timer)
            if when is not None and (best is None or when < best[0]):
                best = (when, timer)
        return best

    def next_event_at(self) -> datetime | None:
        """When time will next do something to this rollout, if ever."""
        found = self.next_event()
        return None if found is None else found[0]

    # --- time -----------------------------------------------------------------------------

    def _check_now(self, now: object) -> datetime:
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise Refused(cf.InvalidInput, f"not an aware instant: {now!r}")
        if now < self.clock:
            raise Refused(cf.TimeWentBackwards, f"{now} is before {self.clock}")
        return now

    def _run_timers_until(self, now: datetime) -> list[cf.Effect]:
        effects: list[cf.Effect] = []
        while (found := self.next_event()) is not None and found[0] <= now:
            when, timer = found
            self.now = when
            effects += self._fire(TIMER_TRIGGERS[timer])
        self.now = now
        return effects

    def advance(self, now: datetime) -> list[cf.Effect]:
        """Fire every timer due up to ``now``, each at its own instant; refusals as the spec."""
        return self._atomically(lambda: self._advance(now))

    def _advance(self, now: object) -> list[cf.Effect]:
        checked = self._check_now(now)
        effects = self._run_timers_until(checked)
        self.clock = checked
        return effects

    # --- commands ---------------------------------------------------------------------------

    def apply(self, command: object, now: datetime) -> list[cf.Effect]:
        """Advance to ``now``, then apply ``command`` there."""
        return self.apply_all([command], now)

    def apply_all(self, commands: Iterable[object], now: datetime) -> list[cf.Effect]:
        """Advance to ``now``, then apply each command in turn; all or nothing."""

        def run() -> list[cf.Effect]:
            effects = self._advance(now)
            for command in commands:
                try:
                    effects += self._command(command)
                except Refused as refusal:
                    refusal.command = command
                    raise
                # As apply() folded: anything due at now after the command fires now.
                effects += self._run_timers_until(self.clock)
            return effects

        before = self._save()
        effects = self._atomically(run)
        if (
            not effects
            and self.moves == before["moves"]
            and self._facts(self._save()) == self._facts(before)
        ):
            # "No-ops. A command that changes nothing ... emits nothing and leaves the
            # rollout equal to what it was": not even its clock moves. (A batch that moves
            # a device away and back changed something on the way: no no-op.)
            taken = self.taken
            self._restore(before)
            self.taken = taken
        return effects

    @staticmethod
    def _facts(saved: dict[str, Any]) -> dict[str, Any]:
        """What a rollout is, beyond the instants it was last asked about."""
        ignored = ("clock", "now", "taken")
        facts = {k: v for k, v in saved.items() if k not in ignored}
        facts["devices"] = {k: dataclasses.astuple(d) for k, d in saved["devices"].items()}
        return facts

    def _atomically(self, run: Callable[[], list[cf.Effect]]) -> list[cf.Effect]:
        saved = self._save()
        try:
            return run()
        except Refused:
            self._restore(saved)
            raise

    def _save(self) -> dict[str, Any]:
        saved = dict(vars(self))
        saved["devices"] = {k: dataclasses.replace(d) for k, d in self.devices.items()}
        saved["announced"] = set(self.announced)
        saved["taken"] = list(self.taken)
        return saved

    def _restore(self, saved: dict[str, Any]) -> None:
        vars(self).update(saved)

    def _command(self, command: object) -> list[cf.Effect]:
        kind = type(command)
        if kind in ROLLOUT_COMMANDS:
            return self._fire(ROLLOUT_COMMANDS[kind], command=True)
        if kind in DEVICE_COMMANDS:
            return self._device_command(command, DEVICE_COMMANDS[kind])
        if kind is cf.ServerRestarted:
            # The restart flag: required -> not required; otherwise a duplicate.
            self.restart_required = False
            return []
        raise Refused(cf.InvalidInput, f"not a command: {command!r}")

    def _fire(self, trigger: str, *, command: bool = False) -> list[cf.Effect]:
        source = self.state
        try:
            moved = self.trigger(trigger)
        except (MachineError, AttributeError):
            # No row of this state answers the trigger.
            if not command:
                raise AssertionError(f"timer {trigger!r} has no row from {source!r}") from None
            raise Refused(cf.CommandRefused, f"{trigger} in {source}") from None
        if not moved:
            if not command:
                raise AssertionError(f"no row of {source} --{trigger}--> holds")
            raise Refused(cf.CommandRefused, f"{trigger} in {source}: a condition fails")
        self.taken.append((source, trigger, self.state))
        return self._actions(trigger, source, self.state)

    def _actions(self, trigger: str, source: str, dest: str) -> list[cf.Effect]:
        """What a rollout row does, read from the spec's notes for its trigger and dest."""
        now = self.now
        if dest in OUTCOMES:
            return self._import(forced=dest == "forced")
        if dest == "cancelled":
            self.ended_at = now  # the old certificate stays, and the end says so
            return [cf.RolloutCancelled(now)]
        if trigger == "distribute_root":
            self.t0 = now
            self.decision_since = now
            # "every in-scope device gets a push of the root": those whose state pushes.
            return self._push_all("push", list(self.devices))
        if trigger == "retry_all_failed":
            # "bulk retry of all failed" (a device that never answered is retried singly).
            failed = [d for d, dev in self.devices.items() if dev.state == "failed"]
            return self._push_all("retry", failed)
        if trigger == "extend_manually":
            # The next checkpoint, every later one and the deadline move.
            self.extension += self.policy.manual_extension
            self.manual_extensions += 1
            self.decision_since = now
            return []
        if trigger == "notify":
            notice = self._notice()
            self.announced.add(notice.checkpoint_at)
            self.last_announced = notice.checkpoint_at
            return [notice]
        if trigger == "checkpoint":
            # Postponed: one more checkpoint done; the next one is ahead.
            self.checkpoints_done += 1
            self.decision_since = now
            return [cf.ImportPostponed(self.checkpoints_done, self.checkpoint_at(), now)]
        if trigger == "ack_timeout":
            late = [d for d, dev in self.devices.items() if self._latest_push_times_out(dev) == now]
            for device_id in late:
                self._move(device_id, "ack_timeout", reason=TIMEOUT_REASON)
            return [cf.AcknowledgementTimedOut(tuple(late), now)] if late else []
        raise AssertionError(f"no action for {source} --{trigger}--> {dest}")

    def _import(self, *, forced: bool) -> list[cf.Effect]:
        """Every import, whatever triggered it (the Outcome and After-import rules)."""
        now = self.now
        effects: list[cf.Effect] = [cf.ImportCertificate(forced, now)]
        if not self.public:  # a public root: every device trusts it, nobody is cut off
            late = [
                d for d, dev in self.devices.items() if (dev.state, "import") in self.device_next
            ]
            for device_id in late:
                self._move(device_id, "import")
            if late:
                effects.append(cf.ReenrollmentRequired(tuple(late), now))
        effects.append(cf.RestartRequired(now))
        self.restart_required = True
        self.ended_at = now  # acknowledgement timers stop with the rollout
        return effects

    def _push_all(self, trigger: str, device_ids: list[str]) -> list[cf.Effect]:
        """Push the root to each device that ``trigger`` moves: one effect per attempt."""
        by_attempt: dict[int, list[str]] = {}
        for device_id in device_ids:
            if (self.devices[device_id].state, trigger) in self.device_next:
                attempt = self._move(device_id, trigger)
                by_attempt.setdefault(attempt, []).append(device_id)
        return [cf.PushRoot(tuple(by_attempt[a]), a, self.now) for a in sorted(by_attempt)]

    def _move(self, device_id: str, trigger: str, *, reason: str | None = None) -> int:
        """Move one device by its row for ``trigger``; its attempt count after the move."""
        self.moves += 1
        device = self.devices[device_id]
        device.state = self.device_next[(device.state, trigger)]
        if trigger in PUSHING_TRIGGERS:
            device.attempts += 1
            device.pushed_at = self.now
        if reason is not None:
            device.reason = reason
        return device.attempts

    def _device_command(self, command: Any, trigger: str) -> list[cf.Effect]:
        device_id: str = command.device_id
        device = self.devices.get(device_id)
        # A typo reads as a typo: the unknown device first (Enroll introduces devices).
        if device is None and trigger != "enroll":
            raise Refused(cf.UnknownDevice, f"{device_id} is not in the rollout")
        gate = self.gates.get(self.state, {})
        if trigger not in gate:
            raise Refused(cf.CommandRefused, f"{self.state} does not take {trigger}")
        for condition in gate[trigger]:
            if not getattr(self, condition)():
                raise Refused(cf.CommandRefused, f"{trigger}: {condition} fails")
        effects: list[cf.Effect] = []
        if device is None:
            self.devices[device_id] = Device()  # enters in the initial state
            self.moves += 1
        elif (device.state, trigger) in self.device_next:
            effects += self._device_step(device_id, trigger, command)
        elif (device.state, trigger) in self.ignored:
            return []  # a duplicate: nothing changes, nothing is emitted
        else:
            raise Refused(cf.CommandRefused, f"{device_id} is {device.state}: no {trigger}")
        for follow in self.follow_ups.get((self.state, trigger), ()):
            state = self.devices[device_id].state
            if (state, follow) in self.device_next:
                effects += self._device_step(device_id, follow, command)
            elif (state, follow) not in self.ignored:
                raise AssertionError(f"follow-up {follow} has no row from {state}")
        return effects

    def _device_step(self, device_id: str, trigger: str, command: Any) -> list[cf.Effect]:
        reason = command.reason if trigger == "report_failed" else None
        attempt = self._move(device_id, trigger, reason=reason)
        if trigger in PUSHING_TRIGGERS:
            return [cf.PushRoot((device_id,), attempt, self.now)]
        return []

    # --- what the evaluator's rollout must show ---------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the rollout has not ended (pending, distributing or extended)."""
        return self.state not in ENDED

    def records(self) -> list[cf.DeviceRecord]:
        """Every device as ``rollout.devices()`` lists it, in creation then enrolment order."""
        return [
            cf.DeviceRecord(d, cf.DeviceState(dev.state), dev.attempts, dev.reason)
            for d, dev in self.devices.items()
        ]

    def counts(self) -> dict[cf.DeviceState, int]:
        """How many devices are in each state."""
        counted = dict.fromkeys(cf.DeviceState, 0)
        for device in self.devices.values():
            counted[cf.DeviceState(device.state)] += 1
        return counted

    def phase(self) -> cf.Phase:
        """The rollout's phase as the evaluator's ``rollout.phase`` must show it."""
        return cf.Phase(
            state=cf.RolloutState(self.state),
            started_at=self.t0,
            checkpoints_done=self.checkpoints_done,
            extension=self.extension,
            manual_extensions=self.manual_extensions,
            notified_for=self.last_announced,
            ended_at=self.ended_at,
            restart_required=self.restart_required,
        )

    def accepted_device_triggers(self, device_id: str) -> list[str]:
        """The device triggers this model would take for ``device_id`` now (for generating
        mostly valid commands): let through by the rollout state, with a row or a
        duplicate from the device's state."""
        device = self.devices.get(device_id)
        gate = self.gates.get(self.state, {})
        accepted = []
        for trigger, conditions in gate.items():
            if not all(getattr(self, c)() for c in conditions):
                continue
            if device is None:
                if trigger == "enroll":
                    accepted.append(trigger)
            elif (device.state, trigger) in self.device_next or (
                device.state,
                trigger,
            ) in self.ignored:
                accepted.append(trigger)
        return accepted
