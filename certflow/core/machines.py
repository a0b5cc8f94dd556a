"""The two state machines of a rollout, declared once, as data.

Theory of operation
-------------------
A *rollout* imports one new server certificate. It is a small machine
(:data:`ROLLOUT_MACHINE`): ``pending`` until an administrator chooses how to import,
``distributing`` while the root certificate is pushed to the fleet, ``extended`` after a
checkpoint found the fleet not ready, and one of the terminal states ``imported``,
``forced`` (imported at the deadline or by command although some devices did not trust
the root) or ``cancelled``.

Every managed *device* has its own sub-machine (:data:`DEVICE_MACHINE`) that tracks
whether it received and installed the root certificate.

Everything else is derived from these two declarations and nothing else:

* :meth:`MachineSpec.validate` proves the structure (one initial state, every state
  reachable, nothing leaves a terminal state, every transition names declared states);
* :meth:`MachineSpec.table` is the fast ``(source, trigger) -> destinations`` table that
  the evaluator (:mod:`certflow.core.evaluator`) consults;
* :meth:`MachineSpec.mermaid` renders the diagram in ``docs/machines.md`` through the
  ``transitions`` package, which also serves the tests as an independent executable
  model (:meth:`MachineSpec.build_model`).

A transition with several destinations for one trigger is told apart by its *guard*, a
named condition that the evaluator decides (for example ``condition_holds``). The
declaration only names guards; the evaluator owns their meaning.

This module performs no I/O; ``make docs`` writes :func:`diagrams_page` to the docs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["DEVICE_MACHINE", "ROLLOUT_MACHINE", "MachineSpec", "Transition"]


@attrs.frozen
class Transition:
    """One row of a machine's table: ``source --trigger [guard]--> dest``."""

    source: str
    trigger: str
    dest: str
    guard: str = ""
    note: str = ""


@attrs.frozen
class MachineSpec:
    """A finite state machine as data: its states, initial and terminal states, rows."""

    name: str
    states: tuple[str, ...]
    initial: str
    terminal: frozenset[str]
    transitions: tuple[Transition, ...]

    def validate(self) -> None:
        """Raise ``ValueError`` unless the machine is well formed.

        Well formed: the states are unique; there is exactly one initial state and it is
        declared; every row names declared states; no row leaves a terminal state; every
        state is reachable from the initial one; a trigger has one unguarded row per
        source or only guarded rows with distinct guards.
        """
        declared = set(self.states)
        if len(declared) != len(self.states):
            raise ValueError(f"{self.name}: duplicate state names")
        if self.initial not in declared:
            raise ValueError(f"{self.name}: initial state {self.initial!r} is not declared")
        if not self.terminal <= declared:
            raise ValueError(f"{self.name}: terminal states {set(self.terminal - declared)}")
        for row in self.transitions:
            for state in (row.source, row.dest):
                if state not in declared:
                    raise ValueError(f"{self.name}: {row} names undeclared state {state!r}")
            if row.source in self.terminal:
                raise ValueError(f"{self.name}: {row} leaves terminal state {row.source!r}")
        for (source, trigger), rows in self._rows_by_key().items():
            guards = [row.guard for row in rows]
            if len(rows) > 1 and ("" in guards or len(set(guards)) != len(guards)):
                raise ValueError(
                    f"{self.name}: {source} --{trigger}--> is ambiguous: guards {guards}"
                )
        unreachable = declared - self.reachable()
        if unreachable:
            raise ValueError(f"{self.name}: unreachable states {sorted(unreachable)}")

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

    def triggers(self) -> tuple[str, ...]:
        """Every trigger, in order of first declaration."""
        return tuple(dict.fromkeys(row.trigger for row in self.transitions))

    def table(self) -> Mapping[tuple[str, str], Mapping[str, str]]:
        """``(source, trigger) -> {guard: dest}``; the unguarded row has guard ``""``."""
        return {
            key: {row.guard: row.dest for row in rows} for key, rows in self._rows_by_key().items()
        }

    def _rows_by_key(self) -> dict[tuple[str, str], list[Transition]]:
        rows: dict[tuple[str, str], list[Transition]] = {}
        for row in self.transitions:
            rows.setdefault((row.source, row.trigger), []).append(row)
        return rows

    def build_model(self, model: Any = None, *, initial: str | None = None, **kwargs: Any) -> Any:
        """A ``transitions`` machine of this declaration, with guards as conditions.

        Each guard ``g`` becomes the condition method ``g`` of ``model``, so a test can
        drive the machine with ``model.trigger(name)`` after setting what the guards
        answer. ``initial`` starts it elsewhere than the declared initial state;
        ``kwargs`` go to the ``transitions`` constructor (e.g. ``graph_engine``).
        """
        from transitions import Machine

        machine_class: Any = kwargs.pop("machine_class", Machine)
        rows: list[dict[str, Any]] = []
        for row in self.transitions:
            spec: dict[str, Any] = {
                "trigger": row.trigger,
                "source": row.source,
                "dest": row.dest,
            }
            if row.guard:
                spec["conditions"] = row.guard
            rows.append(spec)
        return machine_class(
            model=model if model is not None else "self",
            states=list(self.states),
            initial=initial or self.initial,
            transitions=rows,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            **kwargs,
        )

    def mermaid(self) -> str:
        """The machine as a Mermaid ``stateDiagram-v2``, rendered by ``transitions``."""
        from transitions.extensions import GraphMachine

        class _Model:
            pass

        model: Any = _Model()
        self.build_model(
            model,
            machine_class=GraphMachine,
            graph_engine="mermaid",
            show_conditions=True,
            title=self.name,
        )
        text: str = model.get_graph().draw(None)
        # The active-state highlight belongs to a live model, not to a specification.
        text = text.replace(f"Class {self.initial} s_active", f"Class {self.initial} s_default")
        ends = "\n".join(f"  {state} --> [*]" for state in self.states if state in self.terminal)
        return text.rstrip("\n") + ("\n" + ends if ends else "") + "\n"


