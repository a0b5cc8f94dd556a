"""The reference model's transcription against the declarations, and the model itself.

This is the one module that reads certflow's declarations (``cf.ROLLOUT_MACHINE``,
``cf.DEVICE_MACHINE``): it proves that the rows, gates, follow-ups, ignored duplicates
and timers typed out by hand in ``reference_model.py`` are exactly the declared ones, so
that a wrong declared row cannot pass the stateful test by being copied into the model.
It also shows that an edit made to both the declaration and the transcription changes
the evaluator and the model alike, and checks the model on a few examples written out
from the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

import certflow as cf
from tests.core import reference_model as rm
from tests.core.strategies import DAY, HOUR, T0

ROLLOUT, DEVICE = cf.ROLLOUT_MACHINE, cf.DEVICE_MACHINE


# --- The declarations are the transcription ------------------------------------------------


def test_the_declared_states_are_the_transcribed_ones() -> None:
    assert ROLLOUT.state_names == rm.ROLLOUT_STATES
    assert ROLLOUT.initial == "pending"
    assert ROLLOUT.terminal == frozenset(rm.ENDED)
    assert DEVICE.state_names == rm.DEVICE_STATES
    assert DEVICE.initial == "pending"


def test_the_declared_rows_are_the_transcribed_rows() -> None:
    declared_rollout = {(t.source, t.trigger, t.dest) for t in ROLLOUT.transitions}
    declared_device = {(t.source, t.trigger, t.dest) for t in DEVICE.transitions}
    assert declared_rollout - rm.ROLLOUT_ROWS == set(), "declared, not in the spec"
    assert rm.ROLLOUT_ROWS - declared_rollout == set(), "in the spec, not declared"
    assert declared_device - rm.DEVICE_ROWS == set(), "declared, not in the spec"
    assert rm.DEVICE_ROWS - declared_device == set(), "in the spec, not declared"


def test_the_declared_gates_are_the_transcribed_gates() -> None:
    # Which device triggers each rollout state lets through ...
    declared = {s.name: {g.trigger for g in s.gates} for s in ROLLOUT.states}
    assert declared == {state: set(gate) for state, gate in rm.GATES.items()}
    # ... which of them need a condition (the guard names are the declaration's own) ...
    conditioned = {(s.name, g.trigger) for s in ROLLOUT.states for g in s.gates if g.guards}
    assert conditioned == {(s, t) for s, gate in rm.GATES.items() for t, c in gate.items() if c}
    # ... and what follows them at once.
    then = {(s.name, g.trigger): g.then for s in ROLLOUT.states for g in s.gates if g.then}
    assert then == dict(rm.FOLLOW_UPS)


def test_the_declared_duplicates_are_the_transcribed_ones() -> None:
    assert set(DEVICE.ignored) == rm.DEVICE_IGNORED


def test_the_declared_timers_are_the_transcribed_ones() -> None:
    declared = {s.name: s.timers for s in ROLLOUT.states if s.timers}
    assert declared == dict(rm.TIMERS)
    assert {t.name: t.trigger for t in ROLLOUT.timers} == rm.TIMER_TRIGGERS


def test_the_transcribed_rows_of_one_trigger_exclude_each_other() -> None:
    # The model's rows are tried in table order by transitions; the order must not
    # matter: under every truth assignment of their conditions at most one row of a
    # source and trigger holds, and exactly one for time, which is never refused.
    groups: dict[tuple[str, str], list[rm.Row]] = {}
    for row in rm.ROLLOUT_TABLE:
        groups.setdefault((row.source, row.trigger), []).append(row)
    for (source, trigger), rows in groups.items():
        names = sorted({n for r in rows for n in (*r.conditions, *r.unless)})
        for bits in range(2 ** len(names)):
            truth = {n: bool(bits >> i & 1) for i, n in enumerate(names)}
            holding = [
                r
                for r in rows
                if all(truth[c] for c in r.conditions) and not any(truth[u] for u in r.unless)
            ]
            timed = trigger in rm.TIMER_TRIGGERS.values()
            assert len(holding) == 1 if timed else len(holding) <= 1, (source, trigger, truth)


# --- An edit to both sides moves both ---------------------------------------------------------


Step = tuple[list[Any] | None, datetime]


def _create(
    ids: Sequence[str], policy: cf.Policy | None = None, **overrides: Any
) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "existing_not_after": T0 + 60 * DAY,
        "new_not_before": T0 - DAY,
        "new_not_after": T0 + 300 * DAY,
        "kind": cf.CertificateKind.MDM_SERVER,
        "policy": policy or cf.Policy(),
        "created_at": T0,
    }
    facts.update(overrides)
    return facts


def _run(
    evaluator: cf.Evaluator, rollout: cf.Rollout, commands: list[Any] | None, now: datetime
) -> cf.Step | type[cf.CertflowError]:
    """The evaluator's result, or the class of the error it raised."""
    try:
        if commands is None:
            return evaluator.advance(rollout, now)
        return evaluator.apply_all(rollout, commands, now)
    except cf.CertflowError as error:
        return type(error)


