"""The interpreter: its tables are the declarations', and a changed declaration changes
behaviour and diagram together."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

import certflow as cf
from certflow.core import interpreter
from certflow.core._kernel import Draft
from certflow.core.interpreter import (
    IGNORED,
    REFUSED,
    DeviceAction,
    Turn,
    check_now,
    compile_rules,
    dispatch,
)
from certflow.core.machines import RULES, Action, Gate, MachineSpec, Rules, Transition, call
from tests.core.strategies import DAY, HOUR, T0, build, day, distributing

DEVICE_STATES = RULES.device.state_names


# --- The tables are the declarations ---------------------------------------------------------


def _expected_device_step(rollout_state: str, trigger: str, source: str) -> str | int:
    """The destination that reading the declaration by hand gives (or REFUSED/IGNORED)."""
    device = RULES.device
    gate = next(g for g in RULES.rollout.state(rollout_state).gates if g.trigger == trigger)
    rows = device.rows(source, trigger)
    if not rows:
        return IGNORED if (source, trigger) in device.ignored else REFUSED
    state = rows[0].dest
    for follow in gate.then:
        (row,) = device.rows(state, follow)
        state = row.dest
    return state


@pytest.mark.parametrize("rollout_state", RULES.rollout.state_names)
def test_the_device_tables_per_rollout_state_are_the_declarations(rollout_state: str) -> None:
    gates = {g.trigger for g in RULES.rollout.state(rollout_state).gates}
    for trigger, table in compile_rules().device[rollout_state].items():
        assert table.allowed == (trigger in gates)
        if not table.allowed:
            continue
        for index, source in enumerate(DEVICE_STATES):
            expected = _expected_device_step(rollout_state, trigger, source)
            got = table.dest[index]
            assert (DEVICE_STATES[got] if got >= 0 else got) == expected, (trigger, source)


def test_the_enrolment_shortcuts_come_from_the_gates() -> None:
    compiled = compile_rules()

    def landing(state: str) -> str:
        enter = compiled.device[state]["enroll"].enter
        assert enter is not None
        return DEVICE_STATES[enter[0]]

    assert landing("pending") == "pending"
    assert landing("distributing") == "pushed"
    assert landing("imported") == "installed"
    assert landing("cancelled") == "pending"  # never used: the cancelled state refuses first
    assert compiled.device["distributing"]["report_installed"].enter is None


# --- Fleet-wide transitions as data ----------------------------------------------------------


def _row(source: str, trigger: str, dest: str) -> Transition:
    return next(
        r
        for r in RULES.rollout.transitions
        if (r.source, r.trigger, r.dest) == (source, trigger, dest)
    )


def _device_rows(trigger: str, only: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        r.source: r.dest
        for r in RULES.device.transitions
        if r.trigger == trigger and (not only or r.source in only)
    }


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (_row("pending", "distribute_root", "distributing"), _device_rows("push")),
        (_row("distributing", "deadline", "forced"), _device_rows("import")),
        (_row("extended", "import_now", "forced"), _device_rows("import")),
        (_row("pending", "proceed_to_import", "forced"), _device_rows("import")),
        (
            _row("distributing", "retry_all_failed", "distributing"),
            _device_rows("retry", ("failed",)),
        ),
        (_row("extended", "ack_timeout", "extended"), _device_rows("ack_timeout")),
        (_row("distributing", "cancel", "cancelled"), {}),
        (_row("pending", "cancel", "cancelled"), {}),
    ],
    ids=lambda x: x.label().split(" ")[0] if isinstance(x, Transition) else "",
)
def test_each_fleet_wide_transition_exposes_the_tables_mapping(
    row: Transition, expected: dict[str, str]
) -> None:
    assert RULES.fleet_mapping(row) == expected
    compiled = compile_rules()
    for invocation in row.actions:
        move = compiled.moves.get(invocation.name)
        if move is not None:
            assert move.mapping(DEVICE_STATES) == expected


def _fleet_in_every_state() -> cf.Rollout:
    """A distributing rollout with devices in pushed, installed, failed and removed."""
    rollout = distributing(["pushed", "installed", "failed", "removed"])
    return cf.apply_all(
        rollout,
        [cf.DeviceInstalled("installed"), cf.DeviceFailed("failed", "x"), cf.Unenroll("removed")],
        day(1),
    ).rollout


@pytest.mark.parametrize(
    ("command", "row"),
    [
        (cf.ImportNow(), _row("distributing", "import_now", "forced")),
        (cf.RetryAllFailed(), _row("distributing", "retry_all_failed", "distributing")),
        (cf.Cancel(), _row("distributing", "cancel", "cancelled")),
    ],
    ids=["import", "bulk retry", "cancel"],
)
def test_the_evaluator_moves_the_fleet_exactly_by_the_mapping(
    command: cf.Command, row: Transition
) -> None:
    before = _fleet_in_every_state()
    after = cf.apply(before, command, day(2)).rollout
    mapping = RULES.fleet_mapping(row)
    for record in before.devices():
        state = record.state.value
        assert after.device_state(record.device_id).value == mapping.get(state, state)


def test_distribution_start_moves_exactly_the_pending_devices() -> None:
    before = cf.apply_all(
        build(["p", "t", "r"]), [cf.DeviceInstalled("t"), cf.Unenroll("r")], T0
    ).rollout
    after = cf.apply(before, cf.DistributeRoot(), T0).rollout
    mapping = RULES.fleet_mapping(_row("pending", "distribute_root", "distributing"))
    for record in before.devices():
        state = record.state.value
        assert after.device_state(record.device_id).value == mapping.get(state, state)


def test_timeouts_move_exactly_the_timed_out_pushes_by_the_mapping() -> None:
    before = _fleet_in_every_state()
    before = cf.apply(before, cf.Retry("failed"), day(1)).rollout
    policy_rollout = distributing(["a", "b"], policy=cf.Policy(ack_timeout=HOUR))
    after = cf.advance(policy_rollout, T0 + HOUR).rollout
    mapping = RULES.fleet_mapping(_row("distributing", "ack_timeout", "distributing"))
    assert {r.state.value for r in after.devices()} == {mapping["pushed"]}


# --- A changed declaration changes behaviour, diagram and tables ------------------------------


def _evolve_rollout(rules: Rules, **changes: Any) -> Rules:
    return attrs.evolve(rules, rollout=attrs.evolve(rules.rollout, **changes))


def _evolve_device(rules: Rules, **changes: Any) -> Rules:
    return attrs.evolve(rules, device=attrs.evolve(rules.device, **changes))


def _without(machine: MachineSpec, drop: Callable[[Transition], bool]) -> tuple[Transition, ...]:
    return tuple(r for r in machine.transitions if not drop(r))


def _edge(row: Transition) -> str:
    return f"{row.source} --> {row.dest}: " + row.label().replace(";", "#59;").replace(":", "#58;")


def test_removing_a_row_refuses_the_command_with_its_declared_hint() -> None:
    rollout = RULES.rollout
    gone = [
        r for r in rollout.transitions if (r.source, r.trigger) == ("pending", "proceed_to_import")
    ]
    rules = _evolve_rollout(
        RULES,
        transitions=_without(rollout, lambda r: r in gone),
        guards=tuple(g for g in rollout.guards if g.name != "not_expired"),  # now unused
    )
    evaluator = cf.Evaluator(_rules=rules)
    pending = build(2)
    with pytest.raises(cf.CommandRefused) as refused:
        evaluator.apply(pending, cf.ProceedToImport(), T0)
    assert refused.value.reason == "rollout_state"
    assert "it applies to a pending rollout" in str(refused.value)
    assert cf.apply(pending, cf.ProceedToImport(), T0).rollout.state is cf.RolloutState.FORCED
    assert all(_edge(r) not in rules.rollout.mermaid() for r in gone)
    assert all(_edge(r) in cf.ROLLOUT_MACHINE.mermaid() for r in gone)


def test_adding_a_device_row_makes_the_transition_happen() -> None:
    added = Transition("removed", "report_installed", "installed", note="came back trusting")
    rules = _evolve_device(RULES, transitions=(*RULES.device.transitions, added))
    rollout = cf.apply(distributing(2), cf.Unenroll("d0"), day(1)).rollout
    with pytest.raises(cf.CommandRefused, match="cannot report the root installed: it is removed"):
        cf.apply(rollout, cf.DeviceInstalled("d0"), day(2))
    changed = cf.Evaluator(_rules=rules)
    after = changed.apply(rollout, cf.DeviceInstalled("d0"), day(2)).rollout
    assert after.device_state("d0") is cf.DeviceState.INSTALLED
    batch = changed.apply_all(rollout, [cf.DeviceInstalled("d0")], day(2)).rollout
    assert batch == after
    assert _edge(added) in rules.device.mermaid()


def test_adding_a_push_row_changes_the_fleet_wide_mapping() -> None:
    added = Transition("failed", "push", "pushed", actions=(call("push_root"),))
    rules = _evolve_device(RULES, transitions=(*RULES.device.transitions, added))
    row = _row("pending", "distribute_root", "distributing")
    assert rules.fleet_mapping(row) == {"pending": "pushed", "failed": "pushed"}
    assert compile_rules(rules).moves["push_pending"].mapping(DEVICE_STATES) == {
        "pending": "pushed",
        "failed": "pushed",
    }
    assert _edge(added) in rules.device.mermaid()


def test_reordering_rows_changes_the_outcome() -> None:
    rollout = RULES.rollout
    imported, forced = rollout.rows("pending", "proceed_to_import")
    # Give the imported row a guard that makes it the general one, and swap the order.
    swapped = tuple(
        forced if r is imported else imported if r is forced else r for r in rollout.transitions
    )
    rules = _evolve_rollout(RULES, transitions=swapped)
    trusting = build(1, trusted=("d0",))
    assert cf.apply(trusting, cf.ProceedToImport(), T0).rollout.state is cf.RolloutState.IMPORTED
    changed = cf.Evaluator(_rules=rules).apply(trusting, cf.ProceedToImport(), T0).rollout
    assert changed.state is cf.RolloutState.FORCED  # the first row whose guards hold wins


def test_reordering_guards_changes_which_refusal_is_given() -> None:
    rollout = RULES.rollout
    early_and_short = distributing(1, new_valid_for=25 * DAY)
    with pytest.raises(cf.CommandRefused) as first:
        cf.apply(early_and_short, cf.ExtendManually(), day(1))
    assert first.value.reason == "extension_open"
    assert first.value.allowed_at == day(6)
    rows = tuple(
        attrs.evolve(r, guards=tuple(reversed(r.guards))) if r.trigger == "extend_manually" else r
        for r in rollout.transitions
    )
    rules = _evolve_rollout(RULES, transitions=rows)
    with pytest.raises(cf.CommandRefused) as second:
        cf.Evaluator(_rules=rules).apply(early_and_short, cf.ExtendManually(), day(1))
    assert second.value.reason == "valid_through_moved_deadline"
    assert second.value.allowed_at is None
    assert "extend_manually [valid_through_moved_deadline, extension_open]" in (
        rules.rollout.mermaid()
    )


def test_closing_a_gate_refuses_the_device_command_with_the_triggers_hint() -> None:
    states = tuple(
        attrs.evolve(s, gates=tuple(g for g in s.gates if g.trigger != "report_failed"))
        if s.name == "distributing"
        else s
        for s in RULES.rollout.states
    )
    rules = _evolve_rollout(RULES, states=states)
    with pytest.raises(cf.CommandRefused) as refused:
        cf.Evaluator(_rules=rules).apply(distributing(1), cf.DeviceFailed("d0", "x"), day(1))
    assert refused.value.reason == "rollout_state"
    assert "failures are reported while distributing" in str(refused.value)


def test_a_gates_follow_up_decides_where_an_enrolment_lands() -> None:
    states = tuple(
        attrs.evolve(
            s, gates=tuple(Gate("enroll") if g.trigger == "enroll" else g for g in s.gates)
        )
        if s.name == "distributing"
        else s
        for s in RULES.rollout.states
    )
    changed = cf.Evaluator(_rules=_evolve_rollout(RULES, states=states))
    rollout, effects = changed.apply(distributing(1), cf.Enroll("new"), day(1))
    assert rollout.device_state("new") is cf.DeviceState.PENDING
    assert effects == ()
    rollout, effects = cf.apply(distributing(1), cf.Enroll("new"), day(1))
    assert rollout.device_state("new") is cf.DeviceState.PUSHED
    assert effects == (cf.PushRoot(("new",), 1, day(1)),)


def test_removing_a_timer_stops_what_it_fired() -> None:
    states = tuple(
        attrs.evolve(s, timers=tuple(t for t in s.timers if t != "notice"))
        for s in RULES.rollout.states
    )
    timers = tuple(t for t in RULES.rollout.timers if t.name != "notice")
    rules = _evolve_rollout(RULES, states=states, timers=timers)
    _, effects = cf.Evaluator(_rules=rules).advance(distributing(1), day(30))
    assert not [e for e in effects if isinstance(e, cf.Notify)]
    _, effects = cf.advance(distributing(1), day(30))
    assert len([e for e in effects if isinstance(e, cf.Notify)]) == 3


def test_the_order_of_timers_decides_what_fires_first_at_one_instant() -> None:
    rollout = distributing(1, policy=cf.Policy(ack_timeout=7 * DAY))
    _, effects = cf.advance(rollout, day(7))
    assert [type(e) for e in effects] == [cf.Notify, cf.AcknowledgementTimedOut, cf.ImportPostponed]
    order = ("notice", "checkpoint", "expiry", "deadline", "ack_timeout")
    states = tuple(attrs.evolve(s, timers=order) if s.timers else s for s in RULES.rollout.states)
    changed = cf.Evaluator(_rules=_evolve_rollout(RULES, states=states))
    _, effects = changed.advance(rollout, day(7))
    assert [type(e) for e in effects] == [cf.Notify, cf.ImportPostponed, cf.AcknowledgementTimedOut]


def test_rules_must_keep_the_states_the_values_are_built_on() -> None:
    device = attrs.evolve(
        RULES.device,
        states=tuple(reversed(RULES.device.states)),
    )
    with pytest.raises(
        ValueError, match=r"^rules must keep the rollout and device states of certflow$"
    ):
        compile_rules(attrs.evolve(RULES, device=device))


def test_each_fleet_move_names_its_action_and_device_trigger() -> None:
    moves = compile_rules().moves
    assert {name: (m.action, m.trigger, m.selection) for name, m in moves.items()} == {
        "push_pending": ("push_pending", "push", "all"),
        "mark_stragglers": ("mark_stragglers", "import", "all"),
        "retry_failed": ("retry_failed", "retry", "all"),
        "time_out_pushes": ("time_out_pushes", "ack_timeout", "due"),
    }


def test_a_fleet_wide_move_with_device_actions_runs_them_device_by_device() -> None:
    # Time out every pushed device at the first timer, not only the timed-out pushes.
    actions = tuple(
        attrs.evolve(a, fires=attrs.evolve(a.fires, selection="all"))
        if a.name == "time_out_pushes" and a.fires is not None
        else a
        for a in RULES.rollout.actions
    )
    changed = cf.Evaluator(_rules=_evolve_rollout(RULES, actions=actions))
    rollout = distributing(2, policy=cf.Policy(ack_timeout=10 * HOUR))
    rollout = changed.apply(rollout, cf.Enroll("late"), T0 + 5 * HOUR).rollout
    rollout, effects = changed.advance(rollout, T0 + 10 * HOUR)
    assert effects == (cf.AcknowledgementTimedOut(("d0", "d1", "late"), T0 + 10 * HOUR),)
    assert rollout.device("late").last_failure_reason == "no acknowledgement within 10 h"
    # The late device's own timer (due at 15 h) is consumed too, without repeating.
    rollout, effects = changed.advance(rollout, T0 + 16 * HOUR)
    assert effects == ()
    assert changed.next_due(rollout) == day(6)
    _, effects = cf.advance(
        cf.apply(
            distributing(2, policy=cf.Policy(ack_timeout=10 * HOUR)),
            cf.Enroll("late"),
            T0 + 5 * HOUR,
        ).rollout,
        T0 + 10 * HOUR,
    )
    assert effects == (cf.AcknowledgementTimedOut(("d0", "d1"), T0 + 10 * HOUR),)


def test_a_timer_whose_row_does_not_consume_it_is_refused_before_it_could_hang() -> None:
    # Such rules once passed validation and then crashed every driver at the notice
    # (the interpreter's "fired and is still due" guard); now no driver accepts them.
    rows = tuple(
        attrs.evolve(r, actions=()) if r.trigger == "notify" else r
        for r in RULES.rollout.transitions
    )
    actions = tuple(a for a in RULES.rollout.actions if a.name != "announce")
    with pytest.raises(ValueError, match=r"does not consume timer 'notice' \(announce would\)"):
        cf.Evaluator(_rules=_evolve_rollout(RULES, transitions=rows, actions=actions))


def test_a_restart_trigger_with_no_row_is_refused_with_the_restart_state() -> None:
    restart = attrs.evolve(RULES.restart, ignored=())
    changed = cf.Evaluator(_rules=attrs.evolve(RULES, restart=restart))
    with pytest.raises(cf.CommandRefused) as refused:
        changed.apply(build(1), cf.ServerRestarted(), T0)
    error = refused.value
    assert str(error) == "ServerRestarted refused: the restart is not_required"
    assert (error.command, error.state, error.reason) == (
        "ServerRestarted",
        "pending",
        "restart_state",
    )


def test_fleet_wide_moves_may_land_devices_in_the_first_state() -> None:
    # Changed rules: the import re-enrols removed devices (to pending) instead of marking
    # stragglers, and a push that times out goes back to pending instead of failed.
    actions = tuple(
        attrs.evolve(a, fires=attrs.evolve(a.fires, trigger="enroll"))
        if a.name == "mark_stragglers" and a.fires is not None
        else a
        for a in RULES.rollout.actions
    )
    device_rows = tuple(
        attrs.evolve(r, dest="pending") if r.trigger == "ack_timeout" else r
        for r in RULES.device.transitions
    )
    rules = attrs.evolve(
        _evolve_rollout(RULES, actions=actions),
        device=attrs.evolve(RULES.device, transitions=device_rows),
    )
    changed = cf.Evaluator(_rules=rules)
    rollout = distributing(3, policy=cf.Policy(ack_timeout=HOUR))
    rollout = changed.apply(rollout, cf.Unenroll("d0"), T0).rollout
    rollout, effects = changed.advance(rollout, T0 + HOUR)
    assert [r.state.value for r in rollout.devices()] == ["removed", "pending", "pending"]
    rollout, effects = changed.apply(rollout, cf.ImportNow(), T0 + 2 * HOUR)
    assert [r.state.value for r in rollout.devices()] == ["pending", "pending", "pending"]
    assert cf.ReenrollmentRequired(("d0",), T0 + 2 * HOUR) in effects
    assert compile_rules(rules).moves["mark_stragglers"].mapping(DEVICE_STATES) == {
        "removed": "pending"
    }


def test_a_gate_follow_up_with_no_row_is_refused_when_compiling() -> None:
    states = tuple(
        attrs.evolve(
            s,
            gates=tuple(
                attrs.evolve(g, then=("reenrolled",)) if g.trigger == "enroll" else g
                for g in s.gates
            ),
        )
        if s.name == "distributing"
        else s
        for s in RULES.rollout.states
    )
    with pytest.raises(
        ValueError, match=r"^gate follow-up 'reenrolled' has no row from 'pending'$"
    ):
        compile_rules(_evolve_rollout(RULES, states=states))


@pytest.mark.parametrize(("kind", "name"), [("action", "ghost_action"), ("timer", "ghost_timer")])
def test_rules_naming_an_action_or_timer_nobody_implements_do_not_compile(
    kind: str, name: str
) -> None:
    rollout = RULES.rollout
    if kind == "action":
        rows = tuple(
            attrs.evolve(r, actions=(*r.actions, call(name))) if r.trigger == "cancel" else r
            for r in rollout.transitions
        )
        changed = attrs.evolve(rollout, transitions=rows, actions=(*rollout.actions, Action(name)))
    else:
        changed = attrs.evolve(
            rollout,
            timers=tuple(
                attrs.evolve(t, name=name) if t.name == "notice" else t for t in rollout.timers
            ),
            states=tuple(
                attrs.evolve(s, timers=tuple(name if t == "notice" else t for t in s.timers))
                for s in rollout.states
            ),
        )
    with pytest.raises(
        ValueError, match=rf"^rules name {kind}s without an implementation: \['{name}'\]$"
    ):
        compile_rules(attrs.evolve(RULES, rollout=changed))


def test_the_compiled_moves_are_the_declared_fleet_mapping() -> None:
    # One place works the fleet-wide mapping out (Rules.fired_rows): the compiled moves
    # the drivers run and the mapping the docs and a store's statements show agree.
    compiled = compile_rules(RULES)
    states = compiled.device_states
    for name, move in compiled.moves.items():
        fired = RULES.fired_rows(name)
        assert {
            states[source]: states[dest] for source, dest in enumerate(move.dest) if dest >= 0
        } == {source: row.dest for source, row in fired.items()}
    for row in RULES.rollout.transitions:
        expected: dict[str, str] = {}
        for invocation in row.actions:
            if invocation.name in compiled.moves:
                move = compiled.moves[invocation.name]
                expected |= {states[s]: states[d] for s, d in enumerate(move.dest) if d >= 0}
        assert RULES.fleet_mapping(row) == expected


# --- The effects name what the rollout rolls out --------------------------------------------------


def _named(effects: Any) -> list[tuple[str, str | None]]:
    """Each PushRoot's and ImportCertificate's class and the fingerprint it names."""
    out: list[tuple[str, str | None]] = []
    for effect in effects:
        if isinstance(effect, cf.PushRoot):
            out.append(("PushRoot", effect.root_fingerprint))
        elif isinstance(effect, cf.ImportCertificate):
            out.append(("ImportCertificate", effect.certificate_fingerprint))
    return out


@pytest.mark.parametrize("identified", [True, False], ids=["identity", "dates alone"])
def test_every_push_names_the_root_and_every_import_the_certificate(identified: bool) -> None:
    rollout = build(["a", "b", "c", "d"], identified=identified, policy=cf.Policy(ack_timeout=DAY))
    known = rollout.plan.identity
    root = None if known is None else known.root.fingerprint
    leaf = None if known is None else known.certificate.fingerprint
    seen: list[tuple[str, str | None]] = []
    steps: list[tuple[cf.Command | None, Any]] = [
        (cf.DistributeRoot(), T0),  # the fleet-wide push
        (cf.DeviceFailed("a", "no"), T0 + HOUR),
        (cf.Retry("a"), T0 + 2 * HOUR),  # one device: the kernel's own push
        (cf.Enroll("e"), T0 + 3 * HOUR),  # an enrolment while distributing pushes
        (None, day(2)),  # the pushes time out
        (cf.RetryAllFailed(), day(2) + HOUR),  # the bulk retry, one effect per attempt
        (cf.ImportNow(), day(3)),  # a forced import
    ]
    for command, at in steps:
        step = cf.advance(rollout, at) if command is None else cf.apply(rollout, command, at)
        rollout = step.rollout
        seen += _named(step.effects)
    batch = cf.apply_all(
        cf.apply(build(2, identified=identified), cf.DistributeRoot(), T0).rollout,
        [cf.DeviceFailed("d0", "no"), cf.Retry("d0"), cf.Enroll("z")],
        T0 + HOUR,
    )
    seen += _named(batch.effects)
    kinds = [kind for kind, _ in seen]
    assert kinds.count("PushRoot") >= 6
    assert kinds.count("ImportCertificate") == 1
    assert seen == [(kind, root if kind == "PushRoot" else leaf) for kind in kinds]


def test_an_import_names_the_certificate_whichever_row_imports() -> None:
    public = build(2, identified=True, public=True)
    known = public.plan.identity
    assert known is not None
    proceeded = cf.apply(public, cf.ProceedToImport(), T0)
    assert _named(proceeded.effects) == [("ImportCertificate", known.certificate.fingerprint)]
    at_checkpoint = cf.advance(
        cf.apply(build(2, identified=True), cf.DistributeRoot(), T0).rollout, day(22)
    )
    assert ("ImportCertificate", known.certificate.fingerprint) in _named(at_checkpoint.effects)


# --- Mutation survivors of 2026-12-07: the compiled tables ---------------------------------------


def test_the_device_tables_carry_the_gates_guards_the_entry_flag_and_the_fast_rows() -> None:
    from certflow.core.interpreter import SLOW

    compiled = compile_rules()
    for rollout_state in RULES.rollout.state_names:
        gates = {g.trigger: g for g in RULES.rollout.state(rollout_state).gates}
        for trigger, table in compiled.device[rollout_state].items():
            gate = gates.get(trigger)
            assert table.guards == (gate.guards if gate else ()), (rollout_state, trigger)
            assert table.introduces is RULES.device.trigger(trigger).introduces
            assert table.fast == tuple(
                dest if not calls else SLOW
                for dest, calls in zip(table.dest, table.calls, strict=True)
            )
    distributing = compiled.device["distributing"]
    assert distributing["retry"].guards == ("kind_allows_retry",)
    assert distributing["report_installed"].fast[DEVICE_STATES.index("pushed")] == (
        DEVICE_STATES.index("installed")
    )
    assert distributing["retry"].fast[DEVICE_STATES.index("failed")] == SLOW
    assert [
        action.name for action in distributing["retry"].calls[DEVICE_STATES.index("failed")]
    ] == ["push_root"]


def test_a_freshly_compiled_evaluator_keeps_the_gate_s_guard() -> None:
    rollout = distributing(2, kind=cf.CertificateKind.AGENT_SERVER)
    rollout = cf.apply(rollout, cf.DeviceFailed("d0", "x"), day(1)).rollout
    evaluator = cf.Evaluator()  # compiled now, as any rules given to it would be
    with pytest.raises(cf.CommandRefused) as one:
        evaluator.apply(rollout, cf.Retry("d0"), day(2))
    with pytest.raises(cf.CommandRefused) as batch:
        evaluator.apply_all(rollout, [cf.Retry("d0")], day(2))
    assert one.value.reason == batch.value.reason == "kind_allows_retry"


def test_a_device_keeps_its_wait_while_it_awaits_an_answer_or_was_just_pushed() -> None:
    compiled = compile_rules()
    pushed, installed = DEVICE_STATES.index("pushed"), DEVICE_STATES.index("installed")
    push = compiled.device_actions["push_root"]
    assert compiled.awaiting == pushed
    assert compiled.keeps_wait(pushed, ())  # still where the wait runs
    assert compiled.keeps_wait(pushed, (push,))  # pushed again
    assert not compiled.keeps_wait(installed, ())  # answered
    assert not compiled.keeps_wait(DEVICE_STATES.index("failed"), ())


def test_rules_without_a_wait_compile_to_tables_where_no_device_awaits() -> None:
    actions = tuple(
        attrs.evolve(a, emits=()) if a.name == "push_root" else a for a in RULES.device.actions
    )
    rules = attrs.evolve(RULES, device=attrs.evolve(RULES.device, waits=(), actions=actions))
    compiled = compile_rules(rules)
    assert compiled.wait is None
    assert compiled.awaiting == -1
    assert not compiled.keeps_wait(DEVICE_STATES.index("pushed"), ())
    assert compiled.wait_span(cf.Policy()) is None


def test_compiling_refuses_a_wait_without_its_policy_field_and_a_command_certflow_lacks() -> None:
    (wait,) = RULES.device.waits
    slow = attrs.evolve(RULES.device, waits=(attrs.evolve(wait, after="patience"),))
    with pytest.raises(
        ValueError, match=r"^wait 'acknowledgement' runs for 'patience', no policy field$"
    ):
        compile_rules(attrs.evolve(RULES, device=slow))
    triggers = tuple(
        attrs.evolve(t, command="Teleport") if t.name == "cancel" else t
        for t in RULES.rollout.triggers
    )
    unknown = attrs.evolve(RULES, rollout=attrs.evolve(RULES.rollout, triggers=triggers))
    with pytest.raises(
        ValueError, match=r"^rules name commands that certflow does not have: \['Teleport'\]$"
    ):
        compile_rules(unknown)


def test_a_command_refused_in_an_ended_rollout_says_it_has_ended() -> None:
    cancelled = cf.apply(distributing(1), cf.Cancel(), day(1)).rollout
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(cancelled, cf.ImportNow(), day(2))
    assert str(refused.value).startswith(
        "ImportNow refused: the rollout is cancelled (the rollout has ended); "
    )
    with pytest.raises(cf.CommandRefused) as early:
        cf.apply(build(1), cf.ImportNow(), T0)
    assert "has ended" not in str(early.value)


def test_a_guarded_restart_row_refuses_with_its_guard_s_hint() -> None:
    from certflow.core.machines import Guard

    rows = tuple(
        attrs.evolve(r, guards=("all_trust",)) if r.trigger == "server_restarted" else r
        for r in RULES.restart.transitions
    )
    restart = attrs.evolve(
        RULES.restart,
        transitions=rows,
        guards=(Guard("all_trust", "{untrusting} device(s) do not trust the root yet"),),
    )
    changed = cf.Evaluator(_rules=attrs.evolve(RULES, restart=restart))
    forced = changed.apply(distributing(2), cf.ImportNow(), day(1)).rollout
    assert forced.phase.restart_required
    with pytest.raises(cf.CommandRefused) as refused:
        changed.apply(forced, cf.ServerRestarted(), day(2))
    assert str(refused.value) == "ServerRestarted refused: 2 device(s) do not trust the root yet"
    assert (refused.value.command, refused.value.reason) == ("ServerRestarted", "all_trust")


def test_a_fleet_wide_move_with_device_actions_may_land_devices_in_the_first_state() -> None:
    # Every pushed device times out at the first timer (a move with a device action, run
    # device by device), back to pending rather than to failed.
    actions = tuple(
        attrs.evolve(a, fires=attrs.evolve(a.fires, selection="all"))
        if a.name == "time_out_pushes" and a.fires is not None
        else a
        for a in RULES.rollout.actions
    )
    device_rows = tuple(
        attrs.evolve(r, dest="pending") if r.trigger == "ack_timeout" else r
        for r in RULES.device.transitions
    )
    rules = attrs.evolve(
        _evolve_rollout(RULES, actions=actions),
        device=attrs.evolve(RULES.device, transitions=device_rows),
    )
    changed = cf.Evaluator(_rules=rules)
    rollout = distributing(2, policy=cf.Policy(ack_timeout=10 * HOUR))
    rollout, effects = changed.advance(rollout, T0 + 10 * HOUR)
    assert [r.state.value for r in rollout.devices()] == ["pending", "pending"]
    assert effects == (cf.AcknowledgementTimedOut(("d0", "d1"), T0 + 10 * HOUR),)


# --- Mutation survivors of 2026-12-07: the interpreter's own rules -------------------------------


class _RecordingPort(Draft):
    """The evaluator's own fleet draft, noting what each device move is given."""

    def __init__(self, rollout: cf.Rollout) -> None:
        super().__init__(rollout._fleet, compile_rules(), rollout.plan.policy)
        self.moves: list[tuple[str, str, object]] = []

    def transition(
        self,
        device: int,
        device_id: str,
        dest: int,
        calls: tuple[DeviceAction, ...],
        command: Any,
        run: Turn,
    ) -> None:
        self.moves.append((device_id, DEVICE_STATES[dest], command))
        super().transition(device, device_id, dest, calls, command, run)


