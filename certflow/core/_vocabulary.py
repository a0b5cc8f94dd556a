"""The vocabulary of the declarations, and their validation: what a machine is made of.

A machine (:class:`MachineSpec`) is states, triggers, rows, guards, actions, timers,
waits and ignored pairs, all plain frozen data; :class:`Rules` bundles the rollout, device
and restart machines and validates them together. The machines themselves are declared
in :mod:`certflow.core.machines`, which re-exports every name here; the diagrams page is
:mod:`certflow.core._diagrams`. No I/O.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Literal, TypeVar

import attrs

Source = Literal["administrator", "device", "host", "time", "rollout"]


@attrs.frozen
class Call:
    """An action as a row invokes it, by name. (Actions take no parameters: what an
    action depends on is declared elsewhere, e.g. a forced import by its row's
    destination state.)"""

    name: str

    def __str__(self) -> str:
        return self.name


def call(name: str) -> Call:
    """``Call(name)``: how the declarations name an action on a row."""
    return Call(name)


@attrs.frozen
class Gate:
    """A device trigger that a rollout state lets through.

    ``guards`` must hold (they are rollout guards: the certificate kind, say); ``then``
    are device triggers applied right after, in the same command (enrolment shortcuts).
    """

    trigger: str
    guards: tuple[str, ...] = ()
    then: tuple[str, ...] = ()


@attrs.frozen
class State:
    """One state of a machine, and what it means.

    Rollout states carry their ``timers`` (in firing order at one instant) and their
    ``gates`` for device triggers; ``gate_hint``, if set, is the refusal hint of every
    device trigger the state does not let through. Device states say whether a device
    in them is ``in_scope`` and ``trusts`` the root, and give the ``hint`` a refusal
    shows for a trigger they have no row for.
    """

    name: str
    terminal: bool = False
    note: str = ""
    timers: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = ()
    gate_hint: str = ""
    in_scope: bool = True
    trusts: bool = False
    hint: str = ""
    #: A rollout state an import may end in that cuts off the devices not trusting the
    #: root: an import whose row ends here is forced (its ImportCertificate says so).
    forced: bool = False


@attrs.frozen
class Trigger:
    """Something that moves a machine: a command, a timer, or another machine.

    ``hint`` is the refusal hint when the current state has no row for it; ``hints``
    overrides it for some states. A device trigger's ``phrase`` completes "device X
    cannot ..." in a refusal. ``introduces`` marks the device trigger by which a device
    new to the rollout joins it (the enrolment). ``carries`` names what the trigger's
    command brings besides its device (a failure's ``reason``), which a device action
    may write. ``source`` says who sends it: a command comes from outside
    (administrator, device, host), and a timer's or a wait's trigger from time.
    """

    name: str
    source: Source
    command: str | None = None
    hint: str = ""
    hints: tuple[tuple[str, str], ...] = ()
    phrase: str = ""
    introduces: bool = False
    carries: tuple[str, ...] = ()

    def hint_in(self, state: str) -> str:
        """The refusal hint when ``state`` has no row for this trigger."""
        return dict(self.hints).get(state, self.hint)


@attrs.frozen
class Guard:
    """A named condition of a row or a gate, with the hint a refusal gives when it fails.

    ``hint`` may name facts in braces (``{extension_opens_at}``): see
    :data:`certflow.core.guards.FACTS`. ``allowed_from`` names the fact giving the
    instant from which the guard will hold, when there is one.
    """

    name: str
    hint: str
    allowed_from: str | None = None
    note: str = ""


@attrs.frozen
class Fire:
    """An action's effect on another machine: fire ``trigger`` on ``machine``.

    On the device machine it is fleet-wide: every device in a source state of the
    trigger's rows (or of ``only``) moves; ``selection="due"`` takes only the devices
    whose latest push timed out at the instant.
    """

    machine: Literal["device", "restart"]
    trigger: str
    only: tuple[str, ...] = ()
    selection: Literal["all", "due"] = "all"


#: What a device action may write, field by field: the device fields every driver keeps,
#: and for each the values a driver knows how to compute. A declaration combines these
#: freely; :meth:`Rules.validate` refuses anything else, so that no driver meets a write
#: it cannot make.
ASSIGNABLE: dict[str, tuple[str, ...]] = {
    "attempts": ("attempts + 1",),
    "last_failure_reason": ("the command's reason", "the wait's timeout"),
}

#: The effects a device action may emit (one per pushed device, or one per batch).
DEVICE_EFFECTS = ("PushRoot",)


@attrs.frozen
class Assign:
    """One write of a device action: ``field := value`` (see :data:`ASSIGNABLE`)."""

    field: str
    value: str

    def __str__(self) -> str:
        return f"{self.field} := {self.value}"


@attrs.frozen
class Action:
    """A named action: the effects it ``emits``, the writes it makes to a device
    (``assigns``, device actions only), and the trigger it ``fires`` on another machine.

    These three are what the drivers run. ``note`` is documentation only: what a rollout
    action does to the phase, in words (its implementation is registered under its name
    in :data:`certflow.core.interpreter.ACTIONS`).
    """

    name: str
    emits: tuple[str, ...] = ()
    fires: Fire | None = None
    assigns: tuple[Assign, ...] = ()
    note: str = ""


@attrs.frozen
class Timer:
    """A named timer: when it falls due it fires ``trigger``.

    ``consumed_by`` names the actions that move the timer on (the notice announced, the
    checkpoint done): a row the timer fires that stays where the timer runs must take one
    of them, or the timer would still be due after it (:meth:`Rules.validate`). The
    instant itself is computed by the timer's implementation, registered under its name
    in :data:`certflow.core.interpreter.TIMERS`; ``note`` says it in words, for the
    diagrams only.
    """

    name: str
    trigger: str
    consumed_by: tuple[str, ...] = ()
    note: str = ""


@attrs.frozen
class Wait:
    """A per-device wait that a device action starts: the acknowledgement of a push.

    ``started_by`` (a device action) starts it; it runs while the device stays in a state
    of ``in_states`` and ends when the device leaves them; when the policy's span
    ``after`` runs out first, the time trigger ``fires`` moves that device. Every driver
    keeps this life as declared: :meth:`Rules.validate` refuses a row that enters an
    awaiting state without starting the wait, starts it into a state that does not await
    it, or answers the wait's trigger without ending it.
    """

    name: str
    started_by: str
    in_states: tuple[str, ...]
    fires: str
    after: str


@attrs.frozen
class Transition:
    """One row: ``source --trigger [guards] / actions--> dest``."""

    source: str
    trigger: str
    dest: str
    guards: tuple[str, ...] = ()
    actions: tuple[Call, ...] = ()
    note: str = ""

    def label(self) -> str:
        """The row as a diagram labels it: ``trigger [guards] / actions``."""
        text = self.trigger
        if self.guards:
            text += " [" + ", ".join(self.guards) + "]"
        if self.actions:
            text += " / " + ", ".join(map(str, self.actions))
        return text


@attrs.frozen
class MachineSpec:
    """A finite state machine as data. See the module's theory of operation."""

    name: str
    states: tuple[State, ...]
    initial: str
    triggers: tuple[Trigger, ...]
    transitions: tuple[Transition, ...]
    guards: tuple[Guard, ...] = ()
    actions: tuple[Action, ...] = ()
    timers: tuple[Timer, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()
    waits: tuple[Wait, ...] = ()

    # --- lookups ---------------------------------------------------------------------

    @property
    def awaiting(self) -> frozenset[str]:
        """The states in which a device awaits something (a wait of :attr:`waits`)."""
        return frozenset(state for wait in self.waits for state in wait.in_states)

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state names, in declaration order."""
        return tuple(state.name for state in self.states)

    @property
    def terminal(self) -> frozenset[str]:
        """The terminal states."""
        return frozenset(state.name for state in self.states if state.terminal)

    def state(self, name: str) -> State:
        """The declared state ``name``."""
        return _find(self.states, name, f"{self.name}: no state")

    def trigger(self, name: str) -> Trigger:
        """The declared trigger ``name``."""
        return _find(self.triggers, name, f"{self.name}: no trigger")

    def guard(self, name: str) -> Guard:
        """The declared guard ``name``."""
        return _find(self.guards, name, f"{self.name}: no guard")

    def action(self, name: str) -> Action:
        """The declared action ``name``."""
        return _find(self.actions, name, f"{self.name}: no action")

    def timer(self, name: str) -> Timer:
        """The declared timer ``name``."""
        return _find(self.timers, name, f"{self.name}: no timer")

    def rows(self, source: str, trigger: str) -> tuple[Transition, ...]:
        """The rows of ``source`` and ``trigger``, in the order they are tried."""
        return tuple(r for r in self.transitions if r.source == source and r.trigger == trigger)

    def sources(self, trigger: str) -> tuple[str, ...]:
        """The states that have a row for ``trigger``, in declaration order."""
        found = {r.source for r in self.transitions if r.trigger == trigger}
        return tuple(s for s in self.state_names if s in found)

    def reachable(self) -> frozenset[str]:
        """The states reachable from the initial state (including it)."""
        seen = {self.initial}
        frontier = [self.initial]
        while frontier:
            state = frontier.pop()
            for row in self.transitions:
                if row.source == state and row.dest not in seen:
                    seen.add(row.dest)
                    frontier.append(row.dest)
        return frozenset(seen)

    # --- validation ------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``ValueError`` unless this machine, on its own, is well formed.

        Unique names; one declared initial state; rows that name declared states,
        triggers, guards and actions; no row leaving a terminal state; every state
        reachable; per source and trigger, distinct guard lists with the unguarded
        default last; every guard, action and timer used; each state's timers declared
        and their triggers answered by a row of that state; ignored pairs that name
        declared states and triggers and have no row.
        """
        problems = list(self._problems())
        if problems:
            raise ValueError(f"{self.name} machine: " + "; ".join(problems))

    def _problems(self) -> Iterable[str]:
        for kind, names in (
            ("state", self.state_names),
            ("trigger", [t.name for t in self.triggers]),
            ("guard", [g.name for g in self.guards]),
            ("action", [a.name for a in self.actions]),
            ("timer", [t.name for t in self.timers]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                yield f"duplicate {kind} names {duplicates}"
        states = set(self.state_names)
        triggers = {t.name for t in self.triggers}
        guards = {g.name for g in self.guards}
        actions = {a.name for a in self.actions}
        timers = {t.name for t in self.timers}
        if self.initial not in states:
            yield f"initial state {self.initial!r} is not declared"
            return
        used_guards: set[str] = set()
        used_actions: set[str] = set()
        used_timers: set[str] = set()
        for row in self.transitions:
            for end in (row.source, row.dest):
                if end not in states:
                    yield f"{row.label()!r} names undeclared state {end!r}"
            if row.trigger not in triggers:
                yield f"{row.source} --{row.trigger}--> names an undeclared trigger"
            if row.source in self.terminal:
                yield f"{row.source} --{row.trigger}--> leaves terminal state {row.source!r}"
            for name in row.guards:
                used_guards.add(name)
                if name not in guards:
                    yield f"{row.label()!r} names undeclared guard {name!r}"
            for action in row.actions:
                used_actions.add(action.name)
                if action.name not in actions:
                    yield f"{row.label()!r} names undeclared action {action.name!r}"
        for source in self.state_names:
            for trigger in triggers:
                rows = self.rows(source, trigger)
                guard_lists = [r.guards for r in rows]
                if len(set(guard_lists)) != len(guard_lists):
                    yield f"{source} --{trigger}--> is ambiguous: rows with equal guards"
                if any(not g for g in guard_lists[:-1]):
                    yield f"{source} --{trigger}--> has rows after its unguarded default"
        for state in self.states:
            for timer_name in state.timers:
                used_timers.add(timer_name)
                if timer_name not in timers:
                    yield f"state {state.name!r} names undeclared timer {timer_name!r}"
                elif not self.rows(state.name, self.timer(timer_name).trigger):
                    yield (
                        f"timer {timer_name!r} fires {self.timer(timer_name).trigger!r} in "
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
                timer = self.timer(timer_name)
                for row in self.rows(state.name, timer.trigger):
                    if self.state(row.dest).terminal:
                        continue  # the timer ends with the rollout
                    # Consumed, or it would still be due wherever it runs next (also
                    # through a cycle of states that hand it back and forth).
                    if not {call.name for call in row.actions} & set(timer.consumed_by):
                        yield (
                            f"{row.source} --{row.label()}--> {row.dest} does not consume "
                            f"timer {timer_name!r} ({', '.join(timer.consumed_by) or 'nothing'}"
                            " would), which would still be due after it"
                        )
        for timer in self.timers:
            if timer.trigger not in triggers:
                yield f"timer {timer.name!r} fires undeclared trigger {timer.trigger!r}"
            for name in timer.consumed_by:
                if name not in actions:
                    yield f"timer {timer.name!r} is consumed by undeclared action {name!r}"
        for source, trigger in self.ignored:
            if source not in states or trigger not in triggers:
                yield f"ignored pair ({source}, {trigger}) names undeclared names"
            elif self.rows(source, trigger):
                yield f"ignored pair ({source}, {trigger}) also has a row"
        for kind, declared, used in (
            ("guard", guards, used_guards),
            ("action", actions, used_actions),
            ("timer", timers, used_timers),
        ):
            unused = sorted(declared - used)
            if unused:
                yield f"unused {kind}s {unused}"
        unreachable = states - self.reachable()
        if unreachable:
            yield f"unreachable states {sorted(unreachable)}"
        yield from self._wait_problems(states, triggers, actions)

    def _wait_problems(
        self, states: set[str], triggers: set[str], actions: set[str]
    ) -> Iterable[str]:
        """Each wait names declared parts, and every row keeps the wait's life."""
        names = [wait.name for wait in self.waits]
        if len(set(names)) != len(names):
            yield f"duplicate wait names {sorted({n for n in names if names.count(n) > 1})}"
        for wait in self.waits:
            if wait.started_by not in actions:
                yield f"wait {wait.name!r} is started by undeclared action {wait.started_by!r}"
            if wait.fires not in triggers:
                yield f"wait {wait.name!r} fires undeclared trigger {wait.fires!r}"
            if not wait.in_states or not set(wait.in_states) <= states:
                yield f"wait {wait.name!r} names undeclared states {wait.in_states}"
                continue
            for state in wait.in_states:
                if not self.rows(state, wait.fires):
                    yield (
                        f"wait {wait.name!r} fires {wait.fires!r}, which state {state!r} has "
                        "no row for: the wait could never run out there"
                    )
            for row in self.transitions:
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

    # --- views -----------------------------------------------------------------------

    def mermaid(self) -> str:
        """The machine as a Mermaid ``stateDiagram-v2``: every row with its guards and
        actions, terminal states, and each state's timers as a note."""
        lines = ["---", f"title: {self.name}", "---", "stateDiagram-v2"]
        lines.append(f"  [*] --> {self.initial}")
        for row in self.transitions:
            lines.append(f"  {row.source} --> {row.dest}: {_mermaid_text(row.label())}")
        for state in self.states:
            if state.terminal:
                lines.append(f"  {state.name} --> [*]")
        for state in self.states:
            if state.timers:
                timers = ", ".join(f"{name} → {self.timer(name).trigger}" for name in state.timers)
                lines.append(f"  note right of {state.name}: {_mermaid_text('timers: ' + timers)}")
        return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    # Mermaid reads ':' and ';' in a label as syntax. ';' first: the escape of ':' ends
    # in one.
    return text.replace(";", "#59;").replace(":", "#58;")


_Named = TypeVar("_Named", State, Trigger, Guard, Action, Timer)


def _find(items: tuple[_Named, ...], name: str, what: str) -> _Named:
    for item in items:
        if item.name == name:
            return item
    raise KeyError(f"{what} {name!r}")


@attrs.frozen
class Rules:
    """The three machines of a rollout, validated together."""

    rollout: MachineSpec
    device: MachineSpec
    restart: MachineSpec

    @property
    def machines(self) -> tuple[MachineSpec, ...]:
        """The rollout, device and restart machines."""
        return (self.rollout, self.device, self.restart)

    def validate(self) -> None:
        """Raise ``ValueError`` unless each machine, and their links, are well formed.

        Links: gates and their follow-up triggers name device triggers; every ``Fire``
        names a trigger of its machine, and ``only`` names sources of that trigger's
        rows; each command fires exactly one trigger; at most 8 device states (a device
        code keeps the state in 3 bits).
        """
        for machine in self.machines:
            machine.validate()
        problems = list(self._link_problems())
        if problems:
            raise ValueError("rules: " + "; ".join(problems))

    def _link_problems(self) -> Iterable[str]:
        yield from self._driver_limits()
        device_triggers = {t.name for t in self.device.triggers}
        for state in self.rollout.states:
            for gate in state.gates:
                for name in (gate.trigger, *gate.then):
                    if name not in device_triggers:
                        yield f"gate {state.name}/{gate.trigger}: unknown device trigger {name!r}"
        targets = {"device": self.device, "restart": self.restart}
        for machine in self.machines:
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
        yield from self._source_problems()
        commands = [t.command for m in self.machines for t in m.triggers if t.command]
        duplicates = sorted({c for c in commands if commands.count(c) > 1})
        if duplicates:
            yield f"commands firing more than one trigger: {duplicates}"
        if self.rollout.state(self.rollout.initial).timers:
            yield "the initial rollout state declares timers; a rollout starts waiting"
        if sum(t.introduces for t in self.device.triggers) > 1:
            yield "more than one device trigger introduces new devices"
        if len(self.device.states) > 8:
            yield "at most 8 device states fit a device code"

    def _source_problems(self) -> Iterable[str]:
        """Each trigger comes from where its ``source`` says: a command from outside,
        a timer's or a wait's from time."""
        for machine in self.machines:
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

    def _driver_limits(self) -> Iterable[str]:
        """What the drivers cannot run yet, refused rather than run differently."""
        declared: dict[str, str] = {}
        for machine in self.machines:
            for action in machine.actions:
                if action.name in declared:
                    yield (
                        f"action {action.name!r} is declared by the {declared[action.name]} "
                        f"and the {machine.name} machine; a name means one action"
                    )
                declared.setdefault(action.name, machine.name)
        for row in self.device.transitions:
            if row.guards:
                yield (
                    f"device row {row.source} --{row.label()}--> {row.dest} has guards; the "
                    "drivers choose a device's row by its state alone"
                )
        if len(self.device.waits) > 1:
            yield "the device machine declares more than one wait; the drivers run one"
        for wait in self.device.waits:
            # The device code of the in-memory kernel (its first-push mark and count slot)
            # and the store's ack_due column keep a wait in this one state.
            if wait.in_states != ("pushed",):
                yield (f"wait {wait.name!r}: the drivers keep a wait only while a device is pushed")
        yield from self._device_action_problems()

    def _device_action_problems(self) -> Iterable[str]:
        """Device actions write only what every driver can write (:data:`ASSIGNABLE`)."""
        starters = {wait.started_by for wait in self.device.waits}
        for machine in (self.rollout, self.restart):
            for action in machine.actions:
                if action.assigns:
                    yield f"{machine.name} action {action.name!r} assigns device fields"
        for action in self.device.actions:
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
        for row in self.device.transitions:
            carried = (
                set(self.device.trigger(row.trigger).carries)
                if row.trigger in {t.name for t in self.device.triggers}
                else set()
            )
            for invocation in row.actions:
                if invocation.name not in {a.name for a in self.device.actions}:
                    continue
                action = self.device.action(invocation.name)
                if any(a.value == "the command's reason" for a in action.assigns) and (
                    "reason" not in carried
                ):
                    yield (
                        f"{row.source} --{row.label()}--> {row.dest} writes the command's "
                        f"reason, which {row.trigger!r} does not carry"
                    )
        for action in self.rollout.actions:
            fire = action.fires
            if fire is None or fire.machine != "device":
                continue
            for source in fire.only or self.device.sources(fire.trigger):
                rows = self.device.rows(source, fire.trigger)
                if len(rows) != 1:
                    continue  # refused by the link checks
                row = rows[0]
                names = {call.name for call in row.actions}
                if names & starters and len(row.actions) > 1:
                    yield (
                        f"{source} --{row.label()}--> {row.dest} is fired fleet-wide by "
                        f"{action.name!r}; a fleet-wide push takes no other device action"
                    )

    def fired_rows(self, action: str) -> dict[str, Transition]:
        """The device rows by which rollout action ``action`` moves the fleet: for each
        source state its ``Fire`` takes, that state's one row of the fired trigger. Empty
        for an action that fires no device trigger. The one place the fleet-wide mapping
        is worked out: :meth:`fleet_mapping`, the interpreter's compiled moves and so the
        store's set-based statements all read it."""
        fire = self.rollout.action(action).fires
        if fire is None or fire.machine != "device":
            return {}
        found: dict[str, Transition] = {}
        for source in fire.only or self.device.sources(fire.trigger):
            (row,) = self.device.rows(source, fire.trigger)
            found[source] = row
        return found

    def fleet_mapping(self, row: Transition) -> dict[str, str]:
        """The device ``from -> to`` mapping a rollout row applies to the whole fleet.

        Empty when the row moves no device (a cancel, a notice). This is what a store
        applies as one set-based statement.
        """
        mapping: dict[str, str] = {}
        for invocation in row.actions:
            mapping.update({s: r.dest for s, r in self.fired_rows(invocation.name).items()})
        return mapping


def placeholders(template: str) -> tuple[str, ...]:
    """The ``{names}`` a hint template uses."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)
