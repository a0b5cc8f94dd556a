"""The pure evaluator: ``(rollout, now) -> (rollout', effects)``, the in-memory driver.

Theory of operation
-------------------
An :class:`Evaluator` drives one set of rules (:data:`~certflow.core.machines.RULES`
by default) over :class:`~certflow.core.rollout.Rollout` values. It decides nothing
itself: the rollout machine runs through the generic interpreter
(:mod:`certflow.core.interpreter`), every device command through the device kernel
(:mod:`certflow.core._kernel`), and both read tables compiled from the declarations.
Change a row and the evaluator follows.

Time moves a rollout only when a timer of its state falls due. :meth:`Evaluator.advance`
fires every timer due up to ``now``, in order, each at its own instant (catch-up), so
that advancing in one jump equals advancing in any number of smaller steps;
:meth:`Evaluator.apply` first advances to the command's instant, then applies the
command. Nothing here reads a clock, performs I/O or draws random numbers; effects are
data for the host to perform.

One path is written out for speed: a device command whose row has no action, with
nothing due, is applied inline on the code tree (one table lookup, one chunk copied).
It reads the same compiled table as every other path.

A refused command raises :class:`~certflow.errors.CommandRefused`; the rollout passed in
is never modified, since values are immutable.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from typing import Any, NamedTuple

from certflow.core import commands as c
from certflow.core import guards as g
from certflow.core import interpreter as i
from certflow.core._fleet import (
    Fleet,
    count_of,
)
from certflow.core._kernel import Draft, one_event, run_commands
from certflow.core.effects import Effect
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.machines import RULES, Rules
from certflow.core.plan import Phase, Plan
from certflow.core.rollout import Rollout, new_rollout

__all__ = ["Evaluator", "Step", "advance", "apply", "apply_all", "new_rollout", "next_due"]


class Step(NamedTuple):
    """What :func:`advance` and :func:`apply` return; unpacks as ``(rollout, effects)``."""

    rollout: Rollout
    effects: tuple[Effect, ...]


_NO_EFFECTS: tuple[Effect, ...] = ()
_new = object.__new__
_tuple_new = tuple.__new__
_slots: dict[str, Any] = dict(vars(Rollout))
_set_plan = _slots["plan"].__set__
_set_phase = _slots["phase"].__set__
_set_clock = _slots["clock"].__set__
_set_fleet = _slots["_fleet"].__set__


def _make(plan: Plan, phase: Phase, fleet: Fleet, clock: datetime) -> Rollout:
    # The hot path builds one Rollout per device event; writing the slots directly
    # skips the frozen __init__ (same fields, same result, a third of the cost).
    rollout: Rollout = _new(Rollout)
    _set_plan(rollout, plan)
    _set_phase(rollout, phase)
    _set_clock(rollout, clock)
    _set_fleet(rollout, fleet)
    return rollout


def _check_now(rollout: Rollout, now: object) -> datetime:
    return i.check_now(now, rollout.clock)


class Evaluator:
    """The in-memory driver of one set of rules.

    ``certflow.advance``, ``apply``, ``apply_all`` and ``next_due`` are the methods of
    the evaluator of :data:`~certflow.core.machines.RULES`; build another to run changed
    rules (the tests do, to prove that a changed row changes behaviour).
    """

    def __init__(self, rules: Rules | None = None, *, _rules: Rules | None = None) -> None:
        if rules is not None:
            warnings.warn(
                "Evaluator(rules) is deprecated and will be removed in certflow 0.3: the "
                "rules are certflow's own (docs/decisions.md, 'Rules are internal'); "
                "use Evaluator()",
                DeprecationWarning,
                stacklevel=2,
            )
            _rules = rules
        rules = RULES if _rules is None else _rules
        self.rules = rules
        self.compiled = i.compile_rules(rules)
        routes = self._routes = self.compiled.routes
        # Per rollout state: device command class -> its table, for the tables the
        # inline path may take (the state lets the trigger through without a guard).
        self._fast: dict[str, dict[type, tuple[int, ...]]] = {
            state: {
                kind: tables[trigger].fast
                for kind, (machine, trigger) in routes.items()
                if machine == rules.device.name
                and tables[trigger].allowed
                and not tables[trigger].guards
            }
            for state, tables in self.compiled.device.items()
        }

    # --- public operations -----------------------------------------------------------------

    def advance(self, rollout: Rollout, now: datetime) -> Step:
        """Process everything that fell due up to ``now``, in order; pure.

        Raises :class:`~certflow.errors.InvalidInput` for a ``now`` that is not an aware
        datetime and :class:`~certflow.errors.TimeWentBackwards` for one earlier than
        ``rollout.clock``.
        """
        now = _check_now(rollout, now)
        if not self._anything_due(rollout, now):
            return Step(self._at(rollout, now), _NO_EFFECTS)
        run, draft = self._start(rollout, now, "")
        i.catch_up(run, now)
        return Step(self._finish(rollout, run, draft), tuple(run.effects))

    def apply(self, rollout: Rollout, command: c.Command, now: datetime) -> Step:
        """Advance to ``now``, then apply ``command`` at ``now``; pure.

        Effects come in the order they fell due: first what the advance emitted, then
        the command's. Raises :class:`~certflow.errors.CommandRefused` (why, and what
        would allow it), :class:`~certflow.errors.UnknownDevice`, or the errors of
        :meth:`advance`; the rollout passed in is unchanged in every case.
        """
        # The one-device hot path. The checks of _check_now, inlined: a tzinfo without
        # an offset makes `now` naive, and comparing it with the clock raises TypeError.
        try:
            if type(now) is not datetime or now.tzinfo is None or now < rollout.clock:
                now = _check_now(rollout, now)
        except TypeError:
            now = _check_now(rollout, now)
        fleet = rollout._fleet
        roster = fleet.roster
        due = roster.phase_due
        head = roster.timeouts_head
        if (due is not None and due <= now) or (
            head != roster.timeouts_tail and roster.timeouts[head].due <= now
        ):
            return self._general(rollout, command, now, True)
        phase = rollout.phase
        # The same DeviceTable rows as the general path's, limited to rows without
        # actions in states whose gate needs no guard.
        dests = self._fast[phase.state].get(type(command))
        if dests is not None:
            index = roster.positions.get(command.device_id)  # type: ignore[union-attr]
            if index is not None:
                moved = one_event(fleet, dests, index)
                if moved is fleet:  # a declared duplicate: no change, not even the clock
                    return _tuple_new(Step, (rollout, _NO_EFFECTS))
                if moved is not None:
                    return _tuple_new(Step, (_make(rollout.plan, phase, moved, now), _NO_EFFECTS))
        return self._general(rollout, command, now, False)

    def _general(self, rollout: Rollout, command: c.Command, now: datetime, due: bool) -> Step:
        run, draft = self._start(rollout, now, type(command).__name__)
        if due:
            i.catch_up(run, now)
        self._dispatch(run, draft, type(command), [command])
        return self._commanded(rollout, run, draft)

    def apply_all(self, rollout: Rollout, commands: Iterable[c.Command], now: datetime) -> Step:
        """Apply many commands at one instant, as :meth:`apply` would one by one; pure.

        The result equals folding :meth:`apply` over ``commands`` at ``now``. Runs of
        device commands of one type go through the device kernel in one draft of the
        fleet. The batch is atomic: if any command is refused, the error propagates and
        nothing is kept.
        """
        now = _check_now(rollout, now)
        run, draft = self._start(rollout, now, "")
        i.catch_up(run, now)
        for kind, same in groupby(commands, type):
            self._dispatch(run, draft, kind, same)
        return self._commanded(rollout, run, draft)

    def _commanded(self, before: Rollout, run: i.Turn, draft: Draft) -> Step:
        """The step of commands: the rollout passed in, unchanged (its clock included),
        when they changed nothing and nothing fell due (a no-op: docs/decisions.md)."""
        if not run.effects and not draft.changed and run.phase == before.phase:
            return Step(before, _NO_EFFECTS)
        return Step(self._finish(before, run, draft), tuple(run.effects))

    def next_due(self, rollout: Rollout) -> datetime | None:
        """The next instant at which :meth:`advance` would do anything (a notice, a
        checkpoint, the deadline, an acknowledgement timeout), or ``None``.

        A host's scheduler sleeps until then.
        """
        draft = Draft(rollout._fleet, self.compiled, rollout.plan.policy)
        found = i.next_timer(self.compiled, rollout.plan, rollout.phase, draft)
        return None if found is None else found[0]

    def allows(self, rollout: Rollout, command: c.Command, now: datetime) -> bool:
        """Whether an administrator's ``command`` would be accepted at ``now``.

        Only chooses the command's row (it runs nothing), so it is O(1); the summary
        asks it whether manual extension is available. A device command's answer
        depends on the device: apply it and catch the refusal instead.
        """
        situation, rows, _ = self._rows_for(rollout, command, now)
        return rows is not None and i.first_row(rows, situation)[0] is not None

    def refusal(self, rollout: Rollout, command: c.Command, now: datetime) -> CommandRefused | None:
        """The refusal an administrator's ``command`` would meet at ``now``, or ``None``.

        Chooses its row without running it, like :meth:`allows`, and gives the refusal
        :meth:`apply` would raise (why, and from when it would be allowed).
        """
        situation, _, trigger = self._rows_for(rollout, command, now)
        return i.refusal(self.compiled, situation, trigger, type(command).__name__)

    def allows_at(
        self, plan: Plan, phase: Phase, untrusting: int, now: datetime, command: c.Command
    ) -> bool:
        """:meth:`allows` for a rollout given by its parts, already advanced to ``now``
        (``untrusting``: in-scope devices that do not trust the root); for drivers that
        keep the parts, not a :class:`Rollout`."""
        route = self._routes.get(type(command))
        if route is None or route[0] != self.rules.rollout.name:
            raise InvalidInput(f"{command!r} is not an administrator's rollout command")
        rows = self.compiled.rows.get((phase.state.value, route[1]))
        situation = g.Situation(plan, phase, now, untrusting)
        return rows is not None and i.first_row(rows, situation)[0] is not None

    def _rows_for(
        self, rollout: Rollout, command: c.Command, now: datetime
    ) -> tuple[g.Situation, tuple[Any, ...] | None, str]:
        route = self._routes.get(type(command))
        if route is None or route[0] != self.rules.rollout.name:
            raise InvalidInput(
                f"{command!r} is not an administrator's rollout command; allows() and "
                "refusal() answer for DistributeRoot, ProceedToImport, ImportNow, "
                "ExtendManually, RetryAllFailed and Cancel"
            )
        rollout = self.advance(rollout, now).rollout
        untrusting = count_of(rollout._fleet.counts, self.compiled.untrusting_states)
        situation = g.Situation(rollout.plan, rollout.phase, rollout.clock, untrusting)
        return situation, self.compiled.rows.get((rollout.phase.state.value, route[1])), route[1]

    # --- the general path ------------------------------------------------------------------

    def _anything_due(self, rollout: Rollout, now: datetime) -> bool:
        due = rollout._fleet.roster.phase_due
        timeout = rollout._fleet.next_timeout()
        return (due is not None and due <= now) or (timeout is not None and timeout.due <= now)

    def _at(self, rollout: Rollout, now: datetime) -> Rollout:
        if rollout.clock == now:
            return rollout
        return _make(rollout.plan, rollout.phase, rollout._fleet, now)

    def _start(self, rollout: Rollout, now: datetime, command: str) -> tuple[i.Turn, Draft]:
        draft = Draft(rollout._fleet, self.compiled, rollout.plan.policy)
        run = i.Turn(self.compiled, rollout.plan, rollout.phase, now, draft, [], command)
        return run, draft

    def _dispatch(self, run: i.Turn, draft: Draft, kind: type, batch: Iterable[Any]) -> None:
        def device_batch(run: i.Turn, table: i.DeviceTable, commands: Iterable[Any]) -> None:
            run_commands(draft, run, table, commands)

        i.dispatch(run, draft, kind, batch, device_batch)

    def _finish(self, before: Rollout, run: i.Turn, draft: Draft) -> Rollout:
        phase = run.phase
        due = (
            before._fleet.roster.phase_due
            if phase is before.phase
            else self._phase_due(run.plan, phase)
        )
        return _make(run.plan, phase, draft.freeze(due), run.now)

    def _phase_due(self, plan: Plan, phase: Phase) -> datetime | None:
        found = i.next_timer(self.compiled, plan, phase, None)
        return None if found is None else found[0]

    def assemble(self, plan: Plan, phase: Phase, fleet: Fleet, clock: datetime) -> Rollout:
        """A rollout of these parts, with its caches computed (for deserialisation)."""
        draft = Draft(fleet, self.compiled, plan.policy)
        return _make(plan, phase, draft.freeze(self._phase_due(plan, phase)), clock)


DEFAULT = Evaluator()

# The public functions are the default evaluator's own methods (no extra call).
advance = DEFAULT.advance
apply = DEFAULT.apply
apply_all = DEFAULT.apply_all
next_due = DEFAULT.next_due
