"""``certflow rollout``'s reading commands: ``status`` (View Details, with a page of
devices), ``history`` (the journal), ``list`` (every rollout) and ``forecast``. They
register on the rollout group when imported.

Every one opens the database read-only and writes nothing (``store.md``, "Reads never
write"). Read at an instant past a due timer, ``status`` and ``list`` show what a tick
at that instant would leave, and say so.
"""

from __future__ import annotations

import csv
import itertools
import os
import shlex
import sys
from contextlib import closing
from datetime import datetime

import click
from click.core import ParameterSource

from certflow.cli._app import EXIT_OK, parse_now, print_json
from certflow.cli._format import Clock, cells, count, pad, percent, percent_text
from certflow.cli._rollout import _common, _name, _refusals, _store, rollout_group
from certflow.cli._rollout_render import (
    DEVICE_COLUMNS,
    _device_data,
    _entry_data,
    _entry_text,
    _instant,
    _overview_data,
    _print_devices,
    _print_overview,
    _when,
    device_cells,
    identity_cell,
    identity_data,
    in_scope,
    json_line,
    page_clock,
)
from certflow.core.plan import DeviceRecord, DeviceState
from certflow.core.serialization import loads

#: What ``--summary`` leaves out: the options that choose the device page.
_PAGE_OPTIONS = ("--state", "--limit", "--after")


def _check_status_options(
    ctx: click.Context, summary: bool, as_csv: bool, as_json: bool, limit: int, given: list[str]
) -> None:
    """Refuse the options that contradict each other (a usage error, exit 2). ``given``:
    the options of the device page given on the command line."""
    if as_csv and as_json:
        raise click.UsageError("--csv and --json cannot be combined: give one", ctx=ctx)
    if as_csv and summary:
        raise click.UsageError(
            "--csv and --summary cannot be combined: --csv lists devices, --summary none",
            ctx=ctx,
        )
    if as_csv and "--limit" in given:
        raise click.UsageError(
            "--csv has no page limit: drop --limit; for the first rows, pipe through head", ctx=ctx
        )
    # --limit 0 asks for the summary itself; beside --summary, any --limit is one too many.
    others = [option for option in given if summary or option != "--limit"]
    if (summary or limit == 0) and others:
        them = "it" if len(others) == 1 else "them"
        raise click.UsageError(
            f"{'--summary' if summary else '--limit 0'} shows no devices, so "
            f"{' and '.join(others)} would choose none: drop {them}",
            ctx=ctx,
        )


@rollout_group.command("status")
@_name
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in DeviceState]),
    help="Only devices in this state; repeat for several.",
)
@click.option(
    "--limit",
    type=click.IntRange(0, 10_000),
    default=50,
    show_default=True,
    help="Devices per page; 0 shows none, as --summary does.",
)
@click.option("--after", metavar="DEVICE", help="The page after this device (keyset paging).")
@click.option(
    "--summary",
    is_flag=True,
    help="Only the head of View Details: no devices (as --limit 0).",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Every device matching --state (after --after, if given) as CSV with a header, "
    "streamed with no page limit; instants in ISO 8601 UTC. Not with --json or --summary.",
)
@_common
@click.pass_context
@_refusals  # an unknown --after, in the command line's words
def rollout_status(
    ctx: click.Context,
    name: str,
    states: tuple[str, ...],
    limit: int,
    after: str | None,
    summary: bool,
    as_csv: bool,
    db: str,
    now: str | None,
    as_json: bool,
) -> int:
    """View Details: state, counts, percent complete, timeline, then a page of devices.

    Reads only. If something fell due by --now that no tick has stored, what is shown is
    what `certflow rollout tick` at --now would leave, and a line says so (--json:
    "projected": true); nothing is stored. The device table is in creation order; --after
    DEVICE (the last one shown) gives the next page. --summary (or --limit 0) shows the
    head alone; --csv every device matching --state, and nothing else.
    """
    given = [
        option
        for option, param in zip(_PAGE_OPTIONS, ("states", "limit", "after"), strict=True)
        if ctx.get_parameter_source(param) is not ParameterSource.DEFAULT
    ]
    _check_status_options(ctx, summary, as_csv, as_json, limit, given)
    at = parse_now(now)
    wanted = [DeviceState(s) for s in states]
    if as_csv:
        return _status_csv(name, wanted, after, db, at, now is None)
    summary = summary or limit == 0
    rows: list[DeviceRecord] = []
    with _store(db, read_only=True, real_clock=now is None) as store:
        if after is not None:
            store.device(name, after)  # an unknown --after is bad input, said first
        seen = store.view(name, at)
        head = seen.overview
        if not summary:
            rows = store.devices(name, wanted, after=after, limit=limit, now=at)
        location = store.location
    following = rows[-1].device_id if not summary and len(rows) == limit else None
    if as_json:
        data = {
            "rollout": name,
            **_overview_data(head),
            "projected": seen.projected,
            "projected_from": _instant(seen.due),
        }
        if not summary:
            data |= {"devices": [_device_data(r) for r in rows], "next_after": following}
        print_json(data)
        return EXIT_OK
    when = page_clock(head, rows)
    _print_overview(name, head, when)
    if seen.projected:
        click.echo(
            f"{'Projected:':<18}timers fell due from {when(seen.due)} and no tick has stored "
            f"them: this is what `certflow rollout tick {name}` would leave; nothing was stored"
        )
    if summary:
        return EXIT_OK
    click.echo("")
    _print_devices(rows, when)
    if following is not None:
        filters = "".join(f" --state {s}" for s in states)
        # The database too, unless the next command finds it by itself; a URL's password
        # is never shown, so it is left to CERTFLOW_DB or ~/.pgpass.
        chosen = (
            ""
            if db in ("certflow.db", os.environ.get("CERTFLOW_DB"))
            else f" --db {shlex.quote(location)}"
        )
        click.echo(
            f"More: certflow rollout status {name}{chosen}{filters} --limit {limit} "
            f"--after {shlex.quote(following)}"
        )
    return EXIT_OK


