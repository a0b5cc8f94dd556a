"""``certflow rollout``: drive a durable rollout from the command line (``store.md``).

Every subcommand opens the store named by ``--db`` (default ``./certflow.db``, or
``CERTFLOW_DB``), runs one store operation at ``--now`` (default: the clock, read here and
only here) and closes it. Only ``new`` creates a database; every other command refuses a
missing one. A command the rules refuse exits 1 with the refusal (under ``--json`` also
as data: :func:`refusal_data`); bad input exits 2.
The choices made where the contract is silent are in ``docs/cli/rollout.md``.

This module holds the group, what every subcommand shares (options, refusals, the store,
progress, the outcome) and the rollout's lifecycle: ``new``, ``distribute``, ``proceed``,
``import-now`` (with the confirmation of an import), ``extend`` and ``cancel``. The other
subcommands register on :data:`rollout_group` when :mod:`certflow.cli` imports their
modules: ``_rollout_devices`` (``report``, ``retry``, fleet changes, ``restarted``),
``_rollout_outbox`` (``tick``, ``effects``, ``ack``) and ``_rollout_read`` (``status``,
``history``, ``list``, ``forecast``). The files read are parsed in ``_rollout_input``;
what is printed is shaped in ``_rollout_render``; how the store is opened (reads read-only,
the real clock's skew) and what a command did (or "no change") are ``_rollout_store``'s.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import click

from certflow.cli._app import (
    EXIT_OK,
    applied,
    json_option,
    main,
    parse_now,
    print_json,
    refuse,
)
from certflow.cli._certs import PASSWORD_FILE, _load, _password, _password_file, _print_report
from certflow.cli._rollout_input import read_device_ids
from certflow.cli._rollout_render import (
    _command_text,
    _when,
    identity_data,
    identity_rows,
)
from certflow.cli._rollout_render import describe as describe
from certflow.cli._rollout_store import execute, outcome, store_for
from certflow.core import commands as c
from certflow.core.errors import CommandRefused, UnknownDevice
from certflow.core.evaluator import new_rollout
from certflow.core.expiry import expiry_warnings
from certflow.core.instants import show
from certflow.core.letters import CLI_COMMANDS, CLI_NAMES
from certflow.core.policy import CertificateKind
from certflow.core.wording import describe_hint, describe_refusal
from certflow.store import SqlStore, check_rollout_name

#: Work at least this large shows a progress bar on a terminal.
PROGRESS_FROM = 10_000
#: Devices named when a prompt lists the ones that would lose contact.
FIRST_IDS = 10


# --- shared options and helpers --------------------------------------------------------------


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--db``, ``--now`` and ``--json``, spelled the same on every subcommand."""
    options = [
        click.option(
            "--db",
            envvar="CERTFLOW_DB",
            default="certflow.db",
            metavar="PATH|URL",
            help="The database: an SQLite file path (or sqlite:///PATH), or a "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL (default: ./certflow.db, or "
            "$CERTFLOW_DB).",
        ),
        click.option(
            "--now",
            "now",
            metavar="TIME",
            help="The instant of the command, ISO 8601 with an offset (default: the current time).",
        ),
        json_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _refusals(command: Callable[..., int]) -> Callable[..., int]:
    """A refusal by the rules exits 1 with its message (bad input stays 2, in ``_app``);
    an unknown device is bad input, in the command line's words."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        rollout = kwargs.get("name")
        try:
            return command(*args, **kwargs)
        except CommandRefused as error:
            return refused(error, rollout)
        except UnknownDevice as error:  # bad input (exit 2), in the command line's words
            raise UnknownDevice(
                words(error, rollout, kwargs.get("device") or kwargs.get("after")),
                device_id=error.device_id,
                hint=error.hint,
            ) from None

    return run


def words(
    error: CommandRefused | UnknownDevice, rollout: str | None, device: str | None = None
) -> str:
    """A refusal in the command line's words: the commands by their subcommands, and in
    its hint, what to run as a whole command line (``certflow rollout import-now r1``)."""
    return describe_refusal(
        error, names=CLI_NAMES, hint_names=CLI_COMMANDS, rollout=rollout, device_id=device
    )


def refused(error: CommandRefused, rollout: str | None) -> int:
    """Say that the rules refused a command on ``rollout``, in the command line's words,
    and return 1; under ``--json`` the refusal is data too (:func:`refusal_data`)."""
    return refuse(words(error, rollout), **refusal_data(error, rollout))


def refusal_data(error: CommandRefused, rollout: str | None) -> dict[str, Any]:
    """What a program may act on in a refusal: the ``hint`` (what would allow the
    command, in the command line's words: the core's ``hint`` field, or ``None``),
    ``allowed_at`` (from when time alone allows it, or ``None``), ``reason`` (the failed
    guard's name, ``rollout_state`` or ``device_state``), the rollout's ``state``, and
    the ``device`` with its state."""
    return {
        "hint": describe_hint(error, names=CLI_COMMANDS, rollout=rollout),
        "allowed_at": None if error.allowed_at is None else error.allowed_at.isoformat(),
        "reason": error.reason or None,
        "state": error.state or None,
        "device": error.device_id,
        "device_state": error.device_state,
    }


def _store(
    db: str, *, create: bool = False, read_only: bool = False, real_clock: bool = False
) -> AbstractContextManager[SqlStore]:
    """The store ``--db`` names (:func:`._rollout_store.store_for`): read-only for a
    read; ``real_clock`` for a command given no ``--now``."""
    return store_for(db, real_clock=real_clock, create=create, read_only=read_only)


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()


def _interactive(as_json: bool) -> bool:
    """Whether progress may be drawn: a person at a terminal, not a program."""
    return not as_json and sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def _progress(label: str, total: int, shown: bool) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a bar on standard error, or nothing."""
    if not shown or total < PROGRESS_FROM:
        yield lambda done, total: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        seen = [0]

        def update(done: int, total: int) -> None:
            bar.update(done - seen[0])
            seen[0] = done

        yield update


# --- the group ---------------------------------------------------------------------------------


@main.group("rollout")
def rollout_group() -> None:
    """Run a rollout stored in a database: create it, send commands and reports, tick, read.

    Every subcommand takes --db (default ./certflow.db, or $CERTFLOW_DB) and --now (ISO
    8601 with an offset; default the current time). A command that changes nothing says
    "no change". Exit codes: 0 ok, 1 the rules refused the command (or a prompt was
    declined), 2 bad input, 75 the database was busy or unreachable (nothing changed: try
    again), 130 interrupted before the commit (after it: 0, "applied"). Under --json a
    refusal or an error is also a JSON object on standard output (error, code, message;
    a refusal's hint and allowed_at).
    """


# What a command did, or "no change" (both in _rollout_store, with the store's opening).
_outcome = outcome
_execute = execute


def _rollout_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A rollout's name checked against the rule before the store is opened: no rollout
    has a name the rule refuses (every one was checked when it was made), and the
    store's "no rollout named ..." would echo a 5,000-character argument whole."""
    return None if value is None else check_rollout_name(value)


_name = click.argument("name", callback=_rollout_name)


# --- new -------------------------------------------------------------------------------------


@rollout_group.command("new")
@_name
@click.option(
    "--cert",
    "cert_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new certificate material (PFX, CER/CRT, chain, key); repeat for each file.",
)
@click.option("--password", metavar="PW", help="The password of encrypted material (PFX, key).")
@_password_file
@click.option(
    "--existing",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The server's current certificate (its expiry bounds the rollout).",
)
@click.option(
    "--devices",
    "devices_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file of device ids, one per line.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    metavar="ADDR",
    help="An address clients use: host name or NAT address. Repeat it for each of them.",
)
@click.option(
    "--kind",
    type=click.Choice([k.value for k in CertificateKind]),
    default=CertificateKind.MDM_SERVER.value,
    show_default=True,
    help="Which server certificate the rollout replaces.",
)
@click.option(
    "--public-root/--private-root",
    "public_root",
    default=None,
    help="Override whether the new root is publicly trusted (default: what the chain says).",
)
@_common
def rollout_new(
    name: str,
    cert_files: tuple[Path, ...],
    password: str | None,
    password_file: Path | None,
    existing: Path,
    devices_file: Path,
    hosts: tuple[str, ...],
    kind: str,
    public_root: bool | None,
    db: str,
    now: str | None,
    as_json: bool,
) -> int:
    """Create a pending rollout from the new certificate, the current one and the devices.

    The material is loaded and checked for every --host at --now, as `certflow cert
    check` does; any error finding refuses the rollout (exit 1, the findings are shown).
    Creates the database when it does not exist.
    """
    at = parse_now(now)
    check_rollout_name(name)  # before anything is created
    if password is not None and password_file is not None:
        raise click.UsageError(f"give --password or {PASSWORD_FILE}, not both")
    secret = password if password is not None else _password(password_file)
    material = _load(cert_files, secret)
    current = _load([existing], None)
    ids = read_device_ids(devices_file)
    from certflow import certs  # cryptography: imported by the one command that needs it

    try:
        rollout = certs.rollout_for(
            material, current, ids, now=at, kind=CertificateKind(kind), hosts=hosts
        )
    except certs.CertificateRejected as error:
        if not as_json:
            _print_report(error.report)
        # Under --json the check's report is the refusal's object: one object on stdout.
        return refuse(str(error), **error.report.to_dict())
    plan = rollout.plan
    if public_root is not None and public_root != plan.root_publicly_trusted:
        # rollout_for takes the answer from the chain; the administrator knows better
        # (a private root already on every device, say), so the plan is made again, and
        # the identity's root says the same.
        identity = plan.identity
        if identity is not None:
            root = attrs.evolve(identity.root, publicly_trusted=public_root)
            identity = attrs.evolve(identity, root=root)
        rollout = new_rollout(
            ids,
            existing_not_after=plan.existing_not_after,
            new_not_before=plan.new_not_before,
            new_not_after=plan.new_not_after,
            root_publicly_trusted=public_root,
            created_at=plan.created_at,
            kind=plan.kind,
            policy=plan.policy,
            identity=identity,
        )
    with (
        _store(db, create=True) as store,
        _progress("Writing devices", len(ids), _interactive(as_json)) as progress,
    ):
        info = store.create(name, rollout, progress=progress)
        applied()
        store_location = store.location  # a URL without its password
    public = rollout.plan.root_publicly_trusted
    warnings = expiry_warnings(rollout.plan, rollout.phase, rollout.plan.created_at)
    if as_json:
        print_json(
            {
                "rollout": info.name,
                "state": info.state.value,
                "devices": info.devices,
                "kind": rollout.plan.kind.value,
                "root_publicly_trusted": public,
                "new_not_after": rollout.plan.new_not_after.isoformat(),
                "existing_not_after": rollout.plan.existing_not_after.isoformat(),
                "database": store_location,
                "identity": identity_data(rollout.plan.identity),
                "warnings": list(warnings),
            }
        )
        return EXIT_OK
    for warning in warnings:
        click.echo(f"certflow: warning: {warning}", err=True)
    click.echo(
        f"Created rollout {info.name} ({info.state.value}) for {info.devices:,} devices "
        f"in {store_location}"
    )
    click.echo(f"Current certificate expires {show(rollout.plan.existing_not_after)}")
    click.echo(f"New certificate valid until {show(rollout.plan.new_not_after)}")
    for label, value in identity_rows(rollout.plan.identity, root_label="Root certificate"):
        click.echo(f"{label + ':':<18}{value}")
    if public:
        click.echo(f"Root: publicly trusted. Next: certflow rollout proceed {info.name}")
    else:
        click.echo(f"Root: private. Next: certflow rollout distribute {info.name}")
    return EXIT_OK


# --- the administrator's commands ----------------------------------------------------------------


@rollout_group.command("distribute")
@_name
@_common
@_refusals
def rollout_distribute(name: str, db: str, now: str | None, as_json: bool) -> int:
    """Distribute Root Certificate (recommended): push the new root to every device."""
    return _execute(db, now, as_json, name, c.DistributeRoot(), warn=True)


def _confirm_import(
    store: SqlStore, name: str, at: datetime, yes: bool, what: str, command: c.Command
) -> bool:
    """List the devices the import would cut off and ask; ``True`` to go ahead.

    The list is the engine's own: the devices the store's preview of the very command
    names in its ``ReenrollmentRequired`` (so a changed rule changes the list too)."""
    seen = store.preview(name, command, at)
    if seen.refusal is not None:
        raise seen.refusal  # refused by the rules: no question to ask
    cut_off = seen.cut_off
    if not cut_off:
        return True
    count = len(cut_off)
    first = cut_off[:FIRST_IDS]
    more = f", ... ({count - len(first):,} more)" if count > len(first) else ""
    click.echo(
        f"{count:,} device{'s' * (count != 1)} do not trust the new root and would lose "
        f"communication: {', '.join(first)}{more}",
        err=True,
    )
    if yes:
        return True
    try:
        answer = click.confirm(f"{what} anyway?", default=False, err=True)
    except click.Abort:
        if sys.stdin.isatty():
            raise
        click.echo("", err=True)  # the error goes on a line of its own, not after the prompt
        raise click.UsageError(
            "no answer on standard input; give --yes to import without asking"
        ) from None
    if not sys.stdin.isatty():
        click.echo("", err=True)  # a piped answer is not echoed: end the prompt's line
    return answer


def _import(
    name: str, yes: bool, db: str, now: str | None, as_json: bool, command: c.Command, what: str
) -> int:
    at = parse_now(now)
    with _store(db, real_clock=now is None) as store:
        if not _confirm_import(store, name, at, yes, what, command):
            return refuse(
                f"{what} declined; the import was not run", kind="declined", label="not imported"
            )
        effects = store.apply(name, command, at)
        applied()
        return _outcome(store, name, _command_text(command), effects, at, as_json)


_yes = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


@rollout_group.command("proceed")
@_name
@_yes
@_common
@_refusals
def rollout_proceed(name: str, yes: bool, db: str, now: str | None, as_json: bool) -> int:
    """Proceed to Import: import into a pending rollout, without distributing the root.

    For a publicly trusted root, or devices that trust the root already; the others lose
    communication (the import is forced).

    Lists the devices that would lose communication and asks first (--yes skips it).
    """
    return _import(name, yes, db, now, as_json, c.ProceedToImport(), "Proceed to Import")


@rollout_group.command("import-now")
@_name
@_yes
@_common
@_refusals
def rollout_import_now(name: str, yes: bool, db: str, now: str | None, as_json: bool) -> int:
    """Import the new certificate now.

    Lists the devices that would lose communication and asks first (--yes skips it).
    """
    return _import(name, yes, db, now, as_json, c.ImportNow(), "Import now")


@rollout_group.command("extend")
@_name
@_common
@_refusals
def rollout_extend(name: str, db: str, now: str | None, as_json: bool) -> int:
    """The manual one-week extension (from the day the rules open it).

    Says which dates it moved: the next checkpoint and the deadline, before and after,
    as the store's preview of the extension gave them and the extension then did.
    """
    at = parse_now(now)
    command = c.ExtendManually()
    with _store(db, real_clock=now is None) as store:
        seen = store.preview(name, command, at)
        if seen.refusal is not None:
            raise seen.refusal
        effects = store.apply(name, command, at)
        applied()
        done = store.overview(name, at)
        before, after = seen.before, seen.overview
        moves: tuple[tuple[str, datetime | None, datetime | None], ...] = (
            (
                "next_checkpoint",
                None if before is None else before.next_checkpoint,
                done.next_checkpoint,
            ),
            ("deadline", None if before is None else before.deadline, done.deadline),
        )
        if after is None or (done.next_checkpoint, done.deadline) != (
            after.next_checkpoint,
            after.deadline,
        ):
            # Another process changed the rollout between the preview and the command:
            # the dates before are not known for certain, only where they are now.
            moves = tuple((label, None, new) for label, _, new in moves)
        if not as_json:
            for label, old, new in moves:
                what = label.replace("_", " ")
                if old is None:
                    click.echo(f"The extension set the {what} to {_when(new)}")
                else:
                    click.echo(f"The extension moved the {what} from {_when(old)} to {_when(new)}")
        moved = {label: {"from": _iso(old), "to": _iso(new)} for label, old, new in moves}
        return _outcome(
            store, name, _command_text(command), effects, at, as_json, warn=True, data=moved
        )


@rollout_group.command("cancel")
@_name
@_common
@_refusals
def rollout_cancel(name: str, db: str, now: str | None, as_json: bool) -> int:
    """Cancel the rollout."""
    return _execute(db, now, as_json, name, c.Cancel())