def _rows(*rows: tuple[str, ...]) -> tuple[Transition, ...]:
    return tuple(Transition(*row) for row in rows)


# The rollout machine of rollout-rules.md. Guards: ``all_trust`` (every in-scope device
# already trusts the root, or the root is public), ``condition_holds`` (the import
# condition of the policy), ``condition_fails``/``not_all_trust`` their negations.
ROLLOUT_MACHINE = MachineSpec(
    name="rollout",
    states=("pending", "distributing", "extended", "imported", "forced", "cancelled"),
    initial="pending",
    terminal=frozenset({"imported", "forced", "cancelled"}),
    transitions=_rows(
        ("pending", "distribute_root", "distributing"),
        ("pending", "proceed_to_import", "imported", "all_trust"),
        ("pending", "proceed_to_import", "forced", "not_all_trust"),
        ("distributing", "checkpoint", "imported", "condition_holds"),
        ("distributing", "checkpoint", "extended", "condition_fails"),
        ("extended", "checkpoint", "imported", "condition_holds"),
        ("extended", "checkpoint", "extended", "condition_fails"),
        ("distributing", "deadline", "imported", "condition_holds"),
        ("distributing", "deadline", "forced", "condition_fails"),
        ("extended", "deadline", "imported", "condition_holds"),
        ("extended", "deadline", "forced", "condition_fails"),
        ("distributing", "import_now", "imported", "condition_holds"),
        ("distributing", "import_now", "forced", "condition_fails"),
        ("extended", "import_now", "imported", "condition_holds"),
        ("extended", "import_now", "forced", "condition_fails"),
        ("distributing", "extend_manually", "distributing"),
        ("extended", "extend_manually", "extended"),
        ("pending", "cancel", "cancelled"),
        ("distributing", "cancel", "cancelled"),
        ("extended", "cancel", "cancelled"),
    ),
)

# The per-device sub-machine. Rows marked "certflow" in docs/machines.md are choices
# where the spec is silent (see docs/decisions.md).
DEVICE_MACHINE = MachineSpec(
    name="device",
    states=("pending", "pushed", "installed", "failed", "removed", "reenroll_required"),
    initial="pending",
    terminal=frozenset(),
    transitions=_rows(
        ("pending", "push", "pushed"),
        ("pushed", "report_installed", "installed"),
        ("pending", "report_installed", "installed", "", "already trusts the root"),
        ("failed", "report_installed", "installed", "", "late confirmation"),
        ("pushed", "report_failed", "failed"),
        ("pushed", "ack_timeout", "failed"),
        ("failed", "retry", "pushed"),
        ("pending", "unenroll", "removed"),
        ("pushed", "unenroll", "removed"),
        ("installed", "unenroll", "removed"),
        ("failed", "unenroll", "removed"),
        ("reenroll_required", "unenroll", "removed"),
        ("removed", "enroll", "pending", "", "enrols again"),
        ("pending", "import", "reenroll_required"),
        ("pushed", "import", "reenroll_required"),
        ("failed", "import", "reenroll_required"),
        ("reenroll_required", "reenrolled", "installed"),
    ),
)

ROLLOUT_MACHINE.validate()
DEVICE_MACHINE.validate()


def diagrams_page() -> str:
    """The Markdown of ``docs/machines.md``: both machines, generated from the data."""
    parts = [
        "# The machines",
        "",
        "Generated by `make docs` from the declarations in",
        "`certflow/core/machines.py`; `tests/core/test_machines.py` fails if this page is stale.",
        "",
    ]
    for spec in (ROLLOUT_MACHINE, DEVICE_MACHINE):
        parts += [f"## {spec.name}", "", "```mermaid", spec.mermaid().rstrip("\n"), "```", ""]
        parts += ["| from | trigger | guard | to | note |", "|---|---|---|---|---|"]
        parts += [
            f"| {r.source} | {r.trigger} | {r.guard} | {r.dest} | {r.note} |"
            for r in spec.transitions
        ]
        parts.append("")
    return "\n".join(parts)
