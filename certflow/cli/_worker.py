"""``certflow worker``: keeps a store's time and delivers its effects (``docs/worker.md``).

The configuration is read and checked whole before the database is opened, so a
configuration error exits 2 with one line naming the key and nothing delivered. The
loop reads the real clock once per pass; ``--once --now TIME`` replays an instant.
SIGTERM and SIGINT ask the worker to stop: the delivery in progress finishes and is
acknowledged, and the command exits 0.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

import click

from certflow.cli._app import EXIT_OK, main, parse_now
from certflow.core.errors import CertflowError
from certflow.store import open_store, without_password

# The worker (httpx, prometheus_client) is imported when the command runs, not by
# `certflow --help`, which imports this module for the command's short help.
if TYPE_CHECKING:
    from certflow.worker import Worker

__all__ = ["worker"]


@contextmanager
def _stopping(worker: Worker) -> Iterator[None]:
    """SIGTERM and SIGINT set the worker's stop event for as long as it runs (instead of
    Python's KeyboardInterrupt, which would cut a delivery short)."""

    def ask(signum: int, frame: FrameType | None) -> None:
        worker.log.event("stopping", signal=signal.Signals(signum).name)
        worker.stop.set()

    previous = {s: signal.signal(s, ask) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@main.command("worker")
@click.option(
    "--db",
    envvar="CERTFLOW_DB",
    default="certflow.db",
    metavar="PATH|URL",
    help="The database: an SQLite file path (or sqlite:///PATH), or a postgresql:// URL "
    "(default: ./certflow.db, or $CERTFLOW_DB).",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="The worker's TOML configuration: [worker], the handlers ([smtp], [webhook], "
    "[exec]) and [routes]. Secrets are read from the files it names.",
)
@click.option("--once", is_flag=True, help="One pass (tick and deliver what is due), then exit.")
@click.option(
    "--now",
    metavar="TIME",
    help="With --once: the instant of the pass, ISO 8601 with a UTC offset (replays a "
    "timeline); default: the current time.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="Serve Prometheus metrics on this port (http://0.0.0.0:N/metrics).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "text"]),
    default="text",
    show_default=True,
    help="One log line per tick and per delivery attempt, on standard error.",
)
def worker(
    db: str,
    config_path: str,
    once: bool,
    now: str | None,
    metrics_port: int | None,
    log_format: str,
) -> int:
    """Keep the store's time and deliver its effects by e-mail, webhook and command.

    Loops: tick every rollout with something due, deliver every due effect through the
    handlers its route names, sleep until the next due instant (at most the
    configuration's poll_interval). Exit codes: 0 stopped by SIGTERM or SIGINT (the
    delivery in progress finished and acknowledged) or --once done; 2 a configuration
    or database error (one line naming it; nothing delivered); 75 the database is busy
    or unreachable (--once: try again).
    """
    from certflow.worker import (
        REAL_CLOCK_SKEW,
        EventLog,
        Metrics,
        Worker,
        load_config,
        open_worker_store,
    )

    if now is not None and not once:
        raise click.UsageError("--now needs --once: a looping worker follows the real clock")
    at = None if now is None else parse_now(now)
    config = load_config(config_path)
    log = EventLog("json" if log_format == "json" else "text", secrets=config.secrets)
    skew = REAL_CLOCK_SKEW if at is None else timedelta(0)
    metrics = Metrics() if metrics_port is not None else None
    with open_worker_store(db, config.worker, clock_skew=skew) as store:
        runner = Worker(store, config, log=log, metrics=metrics)
        server = None
        try:
            if metrics is not None and metrics_port is not None:
                metrics.watch(lambda: open_store(db, create=False, read_only=True))
                try:
                    server = metrics.serve(metrics_port)
                except OSError as error:
                    raise CertflowError(
                        f"--metrics-port {metrics_port}: cannot listen: {error.strerror or error}"
                    ) from None
            log.event(
                "started",
                db=without_password(db),
                config=config_path,
                mode="once" if once else "loop",
                handlers=",".join(sorted(runner.handlers)),
                metrics_port=metrics_port,
            )
            with _stopping(runner):
                if once:
                    reports = runner.once(at)
                    delivered = sum(len(r.delivered) for r in reports)
                    log.event("done", delivered=delivered, stopped=runner.stop.is_set())
                else:
                    # Survives a busy or unreachable database (a PostgreSQL restart):
                    # the pass is given up, logged, and tried again a moment later.
                    runner.run()
                    log.event("stopped")
        finally:
            runner.close()
            if server is not None:
                server.shutdown()
    return EXIT_OK