def _drive(
    evaluator: cf.Evaluator,
    model: rm.ReferenceRollout,
    rollout: cf.Rollout,
    steps: Iterable[Step],
) -> tuple[cf.Rollout, list[object]]:
    """Run ``steps`` on both; require the same outcome; the last rollout and the outcomes."""
    outcomes: list[object] = []
    for commands, now in steps:
        try:
            expected: object = (
                model.advance(now) if commands is None else model.apply_all(commands, now)
            )
        except rm.Refused as refusal:
            expected = refusal.expected
        result = _run(evaluator, rollout, commands, now)
        if isinstance(result, cf.Step):
            rollout = result.rollout
            assert list(result.effects) == expected
            assert rollout.phase == model.phase()
            assert rm.normalised(rollout.devices()) == model.records()
        else:
            assert result is expected
        outcomes.append(expected)
    return rollout, outcomes


def _both(
    ids: list[str],
    steps: list[Step],
    *,
    rules: cf.Rules | None = None,
    trusted: tuple[str, ...] = (),
    **model_tables: Any,
) -> list[object]:
    facts = _create(ids)
    rollout = cf.new_rollout(ids, root_publicly_trusted=False, trusted_device_ids=trusted, **facts)
    model = rm.ReferenceRollout(ids, public=False, trusted=trusted, **facts, **model_tables)
    evaluator = cf.Evaluator(_rules=rules) if rules is not None else cf.Evaluator()
    return _drive(evaluator, model, rollout, steps)[1]


def _edit_rows(
    machine: cf.MachineSpec, edit: Callable[[cf.Transition], cf.Transition | None]
) -> cf.MachineSpec:
    rows = (edit(row) for row in machine.transitions)
    return attrs.evolve(machine, transitions=tuple(row for row in rows if row is not None))


def test_dropping_a_device_row_on_both_sides_changes_both_alike() -> None:
    # Edit: a device that never answered can no longer be retried on its own.
    device = _edit_rows(
        DEVICE, lambda row: None if (row.source, row.trigger) == ("pushed", "retry") else row
    )
    rules = cf.Rules(ROLLOUT, device, cf.RESTART_MACHINE)
    rows = rm.DEVICE_ROWS - {("pushed", "retry", "pushed")}
    steps: list[Step] = [([cf.DistributeRoot()], T0), ([cf.Retry("d0")], T0 + HOUR)]
    original = _both(["d0"], steps)
    edited = _both(["d0"], steps, rules=rules, device_rows=rows)
    assert original[1] == [cf.PushRoot(("d0",), 2, T0 + HOUR)]
    assert edited[1] is cf.CommandRefused


def test_inverting_an_outcome_on_both_sides_changes_both_alike() -> None:
    # Edit: ImportNow is "imported" exactly when some device does not trust the root.
    def invert(row: cf.Transition) -> cf.Transition:
        if row.trigger != "import_now":
            return row
        other = next(
            r
            for r in ROLLOUT.rows(row.source, row.trigger)
            if r.dest != row.dest  # the same trigger's other outcome
        )
        return attrs.evolve(row, dest=other.dest, actions=other.actions)

    rules = cf.Rules(_edit_rows(ROLLOUT, invert), DEVICE, cf.RESTART_MACHINE)
    swap = {"imported": "forced", "forced": "imported"}
    rows = [
        row._replace(dest=swap[row.dest]) if row.trigger == "import_now" else row
        for row in rm.ROLLOUT_TABLE
    ]
    steps: list[Step] = [([cf.DistributeRoot()], T0), ([cf.ImportNow()], T0 + DAY)]
    original = _both(["d0", "d1"], steps, trusted=("d0",))
    edited = _both(["d0", "d1"], steps, rules=rules, trusted=("d0",), rows=rows)
    late = T0 + DAY
    assert original[1] == [
        cf.ImportCertificate(True, late),
        cf.ReenrollmentRequired(("d1",), late),
        cf.RestartRequired(late),
    ]
    assert edited[1] == [
        cf.ImportCertificate(False, late),
        cf.ReenrollmentRequired(("d1",), late),
        cf.RestartRequired(late),
    ]


