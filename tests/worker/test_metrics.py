"""The worker's Prometheus metrics (certflow/worker/_metrics.py), served on a real port
and scraped over HTTP after passes that deliver, fail and tick."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from certflow.store import open_store
from certflow.worker import EventLog, Metrics, Worker, open_worker_store
from tests.worker.helpers import make_config
from tests.worker.servers import WebhookServer, free_port
from tests.worker.timeline import T0, day, start


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_metrics_worker_md_lists(tmp_path: Path, webhook: WebhookServer) -> None:
    config = make_config(tmp_path, webhook_url=webhook.url, worker="max_attempts = 1")
    db = tmp_path / "r.db"
    with open_store(db) as setup:
        start(setup)
    metrics = Metrics()
    metrics.watch(lambda: open_store(db, create=False, read_only=True))
    port = free_port()
    server = metrics.serve(port, "127.0.0.1")
    try:
        with open_worker_store(db, config.worker) as store:
            runner = Worker(store, config, log=EventLog(), metrics=metrics)
            webhook.fail_ids = {"r:2:0"}
            runner.run_pass(T0)  # the push fails once: dead (max_attempts = 1)
            runner.run_pass(T0 + timedelta(hours=7))  # the timeout, delivered
            runner.run_pass(day(6) + timedelta(seconds=2))  # the notice, 2 s after its instant
            runner.close()
        found = samples(port)
    finally:
        server.shutdown()
    assert found[("certflow_worker_deliveries_total", (("handler", "webhook"),))] == 2
    assert found[("certflow_worker_delivery_failures_total", (("handler", "webhook"),))] == 1
    assert found[("certflow_worker_delivery_seconds_count", (("handler", "webhook"),))] == 3
    assert found[("certflow_worker_effects_dead_total", ())] == 1
    assert found[("certflow_worker_tick_lag_seconds", ())] == 2.0
    assert found[("certflow_rollouts", (("state", "distributing"),))] == 1
    assert found[("certflow_devices", (("rollout", "r"), ("state", "failed")))] == 4
    assert found[("certflow_devices", (("rollout", "r"), ("state", "installed")))] == 1
    assert found[("certflow_effects", (("status", "pending"),))] == 0
    assert found[("certflow_effects", (("status", "dead"),))] == 1
    assert found[("certflow_effects", (("status", "superseded"),))] == 0
