"""``certflow simulate``: the main job of ``make demo``, and Monte Carlo sweeps."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from certflow.cli._app import EXIT_OK, main
from certflow.core.errors import CertflowError

if TYPE_CHECKING:
    from certflow.store import SqlStore, StoredEffect
    from certflow.worker import BodyLog, Handler, MailFolder

_CHART_FORMATS = (".png", ".svg")


@main.command()
@click.option(
    "--devices", type=click.IntRange(min=1), default=10_000, show_default=True, help="Fleet size."
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Random seed of the fleet's behaviour (the first seed of a sweep).",
)
@click.option("--quiet", is_flag=True, help="Print one result line instead of the timeline.")
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=None,
    help="Monte Carlo sweep: this many modelled runs (seeds SEED, SEED+1, ...) on every "
    "core, summarised as a table; the administrator bulk-retries every 3 days and "
    "extends on day 6 if the fleet is not complete.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also draw a chart to this .png or .svg file: device states per day (one run), "
    "or import days and re-enrolments (a sweep).",
)
@click.option(
    "--db",
    metavar="PATH|URL",
    default=None,
    help="Run the rollout through the store: an SQLite file (created if missing) or a "
    "postgresql:// URL. Every report, tick and command is a transaction, and every effect "
    "is delivered from the store's outbox. Ends with `certflow rollout status` of it.",
)
@click.option(
    "--name",
    default="demo",
    show_default=True,
    help="The rollout's name in --db (it must not exist there yet).",
)
@click.option(
    "--outbox",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="With --db: what `certflow worker` would send, written as the outbox delivers "
    "each effect: the e-mails as DIR/mail/NNNN-ID.eml, every webhook body as a line of "
    "DIR/webhooks.jsonl. Default with an SQLite --db: NAME-outbox beside the file.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    devices: int,
    seed: int,
    quiet: bool,
    runs: int | None,
    as_json: bool,
    chart: Path | None,
    db: str | None,
    name: str,
    outbox: Path | None,
) -> int:
    """Simulate a rollout over a fleet, day by day, through the real evaluator.

    The main job of `make demo`: a seeded, reproducible run that prints the timeline
    (notices, checkpoints, the extension, retries, the import) and the final view-details
    summary; with --db, through a durable store. With --runs, a sweep of many runs of a
    modelled fleet instead. See docs/simulation.md.
    """
    if chart is not None and chart.suffix.lower() not in _CHART_FORMATS:
        raise click.BadParameter(f"{str(chart)!r} must end in .png or .svg", param_hint="'--chart'")
    if runs is not None and db is not None:
        raise click.UsageError("--db stores one simulated rollout; it does not go with --runs")
    if outbox is not None and db is None:
        raise click.UsageError("--outbox writes what the store's outbox delivers: give --db")
    if runs is not None:
        _sweep(devices, seed, runs, as_json=as_json, chart=chart)
        return EXIT_OK
    sinks = None if db is None else _Sinks.beside(db, name, outbox)
    if as_json:
        _json(devices, seed, chart, db, name, sinks)
    else:
        _report(devices, seed, quiet=quiet, chart=chart, db=db, name=name, sinks=sinks)
        if db is not None:
            _status(ctx, db, name)
            _console(db, name)
        if sinks is not None:
            sinks.summary()
    return EXIT_OK


# The routes of the demo's worker, as docs/worker.md's example sets them: the notices
# and the end of a rollout to the administrators by e-mail, every effect to the webhook.
_MAILED = ("Notify", "ImportCertificate", "ReenrollmentRequired", "RolloutCancelled")
_SENDER = "certflow@demo.example"
_ADMINS = ("mdm-admins@demo.example",)


class _Sinks:
    """The demo's worker: the handlers of ``certflow.worker`` that write what the SMTP
    and webhook handlers would send to a folder (:class:`~certflow.worker.MailFolder`,
    :class:`~certflow.worker.BodyLog`), routed as docs/worker.md's example routes."""

    def __init__(self, folder: Path) -> None:
        from certflow.worker import BodyLog, MailFolder  # keeps `certflow --help` fast

        self.folder = folder
        self.mail: MailFolder = MailFolder(folder / "mail", sender=_SENDER, to=_ADMINS)
        self.webhooks: BodyLog = BodyLog(folder / "webhooks.jsonl")

    @classmethod
    def beside(cls, db: str, name: str, chosen: Path | None) -> _Sinks | None:
        """The sinks in ``chosen``, or by default beside an SQLite file (a PostgreSQL
        database has no folder: none unless chosen). The folder is made now, so that a
        place that cannot be written is refused before the simulation runs."""
        folder = chosen
        if folder is None:
            if "://" in db and not db.startswith("sqlite:///"):
                return None
            path = Path(db.removeprefix("sqlite:///"))
            if not path.parent.is_dir():
                return None  # the store refuses a missing folder in its own words
            folder = path.with_name(
                f"{path.stem}-outbox" if name == "demo" else f"{path.stem}-{name}-outbox"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CertflowError(
                f"--outbox {folder}: cannot make the folder ({error.strerror})"
            ) from None
        return cls(folder)

    def handlers(self, kind: str) -> list[Handler]:
        return [self.mail, self.webhooks] if kind in _MAILED else [self.webhooks]

    def deliver(self, stored: StoredEffect, store: SqlStore, now: datetime) -> None:
        try:
            for handler in self.handlers(type(stored.effect).__name__):
                handler(stored, store, now)
        except OSError as error:
            raise CertflowError(
                f"--outbox {self.folder}: cannot write {error.filename or 'a file'} "
                f"({error.strerror})"
            ) from None

    def document(self) -> dict[str, Any]:
        first = self.mail.written[0] if self.mail.written else None
        return {
            "folder": str(self.folder.resolve()),
            "emails": len(self.mail.written),
            "webhooks": self.webhooks.count,
            "first_email": None if first is None else str(first.resolve()),
        }

    def summary(self) -> None:
        found = self.document()
        click.echo(
            f"\noutbox: what `certflow worker` would have sent, in {found['folder']}: "
            f"{found['emails']:,} e-mails (mail/*.eml), {found['webhooks']:,} webhook bodies "
            "(webhooks.jsonl)"
        )
        if found["first_email"] is not None:
            click.echo(f"the first e-mail: {found['first_email']}")


class _Delivering:
    """The demo's store, whose outbox deliveries also reach the worker's sinks: each
    effect the demo's drain leases is kept, and when the drain acknowledges it, the
    sinks get it first, with the store as it stands then (a notice's attachment lists
    the devices as at delivery, as the SMTP handler's would). Everything else is the
    store's own."""

    def __init__(self, store: SqlStore, sinks: _Sinks) -> None:
        self._store = store
        self._sinks = sinks
        self._leased: dict[str, StoredEffect] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def lease(self, *args: Any, **options: Any) -> list[StoredEffect]:
        claimed = self._store.lease(*args, **options)
        self._leased.update((stored.id, stored) for stored in claimed)
        return claimed

    def acknowledge(self, effect_ids: Iterable[str], now: datetime) -> int:
        ids = list(effect_ids)
        for effect_id in ids:
            stored = self._leased.pop(effect_id, None)
            if stored is not None:
                self._sinks.deliver(stored, self._store, now)
        return self._store.acknowledge(ids, now)


def _run(
    devices: int,
    seed: int,
    out: Any,
    quiet: bool,
    db: str | None,
    name: str,
    sinks: _Sinks | None = None,
) -> Any:
    from certflow.demo import run  # keeps `certflow --help` fast
    from certflow.store import check_rollout_name, open_store, without_password

    if db is None:
        return run(devices, seed, out, quiet=quiet)
    check_rollout_name(name)
    with open_store(db) as store:
        if any(info.name == name for info in store.rollouts()):
            raise click.UsageError(
                f"{without_password(db)} already holds a rollout named {name!r}: give another "
                "--name or --db"
            )
        # The demo package may not import the worker (sibling layers): its store is
        # handed over wrapped, and the wrapper runs the worker's sinks.
        host = store if sinks is None else cast("SqlStore", _Delivering(store, sinks))
        return run(devices, seed, out, quiet=quiet, store=host, name=name)


def _status(ctx: click.Context, db: str, name: str) -> None:
    """Where the database is, and the rollout's status page from it."""
    from certflow.cli._rollout_read import rollout_status
    from certflow.store import open_store, without_password

    with open_store(db, create=False) as store:
        now = store.info(name).clock.isoformat()  # where the simulation left the rollout
        shown = _where(store)
    click.echo(f"\ndatabase: {shown} (rollout {name})")
    click.echo(
        f"$ certflow rollout status {name} --db {without_password(db)} --limit 10 --now {now}\n"
    )
    ctx.invoke(
        rollout_status, name=name, states=(), limit=10, after=None, db=db, now=now,
        as_json=False,
    )  # fmt: skip


def _console(db: str, name: str) -> None:
    """The command that serves the web console over the demo's database, the page of its
    rollout, and how to make the sign-in token file it needs (docs/web.md)."""
    import shlex
    import urllib.parse

    from certflow.store import without_password

    shown = without_password(db)
    page = urllib.parse.quote(name, safe="")
    click.echo(
        f"\nthe console: the rollout at http://127.0.0.1:8080/rollouts/{page} (sign in with "
        "the token in TOKEN_FILE)"
    )
    click.echo("$ openssl rand -hex 32 > TOKEN_FILE && chmod 600 TOKEN_FILE  # once: the token")
    click.echo(f"$ certflow serve --db {shlex.quote(shown)} --token-file TOKEN_FILE")
    if shown != db:
        # The password is never printed (docs/web.md): the reader supplies it.
        click.echo("(the password is not shown: give it in ~/.pgpass, or the URL in CERTFLOW_DB)")


def _where(store: SqlStore) -> str:
    """The database as the summary names it: a file's full path, a URL without password."""
    from certflow.store import SqliteStore

    return str(store.path.resolve()) if isinstance(store, SqliteStore) else store.location


def _report(
    devices: int,
    seed: int,
    *,
    quiet: bool,
    chart: Path | None,
    db: str | None,
    name: str,
    sinks: _Sinks | None,
) -> None:
    """Run the simulation on stdout and, unless ``quiet``, end with the wall time."""
    began = time.perf_counter()
    result = _run(devices, seed, sys.stdout, quiet, db, name, sinks)
    elapsed = time.perf_counter() - began
    if chart is not None:
        _draw_run(result, chart)
    if not quiet:
        # Wall time goes last and only here, so that run()'s text stays reproducible.
        days = (result.summary.now - result.rollout.plan.created_at) / timedelta(days=1)
        click.echo(f"\nsimulated {days:.1f} days of {result.devices:,} devices in {elapsed:.2f} s")
        if chart is not None:
            click.echo(f"chart: {chart}")


def _draw_run(result: Any, path: Path) -> None:
    from certflow.sim.chart import save, states_chart

    figure = states_chart(
        result.trace,
        result.effects,
        result.rollout.plan.created_at,
        title=f"Device states per day: {result.devices:,} devices, seed {result.seed}",
    )
    save(figure, path)


def _json(
    devices: int, seed: int, chart: Path | None, db: str | None, name: str, sinks: _Sinks | None
) -> None:
    result = _run(devices, seed, io.StringIO(), True, db, name, sinks)
    if chart is not None:
        _draw_run(result, chart)
    summary = result.summary
    document = {
        "devices": result.devices,
        "seed": result.seed,
        "state": summary.state.value,
        "import_day": result.import_day,
        "forced": result.forced,
        "reenrollment_required": result.reenrollment_required,
        "reenrolled": result.reenrolled,
        "notices": result.notices,
        "checkpoints_postponed": result.checkpoints_postponed,
        "manual_extensions": result.manual_extensions,
        "bulk_retries": result.bulk_retries,
        "retried_pushes": result.retried_pushes,
        "enrolled": result.enrolled,
        "unenrolled": result.unenrolled,
        "server_restarted": result.server_restarted,
        "percent_complete": summary.percent_complete,
        "counts": {state.value: n for state, n in summary.counts.items()},
    }
    if db is not None:
        from certflow.store import open_store

        with open_store(db, create=False) as store:
            document["database"] = _where(store)
        document["rollout"] = name
    if sinks is not None:
        document["outbox"] = sinks.document()
    click.echo(json.dumps(document, indent=2))


def _sweep(devices: int, seed: int, runs: int, *, as_json: bool, chart: Path | None) -> None:
    from certflow.sim import AdminPolicy, Setup, sweep

    setup = Setup(devices=devices, admin=AdminPolicy(retry_every=3, extend_on_day=6))
    began = time.perf_counter()
    table = sweep(setup, runs, seed)
    elapsed = time.perf_counter() - began
    if chart is not None:
        from certflow.sim.chart import save, sweep_chart

        save(sweep_chart({"retries every 3 days, extension on day 6": table}), chart)
    if as_json:
        click.echo(json.dumps(table.as_dict(), indent=2))
        return
    click.echo(str(table))
    workers = min(os.cpu_count() or 1, runs)
    click.echo(
        f"\nswept {runs:,} runs of {devices:,} devices in {elapsed:.2f} s ({workers} processes)"
    )
    if chart is not None:
        click.echo(f"chart: {chart}")
