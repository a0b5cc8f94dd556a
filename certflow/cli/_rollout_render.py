"""What ``certflow rollout`` prints: effects, devices, journal entries and the overview, as
lines for people and as the data of ``--json``, naming the command line's commands
(:data:`certflow.core.letters.CLI_SPELLINGS`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from certflow.cli._format import Clock, cells, count, pad, percent, percent_text
from certflow.core import commands as c
from certflow.core.effects import Effect
from certflow.core.identity import Identity
from certflow.core.instants import show
from certflow.core.letters import CLI_NAMES, CLI_SPELLINGS
from certflow.core.plan import DeviceRecord, DeviceState
from certflow.core.serialization import encode
from certflow.core.summary import Overview
from certflow.core.wording import DEVICE, describe_effect
from certflow.store import JournalEntry, StoredEffect

# --- describing effects, devices, journal entries ---------------------------------------------


# The command line's spellings are the core wording's (the worker's e-mails use them too).


def describe(effect: Effect) -> str:
    """One effect as an administrator reads it, naming the command line's commands."""
    return describe_effect(effect, names=CLI_NAMES)


def _effect_data(stored: StoredEffect) -> dict[str, Any]:
    return {
        "id": stored.id,
        "rollout": stored.rollout,
        "due_at": stored.due_at.isoformat(),
        "text": describe(stored.effect),
        "effect": encode(stored.effect),
        "acknowledged_at": None if stored.acked_at is None else stored.acked_at.isoformat(),
        "failures": stored.failures,
        "last_error": stored.last_error,
    }


def _print_effects(effects: Sequence[StoredEffect], *, indent: str = "") -> None:
    width = max((len(e.id) for e in effects), default=0)
    for stored in effects:
        notes = []
        if stored.acked_at is not None:
            notes.append(f"acknowledged {show(stored.acked_at)}")
        if stored.failures:
            notes.append(f"{stored.failures} failed deliveries, last: {stored.last_error}")
        tail = f"  [{'; '.join(notes)}]" if notes else ""
        click.echo(
            f"{indent}{stored.id:<{width}}  {show(stored.due_at)}  {describe(stored.effect)}{tail}"
        )


