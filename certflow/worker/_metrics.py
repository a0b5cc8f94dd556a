"""Prometheus metrics of a worker (``--metrics-port``): what it did, counted as it does
it, and what the store holds, read when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from certflow.store import SqlStore
from certflow.worker._deliver import Attempt

__all__ = ["Metrics", "StoreCollector"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class StoreCollector(Collector):
    """The store's side, read at each scrape through a store of its own (the scrape runs
    in the metrics server's thread, and a store is used by one thread): rollouts by
    state, devices by state per rollout, effects pending / dead / superseded. A scrape
    reads every rollout's row and the outbox's pending, dead and superseded effects."""

    def __init__(self, open_reader: Callable[[], SqlStore]) -> None:
        self.open_reader = open_reader

    def collect(self) -> Iterator[Any]:
        rollouts = GaugeMetricFamily(
            "certflow_rollouts", "Rollouts in the store, by state", labels=["state"]
        )
        devices = GaugeMetricFamily(
            "certflow_devices", "Devices by state, per rollout", labels=["rollout", "state"]
        )
        effects = GaugeMetricFamily(
            "certflow_effects", "Outbox effects by delivery status", labels=["status"]
        )
        with closing(self.open_reader()) as store:
            by_state: dict[str, int] = {}
            for info in store.rollouts():
                by_state[info.state.value] = by_state.get(info.state.value, 0) + 1
                for device_state, count in info.counts.items():
                    devices.add_metric([info.name, device_state.value], count)
            for state, total in sorted(by_state.items()):
                rollouts.add_metric([state], total)
            pending = len(store.effects())
            dead = len(store.effects(dead=True))
            superseded = sum(
                1 for e in store.effects(include_acknowledged=True) if e.status == "superseded"
            )
        effects.add_metric(["pending"], pending)
        effects.add_metric(["dead"], dead)
        effects.add_metric(["superseded"], superseded)
        yield rollouts
        yield devices
        yield effects


class Metrics:
    """The worker's counters, in a registry of their own (not the process-wide default,
    so that two workers in one process, or a test, do not mix)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "certflow_worker_deliveries",
            "Delivery attempts that succeeded, per handler",
            ["handler"],
            registry=r,
        )
        self.failures = Counter(
            "certflow_worker_delivery_failures",
            "Delivery attempts that failed, per handler",
            ["handler"],
            registry=r,
        )
        self.latency = Histogram(
            "certflow_worker_delivery_seconds",
            "How long one handler took to deliver one effect",
            ["handler"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.acknowledged = Counter(
            "certflow_worker_effects_acknowledged", "Effects delivered and acknowledged", registry=r
        )
        self.dead = Counter(
            "certflow_worker_effects_dead", "Effects that became dead letters", registry=r
        )
        self.ticks = Counter("certflow_worker_ticks", "Ticks that moved a rollout", registry=r)
        self.tick_lag = Gauge(
            "certflow_worker_tick_lag_seconds",
            "At the last tick that fired a timer: how long after its due instant it fired",
            registry=r,
        )
        self.passes = Counter("certflow_worker_passes", "Passes of the loop", registry=r)

    def attempt(self, attempt: Attempt) -> None:
        """Count one handler's attempt."""
        if attempt.outcome == "delivered":
            self.deliveries.labels(attempt.handler).inc()
            self.latency.labels(attempt.handler).observe(attempt.seconds)
        elif attempt.outcome == "failed":
            self.failures.labels(attempt.handler).inc()
            self.latency.labels(attempt.handler).observe(attempt.seconds)

    def watch(self, open_reader: Callable[[], SqlStore]) -> None:
        """Also serve the store's gauges (:class:`StoreCollector`)."""
        self.registry.register(StoreCollector(open_reader))

    def serve(self, port: int, address: str = "0.0.0.0") -> Any:
        """Serve the registry on ``http://address:port/metrics`` from a daemon thread;
        returns the server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