def _turn(rollout: cf.Rollout, now: datetime) -> tuple[Turn, _RecordingPort]:
    port = _RecordingPort(rollout)
    return Turn(port.compiled, rollout.plan, rollout.phase, now, port, [], ""), port


def test_dispatch_without_a_device_batch_moves_each_device_through_the_port() -> None:
    # A driver with no batch path of its own (the store's single command) gets every
    # device command run by device_command, the device's id and the command handed on.
    rollout = distributing(["d0"])
    run, port = _turn(rollout, day(1))
    dispatch(run, port, cf.Enroll, [cf.Enroll("new")])
    dispatch(run, port, cf.DeviceInstalled, [cf.DeviceInstalled("d0")])
    assert port.moves == [
        ("new", "pushed", cf.Enroll("new")),
        ("d0", "installed", cf.DeviceInstalled("d0")),
    ]
    assert run.effects == [cf.PushRoot(("new",), 1, day(1))]
    assert run.command == "DeviceInstalled"


def test_dispatch_refuses_what_is_not_a_certflow_command_naming_it_or_its_type() -> None:
    run, port = _turn(distributing(1), day(1))
    with pytest.raises(cf.InvalidInput, match=r"^'nonsense' is not a certflow command$"):
        dispatch(run, port, str, ["nonsense"])
    with pytest.raises(cf.InvalidInput, match=r"^<class 'str'> is not a certflow command$"):
        dispatch(run, port, str, [])  # an empty batch names its type


