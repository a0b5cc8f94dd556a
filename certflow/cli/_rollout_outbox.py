"""``certflow rollout``'s commands for the host that performs the effects: ``tick`` (what a
scheduler runs: time moves the rollouts, effects fall due into the outbox), ``effects``
(what waits in the outbox, what is dead, and reviving it) and ``ack`` (what the host has
performed). They register on the rollout group when imported.
"""

from __future__ import annotations

import click

from certflow.cli._app import EXIT_OK, applied, parse_now, print_json
from certflow.cli._rollout import _common, _name, _refusals, _rollout_name, rollout_group
from certflow.cli._rollout_store import effect_data, outcome, print_outbox, store_for
from certflow.core.errors import InvalidInput
from certflow.core.instants import show

# --- the scheduler ---------------------------------------------------------------------------


@rollout_group.command("tick")
@click.argument("name", required=False, callback=_rollout_name)
@_common
@_refusals
def rollout_tick(name: str | None, db: str, now: str | None, as_json: bool) -> int:
    """Advance rollout NAME, or every rollout with something due, to --now.

    What a scheduler does: notices, checkpoints, the import, timed-out pushes. With
    nothing due it records nothing and says "no change".
    """
    at = parse_now(now)
    with store_for(db, real_clock=now is None) as store:
        effects = store.advance(name, at) if name is not None else store.tick(at)
        applied()
        if name is not None:
            return outcome(store, name, "tick", effects, at, as_json)
    if as_json:
        print_json(
            {
                "done": "tick",
                "changed": effects.changed,
                "effects": [effect_data(e) for e in effects],
            }
        )
        return EXIT_OK
    if not effects.changed:
        click.echo(f"tick at {show(at)}: no change (nothing was due); nothing was recorded")
        return EXIT_OK
    click.echo(f"tick at {show(at)}: {len(effects)} effect{'s' * (len(effects) != 1)}")
    print_outbox(effects, indent="  ")
    return EXIT_OK


# --- the outbox --------------------------------------------------------------------------------


def _of_rollout(name: str, effect_ids: tuple[str, ...]) -> None:
    foreign = [e for e in effect_ids if not e.startswith(f"{name}:")]
    if foreign:
        raise InvalidInput(
            f"effect ids {', '.join(map(repr, foreign))} are not of rollout {name!r} "
            f"(ids look like {name}:SEQ:N; see `certflow rollout effects {name}`)"
        )


@rollout_group.command("effects")
@_name
@click.argument("effect_ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--all",
    "include_all",
    is_flag=True,
    help="Every effect: acknowledged, superseded and dead ones too.",
)
@click.option(
    "--dead",
    is_flag=True,
    help="Only the dead effects: their delivery failed too often, and they are not retried.",
)
@click.option(
    "--revive",
    is_flag=True,
    help="Make the dead effects ID... pending again, each with its retries anew.",
)
@_common
def rollout_effects(
    name: str,
    effect_ids: tuple[str, ...],
    include_all: bool,
    dead: bool,
    revive: bool,
    db: str,
    now: str | None,
    as_json: bool,
) -> int:
    """The effects waiting in the outbox, each with its id for ack.

    --all lists every one, with what became of it: acknowledged, superseded (the end of
    the rollout made it moot: it is never delivered), dead. --dead lists the dead ones;
    --revive ID... makes them pending again.
    """
    parse_now(now)  # every subcommand takes --now; the outbox only checks it
    if revive:
        if include_all or dead:
            raise click.UsageError("--revive takes effect ids, not --all or --dead")
        if not effect_ids:
            raise click.UsageError(
                f"--revive needs the ids of dead effects (see `certflow rollout effects "
                f"{name} --dead`)"
            )
        return _revive(name, effect_ids, db, now, as_json)
    if effect_ids:
        raise click.UsageError("effect ids are for --revive (or `certflow rollout ack`)")
    if include_all and dead:
        raise click.UsageError("give --all or --dead, not both")
    with store_for(db, real_clock=now is None, read_only=True) as store:
        effects = store.effects(name, include_acknowledged=include_all, dead=dead)
    if as_json:
        print_json([effect_data(e) for e in effects])
    elif not effects:
        click.echo(
            "No effects." if include_all else "No dead effects." if dead else "No pending effects."
        )
    else:
        print_outbox(effects)
    return EXIT_OK


def _revive(name: str, effect_ids: tuple[str, ...], db: str, now: str | None, as_json: bool) -> int:
    _of_rollout(name, effect_ids)
    with store_for(db, real_clock=now is None) as store:
        done = store.revive(effect_ids)
        applied()
    already = len(set(effect_ids)) - done
    if as_json:
        print_json(
            {"rollout": name, "revived": done, "already_pending": already, "changed": done > 0}
        )
    elif done == 0:
        click.echo("no change: every effect named is pending already")
    else:
        extra = f" ({already} already pending)" if already > 0 else ""
        click.echo(
            f"Revived {done} effect{'s' * (done != 1)}{extra}: a drainer delivers them again"
        )
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
    _of_rollout(name, effect_ids)
    with store_for(db, real_clock=now is None) as store:
        done = store.acknowledge(effect_ids, at)
        applied()
    already = len(set(effect_ids)) - done
    if as_json:
        print_json(
            {
                "rollout": name,
                "acknowledged": done,
                "already_acknowledged": already,
                "changed": done > 0,
            }
        )
    elif done == 0:  # as every command that changes nothing says
        click.echo("no change: every effect named was acknowledged already")
    else:
        extra = f" ({already} already acknowledged)" if already > 0 else ""
        click.echo(f"Acknowledged {done} effect{'s' * (done != 1)}{extra}")
    return EXIT_OK
