"""One effect through several handlers (certflow/worker/_deliver.py): delivered when all
succeeded, and a handler that already succeeded is not run again on a retry, even after
the effect died and was revived."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from certflow.store import SqliteStore, SqlStore
from certflow.worker import (
    build_handlers,
    deliver,
    delivered_by,
    failure_record,
    open_worker_store,
)
from tests.worker.helpers import make_config
from tests.worker.servers import WebhookServer
from tests.worker.timeline import T0, effect, start


def test_the_record_reads_back() -> None:
    text = failure_record(["webhook", "exec"], [("smtp", "SMTP server down")])
    assert text == "delivered by exec, webhook; smtp: SMTP server down"
    stored = effect()
    assert delivered_by(stored) == frozenset()
    assert delivered_by(attrs_with_error(text)) == {"exec", "webhook"}
    assert delivered_by(attrs_with_error("webhook: delivered by x; y")) == frozenset()


def attrs_with_error(text: str):  # type: ignore[no-untyped-def]
    import attrs

    return attrs.evolve(effect(), last_error=text, failures=1)


@pytest.fixture
def store(tmp_path: Path, webhook: WebhookServer, sink_script: Path) -> Iterator[SqlStore]:
    config = make_config(
        tmp_path, webhook_url=webhook.url, sink=sink_script, routes='"*" = ["exec", "webhook"]',
        worker="max_attempts = 2",
    )  # fmt: skip
    with SqliteStore(tmp_path / "r.db") as made:
        start(made)
    with open_worker_store(tmp_path / "r.db", config.worker) as opened:
        opened.config = config  # type: ignore[attr-defined]
        yield opened


def sink_ids(sink: Path) -> list[str]:
    log = sink.parent / "sink.log"
    return [json.loads(line)[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_a_handler_that_succeeded_is_not_run_again(
    store: SqlStore, webhook: WebhookServer, sink_script: Path
) -> None:
    handlers = build_handlers(store.config)  # type: ignore[attr-defined]
    both = [handlers["exec"], handlers["webhook"]]
    webhook.mode = "500"
    [stored] = store.lease(now=T0, duration=timedelta(minutes=5))
    first = deliver(store, stored, both, T0)
    assert first.status == "failed"
    assert [(a.handler, a.outcome) for a in first.attempts] == [
        ("exec", "delivered"),
        ("webhook", "failed"),
    ]
    assert sink_ids(sink_script) == ["r:2:0"]
    # The second failure (max_attempts = 2) makes it dead; exec is still not run again.
    later = T0 + timedelta(minutes=1)
    [again] = store.lease(now=later, duration=timedelta(minutes=5))
    assert deliver(store, again, both, later).status == "dead"
    assert sink_ids(sink_script) == ["r:2:0"]
    [dead] = store.effects(dead=True)
    assert dead.last_error is not None
    assert dead.last_error.startswith("delivered by exec; webhook: http://127.0.0.1:")
    # Revived, with the webhook back: only the webhook runs, and the effect is delivered.
    store.revive([dead.id])
    webhook.mode = "ok"
    [revived] = store.lease(now=later, duration=timedelta(minutes=5))
    done = deliver(store, revived, both, later)
    assert done.status == "delivered"
    assert [(a.handler, a.outcome) for a in done.attempts] == [
        ("exec", "skipped"),
        ("webhook", "delivered"),
    ]
    assert sink_ids(sink_script) == ["r:2:0"]
    assert webhook.ids() == ["r:2:0"] * 3
    assert store.effects() == []


def test_an_effect_is_acknowledged_only_when_every_handler_succeeded(
    store: SqlStore, webhook: WebhookServer, sink_script: Path
) -> None:
    handlers = build_handlers(store.config)  # type: ignore[attr-defined]
    (sink_script.parent / "FAIL").touch()
    [stored] = store.lease(now=T0, duration=timedelta(minutes=5))
    outcome = deliver(store, stored, [handlers["exec"], handlers["webhook"]], T0)
    assert outcome.status == "failed"
    assert outcome.retry_at == T0 + timedelta(seconds=30)  # the configured back-off
    [pending] = store.effects()
    assert pending.last_error is not None
    assert pending.last_error.startswith("delivered by webhook; exec: ")
    assert "exit status 3: mdm-push: cannot reach the MDM" in pending.last_error
