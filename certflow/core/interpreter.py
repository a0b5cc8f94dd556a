"""The generic interpreter of the declarations, shared by every driver.

Theory of operation
-------------------
:func:`compile_rules` (:mod:`certflow.core._compiled`) turns the declarations into
tables; this module runs them, once for every driver. A driver keeps the devices; the
interpreter keeps the rollout machine and the skeleton of a step:

* :func:`check_now`: the instant a step runs at (aware, never backwards);
* :func:`dispatch`: a command's route, to :func:`fire` (the rollout's and restart's
  rows: guards, actions from :data:`ACTIONS`, the phase) or to :func:`device_command`
  (known device, then the gate, then the row), each followed by :func:`catch_up`.

A driver implements two small ports: the :class:`FleetPort` (fleet-wide moves, the
acknowledgement timers) and the :class:`DevicePort` (find, add, and move one device,
making the writes of its compiled :class:`DeviceAction`). A third backend implements
those and nothing else.

Limits, stated plainly: ``mark_stragglers`` marks nobody when the root is publicly
trusted (every device trusts such a root), a rule its note states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import attrs

from certflow.core import guards as g
from certflow.core import timeline
from certflow.core._compiled import (
    ACTIONS,
    IGNORED,
    REFUSED,
    SLOW,
    TIMERS,
    Compiled,
    DeviceAction,
    DeviceTable,
    FleetMove,
    FleetPort,
    FleetResult,
    compile_rules,
)
from certflow.core._refusals import (
    device_refusal,
    guard_refusal,
    state_refusal,
    unknown_device,
)
from certflow.core.commands import check_device_id
from certflow.core.effects import (
    AcknowledgementTimedOut,
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    ReenrollmentRequired,
    RestartRequired,
    RolloutCancelled,
)
from certflow.core.errors import CommandRefused, InvalidInput, TimeWentBackwards
from certflow.core.instants import require_aware, show_span
from certflow.core.machines import RULES, Call, MachineSpec, Timer, Transition
from certflow.core.plan import Phase, Plan, RolloutState
from certflow.core.policy import Policy
from certflow.core.progress import Progress

__all__ = [
    "ACTIONS",
    "IGNORED",
    "REFUSED",
    "SLOW",
    "TIMERS",
    "Compiled",
    "DeviceAction",
    "DevicePort",
    "DeviceTable",
    "FleetMove",
    "FleetPort",
    "FleetResult",
    "Turn",
    "catch_up",
    "check_gate",
    "check_now",
    "compile_rules",
    "device_command",
    "device_refusal",
    "dispatch",
    "fire",
    "fire_restart",
    "fire_timer",
    "first_row",
    "next_timer",
    "refusal",
    "select_row",
    "timeout_reason",
    "unknown_device",
]

Handle = TypeVar("Handle")


class DevicePort(Protocol[Handle]):
    """What the interpreter needs from a driver to run one device command.

    ``Handle`` is whatever the driver finds a device by (an index, a held row). The
    order of the checks, the gate and the rows are the interpreter's
    (:func:`device_command`); the port only finds, adds and writes devices.
    """

    def locate(self, device_id: str) -> Handle | None:
        """The device ``device_id``, or ``None`` if the rollout does not know it."""

    def state_of(self, device: Handle) -> int:
        """The index of the device's state."""

    def add(self, device_id: str) -> Handle:
        """A device new to the rollout, in the device machine's initial state."""

    def transition(
        self,
        device: Handle,
        device_id: str,
        dest: int,
        calls: tuple[DeviceAction, ...],
        command: Any,
        run: Turn,
    ) -> None:
        """Move the device to state ``dest`` and make the declared writes of ``calls``
        (emitting their effects into ``run.effects``)."""


@attrs.define
class Turn:
    """One turn of the rollout machine in progress: the phase changes, effects gather.

    (Named a turn, not a run: :class:`certflow.sim.Simulation` is a simulated run, and
    :class:`certflow.Step` what a turn returns.)"""

    compiled: Compiled
    plan: Plan
    phase: Phase
    now: datetime
    port: FleetPort
    effects: list[Effect]
    command: str = ""
    #: The state the row being taken ends in (an action may depend on where it leads).
    dest: str = ""


action = ACTIONS.register


# --- Choosing a row, and refusing ---------------------------------------------------------


def select_row(
    machine: MachineSpec,
    rows: tuple[Transition, ...],
    situation: g.Situation,
    command: str,
) -> Transition:
    """The first row whose guards all hold; else the refusal of the last row's first
    failing guard."""
    row, failed = first_row(rows, situation)
    if row is None:
        raise guard_refusal(machine, failed, situation, command)
    return row


