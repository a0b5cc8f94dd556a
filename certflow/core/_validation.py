"""The validation of the declarations: every problem a machine, or the rules together,
may have, in words. :meth:`MachineSpec.validate <certflow.core.machines.MachineSpec.validate>`
and :meth:`Rules.validate <certflow.core.machines.Rules.validate>` raise them. No I/O."""

from __future__ import annotations

from collections.abc import Iterable

from certflow.core._vocabulary import (
    ASSIGNABLE,
    DEVICE_EFFECTS,
    Assign,
    MachineSpec,
    Rules,
)

__all__ = ["link_problems", "machine_problems", "wait_problems"]


def machine_problems(spec: MachineSpec) -> Iterable[str]:
    for kind, names in (
        ("state", spec.state_names),
        ("trigger", [t.name for t in spec.triggers]),
        ("guard", [g.name for g in spec.guards]),
        ("action", [a.name for a in spec.actions]),
        ("timer", [t.name for t in spec.timers]),
    ):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            yield f"duplicate {kind} names {duplicates}"
    states = set(spec.state_names)
    triggers = {t.name for t in spec.triggers}
    guards = {g.name for g in spec.guards}
    actions = {a.name for a in spec.actions}
    timers = {t.name for t in spec.timers}
    if spec.initial not in states:
        yield f"initial state {spec.initial!r} is not declared"
        return
    used_guards: set[str] = set()
    used_actions: set[str] = set()
    used_timers: set[str] = set()
    for row in spec.transitions:
        for end in (row.source, row.dest):
            if end not in states:
                yield f"{row.label()!r} names undeclared state {end!r}"
        if row.trigger not in triggers:
            yield f"{row.source} --{row.trigger}--> names an undeclared trigger"
        if row.source in spec.terminal:
            yield f"{row.source} --{row.trigger}--> leaves terminal state {row.source!r}"
        for name in row.guards:
            used_guards.add(name)
            if name not in guards:
                yield f"{row.label()!r} names undeclared guard {name!r}"
        for action in row.actions:
            used_actions.add(action.name)
            if action.name not in actions:
                yield f"{row.label()!r} names undeclared action {action.name!r}"
    for source in spec.state_names:
        for trigger in triggers:
            rows = spec.rows(source, trigger)
            guard_lists = [r.guards for r in rows]
            if len(set(guard_lists)) != len(guard_lists):
                yield f"{source} --{trigger}--> is ambiguous: rows with equal guards"
            if any(not g for g in guard_lists[:-1]):
                yield f"{source} --{trigger}--> has rows after its unguarded default"
    for state in spec.states:
        for timer_name in state.timers:
            used_timers.add(timer_name)
            if timer_name not in timers:
                yield f"state {state.name!r} names undeclared timer {timer_name!r}"
            elif not spec.rows(state.name, spec.timer(timer_name).trigger):
                yield (
                    f"timer {timer_name!r} fires {spec.timer(timer_name).trigger!r} in "
                    f"state {state.name!r}, which has no row for it"
                )
        for gate in state.gates:
            used_guards.update(gate.guards)
            for name in gate.guards:
                if name not in guards:
                    yield f"gate {state.name}/{gate.trigger} names undeclared guard {name!r}"
        if state.terminal and state.timers:
            yield f"terminal state {state.name!r} has timers"
        if state.forced and not state.terminal:
            yield f"state {state.name!r} is a forced import but not terminal"
        for timer_name in state.timers:
            if timer_name not in timers:
                continue
            timer = spec.timer(timer_name)
            for row in spec.rows(state.name, timer.trigger):
                if spec.state(row.dest).terminal:
                    continue  # the timer ends with the rollout
                # Consumed, or it would still be due wherever it runs next (also
                # through a cycle of states that hand it back and forth).
                if not {call.name for call in row.actions} & set(timer.consumed_by):
                    yield (
                        f"{row.source} --{row.label()}--> {row.dest} does not consume "
                        f"timer {timer_name!r} ({', '.join(timer.consumed_by) or 'nothing'}"
                        " would), which would still be due after it"
                    )
    for timer in spec.timers:
        if timer.trigger not in triggers:
            yield f"timer {timer.name!r} fires undeclared trigger {timer.trigger!r}"
        for name in timer.consumed_by:
            if name not in actions:
                yield f"timer {timer.name!r} is consumed by undeclared action {name!r}"
    for source, trigger in spec.ignored:
        if source not in states or trigger not in triggers:
            yield f"ignored pair ({source}, {trigger}) names undeclared names"
        elif spec.rows(source, trigger):
            yield f"ignored pair ({source}, {trigger}) also has a row"
    for kind, declared, used in (
        ("guard", guards, used_guards),
        ("action", actions, used_actions),
        ("timer", timers, used_timers),
    ):
        unused = sorted(declared - used)
        if unused:
            yield f"unused {kind}s {unused}"
    unreachable = states - spec.reachable()
    if unreachable:
        yield f"unreachable states {sorted(unreachable)}"
    yield from wait_problems(spec, states, triggers, actions)


