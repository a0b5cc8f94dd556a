"""The declarations: their structure, the derived tables, the transitions model, the docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from transitions import MachineError

import certflow as cf
from certflow.core.evaluator import DEVICE_NEXT
from certflow.core.machines import MachineSpec, Transition, diagrams_page

MACHINES = [cf.ROLLOUT_MACHINE, cf.DEVICE_MACHINE]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "machines.md"


@pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)
def test_each_declared_machine_is_well_formed(spec: MachineSpec) -> None:
    spec.validate()
    assert spec.reachable() == frozenset(spec.states)


def test_the_rollout_machine_has_the_spec_states_and_terminals() -> None:
    assert cf.ROLLOUT_MACHINE.states == tuple(s.value for s in cf.RolloutState)
    assert cf.ROLLOUT_MACHINE.initial == "pending"
    assert cf.ROLLOUT_MACHINE.terminal == {"imported", "forced", "cancelled"}
    assert {s for s in cf.RolloutState if s.terminal} == {
        cf.RolloutState.IMPORTED,
        cf.RolloutState.FORCED,
        cf.RolloutState.CANCELLED,
    }


def test_the_device_machine_has_the_spec_states() -> None:
    assert cf.DEVICE_MACHINE.states == tuple(s.value for s in cf.DeviceState)
    assert cf.DEVICE_MACHINE.initial == "pending"


def _spec(**changes: Any) -> MachineSpec:
    base = MachineSpec(
        name="toy",
        states=("a", "b", "end"),
        initial="a",
        terminal=frozenset({"end"}),
        transitions=(Transition("a", "go", "b"), Transition("b", "stop", "end")),
    )
    return attrs.evolve(base, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initial": "zz"}, "initial state 'zz' is not declared"),
        ({"states": ("a", "a", "b", "end")}, "duplicate state names"),
        (
            {
                "transitions": (
                    Transition("a", "go", "b"),
                    Transition("b", "stop", "end"),
                    Transition("end", "again", "a"),
                )
            },
            "leaves terminal state",
        ),
        ({"transitions": (Transition("a", "go", "end"),)}, "unreachable states \\['b'\\]"),
        (
            {
                "transitions": (
                    Transition("a", "go", "b"),
                    Transition("a", "go", "end"),
                    Transition("b", "stop", "end"),
                )
            },
            "ambiguous",
        ),
        ({"transitions": (Transition("a", "go", "nowhere"),)}, "undeclared state 'nowhere'"),
    ],
)
def test_validation_refuses_a_malformed_machine(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _spec(**changes).validate()


class _Guards:
    """Answers every guard of the declarations from one flag."""

    def __init__(self, holds: bool) -> None:
        self.holds = holds

    def condition_holds(self) -> bool:
        return self.holds

    def condition_fails(self) -> bool:
        return not self.holds

    def all_trust(self) -> bool:
        return self.holds

    def not_all_trust(self) -> bool:
        return not self.holds


@pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)
def test_the_fast_table_agrees_with_the_transitions_model_for_every_state_and_trigger(
    spec: MachineSpec,
) -> None:
    table = spec.table()
    guards = {
        "": None,
        "condition_holds": True,
        "all_trust": True,
        "condition_fails": False,
        "not_all_trust": False,
    }
    for state in spec.states:
        for trigger in spec.triggers():
            for holds in (True, False):
                model = _Guards(holds)
                spec.build_model(model, initial=state)
                row = table.get((state, trigger), {})
                expected = next(
                    (dest for g, dest in row.items() if guards[g] in (None, holds)), None
                )
                if expected is None:
                    with pytest.raises(MachineError):
                        model.trigger(trigger)  # type: ignore[attr-defined]
                else:
                    assert model.trigger(trigger) is True  # type: ignore[attr-defined]
                    assert model.state == expected  # type: ignore[attr-defined]


def test_the_evaluators_device_table_is_the_declaration() -> None:
    names = cf.DEVICE_MACHINE.states
    rows = {(r.source, r.trigger): r.dest for r in cf.DEVICE_MACHINE.transitions}
    for trigger, dests in DEVICE_NEXT.items():
        for source, dest in zip(names, dests, strict=True):
            assert rows.get((source, trigger)) == (names[dest] if dest >= 0 else None)


@pytest.mark.parametrize("spec", MACHINES, ids=lambda s: s.name)
def test_the_diagram_shows_every_transition_and_every_terminal_state(spec: MachineSpec) -> None:
    text = spec.mermaid()
    assert text.count("stateDiagram-v2") == 1
    edges: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        if " --> " in line and ": " in line:
            ends, labels = line.strip().split(": ", 1)
            source, dest = ends.split(" --> ")
            edges[(source, dest)] = set(labels.split(" | "))
    for row in spec.transitions:
        label = row.trigger + (f" [{row.guard}]" if row.guard else "")
        assert label in edges[(row.source, row.dest)]
    assert sum(map(len, edges.values())) == len(spec.transitions)
    for state in spec.terminal:
        assert f"{state} --> [*]" in text
    assert f"[*] --> {spec.initial}" in text


def test_the_machines_page_in_docs_is_generated_from_the_declarations() -> None:
    assert DOCS.read_text() == diagrams_page(), "docs/machines.md is stale: run `make docs`"