def first_row(
    rows: tuple[Transition, ...], situation: g.Situation
) -> tuple[Transition | None, str]:
    """The first row whose guards all hold, or ``None`` and the last row's first failing
    guard."""
    failed = ""
    for row in rows:
        failed = next((name for name in row.guards if not g.GUARDS[name](situation)), "")
        if not failed:
            return row, ""
    return None, failed


def refusal(
    compiled: Compiled, situation: g.Situation, trigger: str, command: str
) -> CommandRefused | None:
    """The refusal firing ``trigger`` would meet now, or ``None``: rows are chosen, not run."""
    machine = compiled.rules.rollout
    state = situation.phase.state
    rows = compiled.rows.get((state.value, trigger))
    if not rows:
        hint = machine.trigger(trigger).hint_in(state.value)
        return state_refusal(state, command, hint, machine=machine)
    try:
        select_row(machine, rows, situation, command)
    except CommandRefused as refused:
        return refused
    return None


# --- Firing the rollout and restart machines ----------------------------------------------


def situation(run: Turn) -> g.Situation:
    """What the guards see now."""
    return g.Situation(run.plan, run.phase, run.now, run.port.untrusting())


def fire(run: Turn, trigger: str) -> None:
    """Fire ``trigger`` on the rollout machine: pick the row, run its actions, move."""
    machine = run.compiled.rules.rollout
    rows = run.compiled.rows.get((run.phase.state.value, trigger))
    if not rows:
        hint = machine.trigger(trigger).hint_in(run.phase.state.value)
        raise state_refusal(run.phase.state, run.command or trigger, hint, machine=machine)
    row = select_row(machine, rows, situation(run), run.command or trigger)
    run.dest = row.dest
    for invocation in row.actions:
        ACTIONS[invocation.name](run, invocation)
    run.phase = attrs.evolve(run.phase, state=RolloutState(row.dest))


def fire_restart(run: Turn, trigger: str) -> None:
    """Fire ``trigger`` on the restart machine (its state is ``phase.restart_required``)."""
    machine = run.compiled.rules.restart
    names = machine.state_names  # (not required, required), in that order
    state = names[1] if run.phase.restart_required else names[0]
    rows = machine.rows(state, trigger)
    if not rows:
        if (state, trigger) in machine.ignored:
            return
        raise CommandRefused(
            f"{run.command or trigger} refused: the restart is {state}",
            command=run.command,
            state=run.phase.state.value,
            reason="restart_state",
        )
    row = select_row(machine, rows, situation(run), run.command or trigger)
    for invocation in row.actions:
        ACTIONS[invocation.name](run, invocation)
    run.phase = attrs.evolve(run.phase, restart_required=row.dest == names[1])


def next_timer(
    compiled: Compiled, plan: Plan, phase: Phase, port: FleetPort | None
) -> tuple[datetime, Timer] | None:
    """The earliest timer of the state (declaration order breaks ties); with no
    ``port``, only the timers that do not read the fleet."""
    best: tuple[datetime, Timer] | None = None
    for timer in compiled.timers[phase.state.value]:
        impl = TIMERS[timer.name]
        if impl.reads_fleet and port is None:
            continue
        at = impl.due(plan, phase, port)  # type: ignore[arg-type]
        if at is not None and (best is None or at < best[0]):
            best = (at, timer)
    return best


def catch_up(run: Turn, until: datetime) -> None:
    """Fire every timer due up to ``until``, in order, each at its own instant.

    Every driver advances through this loop, so catch-up is one rule: advancing in one
    jump equals advancing in smaller steps.
    """
    command = run.command
    run.command = ""
    fired: tuple[datetime, str, Phase] | None = None
    while (found := next_timer(run.compiled, run.plan, run.phase, run.port)) is not None:
        at, timer = found
        if at > until:
            break
        if fired == (at, timer.name, run.phase):
            # A row that leaves its own timer due would fire it forever.
            raise RuntimeError(
                f"timer {timer.name!r} fired at {at.isoformat()} and is still due: "
                f"the row it fires in state {run.phase.state.value!r} must consume it"
            )
        fired = (at, timer.name, run.phase)
        run.now = at
        fire_timer(run, timer)
    run.now = until
    run.command = command


# --- Device commands: what every driver checks ------------------------------------------


def check_gate(run: Turn, table: DeviceTable, command: object, device_id: str) -> None:
    """Raise the refusal of the rollout state's gate for a device ``command``, if any."""
    name = type(command).__name__
    prefix = f"{name}({device_id!r})"
    if not table.allowed:
        raise state_refusal(
            run.phase.state, name, table.refusal, prefix=prefix, device_id=device_id
        )
    if table.guards:
        found = situation(run)
        for guard in table.guards:
            if not g.GUARDS[guard](found):
                raise guard_refusal(
                    run.compiled.rules.rollout,
                    guard,
                    found,
                    name,
                    prefix=prefix,
                    device_id=device_id,
                )