def test_a_device_command_refused_by_the_gate_names_the_command_and_the_device() -> None:
    cancelled = cf.apply(distributing(1), cf.Cancel(), day(1)).rollout
    commands: list[cf.Enroll | cf.Unenroll] = [cf.Enroll("new"), cf.Unenroll("d0")]
    for command in commands:  # a device new to the rollout, and a known one
        with pytest.raises(cf.CommandRefused) as closed:
            cf.apply(cancelled, command, day(2))
        name, device_id = type(command).__name__, command.device_id
        assert str(closed.value).startswith(
            f"{name}({device_id!r}) refused: the rollout is cancelled"
        )
        assert (closed.value.command, closed.value.device_id) == (name, device_id)
        assert closed.value.reason == "rollout_state"
    agent = distributing(1, kind=cf.CertificateKind.AGENT_SERVER)
    agent = cf.apply(agent, cf.DeviceFailed("d0", "x"), day(1)).rollout
    with pytest.raises(cf.CommandRefused) as guarded:
        cf.apply(agent, cf.Retry("d0"), day(2))
    assert str(guarded.value).startswith("Retry('d0') refused: ")
    assert (guarded.value.command, guarded.value.device_id) == ("Retry", "d0")
    assert guarded.value.reason == "kind_allows_retry"


