"""``certflow rollout``'s commands for the host that performs the effects: ``tick`` (what a
scheduler runs: time moves the rollouts, effects fall due into the outbox), ``effects``
(what waits in the outbox) and ``ack`` (what the host has performed). They register on the
rollout group when imported.
"""

from __future__ import annotations

import click

from certflow.cli._app import EXIT_OK, parse_now, print_json
from certflow.cli._rollout import _common, _name, _outcome, _refusals, _store, rollout_group
from certflow.cli._rollout_render import _effect_data, _print_effects
from certflow.core.errors import InvalidInput
from certflow.core.instants import show

# --- the scheduler ---------------------------------------------------------------------------


@rollout_group.command("tick")
@click.argument("name", required=False)
@_common
@_refusals
def rollout_tick(name: str | None, db: str, now: str | None, as_json: bool) -> int:
    """Advance rollout NAME, or every rollout with something due, to --now.

    What a scheduler does: notices, checkpoints, the import, timed-out pushes.
    """
    at = parse_now(now)
    with _store(db) as store:
        effects = store.advance(name, at) if name is not None else store.tick(at)
        if name is not None:
            return _outcome(store, name, "tick", effects, at, as_json)
    if as_json:
        print_json({"done": "tick", "effects": [_effect_data(e) for e in effects]})
        return EXIT_OK
    click.echo(f"tick at {show(at)}: {len(effects)} effect{'s' * (len(effects) != 1)}")
    _print_effects(effects, indent="  ")
    return EXIT_OK


# --- the outbox --------------------------------------------------------------------------------


@rollout_group.command("effects")
@_name
@click.option("--all", "include_all", is_flag=True, help="Acknowledged effects too.")
@_common
def rollout_effects(name: str, include_all: bool, db: str, now: str | None, as_json: bool) -> int:
    """The effects waiting in the outbox (every one with --all), each with its id for ack."""
    parse_now(now)  # every subcommand takes --now; a read only checks it
    with _store(db) as store:
        effects = store.effects(name, include_acknowledged=include_all)
    if as_json:
        print_json([_effect_data(e) for e in effects])
    elif not effects:
        click.echo("No effects." if include_all else "No pending effects.")
    else:
        _print_effects(effects)
    return EXIT_OK


@rollout_group.command("ack")
@_name
@click.argument("effect_ids", nargs=-1, required=True)
@_common
def rollout_ack(
    name: str, effect_ids: tuple[str, ...], db: str, now: str | None, as_json: bool
) -> int:
    """Acknowledge effects the host has performed (twice is harmless)."""
    at = parse_now(now)
    foreign = [e for e in effect_ids if not e.startswith(f"{name}:")]
    if foreign:
        raise InvalidInput(
            f"effect ids {', '.join(map(repr, foreign))} are not of rollout {name!r} "
            f"(ids look like {name}:SEQ:N; see `certflow rollout effects {name}`)"
        )
    with _store(db) as store:
        done = store.acknowledge(effect_ids, at)
    already = len(set(effect_ids)) - done
    if as_json:
        print_json({"rollout": name, "acknowledged": done, "already_acknowledged": already})
    else:
        extra = f" ({already} already acknowledged)" if already > 0 else ""
        click.echo(f"Acknowledged {done} effect{'s' * (done != 1)}{extra}")
    return EXIT_OK