def wait_problems(
    spec: MachineSpec, states: set[str], triggers: set[str], actions: set[str]
) -> Iterable[str]:
    """Each wait names declared parts, and every row keeps the wait's life."""
    names = [wait.name for wait in spec.waits]
    if len(set(names)) != len(names):
        yield f"duplicate wait names {sorted({n for n in names if names.count(n) > 1})}"
    for wait in spec.waits:
        if wait.started_by not in actions:
            yield f"wait {wait.name!r} is started by undeclared action {wait.started_by!r}"
        if wait.fires not in triggers:
            yield f"wait {wait.name!r} fires undeclared trigger {wait.fires!r}"
        if not wait.in_states or not set(wait.in_states) <= states:
            yield f"wait {wait.name!r} names undeclared states {wait.in_states}"
            continue
        for state in wait.in_states:
            if not spec.rows(state, wait.fires):
                yield (
                    f"wait {wait.name!r} fires {wait.fires!r}, which state {state!r} has "
                    "no row for: the wait could never run out there"
                )
        for row in spec.transitions:
            label = f"{row.source} --{row.label()}--> {row.dest}"
            starts = any(call.name == wait.started_by for call in row.actions)
            if starts and row.dest not in wait.in_states:
                yield (
                    f"{label!r} starts the {wait.name} wait into {row.dest!r}, which "
                    "does not await it"
                )
            if row.dest in wait.in_states and row.source not in wait.in_states and not starts:
                yield (
                    f"{label!r} enters {row.dest!r}, which awaits the {wait.name}, "
                    f"without starting it ({wait.started_by})"
                )
            if row.trigger == wait.fires and (
                row.source not in wait.in_states or row.dest in wait.in_states
            ):
                yield (
                    f"{label!r} answers the {wait.name} wait's trigger without ending "
                    "the wait it answers"
                )


def link_problems(rules: Rules) -> Iterable[str]:
    yield from driver_limits(rules)
    device_triggers = {t.name for t in rules.device.triggers}
    for state in rules.rollout.states:
        for gate in state.gates:
            for name in (gate.trigger, *gate.then):
                if name not in device_triggers:
                    yield f"gate {state.name}/{gate.trigger}: unknown device trigger {name!r}"
    targets = {"device": rules.device, "restart": rules.restart}
    for machine in rules.machines:
        for action in machine.actions:
            fire = action.fires
            if fire is None:
                continue
            target = targets[fire.machine]
            if fire.trigger not in {t.name for t in target.triggers}:
                yield f"action {action.name!r} fires unknown trigger {fire.trigger!r}"
            elif not target.sources(fire.trigger):
                yield (
                    f"action {action.name!r} fires {fire.machine} trigger "
                    f"{fire.trigger!r}, which no row answers"
                )
            elif not set(fire.only) <= set(target.sources(fire.trigger)):
                yield f"action {action.name!r}: {fire.only} are not sources of {fire.trigger!r}"
    yield from source_problems(rules)
    commands = [t.command for m in rules.machines for t in m.triggers if t.command]
    duplicates = sorted({c for c in commands if commands.count(c) > 1})
    if duplicates:
        yield f"commands firing more than one trigger: {duplicates}"
    if rules.rollout.state(rules.rollout.initial).timers:
        yield "the initial rollout state declares timers; a rollout starts waiting"
    if sum(t.introduces for t in rules.device.triggers) > 1:
        yield "more than one device trigger introduces new devices"
    if len(rules.device.states) > 8:
        yield "at most 8 device states fit a device code"