def test_a_changed_gate_on_both_sides_changes_both_alike() -> None:
    # Edit: a device that enrols while distributing waits, instead of being pushed.
    def no_push(state: Any) -> Any:
        gates = tuple(attrs.evolve(g, then=()) if g.trigger == "enroll" else g for g in state.gates)
        return attrs.evolve(state, gates=gates)

    rollout_machine = attrs.evolve(ROLLOUT, states=tuple(no_push(s) for s in ROLLOUT.states))
    rules = cf.Rules(rollout_machine, DEVICE, cf.RESTART_MACHINE)
    follow_ups = {k: v for k, v in rm.FOLLOW_UPS.items() if k[1] != "enroll"}
    steps: list[Step] = [([cf.DistributeRoot()], T0), ([cf.Enroll("new")], T0 + HOUR)]
    original = _both(["d0"], steps)
    edited = _both(["d0"], steps, rules=rules, follow_ups=follow_ups)
    assert original[1] == [cf.PushRoot(("new",), 1, T0 + HOUR)]
    assert edited[1] == []


# --- A tour of every rollout row, on both ------------------------------------------------------
#
# The stateful test walks at random and may miss a rare row in one run; this takes every
# transcribed rollout row on purpose, so that each is compared with the evaluator in
# every run. Devices: d0 trusts the root from the start, d1 does not; the old
# certificate expires on day 60 unless a case says otherwise; distributing starts at
# T0, extended at day 7 (the first checkpoint).


Case = tuple[tuple[str, str, str], dict[str, Any], list[Step]]


def _running_cases(state: str, prefix: list[Step], base: datetime) -> list[Case]:
    """The rows of a running ``state``, reached by ``prefix`` at instant ``base``."""
    later, installed = base + HOUR, ([cf.DeviceInstalled("d1")], base + HOUR)
    # Two retries push d1 again; only the latest push times out, an hour after it.
    retried = [
        ([cf.Retry("d1")], base + HOUR / 2),
        ([cf.Retry("d1")], base + HOUR * 3 / 4),
        (None, base + 2 * HOUR),
    ]
    failed = ([cf.DeviceFailed("d1", "store locked")], later)
    opened = max(later, T0 + 6 * DAY + HOUR)  # manual extension opens on day 6
    # Outcome by trust alone: forced although the old certificate has expired (the
    # import condition holds), imported although the condition fails (it needs both).
    # The expiry is itself a checkpoint when it falls inside the window, so a checkpoint
    # that finds it expired meets it at its own instant (the checkpoint decides first).
    expiry = {"existing_not_after": base + 3 * DAY}
    at_checkpoint = {"existing_not_after": base + 7 * DAY}
    strict = {"policy": cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)}
    rows: list[tuple[str, str, list[Step], dict[str, Any]]] = [
        ("ack_timeout", state, retried, {"policy": cf.Policy(ack_timeout=HOUR)}),
        ("notify", state, [(None, base + 6 * DAY)], {}),
        ("checkpoint", "imported", [installed, (None, base + 7 * DAY)], {}),
        ("checkpoint", "forced", [(None, base + 7 * DAY)], at_checkpoint),
        ("checkpoint", "extended", [(None, base + 7 * DAY)], {}),
        ("expiry", "imported", [installed, (None, base + 3 * DAY)], expiry),
        ("expiry", "forced", [(None, base + 3 * DAY)], expiry),
        ("import_now", "imported", [installed, ([cf.ImportNow()], later)], strict),
        (
            "import_now",
            "forced",
            [(None, base + 4 * DAY), ([cf.ImportNow()], base + 4 * DAY)],
            {**strict, **expiry},
        ),
        ("extend_manually", state, [([cf.ExtendManually()], opened)], {}),
        ("retry_all_failed", state, [failed, ([cf.RetryAllFailed()], later)], {}),
        ("cancel", "cancelled", [([cf.Cancel()], later)], {}),
    ]
    # The deadline: from distributing with a one-checkpoint policy, from extended after
    # the second checkpoint postponed too.
    if state == "distributing":
        one = {"policy": cf.Policy(checkpoints=(7 * DAY,))}
        one_strict = {
            "policy": cf.Policy(checkpoints=(7 * DAY,), import_rule=strict["policy"].import_rule)
        }
        rows.append(("deadline", "imported", [installed, (None, base + 7 * DAY)], one_strict))
        rows.append(("deadline", "forced", [(None, base + 7 * DAY)], one))
    else:
        at_14, at_21 = (None, T0 + 14 * DAY), (None, T0 + 21 * DAY)
        late_install = ([cf.DeviceInstalled("d1")], T0 + 15 * DAY)
        rows.append(("deadline", "imported", [at_14, late_install, at_21], strict))
        # Expired after the first checkpoint: the second imports (forced), so expire
        # the old certificate at the deadline itself.
        at_deadline = {"existing_not_after": T0 + 21 * DAY}
        rows.append(("deadline", "forced", [at_14, at_21], at_deadline))
    return [
        ((state, trigger, dest), setup, [*prefix, *steps]) for trigger, dest, steps, setup in rows
    ]


