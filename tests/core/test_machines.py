"""The declarations: their validation, their implementations, their diagrams and docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

import certflow as cf
from certflow.core import guards, interpreter
from certflow.core._registry import Registry
from certflow.core.machines import (
    RULES,
    Action,
    Assign,
    Fire,
    Gate,
    Guard,
    MachineSpec,
    Rules,
    State,
    Timer,
    Transition,
    Trigger,
    call,
    diagrams_page,
    placeholders,
)
from tests.core.strategies import DAY, T0

DOCS = Path(__file__).resolve().parents[2] / "docs" / "machines.md"


@pytest.mark.parametrize("spec", RULES.machines, ids=lambda s: s.name)
def test_each_declared_machine_is_well_formed(spec: MachineSpec) -> None:
    spec.validate()
    assert spec.reachable() == frozenset(spec.state_names)


def test_the_rules_are_well_formed_together() -> None:
    RULES.validate()


def test_the_enums_are_the_declared_states_in_order() -> None:
    assert tuple(cf.RolloutState) == cf.ROLLOUT_MACHINE.state_names
    assert tuple(cf.DeviceState) == cf.DEVICE_MACHINE.state_names
    assert cf.ROLLOUT_MACHINE.initial == "pending"
    assert cf.ROLLOUT_MACHINE.terminal == {"imported", "forced", "cancelled"}
    assert {s for s in cf.RolloutState if s.terminal} == {
        cf.RolloutState.IMPORTED,
        cf.RolloutState.FORCED,
        cf.RolloutState.CANCELLED,
    }
    assert {s for s in cf.RolloutState if s.running} == {
        cf.RolloutState.DISTRIBUTING,
        cf.RolloutState.EXTENDED,
    }


def test_not_yet_trusting_is_declared_on_the_device_states() -> None:
    untrusting = {s.value for s in cf.DeviceState if s.in_scope and not s.trusts}
    assert untrusting == {"pending", "pushed", "failed", "reenroll_required"}
    assert [s.value for s in cf.DeviceState if not s.in_scope] == ["removed"]


# --- Validation of one machine -----------------------------------------------------------


def _toy(**changes: Any) -> MachineSpec:
    base = MachineSpec(
        name="toy",
        states=(State("a", timers=("tick",)), State("b"), State("end", terminal=True)),
        initial="a",
        triggers=(Trigger("go", "administrator"), Trigger("stop", "host"), Trigger("t", "time")),
        transitions=(
            Transition("a", "go", "b", ("ok",), (call("act"),)),
            Transition("a", "go", "end"),
            Transition("a", "t", "a", actions=(call("act"),)),
            Transition("b", "stop", "end"),
        ),
        guards=(Guard("ok", "not ok"),),
        actions=(Action("act"),),
        timers=(Timer("tick", "t", consumed_by=("act",)),),
    )
    return attrs.evolve(base, **changes)


def _rows(*extra: Transition, keep: int = 4) -> tuple[Transition, ...]:
    return _toy().transitions[:keep] + extra


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initial": "zz"}, "initial state 'zz' is not declared"),
        ({"states": (State("a"), State("a"), State("b"), State("end"))}, "duplicate state"),
        ({"transitions": _rows(Transition("end", "go", "a"))}, "leaves terminal state"),
        ({"transitions": _rows(Transition("a", "go", "nowhere"))}, "undeclared state 'nowhere'"),
        ({"transitions": _rows(Transition("a", "jump", "b"))}, "undeclared trigger"),
        (
            {"transitions": _rows(Transition("b", "stop", "a"))},
            "has rows after its unguarded default",
        ),
        (
            {"transitions": (Transition("a", "go", "b", ("ok",)), *_rows(keep=4)[0:])},
            "ambiguous",
        ),
        ({"transitions": _rows(Transition("a", "go", "b", ("nope",)), keep=3)}, "undeclared guard"),
        (
            {"transitions": (*_rows(keep=4)[1:], Transition("a", "go", "b"))},
            "unused guards \\['ok'\\]",
        ),
        (
            {"transitions": _rows(Transition("b", "go", "end", (), (call("nope"),)))},
            "undeclared action 'nope'",
        ),
        ({"actions": (Action("act"), Action("spare"))}, "unused actions \\['spare'\\]"),
        ({"timers": (Timer("tick", "t"), Timer("tock", "t"))}, "unused timers"),
        (
            {"states": (State("a", timers=("tock",)), State("b"), State("end", terminal=True))},
            "undeclared timer 'tock'",
        ),
        (
            {"states": (State("a"), State("b", timers=("tick",)), State("end", terminal=True))},
            "which has no row for it",
        ),
        (
            {"transitions": (*_rows(keep=2), Transition("a", "t", "a"), *_rows()[3:])},
            "a --t--> a does not consume timer 'tick' \\(act would\\), which would still be due",
        ),
        (
            {"timers": (Timer("tick", "t", consumed_by=("act", "gone")),)},
            "timer 'tick' is consumed by undeclared action 'gone'",
        ),
        ({"ignored": (("b", "stop"),)}, "also has a row"),
        ({"ignored": (("zz", "stop"),)}, "names undeclared names"),
        (
            {
                "states": (State("a", timers=("tick",)), State("b")),
                "transitions": (Transition("a", "go", "b", ("ok",), (call("act"),)),),
            },
            "no row for it|unreachable",
        ),
        (
            {"transitions": _rows(keep=1) + _rows(keep=3)[2:]},
            "unreachable states \\['end'\\]",
        ),
    ],
)
def test_validation_refuses_a_malformed_machine(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _toy(**changes).validate()


def test_the_toy_machine_itself_is_well_formed() -> None:
    _toy().validate()


# --- Validation of the rules together -----------------------------------------------------


def _with_gate(state: str, gate: Gate) -> cf.Rules:
    states = tuple(
        attrs.evolve(s, gates=(*s.gates, gate)) if s.name == state else s
        for s in RULES.rollout.states
    )
    return attrs.evolve(RULES, rollout=attrs.evolve(RULES.rollout, states=states))


def _with_action(name: str, fires: Fire) -> cf.Rules:
    actions = tuple(
        attrs.evolve(a, fires=fires) if a.name == name else a for a in RULES.rollout.actions
    )
    return attrs.evolve(RULES, rollout=attrs.evolve(RULES.rollout, actions=actions))


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (_with_gate("pending", Gate("fly")), "unknown device trigger 'fly'"),
        (_with_gate("pending", Gate("enroll", then=("fly",))), "unknown device trigger 'fly'"),
        (_with_action("push_pending", Fire("device", "fly")), "fires unknown trigger 'fly'"),
        (
            _with_action("retry_failed", Fire("device", "retry", only=("installed",))),
            "are not sources of 'retry'",
        ),
    ],
)
def test_validation_refuses_rules_whose_machines_do_not_fit_together(
    rules: cf.Rules, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rules.validate()


def test_validation_refuses_a_command_that_fires_two_triggers() -> None:
    triggers = (*RULES.restart.triggers[:1], Trigger("server_restarted", "host", "Cancel"))
    rules = attrs.evolve(RULES, restart=attrs.evolve(RULES.restart, triggers=triggers))
    with pytest.raises(ValueError, match="commands firing more than one trigger: \\['Cancel'\\]"):
        rules.validate()


# --- Implementations: exactly one for every declared name ---------------------------------


def test_every_guard_action_and_timer_has_exactly_one_implementation_and_none_is_unused() -> None:
    declared_guards = {g.name for m in RULES.machines for g in m.guards}
    assert set(guards.GUARDS) == declared_guards
    assert set(interpreter.ACTIONS) == {
        a.name for m in (RULES.rollout, RULES.restart) for a in m.actions
    }
    # Device actions have no implementation by name: each is its declared writes.
    compiled = interpreter.compile_rules(RULES)
    assert set(compiled.device_actions) == {a.name for a in RULES.device.actions}
    assert set(interpreter.TIMERS) == {t.name for t in RULES.rollout.timers}


def test_a_second_implementation_of_a_name_is_refused() -> None:
    registry: Registry[object] = Registry("guard")
    registry.register("x")(object())
    with pytest.raises(ValueError, match="guard 'x' has two implementations"):
        registry.register("x")(object())


def test_a_declared_name_without_implementation_or_an_unused_implementation_is_refused() -> None:
    registry: Registry[object] = Registry("timer")
    registry.register("a")(object())
    with pytest.raises(ValueError, match=r"without an implementation \['b'\].*not declared \[\]"):
        registry.require_exactly(["a", "b"], "timers")
    with pytest.raises(ValueError, match=r"without an implementation \[\].*not declared \['a'\]"):
        registry.require_exactly([], "timers")


def test_rules_naming_a_guard_nobody_implements_do_not_compile() -> None:
    rollout = RULES.rollout
    rows = tuple(
        attrs.evolve(r, guards=("ghost",)) if r.trigger == "cancel" and r.source == "pending" else r
        for r in rollout.transitions
    )
    changed = attrs.evolve(
        rollout, transitions=rows, guards=(*rollout.guards, Guard("ghost", "boo"))
    )
    with pytest.raises(ValueError, match="guards without an implementation: \\['ghost'\\]"):
        interpreter.compile_rules(attrs.evolve(RULES, rollout=changed))


def test_every_hint_names_only_known_facts_and_reads_well() -> None:
    rollout = cf.apply(
        cf.new_rollout(
            ["a"],
            existing_not_after=cf.Policy().deadline + T0,
            new_not_before=T0,
            new_not_after=T0 + 400 * DAY,
            root_publicly_trusted=False,
            created_at=T0,
        ),
        cf.DistributeRoot(),
        T0,
    ).rollout
    situation = guards.Situation(rollout.plan, rollout.phase, T0, 1)
    for declared in (g for m in RULES.machines for g in m.guards):
        assert set(placeholders(declared.hint)) <= set(guards.FACTS)
        text = guards.explain(declared, situation)
        assert "{" not in text
        assert text


# --- Views: the diagram and the docs page ----------------------------------------------------


@pytest.mark.parametrize("spec", RULES.machines, ids=lambda s: s.name)
def test_the_diagram_shows_every_row_with_its_guards_and_actions(spec: MachineSpec) -> None:
    text = spec.mermaid()
    assert text.count("stateDiagram-v2") == 1
    edges = [line.strip() for line in text.splitlines() if " --> " in line and ": " in line]
    assert len(edges) == len(spec.transitions)
    for row in spec.transitions:
        label = row.label().replace(";", "#59;").replace(":", "#58;")
        assert f"{row.source} --> {row.dest}: {label}" in edges
        for guard in row.guards:
            assert guard in label
        for action in row.actions:
            assert action.name in label
    for terminal in spec.terminal:
        assert f"{terminal} --> [*]" in text
    assert f"[*] --> {spec.initial}" in text
    for state in spec.states:
        for timer in state.timers:
            assert f"{timer} → {spec.timer(timer).trigger}" in text


def test_the_machines_page_shows_guards_actions_timers_gates_and_fleet_moves() -> None:
    page = diagrams_page()
    for machine in RULES.machines:
        names = [
            *(g.name for g in machine.guards),
            *(a.name for a in machine.actions),
            *(t.name for t in machine.timers),
        ]
        for name in names:
            assert f"`{name}`" in page
    assert "enroll then push" in page
    assert "the rollout was cancelled; start a new rollout" in page
    assert "| distribute_root | distributing | pending → pushed |" in page
    assert "| cancel | cancelled | (none) |" in page


def test_the_machines_page_in_docs_is_generated_from_the_declarations() -> None:
    assert DOCS.read_text() == diagrams_page(), "docs/machines.md is stale: run `make docs`"


def test_the_diagram_escapes_what_mermaid_reads_as_syntax() -> None:
    row = Transition("a", "go", "b", note="")
    toy = _toy(
        transitions=(attrs.evolve(_toy().transitions[0], trigger="go"), *_toy().transitions[1:])
    )
    guard = Guard("ok", "not ok")
    labelled = attrs.evolve(
        toy,
        guards=(guard,),
        transitions=(
            attrs.evolve(toy.transitions[0], actions=(call("act:a;b"),)),
            *toy.transitions[1:],
        ),
    )
    text = labelled.mermaid()
    assert "act#58;a#59;b" in text
    assert "act:a;b" not in text
    assert row.label() == "go"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: attrs.evolve(m, triggers=(*m.triggers, m.triggers[0])),
            "duplicate trigger names \\['distribute_root'\\]",
        ),
        (
            lambda m: attrs.evolve(m, guards=(*m.guards, m.guards[0])),
            "duplicate guard names \\['valid_at_start'\\]",
        ),
        (
            lambda m: attrs.evolve(m, actions=(*m.actions, m.actions[0])),
            "duplicate action names \\['start_distribution'\\]",
        ),
        (
            lambda m: attrs.evolve(m, timers=(*m.timers, m.timers[0])),
            "duplicate timer names \\['ack_timeout'\\]",
        ),
    ],
)
def test_validation_refuses_a_name_declared_twice(edit: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        edit(RULES.rollout).validate()


def test_validation_refuses_an_initial_state_with_timers() -> None:
    states = tuple(
        attrs.evolve(s, timers=("notice",)) if s.name == "pending" else s
        for s in RULES.rollout.states
    )
    notify = Transition("pending", "notify", "pending", actions=(call("announce"),))
    rows = (*RULES.rollout.transitions, notify)
    rollout = attrs.evolve(RULES.rollout, states=states, transitions=rows)
    with pytest.raises(
        ValueError,
        match=r"^rules: the initial rollout state declares timers; a rollout starts waiting$",
    ):
        attrs.evolve(RULES, rollout=rollout).validate()


def test_validation_refuses_two_device_triggers_that_introduce_devices() -> None:
    triggers = tuple(
        attrs.evolve(t, introduces=True) if t.name == "reenrolled" else t
        for t in RULES.device.triggers
    )
    rules = attrs.evolve(RULES, device=attrs.evolve(RULES.device, triggers=triggers))
    with pytest.raises(
        ValueError, match=r"^rules: more than one device trigger introduces new devices$"
    ):
        rules.validate()


def test_validation_allows_eight_device_states_and_refuses_nine() -> None:
    def with_states(count: int) -> Rules:
        extra = tuple(State(f"extra{i}") for i in range(count - len(RULES.device.states)))
        rows = tuple(Transition("pending", f"to_{s.name}", s.name) for s in extra)
        triggers = tuple(Trigger(f"to_{s.name}", "rollout") for s in extra)
        device = attrs.evolve(
            RULES.device,
            states=(*RULES.device.states, *extra),
            transitions=(*RULES.device.transitions, *rows),
            triggers=(*RULES.device.triggers, *triggers),
        )
        return attrs.evolve(RULES, device=device)

    with_states(8).validate()
    with pytest.raises(ValueError, match=r"^rules: at most 8 device states fit a device code$"):
        with_states(9).validate()


def test_looking_up_an_undeclared_name_says_which_machine_and_which_kind() -> None:
    lookups = [
        (RULES.rollout.state, "state"),
        (RULES.rollout.trigger, "trigger"),
        (RULES.rollout.guard, "guard"),
        (RULES.rollout.action, "action"),
        (RULES.rollout.timer, "timer"),
    ]
    for lookup, kind in lookups:
        with pytest.raises(KeyError) as missing:
            lookup("nope")
        assert missing.value.args == (f"rollout: no {kind} 'nope'",)


def test_every_problem_of_a_machine_is_reported_at_once() -> None:
    broken = _toy(initial="a", ignored=(("b", "stop"),), actions=(Action("act"), Action("spare")))
    with pytest.raises(
        ValueError,
        match=r"^toy machine: ignored pair \(b, stop\) also has a row; unused actions \['spare'\]$",
    ):
        broken.validate()


# --- the acknowledgement wait, declared --------------------------------------------------------


def _device_rows(*edits: tuple[int, Transition | None]) -> Rules:
    rows = list(RULES.device.transitions)
    for index, row in sorted(edits, reverse=True):
        if row is None:
            del rows[index]
        else:
            rows[index] = row
    return attrs.evolve(RULES, device=attrs.evolve(RULES.device, transitions=tuple(rows)))


def _row_index(source: str, trigger: str) -> int:
    return next(
        i
        for i, row in enumerate(RULES.device.transitions)
        if (row.source, row.trigger) == (source, trigger)
    )


def test_the_acknowledgement_wait_is_declared_data() -> None:
    (wait,) = RULES.device.waits
    assert (wait.name, wait.started_by, wait.in_states, wait.fires) == (
        "acknowledgement", "push_root", ("pushed",), "ack_timeout",
    )  # fmt: skip
    assert RULES.device.awaiting == frozenset({"pushed"})
    assert RULES.device.state("pushed").name in RULES.device.awaiting


@pytest.mark.parametrize(
    ("source", "trigger", "edit", "message"),
    [
        # The example: a retry into pushed without a push left the device waiting
        # on an old timer in the evaluator and on none in the store.
        ("failed", "retry", {"actions": ()},
         "'failed --retry--> pushed' enters 'pushed', which awaits the acknowledgement, "
         "without starting it (push_root)"),
        ("pending", "report_installed", {"dest": "pushed"},
         "'pending --report_installed--> pushed' enters 'pushed', which awaits the "
         "acknowledgement, without starting it (push_root)"),
        ("failed", "retry", {"dest": "failed"},
         "'failed --retry / push_root--> failed' starts the acknowledgement wait into "
         "'failed', which does not await it"),
        ("pushed", "ack_timeout", {"dest": "pushed"},
         "'pushed --ack_timeout / record_timeout--> pushed' answers the acknowledgement "
         "wait's trigger without ending the wait it answers"),
    ],
)  # fmt: skip
def test_validation_refuses_a_row_that_breaks_the_waits_life(
    source: str, trigger: str, edit: dict[str, Any], message: str
) -> None:
    index = _row_index(source, trigger)
    rules = _device_rows((index, attrs.evolve(RULES.device.transitions[index], **edit)))
    with pytest.raises(ValueError, match=re.escape(message)):
        rules.validate()


def test_validation_refuses_a_wait_that_names_what_is_not_declared() -> None:
    (wait,) = RULES.device.waits
    broken = attrs.evolve(wait, started_by="beep", fires="never", in_states=("limbo",))
    device = attrs.evolve(RULES.device, waits=(broken, wait))
    with pytest.raises(ValueError, match=r"^device machine: ") as caught:
        attrs.evolve(RULES, device=device).validate()
    for part in (
        "wait 'acknowledgement' is started by undeclared action 'beep'",
        "wait 'acknowledgement' fires undeclared trigger 'never'",
        "wait 'acknowledgement' names undeclared states ('limbo',)",
        "duplicate wait names ['acknowledgement']",
    ):
        assert part in str(caught.value)


def test_the_machines_page_shows_the_waits() -> None:
    page = diagrams_page()
    assert "### Waits" in page
    assert "| `acknowledgement` | `push_root` | `pushed` | fires `ack_timeout` |" in page


def test_validation_refuses_a_wait_that_could_never_run_out() -> None:
    # Without the row that times a push out, the wait's trigger has no answer, and the
    # rollout's time_out_pushes fires a trigger that moves nobody: refused, not guessed.
    rules = _device_rows((_row_index("pushed", "ack_timeout"), None))
    with pytest.raises(ValueError, match=r"^rules: |^device machine: ") as caught:
        rules.validate()
    message = str(caught.value)
    assert (
        "wait 'acknowledgement' fires 'ack_timeout', which state 'pushed' has no row for: "
        "the wait could never run out there" in message
    )


def test_validation_refuses_what_the_drivers_cannot_run_yet() -> None:
    # Found by review: each of these validated, then ran differently in the two drivers,
    # crashed a compile, or crashed an action.
    index = _row_index("failed", "retry")
    row = attrs.evolve(RULES.device.transitions[index], guards=("late",))
    guarded = _device_rows((index, row))
    guarded = attrs.evolve(
        guarded, device=attrs.evolve(guarded.device, guards=(Guard("late", "too late"),))
    )
    (wait,) = RULES.device.waits
    wider = attrs.evolve(RULES.device, waits=(attrs.evolve(wait, in_states=("pushed", "failed")),))
    borrowed = attrs.evolve(
        RULES.restart, actions=(*RULES.restart.actions, Action("import_certificate"))
    )
    for rules, message in (
        (guarded, "has guards; the drivers choose a device's row by its state alone"),
        (
            attrs.evolve(RULES, device=wider),
            "the drivers keep a wait only while a device is pushed",
        ),
        (
            attrs.evolve(RULES, restart=borrowed),
            "action 'import_certificate' is declared by the rollout and the restart machine",
        ),
    ):
        problems = list(rules._link_problems())
        assert any(message in problem for problem in problems), problems
        with pytest.raises(ValueError, match=r"^(rules|device machine|restart machine): "):
            rules.validate()


def test_validation_refuses_a_timer_handed_back_and_forth_between_states() -> None:
    # distributing keeps the notice, extended the checkpoint; each hands the rollout to
    # the other without consuming its timer: catch-up would never end.
    rows = tuple(
        attrs.evolve(row, dest="extended", actions=())
        if (row.source, row.trigger) == ("distributing", "notify")
        else row
        for row in RULES.rollout.transitions
    )
    rollout = attrs.evolve(RULES.rollout, transitions=rows)
    with pytest.raises(ValueError, match=r"distributing --notify--> extended does not consume"):
        attrs.evolve(RULES, rollout=rollout).validate()


def _device_action(name: str, **changes: Any) -> cf.Rules:
    actions = tuple(
        attrs.evolve(a, **changes) if a.name == name else a for a in RULES.device.actions
    )
    return attrs.evolve(RULES, device=attrs.evolve(RULES.device, actions=actions))


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            _device_action("keep_reason", assigns=(Assign("attempts", "attempts * 2"),)),
            "device action 'keep_reason': no driver can assign attempts := attempts * 2",
        ),
        (
            _device_action("keep_reason", assigns=(Assign("colour", "blue"),)),
            "no driver can assign colour := blue",
        ),
        (
            _device_action("push_root", assigns=()),
            "device action 'push_root' starts a wait without counting the attempt",
        ),
        (
            _device_action("record_timeout", emits=("PushRoot",)),
            "device action 'record_timeout' emits 'PushRoot' without starting the "
            "acknowledgement wait",
        ),
        (
            _device_action("keep_reason", emits=("Notify",)),
            "device action 'keep_reason' emits 'Notify', not a device effect",
        ),
        (
            _device_action(
                "record_timeout", assigns=(Assign("last_failure_reason", "the command's reason"),)
            ),
            "pushed --ack_timeout / record_timeout--> failed writes the command's reason, "
            "which 'ack_timeout' does not carry",
        ),
        (
            _device_action(
                "keep_reason",
                assigns=(
                    Assign("last_failure_reason", "the command's reason"),
                    Assign("last_failure_reason", "the wait's timeout"),
                ),
            ),
            "device action 'keep_reason' assigns a field twice",
        ),
        (
            _device_action("push_root", fires=Fire("restart", "import")),
            "device action 'push_root' fires a trigger; device actions do not",
        ),
    ],
)
def test_validation_refuses_device_writes_no_driver_can_make(rules: cf.Rules, message: str) -> None:
    problems = list(rules._link_problems())
    assert any(message in problem for problem in problems), problems
    with pytest.raises(ValueError, match=re.escape(message)):
        rules.validate()


def test_validation_refuses_a_fleet_wide_push_with_another_device_action() -> None:
    index = _row_index("pending", "push")
    row = RULES.device.transitions[index]
    both = attrs.evolve(row, actions=(*row.actions, call("record_timeout")))
    problems = list(_device_rows((index, both))._link_problems())
    assert any("a fleet-wide push takes no other device action" in p for p in problems), problems


@pytest.mark.parametrize(
    ("machine", "changes", "message"),
    [
        (
            "device",
            {"command": None},
            "device trigger 'report_failed' comes from device but has no command",
        ),
        ("rollout", {"source": "time", "command": "Cancel"}, "comes from time but has a command"),
    ],
)
def test_validation_holds_each_trigger_to_its_source(
    machine: str, changes: dict[str, Any], message: str
) -> None:
    spec = getattr(RULES, machine)
    name = "report_failed" if machine == "device" else "cancel"
    triggers = tuple(attrs.evolve(t, **changes) if t.name == name else t for t in spec.triggers)
    rules = attrs.evolve(RULES, **{machine: attrs.evolve(spec, triggers=triggers)})
    problems = list(rules._link_problems())
    assert any(message in problem for problem in problems), problems


def test_a_timer_and_a_wait_fire_only_time_triggers() -> None:
    triggers = tuple(
        attrs.evolve(t, source="rollout") if t.name == "ack_timeout" else t
        for t in RULES.device.triggers
    )
    rules = attrs.evolve(RULES, device=attrs.evolve(RULES.device, triggers=triggers))
    problems = list(rules._link_problems())
    assert any(
        "wait 'acknowledgement' fires 'ack_timeout', which is not a time trigger" in p
        for p in problems
    ), problems


# --- Mutation survivors of 2026-12-07: what the validation and the page say ------------------


def test_a_declared_timer_after_an_undeclared_one_is_still_checked() -> None:
    broken = _toy(
        states=(State("a", timers=("tock", "tick")), State("b"), State("end", terminal=True)),
        transitions=(*_rows(keep=2), Transition("a", "t", "a"), *_rows()[3:]),
    )
    with pytest.raises(ValueError, match=r"^toy machine: ") as caught:
        broken.validate()
    assert "state 'a' names undeclared timer 'tock'" in str(caught.value)
    assert "a --t--> a does not consume timer 'tick'" in str(caught.value)


def test_a_timer_row_after_one_that_ends_the_machine_is_still_checked() -> None:
    rows = (
        *_rows(keep=2),
        Transition("a", "t", "end", ("ok",)),
        Transition("a", "t", "a"),
        *_rows()[3:],
    )
    with pytest.raises(ValueError, match=r"^toy machine: ") as caught:
        _toy(transitions=rows).validate()
    message = str(caught.value)
    assert "a --t--> a does not consume timer 'tick'" in message
    assert "--> end does not consume" not in message


@pytest.mark.parametrize(
    ("consumed_by", "actions", "named"),
    [((), ("act",), "nothing"), (("act", "spare"), ("act", "spare"), "act, spare")],
)
def test_an_unconsumed_timer_names_what_would_consume_it(
    consumed_by: tuple[str, ...], actions: tuple[str, ...], named: str
) -> None:
    broken = _toy(
        transitions=(*_rows(keep=2), Transition("a", "t", "a"), *_rows()[3:]),
        actions=tuple(Action(name) for name in actions),
        timers=(Timer("tick", "t", consumed_by=consumed_by),),
    )
    with pytest.raises(ValueError, match=r"^toy machine: ") as caught:
        broken.validate()
    assert (
        f"a --t--> a does not consume timer 'tick' ({named} would), which would still be "
        "due after it" in str(caught.value)
    )


def test_a_duplicate_wait_name_is_named_alone() -> None:
    (wait,) = RULES.device.waits
    other = attrs.evolve(wait, name="other")
    device = attrs.evolve(RULES.device, waits=(wait, wait, other))
    with pytest.raises(ValueError, match=r"duplicate wait names \['acknowledgement'\](;|$)"):
        device.validate()


def test_a_wait_may_run_in_every_declared_state() -> None:
    (wait,) = RULES.device.waits
    everywhere = attrs.evolve(wait, in_states=RULES.device.state_names)
    device = attrs.evolve(RULES.device, waits=(everywhere,))
    with pytest.raises(ValueError, match=r"^device machine: ") as caught:  # not for its names
        device.validate()
    assert "has no row for: the wait could never run out there" in str(caught.value)
    assert "names undeclared states" not in str(caught.value)


def test_a_wait_after_one_with_undeclared_states_is_still_checked() -> None:
    (wait,) = RULES.device.waits
    lost = attrs.evolve(wait, in_states=("limbo",))
    wider = attrs.evolve(wait, name="wider", in_states=("pushed", "failed"))
    device = attrs.evolve(RULES.device, waits=(lost, wider))
    with pytest.raises(ValueError, match=r"^device machine: ") as caught:
        device.validate()
    message = str(caught.value)
    assert "wait 'acknowledgement' names undeclared states ('limbo',)" in message
    assert (
        "wait 'wider' fires 'ack_timeout', which state 'failed' has no row for: the wait "
        "could never run out there" in message
    )


def test_a_timer_fires_only_a_time_trigger() -> None:
    triggers = tuple(
        attrs.evolve(t, source="rollout") if t.name == "notify" else t
        for t in RULES.rollout.triggers
    )
    rules = attrs.evolve(RULES, rollout=attrs.evolve(RULES.rollout, triggers=triggers))
    problems = list(rules._link_problems())
    assert "timer 'notice' fires 'notify', not a time trigger" in problems


def test_validation_refuses_a_second_wait_of_the_device_machine() -> None:
    (wait,) = RULES.device.waits
    device = attrs.evolve(RULES.device, waits=(wait, attrs.evolve(wait, name="second")))
    problems = list(attrs.evolve(RULES, device=device)._link_problems())
    assert "the device machine declares more than one wait; the drivers run one" in problems


def test_the_link_checks_read_rows_that_name_undeclared_parts() -> None:
    # The machine's own validation reports those; the link checks list what else is
    # wrong without tripping over them.
    installed = _row_index("pushed", "report_installed")
    renamed = attrs.evolve(RULES.device.transitions[installed], trigger="fly")
    assert list(_device_rows((installed, renamed))._link_problems()) == []
    index = _row_index("pushed", "ack_timeout")
    row = RULES.device.transitions[index]
    reasoned = attrs.evolve(row, actions=(call("nope"), call("keep_reason")))
    assert list(_device_rows((index, reasoned))._link_problems()) == [
        "pushed --ack_timeout / nope, keep_reason--> failed writes the command's reason, "
        "which 'ack_timeout' does not carry"
    ]


def test_a_fleet_wide_push_is_checked_in_every_source_it_names() -> None:
    # `only` names a state without a row first: the checks go on to the next one.
    rules = _with_action("push_pending", Fire("device", "push", only=("installed", "pending")))
    index = _row_index("pending", "push")
    row = RULES.device.transitions[index]
    both = attrs.evolve(row, actions=(*row.actions, call("record_timeout")))
    rules = attrs.evolve(
        rules,
        device=attrs.evolve(
            rules.device,
            transitions=_device_rows((index, both)).device.transitions,
        ),
    )
    problems = list(rules._link_problems())
    assert any("a fleet-wide push takes no other device action" in p for p in problems), problems


def test_a_fleet_wide_move_without_a_push_may_take_several_device_actions() -> None:
    index = _row_index("pushed", "ack_timeout")
    row = RULES.device.transitions[index]
    two = attrs.evolve(row, actions=(*row.actions, call("keep_reason")))
    problems = list(_device_rows((index, two))._link_problems())
    assert any("does not carry" in p for p in problems), problems  # checked, and refused
    assert not any("fleet-wide push" in p for p in problems), problems


def test_every_problem_of_the_rules_together_is_reported_at_once() -> None:
    states = tuple(
        attrs.evolve(s, timers=("notice",)) if s.name == "pending" else s
        for s in RULES.rollout.states
    )
    notify = Transition("pending", "notify", "pending", actions=(call("announce"),))
    rollout = attrs.evolve(
        RULES.rollout, states=states, transitions=(*RULES.rollout.transitions, notify)
    )
    triggers = tuple(
        attrs.evolve(t, introduces=True) if t.name == "reenrolled" else t
        for t in RULES.device.triggers
    )
    device = attrs.evolve(RULES.device, triggers=triggers)
    with pytest.raises(
        ValueError,
        match=r"^rules: the initial rollout state declares timers; a rollout starts waiting; "
        r"more than one device trigger introduces new devices$",
    ):
        attrs.evolve(RULES, rollout=rollout, device=device).validate()


def test_a_registry_keeps_the_implementation_it_registers() -> None:
    registry: Registry[Any] = Registry("toy")

    def implementation() -> None:
        return None

    assert registry.register("one")(implementation) is implementation
    assert registry["one"] is implementation


def test_the_machines_page_lists_what_the_shipped_rules_never_have_more_than_one_of() -> None:
    # Two guards and two follow-ups on a gate, two writes of an action, two sources of a
    # fleet-wide move, a trigger whose only hints are per state, and a cell holding "|".
    states = tuple(
        attrs.evolve(
            s,
            gates=(Gate("enroll", guards=("g1", "g2"), then=("push", "report_installed")),),
            note="waiting | ready",
        )
        if s.name == "pending"
        else s
        for s in RULES.rollout.states
    )
    rollout = attrs.evolve(
        _with_action("retry_failed", Fire("device", "retry", only=("failed", "pushed"))).rollout,
        states=states,
    )
    actions = tuple(
        attrs.evolve(a, assigns=(*a.assigns, Assign("attempts", "0")))
        if a.name == "keep_reason"
        else a
        for a in RULES.device.actions
    )
    triggers = tuple(
        attrs.evolve(t, hints=(("pending", "not yet"),)) if t.name == "push" else t
        for t in RULES.device.triggers
    )
    device = attrs.evolve(RULES.device, actions=actions, triggers=triggers)
    page = diagrams_page(attrs.evolve(RULES, rollout=rollout, device=device))
    assert (
        "| `pending` | waiting \\| ready |  | `enroll [g1, g2] then push, report_installed` |"
        in (page)
    )
    assert "`last_failure_reason := the command's reason`; `attempts := 0`" in page
    assert "device `retry` from failed, pushed |" in page
    assert "| `push` | rollout |  |  |" in page