def test_each_rollout_command_of_a_batch_is_refused_under_its_own_name() -> None:
    # The catch-up after the first Cancel gives the turn its command back.
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply_all(distributing(1), [cf.Cancel(), cf.Cancel()], day(1))
    assert str(refused.value).startswith("Cancel refused: the rollout is cancelled")
    assert refused.value.command == "Cancel"


def _notify_rows(**changes: Any) -> Rules:
    rows = tuple(
        attrs.evolve(r, **changes) if (r.source, r.trigger) == ("distributing", "notify") else r
        for r in RULES.rollout.transitions
    )
    return _evolve_rollout(RULES, transitions=rows)


def test_a_timer_whose_row_is_refused_is_refused_under_the_timer_s_trigger() -> None:
    changed = cf.Evaluator(_rules=_notify_rows(guards=("all_trust",)))
    with pytest.raises(cf.CommandRefused) as refused:
        changed.advance(distributing(2), day(30))
    assert str(refused.value).startswith("notify refused: ")
    assert (refused.value.command, refused.value.reason) == ("notify", "all_trust")


def test_a_timer_whose_row_leaves_it_due_is_a_rules_error_not_an_endless_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fired: list[str] = []
    fire_timer = interpreter.fire_timer

    def counted(run: Turn, timer: Any) -> None:
        fired.append(timer.name)
        assert len(fired) < 10, "the timer fires again and again"
        fire_timer(run, timer)

    monkeypatch.setattr(interpreter, "fire_timer", counted)
    # The rules declare that announce consumes the notice (validation checks rows by
    # that); an announce that does not is caught by the loop, not run forever.
    monkeypatch.setitem(interpreter.ACTIONS, "announce", lambda run, invocation: None)
    rollout = distributing(1)
    notice = cf.next_due(rollout)
    assert notice is not None
    with pytest.raises(RuntimeError) as stuck:
        cf.advance(rollout, day(30))
    assert str(stuck.value) == (
        f"timer 'notice' fired at {notice.isoformat()} and is still due: "
        "the row it fires in state 'distributing' must consume it"
    )
    assert fired == ["notice"]


def test_check_now_keeps_the_caller_s_instant_and_forgives_exactly_the_skew() -> None:
    clock = T0
    elsewhere = T0.astimezone(timezone(timedelta(hours=2)))  # the same instant
    assert check_now(elsewhere, clock).utcoffset() == timedelta(hours=2)
    skew = timedelta(seconds=5)
    assert check_now(clock - skew, clock, skew=skew) is clock
    with pytest.raises(cf.TimeWentBackwards, match=r"the last instant rollout 'r' has seen"):
        check_now(clock - skew - timedelta(seconds=1), clock, skew=skew, rollout="rollout 'r'")