def _tour() -> list[Case]:
    distribute: list[Step] = [([cf.DistributeRoot()], T0)]
    postponed = [*distribute, (None, T0 + 7 * DAY)]  # d1 does not trust: extended
    proceed: list[Step] = [([cf.ProceedToImport()], T0)]
    return [
        (("pending", "distribute_root", "distributing"), {}, distribute),
        (("pending", "proceed_to_import", "imported"), {"trusted": ("d0", "d1")}, proceed),
        # Forced although the old certificate has expired: trust alone decides.
        (("pending", "proceed_to_import", "forced"), {"existing_not_after": T0 - DAY}, proceed),
        (("pending", "cancel", "cancelled"), {}, [([cf.Cancel()], T0)]),
        *_running_cases("distributing", distribute, T0),
        *_running_cases("extended", postponed, T0 + 7 * DAY),
    ]


TOUR = _tour()


def test_the_tour_takes_every_transcribed_rollout_row() -> None:
    assert sorted(row for row, _, _ in TOUR) == sorted(rm.ROLLOUT_ROWS)


@pytest.mark.parametrize(
    ("row", "setup", "steps"), TOUR, ids=lambda v: "-".join(v) if isinstance(v, tuple) else "_"
)
def test_each_rollout_row_on_both(
    row: tuple[str, str, str], setup: dict[str, Any], steps: list[Step]
) -> None:
    ids = ["d0", "d1"]
    setup = dict(setup)  # the cases share their setups
    trusted = setup.pop("trusted", ("d0",))
    policy = setup.pop("policy", None)
    facts = _create(ids, policy, **setup)
    rollout = cf.new_rollout(ids, root_publicly_trusted=False, trusted_device_ids=trusted, **facts)
    model = rm.ReferenceRollout(ids, public=False, trusted=trusted, **facts)
    _drive(cf.Evaluator(), model, rollout, steps)
    assert model.taken[-1] == row


# --- The model on examples written out from the spec -----------------------------------------


def _model(
    ids: Sequence[str], *, kind: cf.CertificateKind = cf.CertificateKind.MDM_SERVER, **kw: Any
) -> rm.ReferenceRollout:
    policy = kw.pop("policy", None)
    trusted = kw.pop("trusted", ())
    return rm.ReferenceRollout(
        ids, public=False, trusted=trusted, **_create(ids, policy, kind=kind, **kw)
    )


def _rollout(
    ids: Sequence[str], *, kind: cf.CertificateKind = cf.CertificateKind.MDM_SERVER, **kw: Any
) -> cf.Rollout:
    policy = kw.pop("policy", None)
    trusted = kw.pop("trusted", ())
    return cf.new_rollout(
        ids,
        root_publicly_trusted=False,
        trusted_device_ids=trusted,
        **_create(ids, policy, kind=kind, **kw),
    )


# How to bring a rollout of devices d0 (trusted) and d1 into each state.
REACH: dict[str, list[Step]] = {
    "pending": [],
    "distributing": [([cf.DistributeRoot()], T0)],
    "extended": [([cf.DistributeRoot()], T0), (None, T0 + 7 * DAY)],
    "imported": [([cf.Unenroll("d1"), cf.ProceedToImport()], T0)],
    "forced": [([cf.DistributeRoot()], T0), ([cf.ImportNow()], T0 + DAY)],
    "cancelled": [([cf.Cancel()], T0)],
}