def _instant(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


#: What is shown of a device: the keys of its ``--json`` object, and the header of
#: ``status --csv``.
DEVICE_COLUMNS = ("device", "state", "attempts", "last_push", "last_report", "reason")


def device_cells(row: DeviceRecord) -> tuple[str, str, int, str | None, str | None, str | None]:
    """A device's values, in the order of :data:`DEVICE_COLUMNS` (instants in ISO 8601,
    UTC; ``None`` for what never happened)."""
    return (
        row.device_id,
        row.state.value,
        row.attempts,
        _instant(row.last_push),
        _instant(row.last_report),
        row.last_failure_reason,
    )


def _device_data(row: DeviceRecord) -> dict[str, Any]:
    return dict(zip(DEVICE_COLUMNS, device_cells(row), strict=True))


def _command_text(command: c.Command) -> str:
    """A command as the command line spells it (``report d1 failed (disk full)``), for
    what a command did and the journal: the subcommand, never the Python class."""
    spelling = CLI_SPELLINGS[type(command).__name__]
    device = getattr(command, "device_id", None)
    text = spelling if device is None else spelling.replace(DEVICE, device)
    reason = getattr(command, "reason", None)
    if reason:
        text += f" ({reason})"
    return text


def _kind_text(name: str) -> str:
    """A kind of command, no device named: ``report installed``, ``retry``."""
    return CLI_SPELLINGS[name].replace(f" {DEVICE}", "")


def _entry_data(entry: JournalEntry) -> dict[str, Any]:
    # The creation entry carries the rollout's document, so that the export replays.
    data = entry.as_dict(document=True)
    del data["rollout"]  # the command names it
    return data


def _entry_text(entry: JournalEntry) -> str:
    if entry.kind == "create":
        what = f"created ({len(entry.body['devices']['ids']):,} devices)"
    elif entry.kind == "advance":
        what = "time moved the rollout"
    elif entry.kind == "command":
        what = _command_text(entry.commands[0])
    else:
        kinds = Counter(_kind_text(type(command).__name__) for command in entry.commands)
        parts = ", ".join(f"{name} x{n:,}" for name, n in sorted(kinds.items()))
        what = f"batch of {len(entry.commands):,} ({parts})"
    effects = ""
    if len(entry.effects) == 1:
        effects = f"  effect {entry.effects[0]}"
    elif entry.effects:  # ids of one entry differ in their last part only
        effects = f"  effects {entry.effects[0]}..{entry.effects[-1].rsplit(':', 1)[1]}"
    return f"{entry.seq:>5}  {show(entry.at)}  {what} -> {entry.state.value}{effects}"


# --- the overview and the device table -------------------------------------------------------


def in_scope(counts: Mapping[DeviceState, int]) -> int:
    """The devices in the rollout's scope (as ``status`` counts them: every state the
    device machine declares in scope; an unenrolled device is not)."""
    return sum(n for state, n in counts.items() if state.in_scope)


def counts_text(counts: Mapping[DeviceState, int]) -> str:
    """The devices per state, those in scope first, with how many are in scope."""
    inside = [f"{s.value} {n:,}" for s, n in counts.items() if s.in_scope]
    outside = [f"{s.value} {n:,}" for s, n in counts.items() if not s.in_scope]
    text = f"{in_scope(counts):,} in scope: {', '.join(inside)}"
    return text + (f"; not in scope: {', '.join(outside)}" if outside else "")


def _overview_data(head: Overview) -> dict[str, Any]:
    return {
        "state": head.state.value,
        "now": head.now.isoformat(),
        "counts": {state.value: n for state, n in head.counts.items()},
        "in_scope": head.in_scope,
        "trusting": head.trusting,
        "percent_complete": percent(head.percent_complete),
        "distribution_needed": head.distribution_needed,
        "started_at": _instant(head.started_at),
        "next_notice": _instant(head.next_notice),
        "next_checkpoint": _instant(head.next_checkpoint),
        "next_checkpoint_is_expiry": head.next_checkpoint_is_expiry,
        "deadline": _instant(head.deadline),
        "existing_not_after": _instant(head.existing_not_after),
        "existing_expired": head.existing_expired,
        "warnings": list(head.warnings),
        "manual_extension_available": head.manual_extension_available,
        "manual_extension_opens_at": _instant(head.manual_extension_opens_at),
        "manual_extensions": head.manual_extensions,
        "restart_required": head.restart_required,
        "identity": identity_data(head.identity),
    }


def identity_data(identity: Identity | None) -> dict[str, Any] | None:
    """What the rollout rolls out, for ``--json`` (the PEM text is left to ``export``);
    ``None`` for a rollout made from dates alone."""
    if identity is None:
        return None
    certificate, root = identity.certificate, identity.root
    return {
        "certificate": {
            "fingerprint": certificate.fingerprint,
            "subject": certificate.subject,
            "names": list(certificate.names),
            "issuer": certificate.issuer,
            "not_before": certificate.not_before.isoformat(),
            "not_after": certificate.not_after.isoformat(),
        },
        "root": {
            "fingerprint": root.fingerprint,
            "subject": root.subject,
            "publicly_trusted": root.publicly_trusted,
        },
        "hosts": list(identity.hosts),
        "intermediates": len(identity.intermediates),
    }


def identity_cell(identity: Identity | None) -> str:
    """What the rollout rolls out, in a column of ``list``: the certificate's subject and
    the start of its fingerprint."""
    if identity is None:
        return "(no identity)"
    certificate = identity.certificate
    return f"{certificate.subject or '(empty subject)'} (SHA-256 {certificate.fingerprint[:16]}…)"


#: What a rollout made from dates alone says in place of its certificate.
NO_IDENTITY = "none: made from dates alone, no certificate recorded"


def identity_rows(
    identity: Identity | None, root_label: str = "Root", when: Callable[[datetime], str] = show
) -> list[tuple[str, str]]:
    """What the rollout rolls out, as labelled lines (``root_label`` heads the root's;
    ``when`` shows its instants, at the page's precision)."""
    if identity is None:
        return [("Identity", NO_IDENTITY)]
    certificate, root = identity.certificate, identity.root
    trust = "publicly trusted" if root.publicly_trusted else "private"
    return [
        ("Certificate", certificate.subject or "(empty subject)"),
        ("  SHA-256", certificate.fingerprint),
        ("  names", ", ".join(certificate.names) or "-"),
        ("  issuer", certificate.issuer),
        ("  valid", f"{when(certificate.not_before)} to {when(certificate.not_after)}"),
        (root_label, f"{root.subject or '(empty subject)'} ({trust})"),
        ("  SHA-256", root.fingerprint),
        ("Hosts", ", ".join(identity.hosts)),
    ]


def _when(value: datetime | None) -> str:
    return "-" if value is None else show(value)


def page_clock(head: Overview, rows: Sequence[DeviceRecord] = ()) -> Clock:
    """The precision of a status page: every instant it shows, the head's and the rows'."""
    return Clock(
        [
            head.now,
            head.started_at,
            head.next_notice,
            head.next_checkpoint,
            head.deadline,
            head.existing_not_after,
            head.manual_extension_opens_at,
            *(() if head.identity is None else (head.identity.certificate.not_before,)),
            *(() if head.identity is None else (head.identity.certificate.not_after,)),
            *(i for r in rows for i in (r.last_push, r.last_report)),
        ]
    )


def _print_overview(name: str, head: Overview, when: Clock | None = None) -> None:
    when = when or page_clock(head)
    if head.manual_extension_available:
        extension = "available now"
    elif head.manual_extension_opens_at is not None and head.manual_extension_opens_at > head.now:
        extension = f"not yet, from {when(head.manual_extension_opens_at)}"
    else:
        extension = "not available"
    if head.manual_extensions:
        extension += f" (used {head.manual_extensions} time{'s' * (head.manual_extensions != 1)})"
    rows = [
        ("Rollout", f"{name}: {head.state.value} (at {when(head.now)})"),
        (
            "Complete",
            f"{percent_text(head.percent_complete)} ({count(head.trusting)} of "
            f"{count(head.in_scope)} in-scope devices trust the root)"
            + ("" if head.distribution_needed else "; publicly trusted: no distribution needed"),
        ),
        ("Devices", counts_text(head.counts)),
        ("Started", when(head.started_at)),
        ("Next notice", when(head.next_notice)),
        (
            "Next checkpoint",
            when(head.next_checkpoint)
            + (" (the existing certificate's expiry)" if head.next_checkpoint_is_expiry else ""),
        ),
        ("Deadline", when(head.deadline)),
        (
            "Existing cert",
            f"{'expired' if head.existing_expired else 'expires'} {when(head.existing_not_after)}",
        ),
        ("Extension", extension),
        ("Restart required", "yes" if head.restart_required else "no"),
        *identity_rows(head.identity, when=when),
        *(("Warning", warning) for warning in head.warnings),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<18}{value}")


def _print_devices(rows: Sequence[DeviceRecord], when: Clock | None = None) -> None:
    """The device table, its columns aligned by terminal cells (an id of wide
    characters takes two a character), its instants at one precision."""
    if not rows:
        click.echo("No devices on this page.")
        return
    when = when or Clock(i for r in rows for i in (r.last_push, r.last_report))
    table = [
        (
            r.device_id,
            r.state.value,
            str(r.attempts),
            when(r.last_push),
            when(r.last_report),
            r.last_failure_reason or "",
        )
        for r in rows
    ]
    titles = ("DEVICE", "STATE", "ATTEMPTS", "LAST PUSH", "LAST REPORT", "REASON")
    widths = [max(cells(t), *(cells(row[i]) for row in table)) for i, t in enumerate(titles[:-1])]
    for row in [titles, *table]:
        padded = [pad(cell, w) for cell, w in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*padded, row[-1]]).rstrip())


def json_line(data: object) -> str:
    """Compact JSON on one line (for JSON-lines output)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
