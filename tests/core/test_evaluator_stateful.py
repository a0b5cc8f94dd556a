"""The evaluator against the reference model, under random commands and time steps.

Every step drives the real evaluator and the reference model (tests/reference_model.py)
with the same input, and requires the same outcome: the same refusals, rollout state,
devices and effects. After every step the invariants and laws of rollout-rules.md are
checked on the evaluator's rollout.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import certflow as cf
from certflow.core.effects import Effect
from certflow.core.evaluator import next_due_instant
from tests.core.reference_model import ReferenceRollout, Refused
from tests.core.strategies import DAY, HOUR, T0, policies, spans

GHOST = "ghost-device"


def _device_commands(ids: list[str]) -> st.SearchStrategy[Any]:
    names = st.sampled_from([*ids, GHOST, "late-enrolee-1", "late-enrolee-2"])
    return st.one_of(
        names.map(cf.DeviceInstalled),
        st.builds(cf.DeviceFailed, names, st.sampled_from(["store locked", "user declined"])),
        names.map(cf.Retry),
        names.map(cf.Enroll),
        names.map(cf.Unenroll),
        names.map(cf.Reenrolled),
    )


ADMIN_COMMANDS = st.sampled_from(
    [
        cf.DistributeRoot(),
        cf.ProceedToImport(),
        cf.ImportNow(),
        cf.ExtendManually(),
        cf.Cancel(),
        cf.RetryAllFailed(),
        cf.ServerRestarted(),
    ]
)


def _normalised(records: list[cf.DeviceRecord]) -> list[tuple[str, str, int, str | None]]:
    """Records with a timeout's reason reduced to a marker: the wording is the evaluator's."""
    out = []
    for r in records:
        reason = r.last_failure_reason
        if reason is not None and reason.startswith("no acknowledgement within"):
            reason = "timeout"
        out.append((r.device_id, r.state.value, r.attempts, reason))
    return out


class RolloutMachine(RuleBasedStateMachine):
    """Random rollouts, commands and time jumps; the evaluator must match the model."""

    rollout: cf.Rollout
    model: ReferenceRollout

    def __init__(self) -> None:
        super().__init__()
        self.notices: list[cf.Notify] = []
        self.admin_import = False
        self.imports: list[cf.ImportCertificate] = []

    @initialize(
        n=st.integers(0, 12) | st.integers(200, 600),  # small fleets, and some many-device ones
        policy=policies(),
        kind=st.sampled_from(cf.CertificateKind),
        public=st.booleans(),
        existing_days=st.integers(-5, 80),
        valid_days=st.integers(25, 120),
        distribute=st.booleans(),
        data=st.data(),
    )
    def start(
        self,
        n: int,
        policy: cf.Policy,
        kind: cf.CertificateKind,
        public: bool,
        existing_days: int,
        valid_days: int,
        distribute: bool,
        data: st.DataObject,
    ) -> None:
        self.ids = [f"d{i}" for i in range(n)]
        trusted = tuple(data.draw(st.lists(st.sampled_from(self.ids), unique=True))) if n else ()
        window = policy.deadline + valid_days * DAY
        facts: dict[str, Any] = {
            "existing_not_after": T0 + existing_days * DAY,
            "new_not_before": T0 - DAY,
            "new_not_after": T0 - DAY + window,
        }
        self.rollout = cf.new_rollout(
            self.ids,
            root_publicly_trusted=public,
            created_at=T0,
            kind=kind,
            policy=policy,
            trusted_device_ids=trusted,
            **facts,
        )
        self.model = ReferenceRollout(
            self.ids,
            public=public,
            kind=kind,
            policy=policy,
            created_at=T0,
            trusted=trusted,
            **facts,
        )
        self.commands = _device_commands(self.ids)
        if distribute:  # most interesting runs start here; save them a step
            self._step(cf.DistributeRoot(), T0 + data.draw(st.integers(0, 48)) * HOUR)

    # --- steps -------------------------------------------------------------------------

    def _step(self, command: Any | None, now: datetime) -> None:
        before = self.rollout
        try:
            expected = (
                self.model.advance(now) if command is None else self.model.apply(command, now)
            )
        except Refused:
            assert command is not None  # advancing is refused only for going backwards
            with pytest.raises(cf.CertflowError):
                cf.apply(before, command, now)
            assert before == self.rollout  # the rollout passed in is unchanged
            return
        if command is None:
            self.rollout, effects = cf.advance(before, now)
        else:
            self.rollout, effects = cf.apply(before, command, now)
        assert list(effects) == expected
        self._record(effects, command)
        self._check_laws(before, command, now)

    def _record(self, effects: tuple[Effect, ...], command: Any | None) -> None:
        for effect in effects:
            if isinstance(effect, cf.Notify):
                self.notices.append(effect)
            if isinstance(effect, cf.ImportCertificate):
                self.imports.append(effect)
                if command is not None and effect.due_at == self.rollout.clock:
                    self.admin_import = isinstance(command, (cf.ImportNow, cf.ProceedToImport))

    def _check_laws(self, before: cf.Rollout, command: Any | None, now: datetime) -> None:
        # Advancing twice to the same instant changes nothing and emits nothing.
        again, effects = cf.advance(self.rollout, now)
        assert effects == ()
        assert again == self.rollout
        if command is None and now > before.clock:
            # One jump equals two smaller steps.
            middle = before.clock + (now - before.clock) / 3
            first, early = cf.advance(before, middle)
            second, late = cf.advance(first, now)
            assert second == self.rollout
            assert (*early, *late) == cf.advance(before, now).effects

    @rule(span=spans)
    def wait(self, span: timedelta) -> None:
        self._step(None, self.rollout.clock + span)

    @rule(command=ADMIN_COMMANDS, span=st.none() | spans)
    def administrator(self, command: Any, span: timedelta | None) -> None:
        self._step(command, self.rollout.clock + (span or timedelta(0)))

    @rule(data=st.data(), seconds=st.integers(0, 86400))
    def device_report(self, data: st.DataObject, seconds: int) -> None:
        self._step(data.draw(self.commands), self.rollout.clock + timedelta(seconds=seconds))

    @rule(data=st.data(), hours=st.integers(0, 60))
    def wait_a_little(self, data: st.DataObject, hours: int) -> None:
        self._step(
            None,
            self.rollout.clock
            + hours * HOUR
            + data.draw(st.sampled_from([timedelta(0), timedelta(seconds=1)])),
        )

    @rule(hours=st.integers(-2, 72))
    def extend_once_it_opens(self, hours: int) -> None:
        started = self.rollout.phase.started_at
        if started is None:
            return
        opens = started + self.rollout.plan.policy.manual_extension_opens
        self._step(cf.ExtendManually(), max(self.rollout.clock, opens + hours * HOUR))

    @rule()
    def time_going_backwards_is_refused(self) -> None:
        before = self.rollout
        with pytest.raises(cf.TimeWentBackwards):
            cf.advance(before, before.clock - timedelta(microseconds=1))
        assert before == self.rollout

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.rollout.state.value == self.model.state
        assert self.rollout.clock == self.model.clock
        assert _normalised(list(self.rollout.devices())) == _normalised(
            [d.record(n) for n, d in self.model.devices.items()]
        )
        assert self.rollout.phase.restart_required == self.model.restart_required

    @invariant()
    def the_cached_next_instant_is_the_recomputed_one(self) -> None:
        phase = self.rollout.phase
        assert phase.next_due == next_due_instant(self.rollout.plan, phase)

    @invariant()
    def counts_agree_with_a_recount(self) -> None:
        recount = dict.fromkeys(cf.DeviceState, 0)
        for record in self.rollout.devices():
            recount[record.state] += 1
        assert self.rollout.counts() == recount

    @invariant()
    def never_running_after_the_deadline(self) -> None:
        phase = self.rollout.phase
        if self.rollout.state in (cf.RolloutState.DISTRIBUTING, cf.RolloutState.EXTENDED):
            assert phase.started_at is not None
            deadline = phase.started_at + self.rollout.plan.policy.deadline + phase.extension
            assert self.rollout.clock < deadline

    @invariant()
    def never_imported_before_the_first_checkpoint_without_a_command(self) -> None:
        started = self.rollout.phase.started_at
        first = self.rollout.plan.policy.checkpoints[0]
        for effect in self.imports:
            if not self.admin_import:
                assert started is not None
                assert effect.due_at >= started + first

    @invariant()
    def at_most_one_notice_per_checkpoint_and_none_after_the_end(self) -> None:
        announced = [n.checkpoint_at for n in self.notices]
        assert len(announced) == len(set(announced))
        ended = self.rollout.phase.ended_at
        if ended is not None:
            assert all(n.due_at <= ended for n in self.notices)
        for notice in self.notices:
            assert notice.checkpoint_at - notice.due_at == self.rollout.plan.policy.notice_before

    @invariant()
    def survives_a_json_round_trip(self) -> None:
        assert cf.loads(cf.dumps(self.rollout)) == self.rollout

    def teardown(self) -> None:
        # Shown by --hypothesis-show-statistics: which ends the runs reached.
        event(f"final state {self.rollout.state.value}")
        event(f"manual extensions {min(self.rollout.phase.manual_extensions, 2)}")
        if self.rollout.plan.policy.ack_timeout is not None:
            event("with acknowledgement timeouts")


RolloutMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
TestRolloutAgainstModel = RolloutMachine.TestCase
