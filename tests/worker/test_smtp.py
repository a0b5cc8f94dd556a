"""The SMTP handler against a real aiosmtpd server on 127.0.0.1 that requires STARTTLS
(a throwaway CA from trustme) and authentication; a refused login, a server that is
down and then back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from certflow.store import SqliteStore, StoredEffect
from certflow.worker import DeliveryFailed, SmtpHandler, SmtpSettings, effect_id_of
from tests.worker.servers import PASSWORD, USER, SmtpServer
from tests.worker.timeline import day, start


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "r.db") as opened:
        start(opened, "mdm-2026")
        opened.tick(day(6))
        yield opened


def notice(store: SqliteStore) -> StoredEffect:
    [found] = [e for e in store.effects() if type(e.effect).__name__ == "Notify"]
    return found


def settings(server: SmtpServer, password: str = PASSWORD) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1",
        sender="certflow@example.com",
        to=("mdm-admins@example.com", "oncall@example.com"),
        port=server.port,
        username=USER,
        password=password,
        timeout=timedelta(seconds=5),
        ca_file=server.ca_file,
    )


def test_a_notice_goes_through_starttls_and_auth(
    smtp_server: SmtpServer, store: SqliteStore
) -> None:
    stored = notice(store)
    SmtpHandler(settings(smtp_server))(stored, store, day(6))
    [message] = smtp_server.messages
    assert smtp_server.mailbox.envelopes == [
        ("certflow@example.com", ["mdm-admins@example.com", "oncall@example.com"])
    ]
    assert effect_id_of(message["Message-ID"]) == stored.id
    assert message["X-Certflow-Effect-Id"] == stored.id
    assert message["Subject"].startswith("[certflow] mdm-2026: checkpoint 1 of 3 on 2026-07-08")


def test_a_wrong_password_is_a_failure_that_does_not_show_it(
    smtp_server: SmtpServer, store: SqliteStore
) -> None:
    with pytest.raises(DeliveryFailed, match="authentication as 'certflow' refused") as caught:
        SmtpHandler(settings(smtp_server, "wrong-pa55"))(notice(store), store, day(6))
    assert "wrong-pa55" not in str(caught.value)
    assert smtp_server.messages == []


def test_an_untrusted_server_certificate_is_a_failure(
    smtp_server: SmtpServer, store: SqliteStore, tmp_path: Path
) -> None:
    other = SmtpServer(tmp_path / "..")  # another CA, which the server's certificate is not from
    untrusting = SmtpHandler(attrs.evolve(settings(smtp_server), ca_file=other.ca_file))
    with pytest.raises(DeliveryFailed, match="TLS failed: CERTIFICATE_VERIFY_FAILED"):
        untrusting(notice(store), store, day(6))
    assert smtp_server.messages == []


def test_a_server_down_then_back(smtp_server: SmtpServer, store: SqliteStore) -> None:
    send = SmtpHandler(settings(smtp_server))
    smtp_server.stop()
    with pytest.raises(DeliveryFailed, match=rf"SMTP server 127.0.0.1:{smtp_server.port}: "):
        send(notice(store), store, day(6))
    smtp_server.start()
    send(notice(store), store, day(6))
    assert [effect_id_of(m["Message-ID"]) for m in smtp_server.messages] == [notice(store).id]