def source_problems(rules: Rules) -> Iterable[str]:
    """Each trigger comes from where its ``source`` says: a command from outside,
    a timer's or a wait's from time."""
    for machine in rules.machines:
        for trigger in machine.triggers:
            outside = trigger.source in ("administrator", "device", "host")
            if outside != (trigger.command is not None):
                yield (
                    f"{machine.name} trigger {trigger.name!r} comes from "
                    f"{trigger.source} but {'has no' if outside else 'has a'} command"
                )
        for timer in machine.timers:
            if timer.trigger in {t.name for t in machine.triggers} and (
                machine.trigger(timer.trigger).source != "time"
            ):
                yield f"timer {timer.name!r} fires {timer.trigger!r}, not a time trigger"
        for wait in machine.waits:
            if wait.fires in {t.name for t in machine.triggers} and (
                machine.trigger(wait.fires).source != "time"
            ):
                yield f"wait {wait.name!r} fires {wait.fires!r}, which is not a time trigger"


def driver_limits(rules: Rules) -> Iterable[str]:
    """What the drivers cannot run yet, refused rather than run differently."""
    declared: dict[str, str] = {}
    for machine in rules.machines:
        for action in machine.actions:
            if action.name in declared:
                yield (
                    f"action {action.name!r} is declared by the {declared[action.name]} "
                    f"and the {machine.name} machine; a name means one action"
                )
            declared.setdefault(action.name, machine.name)
    for row in rules.device.transitions:
        if row.guards:
            yield (
                f"device row {row.source} --{row.label()}--> {row.dest} has guards; the "
                "drivers choose a device's row by its state alone"
            )
    if len(rules.device.waits) > 1:
        yield "the device machine declares more than one wait; the drivers run one"
    for wait in rules.device.waits:
        # The device code of the in-memory kernel (its first-push mark and count slot)
        # and the store's ack_due column keep a wait in this one state.
        if wait.in_states != ("pushed",):
            yield (f"wait {wait.name!r}: the drivers keep a wait only while a device is pushed")
    yield from device_action_problems(rules)


def device_action_problems(rules: Rules) -> Iterable[str]:
    """Device actions write only what every driver can write (:data:`ASSIGNABLE`)."""
    starters = {wait.started_by for wait in rules.device.waits}
    for machine in (rules.rollout, rules.restart):
        for action in machine.actions:
            if action.assigns:
                yield f"{machine.name} action {action.name!r} assigns device fields"
    for action in rules.device.actions:
        if action.fires is not None:
            yield f"device action {action.name!r} fires a trigger; device actions do not"
        for assign in action.assigns:
            if assign.value not in ASSIGNABLE.get(assign.field, ()):
                yield f"device action {action.name!r}: no driver can assign {assign}"
        fields = [assign.field for assign in action.assigns]
        if len(set(fields)) != len(fields):
            yield f"device action {action.name!r} assigns a field twice"
        for effect in action.emits:
            if effect not in DEVICE_EFFECTS:
                yield f"device action {action.name!r} emits {effect!r}, not a device effect"
            elif action.name not in starters:
                yield (
                    f"device action {action.name!r} emits {effect!r} without starting "
                    "the acknowledgement wait; a push is what is acknowledged"
                )
        if action.name in starters and Assign("attempts", "attempts + 1") not in action.assigns:
            yield (
                f"device action {action.name!r} starts a wait without counting the "
                "attempt; an answer is matched to its push by the attempt"
            )
    for row in rules.device.transitions:
        carried = (
            set(rules.device.trigger(row.trigger).carries)
            if row.trigger in {t.name for t in rules.device.triggers}
            else set()
        )
        for invocation in row.actions:
            if invocation.name not in {a.name for a in rules.device.actions}:
                continue
            action = rules.device.action(invocation.name)
            if any(a.value == "the command's reason" for a in action.assigns) and (
                "reason" not in carried
            ):
                yield (
                    f"{row.source} --{row.label()}--> {row.dest} writes the command's "
                    f"reason, which {row.trigger!r} does not carry"
                )
    for action in rules.rollout.actions:
        fire = action.fires
        if fire is None or fire.machine != "device":
            continue
        for source in fire.only or rules.device.sources(fire.trigger):
            rows = rules.device.rows(source, fire.trigger)
            if len(rows) != 1:
                continue  # refused by the link checks
            row = rows[0]
            names = {call.name for call in row.actions}
            if names & starters and len(row.actions) > 1:
                yield (
                    f"{source} --{row.label()}--> {row.dest} is fired fleet-wide by "
                    f"{action.name!r}; a fleet-wide push takes no other device action"
                )