@pytest.mark.parametrize("kind", list(cf.CertificateKind))
@pytest.mark.parametrize("state", list(REACH))
def test_retry_of_an_unknown_device_is_an_unknown_device_in_every_state(
    state: str, kind: cf.CertificateKind
) -> None:
    ids = ["d0", "d1"]
    model = _model(ids, kind=kind, trusted=("d0",))
    rollout = _rollout(ids, kind=kind, trusted=("d0",))
    rollout, _ = _drive(cf.Evaluator(), model, rollout, REACH[state])
    assert rollout.state.value == model.state == state
    _, outcomes = _drive(cf.Evaluator(), model, rollout, [([cf.Retry("typo")], model.clock)])
    assert outcomes == [cf.UnknownDevice]


def test_every_import_emits_import_then_reenrolment_then_restart() -> None:
    model = _model(["d0", "d1", "d2"], trusted=("d1",))
    model.apply(cf.DistributeRoot(), T0)
    model.apply(cf.DeviceFailed("d2", "locked"), T0 + HOUR)
    at = T0 + 2 * DAY
    assert model.apply(cf.ImportNow(), at) == [
        cf.ImportCertificate(True, at),
        cf.ReenrollmentRequired(("d0", "d2"), at),
        cf.RestartRequired(at),
    ]
    assert model.ended_at == at
    assert model.restart_required


def test_at_one_instant_a_timeout_comes_before_the_notice_and_the_checkpoint() -> None:
    # Pushes time out exactly at the day-6 notice; a re-push times out at day 7.
    policy = cf.Policy(ack_timeout=6 * DAY)
    model = _model(["d0", "d1"], policy=policy)
    model.apply(cf.DistributeRoot(), T0)
    model.apply(cf.Retry("d1"), T0 + DAY)
    assert model.advance(T0 + 7 * DAY) == [
        cf.AcknowledgementTimedOut(("d0",), T0 + 6 * DAY),
        # The notice states the fleet after the timeout at its own instant.
        cf.Notify(
            1,
            T0 + 7 * DAY,
            False,
            T0 + 6 * DAY,
            in_scope=2,
            failed=1,
            unanswered=1,
            outcome="postpone",
            extension_available=True,
        ),
        cf.AcknowledgementTimedOut(("d1",), T0 + 7 * DAY),
        cf.ImportPostponed(1, T0 + 14 * DAY, T0 + 7 * DAY),
    ]


def test_an_extension_announces_the_moved_checkpoint_once() -> None:
    model = _model(["d0"])
    model.apply(cf.DistributeRoot(), T0)
    pushed: dict[str, Any] = {"in_scope": 1, "unanswered": 1, "outcome": "postpone"}
    notice = cf.Notify(1, T0 + 7 * DAY, False, T0 + 6 * DAY, extension_available=True, **pushed)
    assert model.apply(cf.ExtendManually(), T0 + 6 * DAY + HOUR) == [notice]
    assert model.advance(T0 + 14 * DAY - timedelta(seconds=1)) == [
        cf.Notify(1, T0 + 14 * DAY, False, T0 + 13 * DAY, extension_available=True, **pushed)
    ]


def test_refusals_name_the_exact_error_and_change_nothing() -> None:
    model = _model(["d0"])
    before = (model.state, model.clock, model.records())
    cases: list[tuple[object, datetime, type[cf.CertflowError]]] = [
        (cf.ExtendManually(), T0, cf.CommandRefused),  # pending
        (cf.DeviceFailed("d0", "x"), T0, cf.CommandRefused),  # not let through in pending
        (cf.Reenrolled("ghost"), T0, cf.UnknownDevice),  # unknown before the state
        (cf.Cancel(), T0 - HOUR, cf.TimeWentBackwards),
        (cf.Cancel(), T0.replace(tzinfo=None), cf.InvalidInput),
        ("Cancel", T0, cf.InvalidInput),
    ]
    for command, now, expected in cases:
        with pytest.raises(rm.Refused) as refused:
            model.apply(command, now)
        assert refused.value.expected is expected
        assert (model.state, model.clock, model.records()) == before
    model.apply(cf.DistributeRoot(), T0)
    with pytest.raises(rm.Refused) as refused:
        model.apply(cf.ExtendManually(), T0 + 6 * DAY - timedelta(seconds=1))  # before day 6
    assert refused.value.expected is cf.CommandRefused
