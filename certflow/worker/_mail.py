"""The e-mails of the SMTP handler, written for an administrator: what is happening to
the rollout, what happens if nothing changes, what they can do, and which devices do not
trust the root yet (a CSV attachment). One message per effect; its Message-ID is made of
the effect id, so a duplicate delivery is recognisable."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from certflow.core.effects import (
    Effect,
    Notify,
    ReenrollmentRequired,
)
from certflow.core.instants import show
from certflow.core.letters import CLI_COMMANDS, describe_letter
from certflow.core.plan import DeviceRecord, DeviceState
from certflow.store import Store, StoredEffect

__all__ = ["UNTRUSTING", "compose", "effect_id_of", "message_id"]

#: The device states in scope that do not trust the root: the devices the attachment lists.
UNTRUSTING = tuple(s for s in DeviceState if s.in_scope and not s.trusts)
_CSV_COLUMNS = ("device", "state", "attempts", "last_push", "last_report", "reason")
_MESSAGE_ID = re.compile(r"^<certflow\.(.+)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)@[^>]+>$")


def message_id(effect_id: str, domain: str) -> str:
    """The Message-ID of the e-mail of effect ``effect_id``: ``<certflow.NAME.SEQ.POSITION@
    domain>`` (a Message-ID may not hold ``:``; the last two parts are always the
    numbers, so :func:`effect_id_of` reads the id back)."""
    name, seq, position = effect_id.rsplit(":", 2)
    return f"<certflow.{name}.{seq}.{position}@{domain}>"


def effect_id_of(value: str) -> str | None:
    """The effect id a Message-ID of :func:`message_id` was made of, or ``None``."""
    found = _MESSAGE_ID.match(value.strip())
    return None if found is None else f"{found[1]}:{found[2]}:{found[3]}"


def compose(
    stored: StoredEffect, store: Store, now: datetime, *, sender: str, to: Iterable[str]
) -> EmailMessage:
    """The e-mail of one effect: its subject, a plain-text body an administrator reads,
    and for a notice (or a re-enrolment) the devices concerned as a CSV attachment.
    The notice's facts are the effect's own (as they stood when it fell due); the
    attachment lists the devices as the store holds them at delivery."""
    effect = stored.effect
    name = stored.rollout
    subject, lines = _words(stored, store)
    message = EmailMessage()
    message["Subject"] = f"[certflow] {name}: {subject}"
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(stored.id, sender.rpartition("@")[2] or "certflow")
    message["X-Certflow-Effect-Id"] = stored.id
    message["X-Certflow-Rollout"] = name
    message["X-Certflow-Kind"] = type(effect).__name__
    attachment: tuple[str, str] | None = None
    if isinstance(effect, Notify):
        table, count = _csv(_paged(store, name))
        lines.append(
            f"Devices that do not trust the root yet: {count:,} as of {show(now)}"
            + (f", listed in the attached {name}-untrusting.csv." if count else ".")
        )
        if count:
            attachment = (f"{name}-untrusting.csv", table)
    elif isinstance(effect, ReenrollmentRequired):
        table = _ids_csv(effect.device_ids)
        attachment = (f"{name}-reenrol.csv", table)
        lines.append(f"The devices to re-enrol are listed in the attached {name}-reenrol.csv.")
    lines += [
        "",
        f"Effect {stored.id}, due {show(stored.due_at)}. A duplicate of this message has the "
        "same Message-ID.",
        f"Details: certflow rollout status {name}",
    ]
    message.set_content("\n".join(lines) + "\n")
    if attachment is not None:
        filename, table = attachment
        message.add_attachment(
            table.encode("utf-8"), maintype="text", subtype="csv", filename=filename
        )
    return message


def _words(stored: StoredEffect, store: Store) -> tuple[str, list[str]]:
    """The subject and the first paragraphs of the body, in the core's words."""
    effect: Effect = stored.effect
    checkpoints = (
        len(store.plan(stored.rollout).policy.checkpoints) if isinstance(effect, Notify) else 0
    )
    return describe_letter(effect, stored.rollout, checkpoints, names=CLI_COMMANDS)


def _paged(store: Store, name: str, page: int = 1_000) -> Iterator[DeviceRecord]:
    """Every untrusting device, a keyset page per read (each a short read transaction of
    its own, so the SMTP conversation never holds one open)."""
    after: str | None = None
    while True:
        rows = store.devices(name, UNTRUSTING, after=after, limit=page)
        yield from rows
        if len(rows) < page:
            return
        after = rows[-1].device_id


def _cell(value: str) -> str:
    # A spreadsheet runs a cell that starts so as a formula: a device id or a reason from
    # outside must stay text (OWASP's CSV injection advice: a leading apostrophe). The
    # console's CSV (certflow.web) has the same rule; the worker may not import it.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv(rows: Iterable[DeviceRecord]) -> tuple[str, int]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(_CSV_COLUMNS)
    count = 0
    for device in rows:
        count += 1
        writer.writerow(
            (
                _cell(device.device_id),
                device.state.value,
                device.attempts,
                "" if device.last_push is None else device.last_push.isoformat(),
                "" if device.last_report is None else device.last_report.isoformat(),
                _cell(device.last_failure_reason or ""),
            )
        )
    return out.getvalue(), count


def _ids_csv(ids: Iterable[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("device",))
    writer.writerows((_cell(i),) for i in ids)
    return out.getvalue()
