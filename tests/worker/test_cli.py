"""``certflow worker`` as an operator runs it, in real processes: a configuration error,
SIGKILL during a delivery and a restart, SIGTERM, two processes on one SQLite file, and
secrets never printed in either log format."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import SqliteStore
from tests.core.strategies import build
from tests.worker.helpers import config_text
from tests.worker.servers import PASSWORD, SmtpServer, WebhookServer
from tests.worker.timeline import T0, day, start

# The command line with the worker's command registered (certflow/cli/__init__.py is
# another change's: it is imported here as it will be imported there).
CERTFLOW = [
    sys.executable,
    "-c",
    "import sys, certflow.cli._worker; from certflow.cli import main; "
    "sys.argv[0] = 'certflow'; main()",
]
WEBHOOK_SECRET = "whk-7c1f9a-s3cret"


def certflow(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CERTFLOW, *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def spawn(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CERTFLOW, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def setup(folder: Path, config: str) -> tuple[Path, Path]:
    db = folder / "r.db"
    with SqliteStore(db) as store:
        start(store)
    path = folder / "worker.toml"
    path.write_text(config)
    return db, path


def test_a_configuration_error_exits_2_naming_the_key_and_delivers_nothing(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    db, path = setup(tmp_path, config_text(tmp_path, webhook_url=webhook.url))
    path.write_text(path.read_text().replace('lease = "5m"', 'lease = "5m"\npoll = "1s"'))
    done = certflow("worker", "--db", db, "--config", path, "--once", "--now", T0.isoformat())
    assert done.returncode == 2
    assert done.stderr == f"certflow: error: configuration {path}: [worker] poll is not a known key (known: poll_interval, max_attempts, backoff, backoff_limit, lease, batch)\n"  # fmt: skip
    assert webhook.requests == []
    with SqliteStore(db) as store:
        assert [e.attempts for e in store.effects()] == [0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--now", "2026-07-01T09:00:00Z"], "--now needs --once"),
        (["--once", "--now", "tomorrow"], "'tomorrow' is not an ISO 8601 time"),
        (["--once", "--log-format", "xml"], "'xml' is not one of 'json', 'text'"),
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, webhook: WebhookServer, args: list[str], message: str
) -> None:
    db, path = setup(tmp_path, config_text(tmp_path, webhook_url=webhook.url))
    done = certflow("worker", "--db", db, "--config", path, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert webhook.requests == []


def test_a_missing_database_exits_2(tmp_path: Path, webhook: WebhookServer) -> None:
    _, path = setup(tmp_path, config_text(tmp_path, webhook_url=webhook.url))
    done = certflow("worker", "--db", tmp_path / "none.db", "--config", path, "--once")
    assert done.returncode == 2
    assert "none.db" in done.stderr
    assert "Traceback" not in done.stderr


def test_sigkill_during_a_delivery_then_a_restart_delivers_it_again(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    text = config_text(tmp_path, webhook_url=webhook.url).replace(
        'timeout = "1s"', 'timeout = "30s"'
    )
    db, path = setup(tmp_path, text)
    webhook.mode, webhook.hang = "hang", 10.0
    first = spawn("worker", "--db", db, "--config", path, "--once", "--now", T0.isoformat())
    wait_for(lambda: len(webhook.requests) == 1)
    first.kill()  # SIGKILL: no acknowledgement, no failure recorded
    first.wait()
    webhook.mode = "ok"
    # Restarted at once: the dead worker's lease (5 minutes) still holds the effect.
    again = certflow("worker", "--db", db, "--config", path, "--once", "--now", T0.isoformat())
    assert again.returncode == 0, again.stderr
    assert len(webhook.requests) == 1
    # Once the lease has run out the effect is delivered again, then acknowledged.
    later = (T0 + timedelta(minutes=5)).isoformat()
    last = certflow("worker", "--db", db, "--config", path, "--once", "--now", later)
    assert last.returncode == 0, last.stderr
    assert webhook.ids() == ["r:2:0", "r:2:0"]
    with SqliteStore(db) as store:
        [stored] = store.effects(include_acknowledged=True)
        assert (stored.status, stored.attempts, stored.failures) == ("acknowledged", 2, 0)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_delivery_then_exits_0(
    tmp_path: Path, webhook: WebhookServer, sent: signal.Signals
) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    db = tmp_path / "r.db"
    with SqliteStore(db) as store:
        store.create("r", build(2, at=now))
        store.apply("r", cf.DistributeRoot(), now)
        store.apply_all("r", [cf.Enroll(f"e{i}") for i in range(5)], now)
    path = tmp_path / "worker.toml"
    path.write_text(config_text(tmp_path, webhook_url=webhook.url, worker='poll_interval = "60s"'))
    webhook.mode, webhook.hang = "hang", 0.5
    running = spawn("worker", "--db", db, "--config", path, "--log-format", "json")
    wait_for(lambda: len(webhook.requests) == 1)
    running.send_signal(sent)
    _, err = running.communicate(timeout=20)
    assert running.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["event"] for e in events][-3:] == ["stopping", "delivery", "stopped"]
    assert events[-2]["outcome"] == "delivered"
    with SqliteStore(db) as store:
        acknowledged = [e.id for e in store.effects(include_acknowledged=True) if e.acked_at]
    assert acknowledged == webhook.ids()  # the one begun, finished and acknowledged
    assert len(acknowledged) == 1


def test_two_processes_on_one_sqlite_file_deliver_each_effect_once(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    db, path = setup(tmp_path, config_text(tmp_path, webhook_url=webhook.url, worker="batch = 3"))
    with SqliteStore(db) as store:
        store.apply_all("r", [cf.Enroll(f"e{i}") for i in range(60)], T0 + timedelta(hours=2))
    at = (T0 + timedelta(hours=3)).isoformat()
    workers = [spawn("worker", "--db", db, "--config", path, "--once", "--now", at) for _ in "ab"]
    for running in workers:
        _, err = running.communicate(timeout=60)
        assert running.returncode == 0, err
    with SqliteStore(db) as store:
        everything = [e.id for e in store.effects(include_acknowledged=True)]
        assert store.effects() == []
    assert sorted(webhook.ids()) == sorted(everything)
    assert len(everything) == 61  # the push and 60 enrolments


@pytest.mark.parametrize("form", ["json", "text"])
def test_secrets_are_never_printed(
    tmp_path: Path, webhook: WebhookServer, smtp_server: SmtpServer, form: str
) -> None:
    text = config_text(
        tmp_path, webhook_url=webhook.url, smtp_port=smtp_server.port,
        ca_file=smtp_server.ca_file, routes='Notify = ["smtp", "webhook"]\n"*" = ["webhook"]',
    )  # fmt: skip
    db, path = setup(tmp_path, text)
    # The MDM quotes the secret back in its error; the SMTP server refuses a login.
    webhook.fail_ids = {"r:2:0"}
    webhook.answer = f"signature check failed, expected key {WEBHOOK_SECRET}".encode()
    (tmp_path / "smtp-password").write_text("not-the-Pa55word")
    outputs = []
    for now in (T0, day(6)):  # the push (answered 500), the notice (a refused login)
        done = certflow("worker", "--db", db, "--config", path, "--once", "--now",
                        now.isoformat(), "--log-format", form)  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    printed = "".join(outputs)
    assert "answered HTTP 500: signature check failed, expected key ***" in printed
    assert "authentication as 'certflow' refused" in printed
    for secret in (WEBHOOK_SECRET, "not-the-Pa55word", PASSWORD):
        assert secret not in printed
    if form == "json":
        assert all(json.loads(line)["event"] for line in printed.splitlines())


def test_an_smtp_login_without_tls_exits_2_naming_the_key(tmp_path: Path) -> None:
    text = config_text(tmp_path, smtp_port=2525, routes='"*" = ["smtp"]')
    db, path = setup(tmp_path, text.replace("[smtp]\n", "[smtp]\nstarttls = false\n"))
    done = certflow("worker", "--db", db, "--config", path, "--once", "--now", T0.isoformat())
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert f"configuration {path}: [smtp] username needs starttls or tls" in done.stderr
