"""The e-mails (certflow/worker/_mail.py): a notice written for an administrator, the end
of a rollout, the CSV of devices not trusting the root, Message-IDs from effect ids."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import SqliteStore, StoredEffect
from certflow.worker import compose, effect_id_of, message_id
from tests.worker.timeline import day, start


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "r.db") as opened:
        start(opened, "mdm-2026")
        yield opened


def mail(store: SqliteStore, kind: type, at: datetime) -> tuple[StoredEffect, EmailMessage]:
    [stored] = [e for e in store.effects() if isinstance(e.effect, kind)][-1:]
    return stored, compose(stored, store, at, sender="certflow@example.com", to=["a@example.com"])


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def attachment(message: EmailMessage) -> tuple[str, list[list[str]]]:
    [part] = list(message.iter_attachments())
    text = part.get_content()
    if isinstance(text, bytes):
        text = text.decode()
    return str(part.get_filename()), list(csv.reader(io.StringIO(text)))


@pytest.mark.parametrize(
    "effect_id", ["r:1:0", "mdm-2026:12:3", "a.b_c-d:1:0", "x.1.2:3:4", "r:123456789012:0"]
)
def test_a_message_id_reads_back_as_its_effect_id(effect_id: str) -> None:
    made = message_id(effect_id, "example.com")
    assert ":" not in made.strip("<>").split("@")[0]
    assert effect_id_of(made) == effect_id


def test_a_notice_says_what_an_administrator_needs(store: SqliteStore) -> None:
    store.tick(day(6))
    stored, message = mail(store, cf.Notify, day(6))
    text = body(message)
    assert message["Subject"] == "[certflow] mdm-2026: checkpoint 1 of 3 on 2026-07-08 09:00 UTC"
    assert effect_id_of(message["Message-ID"]) == stored.id
    assert message["Date"] == "Tue, 07 Jul 2026 09:00:00 +0000"
    assert "Checkpoint 1 of 3 is on 2026-07-08 09:00 UTC" in text
    # The progress, as the notice counted it: d0 installed, d1 failed, d2-d4 timed out.
    # In the core's words, as the command line says them (describe_trust: 20.0%).
    assert "1 of 5 in-scope devices trusts the root (20.0%); 4 failed" in text
    assert "If nothing changes: the import is postponed to the next checkpoint." in text
    assert "A manual extension is available now (`certflow rollout extend mdm-2026`)." in text
    name, rows = attachment(message)
    assert name == "mdm-2026-untrusting.csv"
    assert rows[0] == ["device", "state", "attempts", "last_push", "last_report", "reason"]
    assert [r[0] for r in rows[1:]] == ["d1", "d2", "d3", "d4"]
    assert rows[1][1:3] == ["failed", "1"]
    assert rows[1][5] == "no space left"
    assert "Devices that do not trust the root yet: 4 as of 2026-07-07 09:00 UTC" in text


def test_the_deadline_notice_foresees_the_forced_import(store: SqliteStore) -> None:
    store.tick(day(20))
    _, message = mail(store, cf.Notify, day(20))
    text = body(message)
    assert message["Subject"] == "[certflow] mdm-2026: the deadline is 2026-07-22 09:00 UTC"
    assert "is the deadline: the new certificate is imported then, whatever" in text
    assert "imported by force; 4 devices that do not trust the root lose contact" in text


def test_the_end_of_a_forced_rollout_is_mailed_with_the_devices_to_re_enrol(
    store: SqliteStore,
) -> None:
    store.tick(day(21))
    _, imported = mail(store, cf.ImportCertificate, day(21))
    assert imported["Subject"] == "[certflow] mdm-2026: the new certificate was imported, FORCED"
    assert "must re-enrol" in body(imported)
    _, reenrol = mail(store, cf.ReenrollmentRequired, day(21))
    assert reenrol["Subject"] == "[certflow] mdm-2026: 4 devices must re-enrol"
    name, rows = attachment(reenrol)
    assert (name, rows) == ("mdm-2026-reenrol.csv", [["device"], ["d1"], ["d2"], ["d3"], ["d4"]])


def test_a_cancellation_is_mailed(store: SqliteStore) -> None:
    store.apply("mdm-2026", cf.Cancel(), day(2))
    _, message = mail(store, cf.RolloutCancelled, day(2))
    assert message["Subject"] == "[certflow] mdm-2026: the rollout was cancelled"
    assert "The current certificate stays" in body(message)
    assert list(message.iter_attachments()) == []


def test_an_effect_without_words_of_its_own_reads_as_its_line(store: SqliteStore) -> None:
    _, message = mail(store, cf.PushRoot, day(0))
    assert message["Subject"].startswith("[certflow] mdm-2026: push root to 5 devices")


RISKY = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)"]


def test_a_cell_a_spreadsheet_would_run_as_a_formula_stays_text(tmp_path: Path) -> None:
    """Device ids and failure reasons come from outside: one starting with ``=``, ``+``,
    ``-`` or ``@`` is written with a leading apostrophe (as the console's CSV does), in
    the notice's attachment and in the list of devices to re-enrol."""
    with SqliteStore(tmp_path / "risky.db") as risky:
        start(risky, "r")
        risky.apply_all("r", [cf.Enroll(i) for i in RISKY], day(0) + timedelta(hours=2))
        risky.apply("r", cf.DeviceFailed("d2", "=cmd|' /C calc'!A0"), day(0) + timedelta(hours=3))
        risky.tick(day(6))
        _, notice = mail(risky, cf.Notify, day(6))
        _, rows = attachment(notice)
        listed = {r[0]: r for r in rows[1:]}
        for device in RISKY:
            assert "'" + device in listed
        assert listed["d2"][5] == "'=cmd|' /C calc'!A0"
        risky.tick(day(21))
        _, reenrol = mail(risky, cf.ReenrollmentRequired, day(21))
        _, ids = attachment(reenrol)
        assert {"'" + d for d in RISKY} <= {r[0] for r in ids[1:]}
        assert "d1" in {r[0] for r in ids[1:]}  # an ordinary id as it is
