"""The store as ``certflow rollout`` opens it, and what it says of what the store did.

* **Reads open it read-only** (``read_only``: nothing created, migrated or written; see
  ``docs/store.md``), commands for writing.
* **The clock.** Without ``--now`` a command reads the real clock, and processes on one
  machine read slightly different clocks: one that read its clock and then waited for
  the database can find the rollout a few milliseconds ahead. So an instant up to
  :data:`REAL_CLOCK_SKEW` behind the rollout's clock is taken as the rollout's clock
  (the store's ``clock_skew``); an explicit ``--now`` stays strict, since a script that
  names an instant means it.
* **What a command did**: the rollout's state and the effects it placed in the outbox,
  or "no change" for a command that changed nothing (``Applied.changed``: nothing was
  journaled or committed); exit 0 either way. Once the store has committed, that is
  noted (:func:`certflow.cli._app.applied`): an interrupt after it exits 0, "applied".
* **The outbox's record** of each effect: acknowledged, superseded by the end of its
  rollout, dead after too many failed deliveries, or pending with its failures and next
  attempt, beside what :mod:`._rollout_render` says of the effect itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import click

from certflow.cli._app import EXIT_OK, applied, parse_now, print_json
from certflow.cli._rollout_render import _command_text, _effect_data, describe
from certflow.core import commands as c
from certflow.core.instants import show
from certflow.store import SqlStore, StoredEffect, open_store

__all__ = [
    "REAL_CLOCK_SKEW",
    "effect_data",
    "execute",
    "outcome",
    "print_outbox",
    "store_for",
]

#: How far behind a rollout's clock the real clock may read and still be taken as the
#: rollout's clock (``store.md``, "The clock"): far more than two processes' clocks on
#: one machine differ, or than a command waits for the database (``busy_timeout``, 5 s).
REAL_CLOCK_SKEW = timedelta(seconds=5)


@contextmanager
def store_for(
    db: str, *, real_clock: bool, create: bool = False, read_only: bool = False
) -> Iterator[SqlStore]:
    """The store ``--db`` names, closed afterwards; for a command on the ``real_clock``
    (no ``--now``), with :data:`REAL_CLOCK_SKEW`."""
    skew = REAL_CLOCK_SKEW if real_clock else timedelta(0)
    store = open_store(db, create=create, read_only=read_only, clock_skew=skew)
    try:
        yield store
    finally:
        store.close()


def execute(
    db: str, now: str | None, as_json: bool, name: str, command: c.Command, *, warn: bool = False
) -> int:
    """Apply ``command`` to rollout ``name`` at ``--now`` and say what it did (``warn``:
    and what the view details warn of, for the commands that change the timeline)."""
    at = parse_now(now)
    with store_for(db, real_clock=now is None) as store:
        effects = store.apply(name, command, at)
        applied()
        return outcome(store, name, _command_text(command), effects, at, as_json, warn=warn)


def outcome(
    store: SqlStore,
    name: str,
    what: str,
    effects: Sequence[StoredEffect],
    at: datetime,
    as_json: bool,
    *,
    warn: bool = False,
    data: Mapping[str, Any] | None = None,
) -> int:
    """What a command did: the rollout's state and the effects it placed in the outbox;
    or, for a no-op (``changed`` false), "no change". With ``warn``, the view details'
    warnings too (the existing certificate's expiry: certflow.core.expiry). ``data``:
    what the command adds to its ``--json`` object (``extend``: the dates it moved).

    Called right after the store committed ``effects``: that is noted (``applied``) here
    too, for a caller that has not, so an interrupt from here on says "applied"."""
    applied()
    changed = getattr(effects, "changed", True)
    head = store.view(name, at).overview
    state = head.state.value
    warnings = list(head.warnings) if warn else []
    if as_json:
        print_json(
            {
                "rollout": name,
                "done": what,
                "changed": changed,
                "state": state,
                "effects": [effect_data(e) for e in effects],
                **({"warnings": warnings} if warn else {}),
                **(data or {}),
            }
        )
        return EXIT_OK
    for warning in warnings:
        click.echo(f"certflow: warning: {warning}", err=True)
    if not changed:
        click.echo(f"{what}: no change (rollout {name} is {state}); nothing was recorded")
        return EXIT_OK
    click.echo(f"{what}: rollout {name} is {state}")
    if effects:
        click.echo(f"Effects placed in the outbox ({len(effects)}):")
        print_outbox(effects, indent="  ")
    return EXIT_OK


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def effect_data(stored: StoredEffect) -> dict[str, Any]:
    """An effect for ``--json``: what it is, and its delivery record."""
    return {
        **_effect_data(stored),
        "status": stored.status,
        "attempts": stored.attempts,
        "last_attempt_at": _instant(stored.last_attempt_at),
        "next_attempt_at": _instant(stored.next_attempt_at),
        "dead_at": _instant(stored.dead_at),
        "superseded_at": _instant(stored.superseded_at),
    }


def _notes(stored: StoredEffect) -> list[str]:
    # In the order of StoredEffect.status: a delivered effect is acknowledged, whatever
    # happened to it before.
    failures = f"{stored.failures} failed deliver{'ies' if stored.failures != 1 else 'y'}"
    last = f", last: {stored.last_error}" if stored.last_error else ""
    if stored.acked_at is not None:
        return [f"acknowledged {show(stored.acked_at)}"]
    if stored.superseded_at is not None:
        return [f"superseded {show(stored.superseded_at)}: never delivered"]
    if stored.dead_at is not None:
        return [f"dead since {show(stored.dead_at)} after {failures}{last}"]
    if not stored.failures:
        return []
    retry = stored.next_attempt_at
    return [f"{failures}{last}" + ("" if retry is None else f"; next attempt {show(retry)}")]


def print_outbox(effects: Sequence[StoredEffect], *, indent: str = "") -> None:
    """One line per effect: its id, when it fell due, what it asks, and its record."""
    width = max((len(e.id) for e in effects), default=0)
    for stored in effects:
        notes = _notes(stored)
        tail = f"  [{'; '.join(notes)}]" if notes else ""
        click.echo(
            f"{indent}{stored.id:<{width}}  {show(stored.due_at)}  {describe(stored.effect)}{tail}"
        )
