"""The interpreter's tables: the declarations compiled for the drivers.

:func:`compile_rules` turns :class:`~certflow.core.machines.Rules` into what every driver
reads: per rollout state and device trigger a :class:`DeviceTable` (the gate, and per
device state the destination and the compiled :class:`DeviceAction` writes), per
fleet-wide action a :class:`FleetMove`, the rollout rows by ``(state, trigger)``, each
state's timers, and the routes of commands. The registries of the rollout's action and
timer implementations live here too, so that compiling checks that every declared name
has one. Pure data; the firing is :mod:`certflow.core.interpreter`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

import attrs

from certflow.core import commands as c
from certflow.core import guards as g
from certflow.core import timeline
from certflow.core._registry import Registry
from certflow.core.machines import RULES, Call, Rules, Timer, Transition, Wait
from certflow.core.machines import Action as DeclaredAction
from certflow.core.plan import Phase, Plan
from certflow.core.policy import Policy

if TYPE_CHECKING:
    from certflow.core.interpreter import Turn

__all__ = [
    "ACTIONS",
    "IGNORED",
    "REFUSED",
    "SLOW",
    "TIMERS",
    "Compiled",
    "DeviceAction",
    "DeviceTable",
    "FleetMove",
    "FleetPort",
    "FleetResult",
    "TimerImpl",
    "compile_rules",
]

REFUSED = -1  # the device state has no row for the trigger
IGNORED = -2  # a declared duplicate: nothing changes, nothing is emitted
SLOW = -3  # in DeviceTable.fast: the row has actions; take the general path


@attrs.frozen
class DeviceAction:
    """A device action as every driver runs it, compiled from its declaration.

    The flags are the declared writes and effects (:data:`~certflow.core.machines.ASSIGNABLE`),
    so that a driver implements the fixed vocabulary of device writes, never an action by
    its name: ``counts`` (``attempts := attempts + 1``), ``reason`` (what
    ``last_failure_reason`` becomes: ``"command"``, the command's; ``"timeout"``, the
    wait's; ``""``, unchanged), ``pushes`` (emits ``PushRoot``) and ``starts_wait``.
    """

    name: str
    counts: bool
    reason: Literal["", "command", "timeout"]
    pushes: bool
    starts_wait: bool

    @classmethod
    def of(cls, action: DeclaredAction, wait: Wait | None) -> DeviceAction:
        """The compiled form of the declared device ``action``."""
        values = {assign.field: assign.value for assign in action.assigns}
        reason = values.get("last_failure_reason", "")
        return cls(
            action.name,
            counts=values.get("attempts") == "attempts + 1",
            reason=_REASONS[reason],
            pushes="PushRoot" in action.emits,
            starts_wait=wait is not None and wait.started_by == action.name,
        )


_REASONS: dict[str, Literal["", "command", "timeout"]] = {
    "": "",
    "the command's reason": "command",
    "the wait's timeout": "timeout",
}


@attrs.frozen
class DeviceTable:
    """How one device trigger plays out in one rollout state, for every device state.

    ``allowed``/``guards``/``refusal``: the rollout state's gate. ``dest[s]`` is the
    destination state index from device state ``s`` (or :data:`REFUSED`/:data:`IGNORED`),
    ``calls[s]`` the device actions on the way, ``fast[s]`` equals ``dest[s]`` when
    there are none and :data:`SLOW` otherwise. ``enter``, for the trigger by which a
    device new to the rollout joins it (``introduces``), is the new device's
    destination and actions; ``None`` for every other trigger.
    """

    trigger: str
    allowed: bool
    guards: tuple[str, ...]
    refusal: str
    dest: tuple[int, ...]
    calls: tuple[tuple[DeviceAction, ...], ...]
    fast: tuple[int, ...]
    introduces: bool
    enter: tuple[int, tuple[DeviceAction, ...]] | None


@attrs.frozen
class FleetMove:
    """A fleet-wide device move: devices in a state with ``dest[s] >= 0`` go there.

    ``calls[s]`` are the device actions of the row from ``s``; ``selection`` is ``"due"``
    when only devices whose latest push timed out at the instant move.
    """

    action: str
    trigger: str
    dest: tuple[int, ...]
    calls: tuple[tuple[DeviceAction, ...], ...]
    selection: Literal["all", "due"]

    @property
    def pushes(self) -> bool:
        """Whether some row of the move pushes the root (and so starts the wait)."""
        return any(a.starts_wait for calls in self.calls for a in calls)

    def mapping(self, names: Sequence[str]) -> dict[str, str]:
        """The move as ``{from state: to state}`` names."""
        return {names[s]: names[d] for s, d in enumerate(self.dest) if d >= 0}


class FleetResult(NamedTuple):
    """What a fleet-wide move did: the moved ids in fleet order, or, when it pushed
    the root, the pushed ids by attempt number."""

    ids: Sequence[str] = ()
    pushes: Mapping[int, Sequence[str]] = {}


class FleetPort(Protocol):
    """What the interpreter needs from a driver's fleet during one step."""

    def untrusting(self) -> int:
        """In-scope devices that do not trust the root."""

    def state_counts(self) -> Mapping[str, int]:
        """How many devices are in each device state, by state name."""

    def next_timeout(self) -> datetime | None:
        """The earliest instant a push times out, if any."""

    def move(self, move: FleetMove, now: datetime) -> FleetResult:
        """Apply ``move`` to the fleet at ``now``."""

    def drop_timeouts(self) -> None:
        """Forget every pending acknowledgement timer."""

    def drop_timeouts_due(self, due: datetime) -> None:
        """Forget the acknowledgement timers that fell due at ``due`` (they fired)."""


#: A rollout or restart action's implementation, registered under its declared name.
Action = Callable[["Turn", Call], None]
ACTIONS: Registry[Action] = Registry("action")


class TimerImpl(NamedTuple):
    due: Callable[[Plan, Phase, FleetPort], datetime | None]
    reads_fleet: bool
    # What firing consumes in the fleet, whatever the row's actions did; a timer that
    # reads only the phase is consumed by the phase change its row makes.
    fired: Callable[[FleetPort, datetime], None] | None = None


TIMERS: Registry[TimerImpl] = Registry("timer")


# The timers' instants, every one from the timeline: what each declared timer's name
# means (a timer that reads the fleet asks the driver's port).


def _timer(
    name: str,
    *,
    reads_fleet: bool = False,
    fired: Callable[[FleetPort, datetime], None] | None = None,
) -> Callable[[Callable[..., datetime | None]], None]:  # pragma: no mutate block
    def add(due: Callable[[Plan, Phase, FleetPort], datetime | None]) -> None:
        TIMERS.register(name)(TimerImpl(due, reads_fleet, fired))

    return add


@_timer("ack_timeout", reads_fleet=True, fired=lambda port, due: port.drop_timeouts_due(due))
def _ack_timeout(plan: Plan, phase: Phase, port: FleetPort) -> datetime | None:
    return port.next_timeout()


@_timer("notice")
def _notice(plan: Plan, phase: Phase, port: FleetPort) -> datetime | None:
    return timeline.next_notice(plan, phase)


@_timer("checkpoint")
def _checkpoint(plan: Plan, phase: Phase, port: FleetPort) -> datetime | None:
    if timeline.next_checkpoint_is_final(plan, phase):
        return None
    return timeline.next_checkpoint(plan, phase)


@_timer("expiry")
def _expiry(plan: Plan, phase: Phase, port: FleetPort) -> datetime | None:
    return timeline.expiry_checkpoint(plan, phase)


@_timer("deadline")
def _deadline(plan: Plan, phase: Phase, port: FleetPort) -> datetime | None:
    return timeline.deadline(plan, phase)


class Compiled:
    """The tables of one set of rules (see the module's theory of operation)."""

    def __init__(self, rules: Rules) -> None:
        rules.validate()
        # Rules may change rows, guards, gates and timers, not the states: the value
        # types (RolloutState, DeviceState) and the device codes are built on them.
        if rules.rollout.state_names != RULES.rollout.state_names or (
            rules.device.state_names != RULES.device.state_names
        ):
            raise ValueError("rules must keep the rollout and device states of certflow")
        self.rules = rules
        rollout, device = rules.rollout, rules.device
        self.device_states = device.state_names
        #: The device machine's one wait (validation allows at most one), the index of
        #: the state in which a device awaits it (-1 without a wait), and its span's
        #: policy field.
        self.wait = device.waits[0] if device.waits else None
        self.awaiting = (
            self.device_states.index(self.wait.in_states[0]) if self.wait is not None else -1
        )
        if self.wait is not None and self.wait.after not in attrs.fields_dict(Policy):
            raise ValueError(
                f"wait {self.wait.name!r} runs for {self.wait.after!r}, no policy field"
            )
        self.device_actions = {a.name: DeviceAction.of(a, self.wait) for a in device.actions}
        self.rows: dict[tuple[str, str], tuple[Transition, ...]] = {}
        for row in rollout.transitions:
            self.rows.setdefault((row.source, row.trigger), ())
            self.rows[(row.source, row.trigger)] += (row,)
        self.timers: dict[str, tuple[Timer, ...]] = {
            s.name: tuple(rollout.timer(t) for t in s.timers) for s in rollout.states
        }
        self.device: dict[str, dict[str, DeviceTable]] = {
            s.name: {t.name: self._device_table(s.name, t.name) for t in device.triggers}
            for s in rollout.states
        }
        self.moves: dict[str, FleetMove] = {}
        for declared in rollout.actions:
            fired = rules.fired_rows(declared.name)
            if declared.fires is None or not fired:
                continue
            dest = [REFUSED] * len(device.states)
            calls: list[tuple[DeviceAction, ...]] = [()] * len(device.states)
            for source, row in fired.items():
                index = self.device_states.index(source)
                dest[index] = self.device_states.index(row.dest)
                calls[index] = self._actions(row.actions)
            self.moves[declared.name] = FleetMove(
                declared.name,
                declared.fires.trigger,
                tuple(dest),
                tuple(calls),
                declared.fires.selection,
            )
        self.untrusting_states = tuple(
            i for i, s in enumerate(device.states) if s.in_scope and not s.trusts
        )
        self.commands: dict[str, tuple[str, str]] = {
            t.command: (m.name, t.name) for m in rules.machines for t in m.triggers if t.command
        }
        #: The same by command class: what :func:`dispatch` routes by.
        unknown = sorted(name for name in self.commands if name not in c.__all__)
        if unknown:
            raise ValueError(f"rules name commands that certflow does not have: {unknown}")
        self.routes: dict[type, tuple[str, str]] = {
            getattr(c, name): route for name, route in self.commands.items()
        }
        declared_guards = {x.name for m in rules.machines for x in m.guards}
        declared_actions = {x.name for m in (rollout, rules.restart) for x in m.actions}
        for kind, names, registry in (
            ("guard", declared_guards, g.GUARDS),
            ("action", declared_actions, ACTIONS),
            ("timer", {t.name for t in rollout.timers}, TIMERS),
        ):
            missing = sorted(set(names) - set(registry))
            if missing:
                raise ValueError(f"rules name {kind}s without an implementation: {missing}")

    def _device_table(self, rollout_state: str, trigger: str) -> DeviceTable:
        device = self.rules.device
        state = self.rules.rollout.state(rollout_state)
        gate = next((x for x in state.gates if x.trigger == trigger), None)
        refusal = state.gate_hint or device.trigger(trigger).hint
        dest: list[int] = []
        calls: list[tuple[DeviceAction, ...]] = []
        for source in device.state_names:
            landing = self._follow(source, trigger, gate.then if gate else ())
            dest.append(landing[0])
            calls.append(landing[1])
        introduces = device.trigger(trigger).introduces
        enter = None
        if introduces:  # where the gate refuses, it refuses before the entry is used
            enter = self._chain(device.initial, (), gate.then if gate else ())
        fast = tuple(d if not c else SLOW for d, c in zip(dest, calls, strict=True))
        return DeviceTable(
            trigger,
            gate is not None,
            gate.guards if gate else (),
            refusal,
            tuple(dest),
            tuple(calls),
            fast,
            introduces,
            enter,
        )

    def _follow(
        self, source: str, trigger: str, then: tuple[str, ...]
    ) -> tuple[int, tuple[DeviceAction, ...]]:
        device = self.rules.device
        rows = device.rows(source, trigger)
        if not rows:
            return (IGNORED if (source, trigger) in device.ignored else REFUSED), ()
        return self._chain(rows[0].dest, self._actions(rows[0].actions), then)

    def _chain(
        self, state: str, calls: tuple[DeviceAction, ...], then: tuple[str, ...]
    ) -> tuple[int, tuple[DeviceAction, ...]]:
        device = self.rules.device
        for follow in then:
            rows = device.rows(state, follow)
            if rows:
                state, calls = rows[0].dest, calls + self._actions(rows[0].actions)
            elif (state, follow) not in device.ignored:
                raise ValueError(f"gate follow-up {follow!r} has no row from {state!r}")
        return self.device_states.index(state), calls

    def _actions(self, calls: tuple[Call, ...]) -> tuple[DeviceAction, ...]:
        return tuple(self.device_actions[call.name] for call in calls)

    def keeps_wait(self, dest: int, calls: tuple[DeviceAction, ...]) -> bool:
        """Whether a device that moves to state ``dest`` through ``calls`` still awaits
        an answer afterwards (it pushed, or it stays where the wait runs)."""
        return dest == self.awaiting or any(a.starts_wait for a in calls)

    def wait_span(self, policy: Policy) -> timedelta | None:
        """How long the wait runs under ``policy`` (``None``: it never runs out)."""
        if self.wait is None:
            return None
        span: timedelta | None = getattr(policy, self.wait.after)
        return span


def compile_rules(rules: Rules = RULES) -> Compiled:
    """The interpreter's tables for ``rules``; ``ValueError`` if they are malformed."""
    return Compiled(rules)
