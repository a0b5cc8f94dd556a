"""The vocabulary of the declarations: what a machine is made of.

A machine (:class:`MachineSpec`) is states, triggers, rows, guards, actions, timers,
waits and ignored pairs, all plain frozen data; :class:`Rules` bundles the rollout, device
and restart machines and validates them together (the problems are worked out in
:mod:`certflow.core._validation`). The machines themselves are declared in
:mod:`certflow.core.machines`, which re-exports every name here; the diagrams page is
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
        from certflow.core._validation import machine_problems  # deferred: it imports us

        return machine_problems(self)

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
        from certflow.core._validation import link_problems  # deferred: it imports us

        return link_problems(self)

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
