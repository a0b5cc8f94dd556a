"""The evaluator against the hand-transcribed reference model, step by step.

Every step drives ``cf.advance``/``cf.apply``/``cf.apply_all`` and the reference model
(``reference_model.py``) with the same input and requires the same outcome: on a
refusal, exactly the same error class and an unchanged rollout; otherwise the same
effects in the same order, and then the same state, clock, phase, device records,
counts and next due instant. The laws of rollout-rules.md are checked on the
evaluator's side after every step.

Most rules run only while the rollout is live (pending, distributing, extended): a
rollout that has ended has little left to test, so a few rules cover that, and after
``ENDED_STEPS`` of them a run may start over with a fresh rollout. Time moves by shares
of the rollout's own timeline. Commands are built from the model's device states so
that most are accepted; some are not, on purpose. ``LIVE_STEPS`` counts where the steps
ran (the teardown reports each run's share as an event).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import certflow as cf
from tests.core.reference_model import ReferenceRollout, Refused, normalised
from tests.core.strategies import ADMIN_COMMANDS, DAY, HOUR, T0, build, distributing, policies

SECOND = timedelta(seconds=1)
LIVE_STEPS: Counter[str] = Counter()
"""Steps run on a live or an ended rollout, over every example of a session."""

REASONS = st.sampled_from(["store locked", "user declined"])
# Delays between commands: short next to any timeline (time moves in the time rules,
# by shares of the rollout's own timeline, which may span hours or months).
SMALL_SPANS = st.one_of(
    st.just(timedelta(0)),
    st.integers(1, 59).map(lambda s: s * SECOND),
    st.integers(1, 59).map(lambda m: m * 60 * SECOND),
)
BIG_SPANS = st.one_of(
    st.integers(1, 30).map(lambda d: d * DAY),
    st.integers(0, 730 * 86400).map(lambda s: s * SECOND),
)
KEEPS_RUNNING = st.sampled_from(
    [cf.DistributeRoot(), cf.ExtendManually(), cf.RetryAllFailed(), cf.ServerRestarted()]
)
# What an administrator does while the rollout is live: commands that keep it running,
# or are refused in its state. ImportNow and Cancel have their own rule, from day 6 on,
# so that rollouts live long enough to meet their checkpoints.
WHILE_LIVE = st.sampled_from(
    [
        cf.ExtendManually(),
        cf.RetryAllFailed(),
        cf.ServerRestarted(),
        cf.DistributeRoot(),
        cf.ProceedToImport(),
    ]
)
ENDS = st.sampled_from([cf.ImportNow(), cf.Cancel()])
WHILE_PENDING = st.sampled_from(
    [
        cf.DistributeRoot(),
        cf.ProceedToImport(),
        cf.ProceedToImport(),
        cf.ImportNow(),
        cf.ExtendManually(),
        cf.Cancel(),
    ]
)
ANY_ADMIN = st.sampled_from(ADMIN_COMMANDS)


def _command(trigger: str, device_id: str, reason: str) -> cf.Command:
    """The device command that fires ``trigger`` on ``device_id``."""
    builders: dict[str, Callable[[], cf.Command]] = {
        "report_installed": lambda: cf.DeviceInstalled(device_id),
        "report_failed": lambda: cf.DeviceFailed(device_id, reason),
        "retry": lambda: cf.Retry(device_id),
        "enroll": lambda: cf.Enroll(device_id),
        "unenroll": lambda: cf.Unenroll(device_id),
        "reenrolled": lambda: cf.Reenrolled(device_id),
    }
    return builders[trigger]()


DEVICE_TRIGGERS = ("report_installed", "report_failed", "retry", "enroll", "unenroll", "reenrolled")


# --- Behaviours the first run of this test found wrong in the evaluator, now fixed --------


def test_enroll_of_a_new_device_after_a_cancel_is_a_refused_command() -> None:
    cancelled = cf.apply(build(1), cf.Cancel(), T0).rollout
    with pytest.raises(cf.CertflowError) as caught:
        cf.apply(cancelled, cf.Enroll("newcomer"), T0)
    assert type(caught.value) is cf.CommandRefused


def test_next_due_ignores_the_timer_of_an_answered_push() -> None:
    rollout = distributing(1, policy=cf.Policy(ack_timeout=24 * HOUR))
    rollout = cf.apply(rollout, cf.DeviceInstalled("d0"), T0 + HOUR).rollout
    # Nothing happens at T0 + 24 h any more; the next event is the notice on day 6.
    assert cf.next_due(rollout) == T0 + 6 * DAY


# --- The machine -------------------------------------------------------------------------------


class Setup(NamedTuple):
    """How one rollout of a run starts."""

    devices: int
    policy: cf.Policy
    kind: cf.CertificateKind
    public: bool
    existing_expires: float  # the existing certificate expires then, in deadlines from T0
    valid_days: int  # the new one is valid this many days past a deadline from T0
    trusted_share: float  # of the devices already trusting the root at creation
    distribute_after: timedelta | None  # when the distribution starts; None: stay pending


SETUPS = st.builds(
    Setup,
    devices=st.integers(0, 9).flatmap(
        # Mostly small fleets, some empty, some with hundreds of devices.
        lambda k: st.integers(1, 12) if k < 7 else st.just(0) if k < 8 else st.integers(200, 600)
    ),
    policy=policies(),
    kind=st.sampled_from(cf.CertificateKind),
    # A public root imports at the first checkpoint; a quarter of the rollouts have one.
    public=st.integers(0, 3).map(lambda k: k == 0),
    # Before the distribution, between checkpoints, near the deadline, long after it.
    existing_expires=st.sampled_from([-0.1, 0.2, 0.4, 0.6, 0.8, 0.99, 1.5, 4.0]),
    valid_days=st.integers(25, 120),
    trusted_share=st.sampled_from([0.0, 0.0, 0.3, 0.9, 1.0]),
    # Most rollouts start the distribution at once; a quarter stay pending for a while.
    distribute_after=st.integers(0, 3).flatmap(
        lambda k: st.none() if k == 0 else st.integers(0, 48).map(lambda h: h * HOUR)
    ),
)
ENDED_STEPS = 2
"""Steps on an ended rollout before a run may start over with a fresh one."""


def _is_live(machine: RolloutMachine) -> bool:
    return machine.model.live


def _has_ended(machine: RolloutMachine) -> bool:
    # A few steps probe an ended rollout; then only starting over (or a refused instant)
    # is left, and a run in which both are switched off by Hypothesis stops early.
    return not machine.model.live and machine.ended_steps < 3 * ENDED_STEPS


def _is_pending(machine: RolloutMachine) -> bool:
    return machine.model.state == "pending"


def _is_running(machine: RolloutMachine) -> bool:
    return machine.model.next_event_at() is not None


def _a_push_can_time_out_at_the_next_event(machine: RolloutMachine) -> bool:
    due, timeout = machine.model.next_event_at(), machine.model.policy.ack_timeout
    return due is not None and timeout is not None and due - timeout >= machine.model.clock


def _extension_has_opened(machine: RolloutMachine) -> bool:
    model = machine.model
    return (
        _is_running(machine)
        and model.t0 is not None
        and model.clock >= model.t0 + model.policy.manual_extension_opens
    )


class RolloutMachine(RuleBasedStateMachine):
    """Random rollouts, commands and time steps; the evaluator must match the model."""

    rollout: cf.Rollout
    model: ReferenceRollout
    UNCONFIRMED = ("pending", "pushed", "failed")

    def __init__(self) -> None:
        super().__init__()
        self.notices: list[cf.Notify] = []
        self.steps: Counter[str] = Counter()
        self.ended_steps = 0  # steps since the rollout ended
        self.newcomers = 0

    @initialize(setup=SETUPS)
    def start(self, setup: Setup) -> None:
        self._begin(setup)

    @precondition(lambda self: not self.model.live and self.ended_steps >= ENDED_STEPS)
    @rule(setup=SETUPS)
    def start_over(self, setup: Setup) -> None:
        # An ended rollout has been probed enough; test a fresh one for the rest of the run.
        event("started over")
        self._begin(setup)

    def _begin(self, setup: Setup) -> None:
        n, policy = setup.devices, setup.policy
        ids = [f"d{i}" for i in range(n)]
        trusted = tuple(ids[: round(n * setup.trusted_share)])
        facts: dict[str, Any] = {
            "existing_not_after": T0 + policy.checkpoints[-1] * setup.existing_expires,
            "new_not_before": T0 - DAY,
            "new_not_after": T0 - DAY + policy.checkpoints[-1] + setup.valid_days * DAY,
            "kind": setup.kind,
            "policy": policy,
            "created_at": T0,
        }
        self.rollout = cf.new_rollout(
            ids, root_publicly_trusted=setup.public, trusted_device_ids=trusted, **facts
        )
        self.model = ReferenceRollout(ids, public=setup.public, trusted=trusted, **facts)
        self.notices = []
        self.ended_steps = 0
        if setup.distribute_after is not None:
            self._step([cf.DistributeRoot()], T0 + setup.distribute_after, single=True)

    # --- driving both -----------------------------------------------------------------------

    def _step(self, commands: list[Any] | None, now: datetime, *, single: bool = False) -> None:
        """Advance (``commands`` is None) or apply ``commands`` at ``now``, on both."""
        before = self.rollout
        self.steps["live" if self.model.live else "ended"] += 1
        self.ended_steps += not self.model.live

        def run() -> cf.Step:
            if commands is None:
                return cf.advance(before, now)
            if single:
                (command,) = commands
                return cf.apply(before, command, now)
            return cf.apply_all(before, commands, now)

        try:
            expected = (
                self.model.advance(now) if commands is None else self.model.apply_all(commands, now)
            )
        except Refused as refusal:
            self._refused(refusal, before, run)
            return
        result = run()
        assert list(result.effects) == expected
        self.rollout = result.rollout
        self._laws(before, commands, now, result.effects)

    def _refused(self, refusal: Refused, before: cf.Rollout, run: Callable[[], cf.Step]) -> None:
        text = cf.dumps(before)
        with pytest.raises(cf.CertflowError) as caught:
            run()
        raised = type(caught.value)
        assert raised is refusal.expected, (
            f"model: {refusal}; evaluator: {raised.__name__}: {caught.value}"
        )
        assert cf.dumps(before) == text  # the rollout passed in is unchanged
        event(f"refused with {raised.__name__}")

    def _laws(
        self,
        before: cf.Rollout,
        commands: list[Any] | None,
        now: datetime,
        effects: tuple[cf.Effect, ...],
    ) -> None:
        # Advancing twice to the same instant changes nothing and emits nothing. (After a
        # no-op the rollout's clock stayed where it was: that is the instant it has seen.)
        again = cf.advance(self.rollout, self.rollout.clock)
        assert again.effects == ()
        assert again.rollout == self.rollout
        if commands is None and now > before.clock:
            # One jump equals smaller steps: a third of the way, and at the first due
            # instant on the way (a step that lands exactly on a timer).
            for middle in {before.clock + (now - before.clock) / 3, cf.next_due(before)}:
                if middle is None or not before.clock < middle < now:
                    continue
                first, early = cf.advance(before, middle)
                second, late = cf.advance(first, now)
                assert second == self.rollout
                assert (*early, *late) == effects
        administrator_imported = commands is not None and any(
            isinstance(c, (cf.ImportNow, cf.ProceedToImport)) for c in commands
        )
        phase, policy = self.rollout.phase, self.rollout.plan.policy
        for effect in effects:
            if isinstance(effect, cf.Notify):
                self.notices.append(effect)
            if isinstance(effect, cf.ImportCertificate):
                event("imported " + ("forced" if effect.forced else "cleanly"))
                if not (administrator_imported and effect.due_at == now):
                    # No import before the first checkpoint unless commanded, or at the
                    # existing certificate's expiry (rule distributed_or_expired).
                    assert phase.started_at is not None
                    at_expiry = (
                        effect.due_at == self.rollout.plan.existing_not_after
                        and policy.import_rule is cf.ImportRule.DISTRIBUTED_OR_EXPIRED
                    )
                    assert at_expiry or effect.due_at >= phase.started_at + policy.checkpoints[0]

    # --- rules while the rollout is live ------------------------------------------------------

    @precondition(_is_live)
    @rule(span=SMALL_SPANS, share=st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    def wait(self, span: timedelta, share: float) -> None:
        # A little while: a short span, plus a share of the time to the next event.
        clock, due = self.rollout.clock, self.model.next_event_at()
        gap = timedelta(0) if due is None else (due - clock) * share
        self._step(None, clock + gap + span)

    @precondition(_is_running)
    @rule(offset=st.sampled_from([-SECOND, timedelta(0), timedelta(0), SECOND]))
    def wait_for_the_next_event(self, offset: timedelta) -> None:
        due = self.model.next_event_at()
        assert due is not None
        self._step(None, max(self.rollout.clock, due + offset))

    @precondition(_is_live)
    @rule(data=st.data(), span=SMALL_SPANS)
    def device_command(self, data: st.DataObject, span: timedelta) -> None:
        kind = data.draw(st.integers(0, 19))  # mostly accepted, sometimes not
        command = self._spoiler(data) if kind == 0 else self._device_command(data, valid=kind > 2)
        self._step([command], self.rollout.clock + span, single=True)

    @precondition(_is_live)
    @rule(data=st.data(), size=st.integers(1, 8), spoil=st.integers(0, 7), span=SMALL_SPANS)
    def device_batch(self, data: st.DataObject, size: int, spoil: int, span: timedelta) -> None:
        # Mostly valid: one command per device, each one the model takes from the
        # device's state; sometimes an administrator's command among them; and once in a
        # while one command that is refused, which must refuse the whole batch.
        batch: list[Any] = [self._device_command(data, valid=True) for _ in range(size)]
        if data.draw(st.integers(0, 3)) == 0:
            batch.insert(data.draw(st.integers(0, len(batch))), data.draw(KEEPS_RUNNING))
        if spoil == 0:
            batch.insert(data.draw(st.integers(0, len(batch))), self._spoiler(data))
        self._step(batch, self.rollout.clock + span)

    @precondition(_is_live)
    @rule(data=st.data(), span=SMALL_SPANS)
    def devices_confirm(self, data: st.DataObject, span: timedelta) -> None:
        # Most of the fleet reports the root installed in one batch, so that large
        # fleets can also complete their distribution.
        waiting = [d for d, dev in self.model.devices.items() if dev.state in self.UNCONFIRMED]
        # Once extended, the stragglers more often all confirm (an import can then be
        # clean at the next checkpoint, at the deadline or on ImportNow).
        late = self.model.state == "extended"
        share = data.draw(st.sampled_from([0.5, 1.0, 1.0] if late else [0.3, 0.6, 0.9, 1.0]))
        batch = [cf.DeviceInstalled(d) for d in waiting[: round(len(waiting) * share)]]
        self._step(batch, self.rollout.clock + span)

    @precondition(_is_running)
    @rule(data=st.data(), fail=st.booleans(), span=SMALL_SPANS)
    def pushed_device_answers_or_is_retried(
        self, data: st.DataObject, fail: bool, span: timedelta
    ) -> None:
        # A device that was pushed the root reports a failure, or the administrator
        # retries it (it never answered, or it failed): the rows of the failure path.
        pushed = [d for d, dev in self.model.devices.items() if dev.state in ("pushed", "failed")]
        if not pushed:
            return
        device_id = data.draw(st.sampled_from(pushed))
        command: cf.Command
        if fail and self.model.devices[device_id].state == "pushed":
            command = cf.DeviceFailed(device_id, data.draw(REASONS))
        else:
            command = cf.Retry(device_id)
        self._step([command], self.rollout.clock + span, single=True)

    @precondition(_a_push_can_time_out_at_the_next_event)
    @rule(data=st.data())
    def push_that_times_out_with_the_next_event(self, data: st.DataObject) -> None:
        # Ties on purpose: a push whose acknowledgement timeout falls exactly on the next
        # notice or checkpoint (timeouts fire first, and the checkpoint sees them).
        due, timeout = self.model.next_event_at(), self.model.policy.ack_timeout
        assert due is not None
        assert timeout is not None
        retriable = [
            d for d, dev in self.model.devices.items() if dev.state in ("pushed", "failed")
        ]
        if retriable and self.model.kind is cf.CertificateKind.MDM_SERVER:
            command: cf.Command = cf.Retry(data.draw(st.sampled_from(retriable)))
        else:
            command = cf.Enroll(f"new{self.newcomers}")
            self.newcomers += 1
        self._step([command], due - timeout, single=True)

    @precondition(_is_live)
    @rule(data=st.data(), leave=st.booleans(), span=SMALL_SPANS)
    def fleet_changes(self, data: st.DataObject, leave: bool, span: timedelta) -> None:
        # A device leaves management, or one (new, or one that left) enrols.
        known = list(self.model.devices)
        command: cf.Command
        if leave and known:
            command = cf.Unenroll(data.draw(st.sampled_from(known)))
        else:
            removed = [d for d, dev in self.model.devices.items() if dev.state == "removed"]
            device_id = data.draw(st.sampled_from([*removed, f"new{self.newcomers}"]))
            self.newcomers += device_id.startswith("new")
            command = cf.Enroll(device_id)
        self._step([command], self.rollout.clock + span, single=True)

    @precondition(_is_live)
    @rule(command=WHILE_LIVE, span=st.none() | SMALL_SPANS)
    def administrator(self, command: cf.Command, span: timedelta | None) -> None:
        self._step([command], self.rollout.clock + (span or timedelta(0)), single=True)

    @precondition(_is_pending)
    @rule(command=WHILE_PENDING, span=st.none() | SMALL_SPANS)
    def administrator_of_a_pending_rollout(
        self, command: cf.Command, span: timedelta | None
    ) -> None:
        self._step([command], self.rollout.clock + (span or timedelta(0)), single=True)

    @precondition(_is_running)
    @rule(hours=st.integers(-2, 72))
    def extend_once_it_opens(self, hours: int) -> None:
        assert self.model.t0 is not None
        opens = self.model.t0 + self.model.policy.manual_extension_opens
        now = max(self.rollout.clock, opens + hours * HOUR)
        self._step([cf.ExtendManually()], now, single=True)

    @precondition(_is_running)
    @rule(share=st.sampled_from([0.3, 0.6, 0.9, 0.999, 1.0, 1.2, 2.5]))
    def catch_up(self, share: float) -> None:
        # A host that slept: one advance across pushes' timeouts, the notice, and now
        # and then the next checkpoint and more.
        checkpoint = self.model.checkpoint_at()
        self._step(None, self.rollout.clock + (checkpoint - self.rollout.clock) * share)

    @precondition(_extension_has_opened)
    @rule(command=ENDS, span=st.none() | SMALL_SPANS)
    def administrator_ends_it(self, command: cf.Command, span: timedelta | None) -> None:
        # From the day-6 notice on, an administrator may import now or give up.
        self._step([command], self.rollout.clock + (span or timedelta(0)), single=True)

    # --- rules in any state ---------------------------------------------------------------------

    @rule(data=st.data(), way=st.sampled_from(["advance", "apply", "apply_all"]))
    def refused_instants(self, data: st.DataObject, way: str) -> None:
        # An instant before the clock, or a naive one, is refused whatever comes with it.
        if data.draw(st.booleans()):
            now = self.rollout.clock - data.draw(st.sampled_from([SECOND / 10**6, DAY]))
        else:
            now = self.rollout.clock.replace(tzinfo=None)
        command = self._device_command(data, valid=True) if self.model.devices else cf.Cancel()
        commands = None if way == "advance" else [command]
        self._step(commands, now, single=way == "apply")

    # --- rules once the rollout has ended --------------------------------------------------------

    @precondition(_has_ended)
    @rule(span=SMALL_SPANS | BIG_SPANS)
    def after_the_end_time_passes(self, span: timedelta) -> None:
        self._step(None, self.rollout.clock + span)

    @precondition(_has_ended)
    @rule(data=st.data(), span=SMALL_SPANS)
    def after_the_end_device_command(self, data: st.DataObject, span: timedelta) -> None:
        command = self._device_command(data, valid=data.draw(st.booleans()))
        self._step([command], self.rollout.clock + span, single=True)

    @precondition(_has_ended)
    @rule(data=st.data(), size=st.integers(1, 6))
    def after_the_end_batch(self, data: st.DataObject, size: int) -> None:
        batch = [self._device_command(data, valid=True) for _ in range(size)]
        self._step(batch, self.rollout.clock)

    @precondition(_has_ended)
    @rule(command=ANY_ADMIN, span=SMALL_SPANS)
    def after_the_end_administrator(self, command: cf.Command, span: timedelta) -> None:
        self._step([command], self.rollout.clock + span, single=True)

    # --- commands built from the model ------------------------------------------------------------

    def _device_command(self, data: st.DataObject, *, valid: bool) -> cf.Command:
        """A device command; with ``valid``, one the model would take (when there is one)."""
        known = list(self.model.devices)
        newcomer = f"new{self.newcomers}"
        device_id = data.draw(st.sampled_from([*known, newcomer]) if known else st.just(newcomer))
        triggers = self.model.accepted_device_triggers(device_id) if valid else []
        if not triggers:
            triggers = list(DEVICE_TRIGGERS)
        trigger = data.draw(st.sampled_from(triggers))
        if device_id == newcomer and trigger == "enroll":
            self.newcomers += 1
        return _command(trigger, device_id, data.draw(REASONS))

    def _spoiler(self, data: st.DataObject) -> Any:
        """A command that is likely refused: an unknown device, a command of the wrong
        state, or something that is not a command at all."""
        kind = data.draw(st.sampled_from(["unknown", "wrong state", "not a command"]))
        if kind == "unknown":
            return cf.Retry("nobody")
        if kind == "wrong state":
            return data.draw(st.sampled_from([cf.Reenrolled("d0"), cf.DistributeRoot()]))
        return "DistributeRoot"

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        rollout, model = self.rollout, self.model
        assert rollout.state.value == model.state
        assert rollout.clock == model.clock
        assert rollout.phase == model.phase()
        assert normalised(rollout.devices()) == model.records()

    @invariant()
    def next_due_is_the_models_next_event(self) -> None:
        assert cf.next_due(self.rollout) == self.model.next_event_at()

    @invariant()
    def counts_agree_with_a_recount(self) -> None:
        recount = dict.fromkeys(cf.DeviceState, 0)
        for record in self.rollout.devices():
            recount[record.state] += 1
        assert self.rollout.counts() == recount == self.model.counts()

    @invariant()
    def never_running_after_the_deadline(self) -> None:
        phase = self.rollout.phase
        if self.rollout.state in (cf.RolloutState.DISTRIBUTING, cf.RolloutState.EXTENDED):
            assert phase.started_at is not None
            deadline = phase.started_at + self.rollout.plan.policy.checkpoints[-1]
            assert self.rollout.clock < deadline + phase.extension

    @invariant()
    def at_most_one_notice_per_checkpoint_and_none_after_the_end(self) -> None:
        announced = [n.checkpoint_at for n in self.notices]
        assert len(announced) == len(set(announced))
        ended = self.rollout.phase.ended_at
        if ended is not None:
            assert all(n.due_at <= ended for n in self.notices)
        for notice in self.notices:
            # notice_before ahead; or, when less time remained as the checkpoint became
            # the next one, at once (never after it, never more than notice_before ahead).
            lead = notice.checkpoint_at - notice.due_at
            assert timedelta(0) <= lead <= self.rollout.plan.policy.notice_before

    @invariant()
    def survives_a_json_round_trip(self) -> None:
        assert cf.loads(cf.dumps(self.rollout)) == self.rollout

    def teardown(self) -> None:
        # Shown by --hypothesis-show-statistics.
        live, ended = self.steps["live"], self.steps["ended"]
        LIVE_STEPS.update(self.steps)
        if live + ended:
            share = live / (live + ended)
            event("live steps " + ("<50%" if share < 0.5 else "50-80%" if share < 0.8 else ">=80%"))
        if hasattr(self, "rollout"):
            event(f"final state {self.rollout.state.value}")
            event(f"manual extensions {min(self.rollout.phase.manual_extensions, 2)}")


# About 10 s on a shared 2-core machine; a profile asking for more examples (thorough) gets them.
RolloutMachine.TestCase.settings = settings(
    max_examples=max(150, settings().max_examples), stateful_step_count=40
)
TestRolloutAgainstModel = RolloutMachine.TestCase