def _status_csv(
    name: str,
    wanted: list[DeviceState],
    after: str | None,
    db: str,
    at: datetime,
    real_clock: bool,
) -> int:
    """``status --csv``: the devices streamed from the store a page at a time (never the
    whole fleet in memory), written as they come. A reader that stops early (``| head``)
    ends it quietly, exit 0: it had what it asked for."""
    with _store(db, read_only=True, real_clock=real_clock) as store:
        seen = store.view(name, at)  # an unknown rollout or --now is said before any row
        with closing(store.iter_devices(name, wanted, after=after, now=at)) as rows:
            first = next(rows, None)  # an unknown --after is said before the header too
            if seen.projected:
                click.echo(
                    f"certflow: note: timers fell due from {_when(seen.due)} and no tick has "
                    f"stored them: the devices are as `certflow rollout tick {name}` would "
                    "leave them; nothing was stored",
                    err=True,
                )
            # A reader that goes away (`| head`) raises BrokenPipeError here or at the
            # flush; the command line's handler ends quietly with the code for a closed pipe.
            table = csv.writer(sys.stdout, lineterminator="\n")
            table.writerow(DEVICE_COLUMNS)
            if first is not None:
                table.writerows(device_cells(r) for r in itertools.chain([first], rows))
            sys.stdout.flush()
    return EXIT_OK


@rollout_group.command("history")
@_name
@_common
def rollout_history(name: str, db: str, now: str | None, as_json: bool) -> int:
    """The journal: every command, report batch and advance, with its instant and effects.

    --json prints JSON lines, one entry per line, oldest first.
    """
    parse_now(now)
    with _store(db, read_only=True) as store:
        for entry in store.journal(name):
            if as_json:
                click.echo(json_line(_entry_data(entry)))
            else:
                click.echo(_entry_text(entry))
    return EXIT_OK


@rollout_group.command("list")
@_common
def rollout_list(db: str, now: str | None, as_json: bool) -> int:
    """The rollouts in the database, with state and progress at --now.

    IN SCOPE counts the devices in the rollout's scope, as status does (an unenrolled
    device is not); --json adds "devices", every device the rollout knows, and "counts",
    the devices per state.

    A rollout marked * was read past a due timer: it is shown as a tick at --now would
    leave it (--json: "projected": true); nothing is stored.
    """
    at = parse_now(now)
    with _store(db, read_only=True) as store:
        infos = store.rollouts(at)
        identities = [store.plan(i.name).identity for i in infos]
    if as_json:
        print_json(
            [
                {
                    "rollout": i.name,
                    "state": i.state.value,
                    "in_scope": in_scope(i.counts),
                    "devices": i.devices,
                    "counts": {state.value: n for state, n in i.counts.items()},
                    "percent_complete": percent(i.percent_complete),
                    "clock": i.clock.isoformat(),
                    "next_due": _instant(i.next_due),
                    "projected": i.projected,
                    "identity": identity_data(identity),
                }
                for i, identity in zip(infos, identities, strict=True)
            ]
        )
        return EXIT_OK
    if not infos:
        click.echo("No rollouts.")
        return EXIT_OK
    when = Clock([at, *(i.next_due for i in infos)])
    width = max(cells("ROLLOUT"), *(cells(i.name) for i in infos))
    due = max(cells("NEXT DUE"), *(cells(when(i.next_due)) for i in infos))
    click.echo(
        f"{pad('ROLLOUT', width)}  {'STATE':<12}  {'IN SCOPE':>9}  {'DONE':>6}  "
        f"{pad('NEXT DUE', due)}  CERTIFICATE"
    )
    for i, identity in zip(infos, identities, strict=True):
        click.echo(
            f"{pad(i.name, width)}  {i.state.value + '*' * i.projected:<12}  "
            f"{count(in_scope(i.counts)):>9}  {percent_text(i.percent_complete):>6}  "
            f"{pad(when(i.next_due), due)}  {identity_cell(identity)}"
        )
    if any(i.projected for i in infos):
        click.echo(
            f"* timers fell due that no tick has stored: shown as a tick at {when(at)} would "
            "leave it; nothing was stored"
        )
    return EXIT_OK


@rollout_group.command("forecast")
@_name
@click.option(
    "--runs",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Simulated futures per branch (as it is, and with one manual extension).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the futures.")
@click.option(
    "--level",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.9,
    show_default=True,
    help="Coverage of the cut-off intervals.",
)
@_common
def rollout_forecast(
    name: str, runs: int, seed: int, level: float, db: str, now: str | None, as_json: bool
) -> int:
    """Forecast a distributing rollout: when will it import, how many devices cut off?

    Fits the time devices took to answer their pushes so far (from the journal), then
    simulates the rest through the real evaluator, as it is and with one manual
    extension. Reads only: nothing is written. See docs/forecast.md.
    """
    from certflow.sim import forecast  # keeps `certflow --help` fast (numpy)

    at = parse_now(now)
    with _store(db, read_only=True) as store:
        rollout = loads(store.dumps(name))
        pushes, reports = store.activity(name)
    result = forecast(rollout, at, pushes, reports, runs=runs, level=level, seed=seed)
    if as_json:
        print_json({"rollout": name, **result.as_dict()})
    else:
        click.echo(str(result))
    return EXIT_OK