def device_command(run: Turn, port: DevicePort[Handle], table: DeviceTable, command: Any) -> None:
    """Run one device command through its table and the driver's ``port``.

    The order of the checks, for every driver: the device must be known (unless the
    command introduces it), then the rollout state's gate, then the device's row.
    """
    device_id: str = command.device_id
    device = port.locate(device_id)
    if device is None:
        if table.enter is None:  # only the enrolment brings a device new to the rollout
            raise unknown_device(device_id)
        check_device_id(device_id)  # a new id: printable and bounded, as new_rollout's
        check_gate(run, table, command, device_id)
        target, calls = table.enter
        port.transition(port.add(device_id), device_id, target, calls, command, run)
        return
    check_gate(run, table, command, device_id)
    source = port.state_of(device)
    dest = table.dest[source]
    if dest == IGNORED:
        return
    if dest == REFUSED:
        raise device_refusal(run.compiled, table, device_id, source, command)
    port.transition(device, device_id, dest, table.calls[source], command, run)


def dispatch(
    run: Turn,
    port: DevicePort[Handle],
    kind: type,
    batch: Iterable[Any],
    device_batch: Callable[[Turn, DeviceTable, Iterable[Any]], None] | None = None,
) -> None:
    """Run ``batch``, commands of one type ``kind``, at ``run.now``: the command
    dispatch of every driver. Device commands go through :func:`device_command` (or the
    driver's own ``device_batch``, which must give the same result), the rollout's and
    the restart's through :func:`fire`, each followed by what fell due.
    """
    route = run.compiled.routes.get(kind)
    if route is None:
        raise InvalidInput(f"{next(iter(batch), kind)!r} is not a certflow command")
    machine, trigger = route
    rules = run.compiled.rules
    run.command = kind.__name__
    if machine == rules.device.name:
        table = run.compiled.device[run.phase.state.value][trigger]
        if device_batch is not None:
            device_batch(run, table, batch)
        else:
            for command in batch:
                device_command(run, port, table, command)
        return
    for _ in batch:
        if machine == rules.rollout.name:
            fire(run, trigger)
        else:
            fire_restart(run, trigger)
        catch_up(run, run.now)


def check_now(
    now: object,
    clock: datetime,
    *,
    rollout: str = "this rollout",
    skew: timedelta = timedelta(0),
    require: Callable[[str, object], datetime] = require_aware,
) -> datetime:
    """The instant a driver runs at: ``now`` must be timezone-aware (``require`` may ask
    more, such as UTC) and never earlier than the rollout's ``clock``, except within
    ``skew``, when the clock's own instant is used."""
    at = require("now", now)
    if at < clock and clock - at <= skew:
        return clock
    if at < clock:
        raise TimeWentBackwards(
            f"now ({at.isoformat()}) is earlier than the last instant {rollout} has "
            f"seen ({clock.isoformat()}); instants must never go backwards"
        )
    return at


def timeout_reason(compiled: Compiled, policy: Policy) -> str:
    """The failure reason a device keeps when its wait ran out (``the wait's timeout``)."""
    return f"no acknowledgement within {show_span(compiled.wait_span(policy) or timedelta(0))}"


# --- Timers ----------------------------------------------------------------------------------


def fire_timer(run: Turn, timer: Timer) -> None:
    """Fire ``timer`` at ``run.now``: its trigger, then whatever firing consumes."""
    fire(run, timer.trigger)
    consumed = TIMERS[timer.name].fired
    if consumed is not None:
        consumed(run.port, run.now)


# --- Rollout and restart actions ----------------------------------------------------------


@action("start_distribution")
def _start_distribution(run: Turn, invocation: Call) -> None:
    run.phase = attrs.evolve(run.phase, started_at=run.now)


def _push(run: Turn, name: str) -> None:
    result = run.port.move(run.compiled.moves[name], run.now)
    known = run.plan.identity  # the root it pushes, by its fingerprint
    root = None if known is None else known.root.fingerprint
    for attempt in sorted(result.pushes):
        run.effects.append(PushRoot(tuple(result.pushes[attempt]), attempt, run.now, root))


@action("push_pending")
def _push_pending(run: Turn, invocation: Call) -> None:
    _push(run, "push_pending")


@action("retry_failed")
def _retry_failed(run: Turn, invocation: Call) -> None:
    _push(run, "retry_failed")


