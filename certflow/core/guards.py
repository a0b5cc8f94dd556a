"""What the declared guards mean, and the facts their refusal hints name.

A guard is a pure function of a :class:`Situation`: the rollout's plan and phase, the
instant, and how many in-scope devices do not trust the root yet. Every driver (the
in-memory evaluator, a database store) evaluates guards through :data:`GUARDS`, so a
guard means the same wherever it is decided. ``tests`` prove the names are exactly
the declared ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from certflow.core import timeline
from certflow.core._registry import Registry
from certflow.core.instants import show, show_span
from certflow.core.machines import RULES, Guard, placeholders
from certflow.core.plan import Phase, Plan
from certflow.core.policy import ImportRule

__all__ = ["FACTS", "GUARDS", "Situation", "allowed_at", "explain"]


class Situation(NamedTuple):
    """What a guard may look at: the plan, the phase, the instant, the untrusting count.

    ``untrusting`` counts in-scope devices in a state that does not trust the root
    (the device machine's states with ``in_scope`` and not ``trusts``).
    """

    plan: Plan
    phase: Phase
    now: datetime
    untrusting: int


GUARDS: Registry[Callable[[Situation], bool]] = Registry("guard")
guard = GUARDS.register


@guard("valid_at_start")
def _valid_at_start(s: Situation) -> bool:
    return s.plan.new_not_before <= s.now


@guard("valid_through_deadline")
def _valid_through_deadline(s: Situation) -> bool:
    return s.plan.new_not_after >= timeline.deadline_if_started(s.plan, s.now)


@guard("not_expired")
def _not_expired(s: Situation) -> bool:
    return s.plan.new_not_after >= s.now


@guard("all_trust")
def _all_trust(s: Situation) -> bool:
    return s.plan.root_publicly_trusted or s.untrusting == 0


@guard("import_condition")
def _import_condition(s: Situation) -> bool:
    distributed = _all_trust(s)
    expired = s.now >= s.plan.existing_not_after
    if s.plan.policy.import_rule is ImportRule.DISTRIBUTED_AND_EXPIRED:
        return distributed and expired
    return distributed or expired


@guard("extension_open")
def _extension_open(s: Situation) -> bool:
    opens = timeline.extension_opens(s.plan, s.phase)
    return opens is not None and s.now >= opens


@guard("valid_through_moved_deadline")
def _valid_through_moved_deadline(s: Situation) -> bool:
    moved = timeline.moved_deadline(s.plan, s.phase)
    return moved is not None and s.plan.new_not_after >= moved


@guard("kind_allows_retry")
def _kind_allows_retry(s: Situation) -> bool:
    return s.plan.kind.retry_allowed


Fact = Callable[[Situation], "datetime | str | int | None"]
FACTS: Registry[Fact] = Registry("fact")
fact = FACTS.register


@fact("now")
def _now(s: Situation) -> datetime:
    return s.now


@fact("new_not_before")
def _new_not_before(s: Situation) -> datetime:
    return s.plan.new_not_before


@fact("new_not_after")
def _new_not_after(s: Situation) -> datetime:
    return s.plan.new_not_after


@fact("deadline_from_now")
def _deadline_from_now(s: Situation) -> datetime:
    return timeline.deadline_if_started(s.plan, s.now)


@fact("deadline")
def _deadline(s: Situation) -> datetime | None:
    return timeline.deadline(s.plan, s.phase)


@fact("moved_deadline")
def _moved_deadline(s: Situation) -> datetime | None:
    return timeline.moved_deadline(s.plan, s.phase)


@fact("untrusting")
def _untrusting(s: Situation) -> int:
    return s.untrusting


@fact("import_rule")
def _import_rule(s: Situation) -> str:
    return s.plan.policy.import_rule.value


@fact("extension_opens_at")
def _extension_opens_at(s: Situation) -> datetime | None:
    return timeline.extension_opens(s.plan, s.phase)


@fact("extension_opens_day")
def _extension_opens_day(s: Situation) -> str:
    return f"{s.plan.policy.manual_extension_opens / timeline.DAY:g}"


@fact("extension_wait")
def _extension_wait(s: Situation) -> str:
    opens = timeline.extension_opens(s.plan, s.phase)
    return "" if opens is None else show_span(opens - s.now)


@fact("kind_with_article")
def _kind_with_article(s: Situation) -> str:
    return s.plan.kind.label_with_article


def _shown(value: datetime | str | int | None) -> str:
    if isinstance(value, datetime):
        return show(value)
    return "" if value is None else str(value)


def explain(declared: Guard, situation: Situation) -> str:
    """The guard's refusal hint with its facts filled in."""
    names = placeholders(declared.hint)
    return declared.hint.format(**{n: _shown(FACTS[n](situation)) for n in names})


def allowed_at(declared: Guard, situation: Situation) -> datetime | None:
    """When the guard will hold, if it names such a fact and the fact is an instant."""
    if declared.allowed_from is None:
        return None
    value = FACTS[declared.allowed_from](situation)
    return value if isinstance(value, datetime) else None


def _bind() -> None:  # pragma: no mutate block
    declared = [g for machine in RULES.machines for g in machine.guards]
    GUARDS.require_exactly((g.name for g in declared), "guards")
    for g in declared:
        for name in (*placeholders(g.hint), *([g.allowed_from] if g.allowed_from else [])):
            if name not in FACTS:
                raise ValueError(f"guard {g.name!r}: its hint names unknown fact {name!r}")


_bind()
