"""Every valid variant of the declarations runs the same in every driver.

``tests/core/test_declaration_mutants.py`` builds every single-edit variant of
:data:`certflow.RULES` that validates. Here each one drives the in-memory evaluator and
the SQLite store side by side, over scripted histories (the row tour of the reference
model: every rollout row, each with its own setup) and random ones: the same effects and
refusals after every step, the same ``dumps``, and a journal that replays to the stored
rollout. A declaration that one driver runs differently, or that crashes a driver, is a
divergence; the target is none. The PostgreSQL store runs the same on a sample of the
variants (the store's SQL is one for both backends; the differential test of
``test_sql.py`` holds PostgreSQL to the evaluator on the real rules).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs

import certflow as cf
from certflow.core.machines import Call
from certflow.store import SqlStore
from tests.backends import Backend
from tests.core.strategies import DAY, HOUR, T0
from tests.core.test_declaration_mutants import MUTANTS
from tests.core.test_reference_model import TOUR, _create
from tests.store.test_sql import without_clock

Step = tuple[list[Any] | None, datetime]
History = tuple[str, tuple[str, ...], dict[str, Any], list[Step]]

IDS = ("d0", "d1", "d2")
POOL: list[Any] = [
    cf.DistributeRoot(), cf.ProceedToImport(), cf.ImportNow(), cf.ExtendManually(),
    cf.RetryAllFailed(), cf.Cancel(), cf.ServerRestarted(),
    *(make(d) for d in (*IDS, "new") for make in (
        cf.DeviceInstalled, cf.Retry, cf.Enroll, cf.Unenroll, cf.Reenrolled,
    )),
    *(cf.DeviceFailed(d, "no answer") for d in IDS),
]  # fmt: skip


def _tour() -> list[History]:
    histories: list[History] = []
    for row, setup, steps in TOUR:
        setup = dict(setup)
        trusted = setup.pop("trusted", ("d0",))
        policy = setup.pop("policy", None)
        facts = _create(["d0", "d1"], policy, **setup)
        histories.append(
            ("tour " + "-".join(row), ("d0", "d1"), {"trusted": trusted, **facts}, steps)
        )
    return histories


def _random(seed: int, length: int = 24) -> History:
    """A random history that gets somewhere: it starts the distribution (or proceeds to
    import), mostly one command a step (a batch is refused whole, so long batches rarely
    take), imports on the way for half the seeds, and goes on after the import (late
    reports, enrolments, re-enrolments, the server's restart); pushes time out."""
    rng = random.Random(seed)
    first: Any = cf.ProceedToImport() if seed % 4 == 1 else cf.DistributeRoot()
    now, steps = T0, list[Step]([([first], T0)])
    import_at = rng.randint(6, length - 6) if seed % 2 == 0 else None
    for index in range(length):
        now += rng.choice([timedelta(minutes=5), HOUR, 3 * HOUR, DAY, 3 * DAY])
        if index == import_at:
            steps.append(([cf.ImportNow()], now))
        elif rng.random() < 0.25:
            steps.append((None, now))
        else:
            size = 2 if rng.random() < 0.15 else 1
            steps.append(([rng.choice(POOL) for _ in range(size)], now))
    facts = _create(list(IDS), cf.Policy(ack_timeout=timedelta(hours=2)))
    return (f"random {seed}", IDS, {"trusted": ("d1",), **facts}, steps)


RANDOM = 12
HISTORIES = [*_tour(), *(_random(seed) for seed in range(RANDOM))]


def trace(rules: cf.Rules) -> list[object]:
    """What the evaluator of ``rules`` does over every history: each step's effects or
    error, and the rollout after it."""
    evaluator = cf.Evaluator(_rules=rules)
    seen: list[object] = []
    for _, ids, setup, steps in HISTORIES:
        setup = dict(setup)
        trusted = setup.pop("trusted")
        memory = cf.new_rollout(
            list(ids), root_publicly_trusted=False, trusted_device_ids=trusted, **setup
        )
        for commands, now in steps:
            try:
                step = (
                    evaluator.advance(memory, now)
                    if commands is None
                    else evaluator.apply_all(memory, commands, now)
                )
            except cf.CertflowError as error:
                seen.append(str(error))
                continue
            memory = step.rollout
            seen.append((tuple(step.effects), cf.dumps(memory)))
    return seen


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return "ok", run()
    except cf.CertflowError as error:
        return type(error).__name__, str(error).replace("rollout 'r'", "this rollout")
    except Exception as error:  # a crash of a driver is a divergence of its own
        return "crash", f"{type(error).__name__}: {error}"


def _step(
    evaluator: cf.Evaluator, memory: cf.Rollout, store: SqlStore, name: str, step: Step
) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """One step through both drivers: each one's outcome."""
    commands, now = step
    if commands is None:
        return (
            _outcome(lambda: evaluator.advance(memory, now)),
            _outcome(lambda: store.advance(name, now)),
        )
    return (
        _outcome(lambda: evaluator.apply_all(memory, commands, now)),
        _outcome(lambda: store.apply_all(name, commands, now)),
    )


def divergences(rules: cf.Rules, store: SqlStore) -> Iterator[str]:
    """Where the evaluator and ``store`` run ``rules`` differently, over every history."""
    evaluator = cf.Evaluator(_rules=rules)
    for number, (label, ids, setup, steps) in enumerate(HISTORIES):
        setup = dict(setup)
        trusted = setup.pop("trusted")
        memory = cf.new_rollout(
            list(ids), root_publicly_trusted=False, trusted_device_ids=trusted, **setup
        )
        name = f"h{number}"
        store.create(name, memory)
        for index, step in enumerate(steps):
            expected, got = _step(evaluator, memory, store, name, step)
            where = f"{label}, step {index}"
            if "crash" in (expected[0], got[0]):
                yield f"{where}: crash: evaluator {expected}, store {got}"
                break
            if expected[0] != "ok" or got[0] != "ok":
                if (got[0], str(got[1]).replace(f"rollout '{name}'", "this rollout")) != expected:
                    yield f"{where}: evaluator {expected}, store {got}"
                    break
                continue
            effects = [stored.effect for stored in got[1]]
            if effects != list(expected[1].effects):
                yield f"{where}: effects differ: {expected[1].effects} / {effects}"
                break
            if not got[1].changed:
                # A no-op: nothing committed, the clock stays; the evaluator's rollout
                # may differ by its clock alone.
                if without_clock(expected[1].rollout) != without_clock(memory):
                    yield f"{where}: the store found a no-op the evaluator did not"
                    break
                continue
            memory = expected[1].rollout
            if store.dumps(name) != cf.dumps(memory):
                yield f"{where}: the stored rollout differs"
                break
        else:
            if cf.dumps(store.replay(name)) != store.dumps(name):
                yield f"{label}: the journal does not replay to the stored rollout"


def test_the_variants_are_many_and_the_histories_cover_every_row() -> None:
    assert len(MUTANTS) > 300
    assert len(HISTORIES) == len(TOUR) + RANDOM


#: Every variant on SQLite; on PostgreSQL every SAMPLE-th (a schema each is slower to
#: make, and the SQL is the same text for both backends).
SAMPLE = {"sqlite": 1, "postgresql": 4}


def test_every_valid_variant_runs_the_same_in_the_evaluator_and_the_store(
    backend: Backend,
) -> None:
    found: list[str] = []
    chosen = MUTANTS[:: SAMPLE[backend.name]]
    for label, rules in chosen:
        try:
            store = backend.fresh(_rules=rules)
        except ValueError as error:  # the evaluator took these rules
            found.append(f"{label}: refused by the store only: {error}")
            continue
        with store:
            found += [f"{label}: {problem}" for problem in divergences(rules, store)]
    steps = sum(len(history[3]) for history in HISTORIES)
    if backend.name == "sqlite":
        # How many variants the histories tell apart from the rules at all: the others
        # are compared here only where they behave like the rules.
        reference = trace(cf.RULES)
        apart = sum(trace(rules) != reference for _, rules in MUTANTS)
        print(f"\nthe histories tell {apart} of {len(MUTANTS)} variants apart from the rules")
    print(
        f"\n{backend.name}: {len(chosen)} of {len(MUTANTS)} valid variants x {len(HISTORIES)} "
        f"histories ({steps} steps each, {len(chosen) * steps:,} steps in all): "
        f"{len(found)} divergences"
    )
    assert found == [], "\n".join(found)


def _renamed(rules: cf.Rules, names: dict[str, str]) -> cf.Rules:
    """``rules`` with the device actions called by other names, everywhere they appear."""
    device = rules.device
    rows = tuple(
        attrs.evolve(row, actions=tuple(Call(names.get(a.name, a.name)) for a in row.actions))
        for row in device.transitions
    )
    actions = tuple(attrs.evolve(a, name=names.get(a.name, a.name)) for a in device.actions)
    waits = tuple(
        attrs.evolve(w, started_by=names.get(w.started_by, w.started_by)) for w in device.waits
    )
    return attrs.evolve(
        rules, device=attrs.evolve(device, transitions=rows, actions=actions, waits=waits)
    )


def test_no_driver_knows_a_device_action_by_its_name(backend: Backend) -> None:
    # Every device action renamed: each driver runs the declared writes, so nothing
    # changes, in the evaluator or in the store.
    names = {
        "push_root": "send_root",
        "keep_reason": "note_reason",
        "record_timeout": "note_timeout",
    }
    renamed = _renamed(cf.RULES, names)
    renamed.validate()
    assert {a.name for a in renamed.device.actions} == set(names.values())
    assert trace(renamed) == trace(cf.RULES)
    with backend.fresh(_rules=renamed) as store:
        assert list(divergences(renamed, store)) == []