@action("announce")
def _announce(run: Turn, invocation: Call) -> None:
    plan, phase = run.plan, run.phase
    decision = timeline.next_decision(plan, phase)
    if decision is None:
        raise RuntimeError("announce: the rollout has no next checkpoint")
    expiry = timeline.next_decision_is_expiry(plan, phase)
    final = not expiry and timeline.next_checkpoint_is_final(plan, phase)
    progress = Progress.of(plan, run.port.state_counts())
    # What the announced decision will do if nothing changes: the row its trigger would
    # take at that instant, with the fleet as it is now (the declaration decides).
    trigger = "expiry" if expiry else "deadline" if final else "checkpoint"
    rows = run.compiled.rows.get((phase.state.value, trigger), ())
    row, _ = first_row(rows, g.Situation(plan, phase, decision, progress.untrusting))
    outcome, cut_off = "postpone", 0
    if row is not None and run.compiled.rules.rollout.state(row.dest).terminal:
        forced = run.compiled.rules.rollout.state(row.dest).forced
        outcome, cut_off = ("forced import", progress.untrusting) if forced else ("import", 0)
    extend = run.compiled.rows.get((phase.state.value, "extend_manually"), ())
    run.effects.append(
        Notify(
            phase.checkpoints_done + 1,
            decision,
            final,
            run.now,
            expiry=expiry,
            in_scope=progress.in_scope,
            trusting=progress.trusting,
            failed=progress.failed,
            unanswered=progress.unanswered,
            outcome=outcome,
            cut_off=cut_off,
            extension_available=first_row(extend, situation(run))[0] is not None,
        )
    )
    run.phase = attrs.evolve(phase, notified_for=decision)


@action("announce_if_late")
def _announce_if_late(run: Turn, invocation: Call) -> None:
    # Asked of the state the row leads to (the distribution's start is still pending
    # while its actions run): the decision that will come next from there.
    state = run.phase.state
    run.phase = attrs.evolve(run.phase, state=RolloutState(run.dest))
    due = timeline.next_notice(run.plan, run.phase)
    if due is not None and due <= run.now:
        _announce(run, invocation)
    run.phase = attrs.evolve(run.phase, state=state)


@action("announce_cancel")
def _announce_cancel(run: Turn, invocation: Call) -> None:
    run.effects.append(RolloutCancelled(run.now))


@action("postpone")
def _postpone(run: Turn, invocation: Call) -> None:
    number = run.phase.checkpoints_done + 1
    run.phase = attrs.evolve(run.phase, checkpoints_done=number)
    following = timeline.next_checkpoint(run.plan, run.phase)
    if following is None:
        raise RuntimeError("postpone: no checkpoint after the last one")
    run.effects.append(ImportPostponed(number, following, run.now))


@action("import_certificate")
def _import_certificate(run: Turn, invocation: Call) -> None:
    forced = run.compiled.rules.rollout.state(run.dest).forced
    known = run.plan.identity  # the certificate it imports, by its fingerprint
    named = None if known is None else known.certificate.fingerprint
    run.effects.append(ImportCertificate(forced, run.now, named))


@action("mark_stragglers")
def _mark_stragglers(run: Turn, invocation: Call) -> None:
    if run.plan.root_publicly_trusted:
        return  # every device trusts a public root: nobody is cut off
    result = run.port.move(run.compiled.moves["mark_stragglers"], run.now)
    if result.ids:
        run.effects.append(ReenrollmentRequired(tuple(result.ids), run.now))


@action("require_restart")
def _require_restart(run: Turn, invocation: Call) -> None:
    fire_ = run.compiled.rules.rollout.action("require_restart").fires
    if fire_ is None:
        raise RuntimeError("require_restart fires nothing")
    fire_restart(run, fire_.trigger)


@action("announce_restart")
def _announce_restart(run: Turn, invocation: Call) -> None:
    run.effects.append(RestartRequired(run.now))


@action("end")
def _end(run: Turn, invocation: Call) -> None:
    run.phase = attrs.evolve(run.phase, ended_at=run.now)
    run.port.drop_timeouts()


@action("extend")
def _extend(run: Turn, invocation: Call) -> None:
    policy = run.plan.policy
    run.phase = attrs.evolve(
        run.phase,
        extension=run.phase.extension + policy.manual_extension,
        manual_extensions=run.phase.manual_extensions + 1,
    )


@action("time_out_pushes")
def _time_out_pushes(run: Turn, invocation: Call) -> None:
    result = run.port.move(run.compiled.moves["time_out_pushes"], run.now)
    if result.ids:
        run.effects.append(AcknowledgementTimedOut(tuple(result.ids), run.now))


def _bind() -> None:  # pragma: no mutate block
    rules = RULES
    ACTIONS.require_exactly(
        (a.name for m in (rules.rollout, rules.restart) for a in m.actions), "rollout actions"
    )
    TIMERS.require_exactly((t.name for t in rules.rollout.timers), "timers")


_bind()
