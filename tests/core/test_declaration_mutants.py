"""Mutation testing of the declarations themselves: every single edit of the rules is
caught, or is listed here as equivalent, with the reason.

mutmut (`make mutate`) mutates the code that *runs* the rules; the rules are data built
at import time, which mutmut's workers never see mutated. So this module mutates the
data: it builds every single-edit variant of :data:`certflow.RULES` (a row dropped or
sent elsewhere, a guard or an action dropped, rows, guards or timers reordered, a gate,
a follow-up, a duplicate or a timer dropped, an outcome flipped), and requires each
valid variant to be *killed*: either its tables differ from the hand transcription of
the spec (``tests/core/reference_model.py``), or driving the evaluator of the variant
through the row tour (every rollout row, on the unchanged reference model) gives a
different outcome somewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import certflow as cf
from certflow.core.interpreter import compile_rules
from certflow.core.machines import RULES, MachineSpec, Rules, State, Transition
from tests.core import reference_model as rm
from tests.core.strategies import DAY, HOUR, T0
from tests.core.test_reference_model import TOUR, Step, _create, _drive

Mutant = tuple[str, Rules]


# --- Generating the variants ---------------------------------------------------------------


def _with_machine(rules: Rules, machine: MachineSpec) -> Rules:
    return attrs.evolve(rules, **{machine.name: machine})


def _rows_variants(machine: MachineSpec) -> Iterator[tuple[str, MachineSpec]]:
    rows = machine.transitions
    names = machine.state_names

    def replaced(i: int, row: Transition | None) -> MachineSpec:
        new = [*rows[:i], *([row] if row is not None else []), *rows[i + 1 :]]
        return attrs.evolve(machine, transitions=tuple(new))

    for i, row in enumerate(rows):
        label = f"{machine.name}: {row.source} --{row.label()}--> {row.dest}"
        yield f"{label}: dropped", replaced(i, None)
        for dest in names:
            if dest != row.dest:
                yield f"{label}: to {dest}", replaced(i, attrs.evolve(row, dest=dest))
        for g in row.guards:
            guards = tuple(x for x in row.guards if x != g)
            yield f"{label}: without guard {g}", replaced(i, attrs.evolve(row, guards=guards))
        if len(row.guards) > 1:
            swapped = attrs.evolve(row, guards=tuple(reversed(row.guards)))
            yield f"{label}: guards reversed", replaced(i, swapped)
        for a in row.actions:
            actions = tuple(x for x in row.actions if x is not a)
            yield f"{label}: without action {a}", replaced(i, attrs.evolve(row, actions=actions))
        if i and (rows[i - 1].source, rows[i - 1].trigger) == (row.source, row.trigger):
            order = [*rows[: i - 1], row, rows[i - 1], *rows[i + 1 :]]
            yield (
                f"{label}: before the row above it",
                attrs.evolve(machine, transitions=tuple(order)),
            )


def _state_variants(machine: MachineSpec) -> Iterator[tuple[str, MachineSpec]]:
    def with_state(i: int, state: State) -> MachineSpec:
        states = (*machine.states[:i], state, *machine.states[i + 1 :])
        return attrs.evolve(machine, states=states)

    for i, state in enumerate(machine.states):
        if state.terminal and machine.name == "rollout":
            flipped = attrs.evolve(state, forced=not state.forced)
            yield f"{machine.name}: {state.name}: forced flag flipped", with_state(i, flipped)
        label = f"{machine.name}: state {state.name}"
        for j, gate in enumerate(state.gates):
            gates = (*state.gates[:j], *state.gates[j + 1 :])
            yield (
                f"{label}: gate {gate.trigger} dropped",
                with_state(i, attrs.evolve(state, gates=gates)),
            )
            for field, changed in (
                ("guards", attrs.evolve(gate, guards=())),
                ("then", attrs.evolve(gate, then=())),
            ):
                if changed != gate:
                    gates = (*state.gates[:j], changed, *state.gates[j + 1 :])
                    yield (
                        f"{label}: gate {gate.trigger} without {field}",
                        with_state(i, attrs.evolve(state, gates=gates)),
                    )
        for j, timer in enumerate(state.timers):
            timers = (*state.timers[:j], *state.timers[j + 1 :])
            yield (
                f"{label}: timer {timer} dropped",
                with_state(i, attrs.evolve(state, timers=timers)),
            )
            if j:
                order = (*state.timers[: j - 1], timer, state.timers[j - 1], *state.timers[j + 1 :])
                yield (
                    f"{label}: timer {timer} before {state.timers[j - 1]}",
                    with_state(i, attrs.evolve(state, timers=order)),
                )
    for j, pair in enumerate(machine.ignored):
        ignored = (*machine.ignored[:j], *machine.ignored[j + 1 :])
        yield (
            f"{machine.name}: duplicate {pair} no longer ignored",
            attrs.evolve(machine, ignored=ignored),
        )


def _drop_unused(machine: MachineSpec) -> MachineSpec:
    """Drop declarations an edit left unused, so that the variant can validate."""
    used_guards = {g for r in machine.transitions for g in r.guards} | {
        g for s in machine.states for gate in s.gates for g in gate.guards
    }
    used_actions = {a.name for r in machine.transitions for a in r.actions}
    used_timers = {t for s in machine.states for t in s.timers}
    return attrs.evolve(
        machine,
        guards=tuple(g for g in machine.guards if g.name in used_guards),
        actions=tuple(a for a in machine.actions if a.name in used_actions),
        timers=tuple(t for t in machine.timers if t.name in used_timers),
    )


def mutants() -> list[Mutant]:
    """Every single-edit variant of RULES that validates and compiles."""
    found: list[Mutant] = []
    for machine in RULES.machines:
        for label, variant in (*_rows_variants(machine), *_state_variants(machine)):
            rules = _with_machine(RULES, _drop_unused(variant))
            try:
                compile_rules(rules)
            except ValueError:
                continue  # not a valid declaration: validation already refuses it
            found.append((label, rules))
    return found


MUTANTS = mutants()


# --- Killing them ----------------------------------------------------------------------------


def _static_difference(rules: Rules) -> str | None:
    """How the variant's tables differ from the hand transcription, if they do (the
    comparisons of ``test_reference_model.py``)."""
    rollout, device = rules.rollout, rules.device
    if {(r.source, r.trigger, r.dest) for r in rollout.transitions} != rm.ROLLOUT_ROWS:
        return "rollout rows"
    if {(r.source, r.trigger, r.dest) for r in device.transitions} != rm.DEVICE_ROWS:
        return "device rows"
    if set(device.ignored) != rm.DEVICE_IGNORED:
        return "ignored duplicates"
    gates = {s.name: {g.trigger for g in s.gates} for s in rollout.states}
    if gates != {state: set(gate) for state, gate in rm.GATES.items()}:
        return "gates"
    conditioned = {(s.name, g.trigger) for s in rollout.states for g in s.gates if g.guards}
    if conditioned != {(s, t) for s, gate in rm.GATES.items() for t, c in gate.items() if c}:
        return "gate conditions"
    then = {(s.name, g.trigger): g.then for s in rollout.states for g in s.gates if g.then}
    if then != dict(rm.FOLLOW_UPS):
        return "follow-ups"
    if {s.name: s.timers for s in rollout.states if s.timers} != dict(rm.TIMERS):
        return "timers"
    return None


def _tour_difference(rules: Rules) -> str | None:
    evaluator = cf.Evaluator(_rules=rules)
    for row, setup, steps in TOUR:
        ids = ["d0", "d1"]
        setup = dict(setup)
        trusted = setup.pop("trusted", ("d0",))
        policy = setup.pop("policy", None)
        facts = _create(ids, policy, **setup)
        rollout = cf.new_rollout(
            ids, root_publicly_trusted=False, trusted_device_ids=trusted, **facts
        )
        model = rm.ReferenceRollout(ids, public=False, trusted=trusted, **facts)
        try:
            _drive(evaluator, model, rollout, steps)
        except (AssertionError, cf.CertflowError, RuntimeError, KeyError, ValueError) as error:
            return f"tour {'-'.join(row)}: {type(error).__name__}"
    return None


# Beyond the tour (which takes every row the way it is meant to be taken): refusals, the
# restart machine, and a checkpoint where trust holds but the import condition does not.
# Each runs on the evaluator and the unchanged model alike.
SHORT = {"new_not_after": T0 + 21 * DAY}  # valid through a deadline started at T0, no later
EXTRA: list[tuple[str, dict[str, Any], list[Step]]] = [
    ("distribute: too late for the certificate", SHORT, [([cf.DistributeRoot()], T0 + DAY)]),
    ("proceed: the certificate expired", SHORT, [([cf.ProceedToImport()], T0 + 22 * DAY)]),
    (
        "proceed: the certificate expired, every device trusting",
        {**SHORT, "trusted": ("d0", "d1")},
        [([cf.ProceedToImport()], T0 + 22 * DAY)],
    ),
    ("extend: before day 6", {}, [([cf.DistributeRoot()], T0), ([cf.ExtendManually()], T0 + DAY)]),
    (
        "extend: the certificate would expire before the moved deadline",
        {"new_not_after": T0 + 25 * DAY},
        [([cf.DistributeRoot()], T0), ([cf.ExtendManually()], T0 + 6 * DAY)],
    ),
    (
        "bulk retry: not an MDM server certificate",
        {"kind": cf.CertificateKind.AGENT_SERVER},
        [
            ([cf.DistributeRoot()], T0),
            ([cf.DeviceFailed("d1", "x")], T0 + HOUR),
            ([cf.RetryAllFailed()], T0 + 2 * HOUR),
        ],
    ),
    (
        "restart: required after the import, cleared once, then a duplicate",
        {"trusted": ("d0", "d1")},
        [
            ([cf.ServerRestarted()], T0),
            ([cf.ProceedToImport()], T0),
            ([cf.ServerRestarted()], T0 + HOUR),
            ([cf.ServerRestarted()], T0 + 2 * HOUR),
        ],
    ),
    (
        "checkpoints: every device trusts, the old certificate has not expired",
        {
            "trusted": ("d0", "d1"),
            "policy": cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED),
        },
        [([cf.DistributeRoot()], T0), (None, T0 + 7 * DAY), (None, T0 + 14 * DAY)],
    ),
    (
        "extended: extension not open yet (it opens on day 10)",
        {"policy": cf.Policy(manual_extension_opens=10 * DAY)},
        [([cf.DistributeRoot()], T0), ([cf.ExtendManually()], T0 + 8 * DAY)],
    ),
    (
        "extended: the certificate would expire before the moved deadline",
        {"new_not_after": T0 + 25 * DAY},
        [([cf.DistributeRoot()], T0), ([cf.ExtendManually()], T0 + 8 * DAY)],
    ),
    # The existing certificate's expiry close ahead: announced at once by the row that
    # makes it the next decision (distribution start, a checkpoint that extends, an
    # extension), since its notice instant has passed by then.
    (
        "expiry: half a day after the start, announced at the start",
        {"existing_not_after": T0 + DAY / 2},
        [([cf.DistributeRoot()], T0), (None, T0 + DAY)],
    ),
    (
        "expiry: half a day after the first checkpoint, announced by it",
        {"existing_not_after": T0 + 7 * DAY + DAY / 2},
        [([cf.DistributeRoot()], T0), (None, T0 + 7 * DAY), (None, T0 + 8 * DAY)],
    ),
    (
        "expiry: just after the checkpoint an extension moves, announced by the extension",
        {"existing_not_after": T0 + 7 * DAY + DAY / 4},
        [([cf.DistributeRoot()], T0), ([cf.ExtendManually()], T0 + 6 * DAY + DAY / 2)],
    ),
    (
        "expiry: half a day after the second checkpoint, announced by it",
        {"existing_not_after": T0 + 14 * DAY + DAY / 2},
        [([cf.DistributeRoot()], T0), (None, T0 + 7 * DAY), (None, T0 + 15 * DAY)],
    ),
    (
        "expiry: extended, just after the checkpoint an extension moves",
        {"existing_not_after": T0 + 14 * DAY + DAY / 4},
        [
            ([cf.DistributeRoot()], T0),
            (None, T0 + 7 * DAY),
            ([cf.ExtendManually()], T0 + 13 * DAY + DAY / 2),
        ],
    ),
    (
        "extended: bulk retry of another kind",
        {"kind": cf.CertificateKind.AGENT_SERVER},
        [
            ([cf.DistributeRoot()], T0),
            ([cf.DeviceFailed("d1", "x")], T0 + HOUR),
            ([cf.RetryAllFailed()], T0 + 8 * DAY),
        ],
    ),
]


def _extra_difference(rules: Rules) -> str | None:
    evaluator = cf.Evaluator(_rules=rules)
    for name, setup, steps in EXTRA:
        try:
            _run_case(evaluator, setup, steps)
        except (AssertionError, cf.CertflowError, RuntimeError, KeyError, ValueError) as error:
            return f"{name}: {type(error).__name__}"
    # When manual extension is both too early and too late for the certificate, the
    # refusal names the obstacle that time removes, and when (docs/decisions.md): while
    # distributing, and while extended with a policy that opens it on day 10.
    for opens, at in ((6 * DAY, T0 + DAY), (10 * DAY, T0 + 8 * DAY)):
        facts = _create(["d0"], cf.Policy(manual_extension_opens=opens), **SHORT)
        rollout = cf.new_rollout(["d0"], root_publicly_trusted=False, **facts)
        rollout = evaluator.apply(rollout, cf.DistributeRoot(), T0).rollout
        refusal = evaluator.refusal(rollout, cf.ExtendManually(), at)
        if refusal is None or refusal.allowed_at != T0 + opens:
            return "extend: both obstacles"
    return None


def _run_case(evaluator: cf.Evaluator, setup: dict[str, Any], steps: list[Step]) -> None:
    ids = ["d0", "d1"]
    setup = dict(setup)
    trusted = setup.pop("trusted", ("d0",))
    policy = setup.pop("policy", None)
    facts = _create(ids, policy, **setup)
    rollout = cf.new_rollout(ids, root_publicly_trusted=False, trusted_device_ids=trusted, **facts)
    model = rm.ReferenceRollout(ids, public=False, trusted=trusted, **facts)
    _drive(evaluator, model, rollout, steps)


@pytest.mark.parametrize(("name", "setup", "steps"), EXTRA, ids=[name for name, _, _ in EXTRA])
def test_each_extra_case_on_both(name: str, setup: dict[str, Any], steps: list[Step]) -> None:
    _run_case(cf.Evaluator(), setup, steps)


def killed_by(rules: Rules) -> str | None:
    """What catches the variant, or ``None`` if nothing does."""
    return _static_difference(rules) or _tour_difference(rules) or _extra_difference(rules)


_IMPORTED_ROWS = [
    "pending --proceed_to_import [valid_at_start, not_expired, all_trust]",
    *(
        f"{state} --{trigger}"
        for state in ("distributing", "extended")
        for trigger in (
            "checkpoint [import_condition, all_trust]",
            "deadline [all_trust]",
            "expiry [all_trust]",
            "import_now [all_trust]",
        )
    ),
]
_NO_STRAGGLERS = (
    "its all_trust guard leaves no in-scope device that does not trust the root (with a "
    "public root, the action marks nobody), so marking stragglers moves no device"
)
_CREATED_VALID = (
    "valid_at_start cannot fail after creation: creation checks it at created_at, and "
    "time only moves forward"
)

# Variants that behave exactly like the rules, and why. The test requires each of them
# to survive, so that this list never hides a variant the tests have learnt to catch.
EQUIVALENT: dict[str, str] = {
    **{
        f"rollout: {row} / import_certificate, mark_stragglers, require_restart, end--> "
        f"imported: without action mark_stragglers": _NO_STRAGGLERS
        for row in _IMPORTED_ROWS
    },
    **{
        f"rollout: {state} --checkpoint [import_condition, all_trust] / import_certificate, "
        "mark_stragglers, require_restart, end--> imported: guards reversed": (
            "both guards must hold; a default row follows, so their order never decides a refusal"
        )
        for state in ("distributing", "extended")
    },
    "rollout: cancelled: forced flag flipped": (
        "no row imports into cancelled, so whether an import ending there would be forced "
        "is never asked"
    ),
    "rollout: pending --distribute_root [valid_at_start, valid_through_deadline] / "
    "start_distribution, push_pending, announce_if_late--> distributing: without guard "
    "valid_at_start": _CREATED_VALID,
    "rollout: pending --distribute_root [valid_at_start, valid_through_deadline] / "
    "start_distribution, push_pending, announce_if_late--> distributing: guards "
    "reversed": _CREATED_VALID,
    "rollout: pending --proceed_to_import [valid_at_start, not_expired, all_trust] / "
    "import_certificate, mark_stragglers, require_restart, end--> imported: without guard "
    "valid_at_start": _CREATED_VALID,
    "rollout: pending --proceed_to_import [valid_at_start, not_expired] / "
    "import_certificate, mark_stragglers, require_restart, end--> forced: without guard "
    "valid_at_start": _CREATED_VALID,
    "rollout: pending --proceed_to_import [valid_at_start, not_expired] / "
    "import_certificate, mark_stragglers, require_restart, end--> forced: guards "
    "reversed": _CREATED_VALID,
    "rollout: pending --proceed_to_import [valid_at_start, not_expired, all_trust] / "
    "import_certificate, mark_stragglers, require_restart, end--> imported: guards reversed": (
        _CREATED_VALID + "; and when all_trust or not_expired fails, the forced row below, "
        "with the same validity guards, decides the refusal"
    ),
}


def test_the_unchanged_rules_survive_every_check() -> None:
    assert killed_by(RULES) is None


def test_there_are_many_valid_variants() -> None:
    assert len(MUTANTS) > 300


def test_every_variant_of_the_declarations_is_caught_or_known_to_be_equivalent() -> None:
    survivors = {label for label, rules in MUTANTS if killed_by(rules) is None}
    assert survivors == set(EQUIVALENT), (
        f"{len(survivors)} of {len(MUTANTS)} variants survive:\n" + "\n".join(sorted(survivors))
    )
