"""The rollout, device and restart machines, declared once, as data.

Theory of operation
-------------------
Rule 1: every rule of a rollout lives in these declarations. A *rollout* (the import of
one new server certificate) is the machine :data:`ROLLOUT_MACHINE`; each managed
*device* has a sub-machine, :data:`DEVICE_MACHINE`; the "restart required" flag is the
two-state :data:`RESTART_MACHINE` (as h11 declares its extra booleans beside its
tables). :data:`RULES` bundles the three.

Each machine declares, in the XState manner:

* its **states**; a rollout state also lists its **timers** (what time does while the
  rollout is in it, in the order they fire at one instant) and its **gates** (which
  device triggers it lets through, with their guards and the triggers that follow them
  at once, such as "enrolled while distributing, so pushed");
* its **triggers**, each with the hint a refusal gives when the current state has no
  row for it;
* its **rows** ``source --trigger [guards] / actions--> dest``. Rows of one source and
  trigger are tried in order; the first whose guards all hold is taken; the unguarded
  default comes last. When none holds, the command is refused with the hint of the
  last row's first failing guard;
* its **guards**, **actions** and **timers** by name, with what each checks, emits or
  changes. Their meaning (a few lines of code each) lives with the drivers:
  :mod:`certflow.core.guards` and :mod:`certflow.core.timeline` for all drivers,
  :mod:`certflow.core.interpreter` for the rollout's actions and
  :mod:`certflow.core._kernel` for the in-memory device actions;
* **ignored** pairs ``(state, trigger)``: duplicates that change nothing and emit
  nothing (a device that reports "installed" twice);
* its **waits** (the device machine's acknowledgement of a push): which action starts
  one, the states in which the device awaits it, and the trigger it fires when it runs
  out. Validation holds every row to that life (no row enters an awaiting state without
  starting the wait, none starts it into a state that does not await it, and the wait's
  own trigger always ends it). The serialisation and the store's activity read the
  awaiting states from here; the in-memory kernel and the store's device columns still
  implement the wait by the action's name (the next step of making it binding).

Everything else is derived: the interpreter's tables, the device kernel's tables per
rollout state, the fleet-wide ``from -> to`` mappings (:meth:`Rules.fleet_mapping`) a
store applies as one set-based statement, the Mermaid diagrams and ``docs/machines.md``.

What is *not* in the declarations, and why: the storage of devices (a driver's
business), the wording of effects, and the arithmetic of instants (the timeline module
computes them from the policy; the timers here only name them). :func:`Rules.validate`
runs at import and proves the declarations well formed; each driver proves, when it
binds its implementations, that every guard, action and timer name has exactly one
implementation and none is unused.

This module performs no I/O; ``make docs`` writes :func:`diagrams_page` to the docs.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Literal, TypeVar

import attrs

__all__ = [
    "DEVICE_MACHINE",
    "RESTART_MACHINE",
    "ROLLOUT_MACHINE",
    "RULES",
    "Action",
    "Call",
    "Fire",
    "Gate",
    "Guard",
    "MachineSpec",
    "Rules",
    "State",
    "Timer",
    "Transition",
    "Trigger",
    "Wait",
    "diagrams_page",
]

Source = Literal["administrator", "device", "host", "time", "rollout"]


@attrs.frozen
class Call:
    """An action as a row invokes it: its name and, for some, parameters (``forced``)."""

    name: str
    params: tuple[tuple[str, bool | str], ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.name
        shown = ", ".join(key if value is True else f"{key}={value}" for key, value in self.params)
        return f"{self.name}({shown})"

    def param(self, key: str) -> bool | str | None:
        """The value of parameter ``key``, or ``None``."""
        return dict(self.params).get(key)


def call(name: str, **params: bool | str) -> Call:
    """``Call(name, params)`` with keyword parameters, in declaration order."""
    return Call(name, tuple(params.items()))


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


@attrs.frozen
class Trigger:
    """Something that moves a machine: a command, a timer, or another machine.

    ``hint`` is the refusal hint when the current state has no row for it; ``hints``
    overrides it for some states. A device trigger's ``phrase`` completes "device X
    cannot ..." in a refusal. ``introduces`` marks the device trigger by which a device
    new to the rollout joins it (the enrolment).
    """

    name: str
    source: Source
    command: str | None = None
    hint: str = ""
    hints: tuple[tuple[str, str], ...] = ()
    phrase: str = ""
    introduces: bool = False

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


@attrs.frozen
class Action:
    """A named action: what a transition ``emits`` (effects) and ``changes``."""

    name: str
    emits: tuple[str, ...] = ()
    changes: str = ""
    fires: Fire | None = None


@attrs.frozen
class Timer:
    """A named timer: at instant ``at`` (computed from the policy) it fires ``trigger``.

    ``consumed_by`` names the actions that move the timer on (the notice announced, the
    checkpoint done): a row the timer fires that stays where the timer runs must take one
    of them, or the timer would still be due after it (:meth:`Rules.validate`).
    """

    name: str
    trigger: str
    at: str
    policy: tuple[str, ...] = ()
    consumed_by: tuple[str, ...] = ()


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
            for timer_name in state.timers:
                if timer_name not in timers:
                    continue
                timer = self.timer(timer_name)
                for row in self.rows(state.name, timer.trigger):
                    if timer_name not in self.state(row.dest).timers:
                        continue  # the timer ends with the state it ran in
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


# --- The rules of rollout-rules.md ----------------------------------------------------------


# What every import does, whatever triggered it; the outcome (imported or forced) is the
# row's destination, decided by trust alone (the all_trust guard).
def _import(
    forced: bool,
) -> tuple[Call, ...]:  # pragma: no mutate block
    first = call("import_certificate", forced=True) if forced else call("import_certificate")
    return (first, call("mark_stragglers"), call("require_restart"), call("end"))


_RUNNING_TIMERS = ("ack_timeout", "notice", "checkpoint", "deadline")
_RUNNING_GATES = (
    Gate("report_installed"),
    Gate("report_failed"),
    Gate("retry", guards=("kind_allows_retry",)),
    Gate("enroll", then=("push",)),
    Gate("unenroll"),
)
_IMPORTED_GATES = (
    Gate("report_installed"),
    # Enrolling after the import is enrolling against the new certificate.
    Gate("enroll", then=("report_installed",)),
    Gate("unenroll"),
    Gate("reenrolled"),
)


def _running_rows(
    state: str,
) -> tuple[Transition, ...]:  # pragma: no mutate block
    return (
        Transition(state, "ack_timeout", state, actions=(call("time_out_pushes"),)),
        Transition(state, "notify", state, actions=(call("announce"),)),
        Transition(
            state, "checkpoint", "imported", ("import_condition", "all_trust"), _import(False)
        ),
        Transition(state, "checkpoint", "forced", ("import_condition",), _import(True)),
        Transition(state, "checkpoint", "extended", actions=(call("postpone"),)),
        Transition(state, "deadline", "imported", ("all_trust",), _import(False)),
        Transition(state, "deadline", "forced", actions=_import(True)),
        Transition(state, "import_now", "imported", ("all_trust",), _import(False)),
        Transition(state, "import_now", "forced", actions=_import(True)),
        Transition(
            state,
            "extend_manually",
            state,
            ("extension_open", "valid_through_moved_deadline"),
            (call("extend"),),
        ),
        Transition(
            state, "retry_all_failed", state, ("kind_allows_retry",), (call("retry_failed"),)
        ),
        Transition(state, "cancel", "cancelled", actions=(call("end"),)),
    )


ROLLOUT_MACHINE = MachineSpec(
    name="rollout",
    states=(
        State(
            "pending",
            note="created; waiting for the administrator to choose how to import",
            gates=(Gate("report_installed"), Gate("enroll"), Gate("unenroll")),
        ),
        State(
            "distributing",
            note="the root is being pushed; the first checkpoint is ahead",
            timers=_RUNNING_TIMERS,
            gates=_RUNNING_GATES,
        ),
        State(
            "extended",
            note="a checkpoint found the fleet not ready; the import waits for the next one",
            timers=_RUNNING_TIMERS,
            gates=_RUNNING_GATES,
        ),
        State(
            "imported",
            terminal=True,
            note="imported, and every in-scope device trusted the root",
            gates=_IMPORTED_GATES,
        ),
        State(
            "forced",
            terminal=True,
            note="imported although some in-scope devices did not trust the root",
            gates=_IMPORTED_GATES,
        ),
        State(
            "cancelled",
            terminal=True,
            note="abandoned; the old certificate stays",
            gate_hint="the rollout was cancelled; start a new rollout",
        ),
    ),
    initial="pending",
    triggers=(
        Trigger(
            "distribute_root",
            "administrator",
            "DistributeRoot",
            hint="distribution starts from pending",
        ),
        Trigger(
            "proceed_to_import",
            "administrator",
            "ProceedToImport",
            hint="it applies to a pending rollout",
            hints=(
                ("distributing", "use ImportNow while distributing"),
                ("extended", "use ImportNow while distributing"),
            ),
        ),
        Trigger(
            "import_now",
            "administrator",
            "ImportNow",
            hint="it applies while distributing or extended",
            hints=(("pending", "use ProceedToImport from pending"),),
        ),
        Trigger(
            "extend_manually",
            "administrator",
            "ExtendManually",
            hint="it applies while distributing or extended",
            hints=(("pending", "distribute the root first"),),
        ),
        Trigger(
            "retry_all_failed",
            "administrator",
            "RetryAllFailed",
            hint="retries are allowed while distributing or extended",
        ),
        Trigger(
            "cancel",
            "administrator",
            "Cancel",
            hint="only a rollout that has not ended can be cancelled",
        ),
        Trigger("ack_timeout", "time"),
        Trigger("notify", "time"),
        Trigger("checkpoint", "time"),
        Trigger("deadline", "time"),
    ),
    transitions=(
        Transition(
            "pending",
            "distribute_root",
            "distributing",
            ("valid_at_start", "valid_through_deadline"),
            (call("start_distribution"), call("push_pending")),
        ),
        Transition(
            "pending",
            "proceed_to_import",
            "imported",
            ("valid_at_start", "not_expired", "all_trust"),
            _import(False),
        ),
        Transition(
            "pending",
            "proceed_to_import",
            "forced",
            ("valid_at_start", "not_expired"),
            _import(True),
        ),
        Transition("pending", "cancel", "cancelled", actions=(call("end"),)),
        *_running_rows("distributing"),
        *_running_rows("extended"),
    ),
    guards=(
        Guard(
            "valid_at_start",
            "the new certificate is not valid yet at {now}: it becomes valid at "
            "{new_not_before}; start at or after that instant",
            allowed_from="new_not_before",
            note="the new certificate's validity has begun",
        ),
        Guard(
            "valid_through_deadline",
            "the new certificate expires at {new_not_after}, before the deadline "
            "{deadline_from_now} of a distribution started at {now}; get a certificate "
            "valid through the deadline",
            note="the new certificate stays valid through the deadline of a distribution "
            "started now",
        ),
        Guard(
            "not_expired",
            "the new certificate expired at {new_not_after}; get a new certificate",
            note="the new certificate has not expired",
        ),
        Guard(
            "all_trust",
            "{untrusting} in-scope device(s) do not trust the root yet",
            note="every in-scope device trusts the root (an empty scope does), or the root "
            "is publicly trusted",
        ),
        Guard(
            "import_condition",
            "the import condition ({import_rule}) does not hold",
            note="the policy's import rule: distribution complete or (and, with "
            "distributed_and_expired) the existing certificate expired",
        ),
        Guard(
            "extension_open",
            "manual extension opens on day {extension_opens_day}, {extension_opens_at} "
            "({extension_wait} from now)",
            allowed_from="extension_opens_at",
            note="manual extension has opened (day 6 by default)",
        ),
        Guard(
            "valid_through_moved_deadline",
            "the new certificate expires at {new_not_after}, before the moved deadline "
            "{moved_deadline}; import by {deadline} instead",
            note="the new certificate stays valid through the deadline an extension would set",
        ),
        Guard(
            "kind_allows_retry",
            "retry applies only to MDM server certificates, and this rollout replaces "
            "{kind_with_article} certificate",
            note="the rollout replaces an MDM server certificate",
        ),
    ),
    actions=(
        Action("start_distribution", changes="t0 := now"),
        Action("push_pending", emits=("PushRoot",), fires=Fire("device", "push")),
        Action("announce", emits=("Notify",), changes="the next checkpoint is announced"),
        Action(
            "postpone",
            emits=("ImportPostponed",),
            changes="one more checkpoint done; the next one is ahead",
        ),
        Action(
            "import_certificate",
            emits=("ImportCertificate",),
            changes="the certificate is imported; `forced` when devices are cut off",
        ),
        Action(
            "mark_stragglers",
            emits=("ReenrollmentRequired",),
            fires=Fire("device", "import"),
        ),
        Action("require_restart", fires=Fire("restart", "import")),
        Action("end", changes="ended_at := now; pending acknowledgement timers are dropped"),
        Action(
            "extend",
            changes="every later checkpoint and the deadline move by manual_extension",
        ),
        Action(
            "retry_failed",
            emits=("PushRoot",),
            fires=Fire("device", "retry", only=("failed",)),
        ),
        Action(
            "time_out_pushes",
            emits=("AcknowledgementTimedOut",),
            fires=Fire("device", "ack_timeout", selection="due"),
        ),
    ),
    timers=(
        Timer(
            "ack_timeout",
            "ack_timeout",
            "each push + ack_timeout (no timer when the policy has none)",
            ("ack_timeout",),
            consumed_by=("time_out_pushes",),
        ),
        Timer(
            "notice",
            "notify",
            "next checkpoint - notice_before, once for each checkpoint instant",
            ("checkpoints", "notice_before"),
            consumed_by=("announce",),
        ),
        Timer(
            "checkpoint",
            "checkpoint",
            "t0 + the next checkpoint, unless it is the last",
            ("checkpoints",),
            consumed_by=("postpone",),
        ),
        Timer("deadline", "deadline", "t0 + the last checkpoint", ("checkpoints",)),
    ),
)

DEVICE_MACHINE = MachineSpec(
    name="device",
    states=(
        State(
            "pending",
            note="in scope, not pushed yet (it may already trust the root)",
            hint="the root has not been pushed to it yet; start the distribution first",
        ),
        State(
            "pushed",
            note="the root was pushed; no answer yet",
            hint="it has been pushed the root and no failure was reported",
        ),
        State(
            "installed",
            trusts=True,
            note="trusts the root",
            hint="it already trusts the root",
        ),
        State(
            "failed",
            note="its latest push failed (reason kept)",
            hint="its last push failed; retry it first",
        ),
        State(
            "removed",
            in_scope=False,
            note="unenrolled: out of scope",
            hint="it was unenrolled; send Enroll if it came back",
        ),
        State(
            "reenroll_required",
            note="cut off by the import; must re-enrol",
            hint="it lost contact at the import; send Reenrolled once it re-enrolled",
        ),
    ),
    initial="pending",
    triggers=(
        Trigger(
            "report_installed",
            "device",
            "DeviceInstalled",
            hint="device reports are not taken in this state",
            phrase="report the root installed",
        ),
        Trigger(
            "report_failed",
            "device",
            "DeviceFailed",
            hint="failures are reported while distributing",
            phrase="report a failure",
        ),
        Trigger(
            "retry",
            "administrator",
            "Retry",
            hint="retries are allowed while distributing or extended",
            phrase="be retried",
        ),
        Trigger(
            "enroll",
            "host",
            "Enroll",
            hint="enrolments are not taken in this state",
            phrase="enrol",
            introduces=True,
        ),
        Trigger(
            "unenroll",
            "host",
            "Unenroll",
            hint="unenrolments are not taken in this state",
            phrase="unenrol",
        ),
        Trigger(
            "reenrolled",
            "host",
            "Reenrolled",
            hint="re-enrolment applies after the import",
            phrase="be re-enrolled",
        ),
        Trigger("push", "rollout", phrase="be pushed the root"),
        Trigger("ack_timeout", "time", phrase="time out"),
        Trigger("import", "rollout", phrase="be cut off"),
    ),
    transitions=(
        Transition("pending", "push", "pushed", actions=(call("push_root"),)),
        Transition("pushed", "report_installed", "installed"),
        Transition("pending", "report_installed", "installed", note="already trusts the root"),
        Transition("failed", "report_installed", "installed", note="late confirmation"),
        Transition("pushed", "report_failed", "failed", actions=(call("keep_reason"),)),
        Transition("pushed", "ack_timeout", "failed", actions=(call("record_timeout"),)),
        Transition("failed", "retry", "pushed", actions=(call("push_root"),)),
        Transition(
            "pushed", "retry", "pushed", actions=(call("push_root"),), note="it never answered"
        ),
        *(
            Transition(state, "unenroll", "removed")
            for state in ("pending", "pushed", "installed", "failed", "reenroll_required")
        ),
        Transition("removed", "enroll", "pending", note="enrols again"),
        *(
            Transition(state, "import", "reenroll_required")
            for state in ("pending", "pushed", "failed")
        ),
        Transition("reenroll_required", "reenrolled", "installed"),
    ),
    actions=(
        Action(
            "push_root",
            emits=("PushRoot",),
            changes="attempts + 1; this push is the latest (its acknowledgement timer starts)",
        ),
        Action("keep_reason", changes="last failure reason := the report's reason"),
        Action("record_timeout", changes="last failure reason := 'no acknowledgement within …'"),
    ),
    waits=(
        Wait(
            "acknowledgement",
            started_by="push_root",
            in_states=("pushed",),
            fires="ack_timeout",
            after="ack_timeout",
        ),
    ),
    ignored=(
        ("installed", "report_installed"),
        ("failed", "report_failed"),
        ("removed", "unenroll"),
        *(
            (state, "enroll")
            for state in ("pending", "pushed", "installed", "failed", "reenroll_required")
        ),
        ("installed", "reenrolled"),
    ),
)

RESTART_MACHINE = MachineSpec(
    name="restart",
    states=(
        State("not_required", note="the server serves the certificate it has"),
        State("required", note="the certificate was imported; the server must restart"),
    ),
    initial="not_required",
    triggers=(
        Trigger("import", "rollout"),
        Trigger("server_restarted", "host", "ServerRestarted"),
    ),
    transitions=(
        Transition("not_required", "import", "required", actions=(call("announce_restart"),)),
        Transition("required", "server_restarted", "not_required"),
    ),
    actions=(Action("announce_restart", emits=("RestartRequired",)),),
    ignored=(("not_required", "server_restarted"),),
)


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

    def fleet_mapping(self, row: Transition) -> dict[str, str]:
        """The device ``from -> to`` mapping a rollout row applies to the whole fleet.

        Empty when the row moves no device (a cancel, a notice). This is what a store
        applies as one set-based statement.
        """
        mapping: dict[str, str] = {}
        for invocation in row.actions:
            fire = self.rollout.action(invocation.name).fires
            if fire is None or fire.machine != "device":
                continue
            for source in fire.only or self.device.sources(fire.trigger):
                (dest_row,) = self.device.rows(source, fire.trigger)
                mapping[source] = dest_row.dest
        return mapping


RULES = Rules(ROLLOUT_MACHINE, DEVICE_MACHINE, RESTART_MACHINE)
RULES.validate()


# --- docs/machines.md ------------------------------------------------------------------------


def placeholders(template: str) -> tuple[str, ...]:
    """The ``{names}`` a hint template uses."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def _table(header: tuple[str, ...], rows: Iterable[Iterable[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return [*lines, ""]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _code(items: Iterable[object]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def diagrams_page(rules: Rules = RULES) -> str:
    """The Markdown of ``docs/machines.md``: every machine, generated from the data."""
    parts = [
        "# The machines",
        "",
        "Generated by `make docs` from the declarations in `certflow/core/machines.py`;",
        "`tests/core/test_machines.py` fails if this page is stale. Rows of one state and",
        "trigger are tried top to bottom: the first whose guards all hold is taken.",
        "",
    ]
    for spec in rules.machines:
        parts += [
            f"## The {spec.name} machine",
            "",
            "```mermaid",
            spec.mermaid().rstrip(),
            "```",
            "",
        ]
        parts += ["### States", ""]
        parts += (
            _table(
                ("state", "meaning", "timers", "device triggers let through"),
                (
                    (
                        f"`{s.name}`" + (" (terminal)" if s.terminal else ""),
                        s.note,
                        _code(s.timers),
                        _code(
                            g.trigger
                            + (f" [{', '.join(g.guards)}]" if g.guards else "")
                            + (f" then {', '.join(g.then)}" if g.then else "")
                            for g in s.gates
                        )
                        + (f" — otherwise: {s.gate_hint}" if s.gate_hint else ""),
                    )
                    for s in spec.states
                ),
            )
            if spec is rules.rollout
            else _table(
                ("state", "meaning", "in scope", "trusts the root", "refusal hint"),
                (
                    (f"`{s.name}`", s.note, _yes(s.in_scope), _yes(s.trusts), s.hint)
                    for s in spec.states
                ),
            )
        )
        parts += ["### Rows", ""]
        parts += _table(
            ("from", "trigger", "guards", "actions", "to", "note"),
            (
                (r.source, r.trigger, _code(r.guards), _code(r.actions), r.dest, r.note)
                for r in spec.transitions
            ),
        )
        parts += ["### Triggers", ""]
        parts += _table(
            ("trigger", "from", "command", "refused with"),
            (
                (
                    f"`{t.name}`",
                    t.source,
                    f"`{t.command}`" if t.command else "",
                    "; ".join([t.hint, *(f"in {s}: {h}" for s, h in t.hints)] if t.hint else []),
                )
                for t in spec.triggers
            ),
        )
        if spec.guards:
            parts += ["### Guards", ""]
            parts += _table(
                ("guard", "holds when", "refusal hint", "allowed from"),
                ((f"`{g.name}`", g.note, g.hint, g.allowed_from or "") for g in spec.guards),
            )
        if spec.actions:
            parts += ["### Actions", ""]
            parts += _table(
                ("action", "emits", "changes", "fires"),
                (
                    (
                        f"`{a.name}`",
                        _code(a.emits),
                        a.changes,
                        ""
                        if a.fires is None
                        else f"{a.fires.machine} `{a.fires.trigger}`"
                        + (f" from {', '.join(a.fires.only)}" if a.fires.only else "")
                        + (
                            " on devices whose push timed out" if a.fires.selection == "due" else ""
                        ),
                    )
                    for a in spec.actions
                ),
            )
        if spec.timers:
            parts += ["### Timers", ""]
            parts += _table(
                ("timer", "fires", "at", "policy", "consumed by"),
                (
                    (f"`{t.name}`", f"`{t.trigger}`", t.at, _code(t.policy), _code(t.consumed_by))
                    for t in spec.timers
                ),
            )
        if spec.waits:
            parts += ["### Waits", ""]
            parts += _table(
                ("wait", "started by", "runs while the device is", "when it runs out", "after"),
                (
                    (
                        f"`{w.name}`",
                        f"`{w.started_by}`",
                        _code(w.in_states),
                        f"fires `{w.fires}`",
                        f"the policy's `{w.after}`",
                    )
                    for w in spec.waits
                ),
            )
        if spec.ignored:
            parts += ["### Ignored (duplicates: nothing changes, nothing is emitted)", ""]
            parts += [", ".join(f"`{s}` + `{t}`" for s, t in spec.ignored), ""]
    parts += ["## Fleet-wide moves", ""]
    parts += [
        "The device mapping each rollout row applies to the whole fleet at once "
        "(`Rules.fleet_mapping`); a store runs each as one set-based statement.",
        "",
    ]
    seen: set[tuple[str, str, tuple[tuple[str, str], ...]]] = set()
    rows = []
    for row in rules.rollout.transitions:
        mapping = tuple(rules.fleet_mapping(row).items())
        key = (row.trigger, row.dest, mapping)
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            (row.trigger, row.dest, ", ".join(f"{a} → {b}" for a, b in mapping) or "(none)")
        )
    parts += _table(("rollout trigger", "to", "devices moved"), rows)
    return "\n".join(parts).rstrip("\n") + "\n"
