"""Benchmark of the web console (issue 20), measured server-side: View Details of a
1,000,000-device rollout in at most 50 ms at the median, a deep keyset page as fast as
the first; its History and Effects as fast as a 10-device rollout's (at most 50 ms); the
rollouts page with 1,000 rollouts in at most 100 ms; the chart of a 28-day journal in at
most 200 ms.

Run ``python benchmarks/bench_web.py``: on SQLite, then on PostgreSQL on a throwaway
server of its own (``tools/pgserver.py``, fsync on; ``--no-postgresql`` skips it, and it
is skipped with the reason where no server can start; ``--postgres URL`` uses an existing
empty database instead); ``--devices N`` for another fleet. Each page is requested
``--repeat`` times (default 21) through the ASGI application in process; the time is
taken inside it, from the request's arrival to the response's last byte (a timing
middleware), so the client costs nothing. The big rollout is distributing on day 1, a
tenth of its devices have reported (9 % installed, 1 % failed). The rollouts page is
also split: the store's paged read the page makes, ``rollouts(now, limit=101)``, and
the whole list, ``rollouts()``, alone in the store thread. The chart is
drawn afresh each time (its cache cleared): a 10,000-device rollout with a day of
reports and a tick for each of 28 days. The Forecast page (no target) is timed on the
big rollout, on a 10,000-device one on day 1 with a tenth reported and on the 10-device
one: its first answer (which starts the forecast in the background), its answers while
the forecast is computed, the time until it is done, and its answer once it is kept.
The big rollout's chart is timed against the 10-device one's, both drawn afresh with
the store's summaries forgotten.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import certflow as cf
from certflow.store import SqlStore, _summaries, open_store
from certflow.web import _chart, create_app

# Run as a script, sys.path[0] is benchmarks/; the repository root goes next, for
# tools/pgserver.py (the tests' throwaway PostgreSQL server).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from tools.pgserver import LocalPostgres, PostgresUnavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette would rather have httpx2 than httpx
    from starlette.testclient import TestClient

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TARGETS = {
    "details": 0.050,
    "deep page": 0.050,
    "filtered": 0.050,
    "history": 0.050,
    "effects": 0.050,
    "rollouts": 0.100,
    "chart": 0.200,
    "big chart": 0.200,
}
#: PostgreSQL as bench_store.py runs it: a commit's promise close to SQLite's default
#: (LocalPostgres switches fsync and full_page_writes off for the tests: on again here).
POSTGRES_SETTINGS = {"fsync": "on", "synchronous_commit": "off", "full_page_writes": "on"}


def _rollout(ids: list[str], at: datetime) -> cf.Rollout:
    return cf.new_rollout(
        ids,
        existing_not_after=at + 60 * DAY,
        new_not_before=at - DAY,
        new_not_after=at + 300 * DAY,
        root_publicly_trusted=False,
        created_at=at,
    )


class Timed:
    """ASGI middleware keeping each response's server-side time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = time.perf_counter()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.times.append(time.perf_counter() - start)


def _median(
    client: TestClient,
    timed: Timed,
    path: str,
    repeat: int,
    before: Callable[[], None] = lambda: None,
) -> float:
    timed.times.clear()
    for _ in range(repeat):
        before()
        response = client.get(path, headers={"X-Bench": "admin"})
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return statistics.median(timed.times)


def _forecast(client: TestClient, timed: Timed, path: str, repeat: int) -> dict[str, float]:
    """The Forecast page's answers: the first (it starts the computation and says so),
    the next ones while it computes, the time until it is done (requested again each
    0.1 s, as its refresh would every 5 s), then the page with the forecast kept."""
    computing = 'id="forecast-computing"'
    timed.times.clear()
    started = time.perf_counter()
    if computing not in client.get(path, headers={"X-Bench": "admin"}).text:
        raise SystemExit(f"{path}: the first answer does not say the forecast is computed")
    first = timed.times[0]
    timed.times.clear()
    while computing in client.get(path, headers={"X-Bench": "admin"}).text:
        if time.perf_counter() - started > 900:
            raise SystemExit(f"{path}: no forecast after 15 minutes")
        time.sleep(0.1)
    done = time.perf_counter() - started
    waiting = statistics.median(timed.times[:-1]) if len(timed.times) > 1 else float("nan")
    return {
        "first answer": first,
        "answer while computing": waiting,
        "computed in the background": done,
        "answer with the forecast kept": _median(client, timed, path, repeat),
    }


def _read(console: Any, read: Callable[[SqlStore], object], repeat: int) -> float:
    """The median time of ``read`` run in the console's store thread."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        console.store.call(read)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _fill(open_: Callable[[], SqlStore], devices: int) -> None:
    with open_() as store:
        started = time.perf_counter()
        store.create("big", _rollout([f"dev-{i:07d}" for i in range(devices)], T0 - DAY))
        store.apply("big", cf.DistributeRoot(), T0)
        tenth = devices // 10
        reports: list[cf.Command] = [
            cf.DeviceInstalled(f"dev-{i:07d}") for i in range(tenth * 9 // 10)
        ]
        reports += [
            cf.DeviceFailed(f"dev-{i:07d}", "declined") for i in range(tenth * 9 // 10, tenth)
        ]
        store.apply_all("big", reports, T0 + DAY)
        print(
            f"  made a {devices:,}-device rollout in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        # The big rollout's history at 10 devices: its pages are the yardstick of the
        # big one's History and Effects (web.md: as fast at 1,000,000 devices as at 10).
        small = [f"s-{i:02d}" for i in range(10)]
        store.create("small", _rollout(small, T0 - DAY))
        store.apply("small", cf.DistributeRoot(), T0)
        store.apply_all("small", [cf.DeviceInstalled(small[0])], T0 + DAY)
        for n in range(1_000):
            store.create(f"r{n:04d}", _rollout([f"d{i}" for i in range(10)], T0))
        forecast_ids = [f"f-{i:05d}" for i in range(10_000)]
        store.create("fc", _rollout(forecast_ids, T0 - DAY))
        store.apply("fc", cf.DistributeRoot(), T0)
        store.apply_all(
            "fc",
            [cf.DeviceInstalled(d) for d in forecast_ids[:900]]
            + [cf.DeviceFailed(d, "declined") for d in forecast_ids[900:1000]],
            T0 + timedelta(hours=20),
        )
        chart_ids = [f"c-{i:05d}" for i in range(10_000)]
        store.create("chart", _rollout(chart_ids, T0 - DAY))
        store.apply("chart", cf.DistributeRoot(), T0)
        for day in range(1, 29):
            if day < 21:  # reports until the deadline's import, then only the ticks
                chunk = chart_ids[(day - 1) * 300 : day * 300]
                at = T0 + day * DAY - timedelta(hours=1)
                store.apply_all("chart", [cf.DeviceInstalled(d) for d in chunk], at)
            store.advance("chart", T0 + day * DAY)


def run(label: str, open_: Callable[[], SqlStore], devices: int, repeat: int) -> bool:
    print(f"{label}:", flush=True)
    _fill(open_, devices)
    now = T0 + DAY + timedelta(hours=1)
    app = create_app(
        open_, authenticate=lambda request: request.headers.get("X-Bench"), clock=lambda: now
    )
    timed = Timed(app)
    deep = f"dev-{devices * 9 // 10:07d}"
    chart_now = T0 + 28 * DAY + timedelta(hours=1)
    chart_app = create_app(
        open_, authenticate=lambda request: request.headers.get("X-Bench"), clock=lambda: chart_now
    )
    chart_timed = Timed(chart_app)
    figures: dict[str, float] = {}
    with TestClient(timed) as client, TestClient(chart_timed) as chart_client:
        figures["details"] = _median(client, timed, "/rollouts/big", repeat)
        figures["deep page"] = _median(client, timed, f"/rollouts/big?after={deep}", repeat)
        figures["filtered"] = _median(
            client, timed, f"/rollouts/big?state=failed&after=dev-{devices // 10 - 60:07d}", repeat
        )
        figures["history"] = _median(client, timed, "/rollouts/big/history", repeat)
        figures["effects"] = _median(client, timed, "/rollouts/big/effects?show=all", repeat)
        figures["rollouts"] = _median(client, timed, "/", repeat)
        console = app.state.console
        extra = {
            # The page's own read (a page of 100, and one more to know of a next page),
            # then the whole list of 1,000-odd rollouts, in the store thread.
            "rollouts: store.rollouts(now, limit=101) alone": _read(
                console, lambda store: store.rollouts(now, limit=101), repeat
            ),
            "rollouts: store.rollouts() of every rollout": _read(
                console, lambda store: store.rollouts(), repeat
            ),
        }
        extra["history, 10 devices"] = _median(client, timed, "/rollouts/small/history", repeat)
        extra["effects, 10 devices"] = _median(
            client, timed, "/rollouts/small/effects?show=all", repeat
        )
        # The first read of each summary parses the big bodies in the database (then the
        # store keeps it): the pages with the store's summaries forgotten before each.
        extra["history, summaries made afresh"] = _median(
            client, timed, "/rollouts/big/history", 3, _summaries._CACHES.clear
        )
        extra["effects, summaries made afresh"] = _median(
            client, timed, "/rollouts/big/effects?show=all", 3, _summaries._CACHES.clear
        )
        for rollout, size in (("big", devices), ("fc", 10_000), ("small", 10)):
            for what, seconds in _forecast(
                client, timed, f"/rollouts/{rollout}/forecast", repeat
            ).items():
                extra[f"forecast, {size:,} devices, {what}"] = seconds
        figures["chart"] = _median(
            chart_client,
            chart_timed,
            "/rollouts/chart/chart.svg",
            max(3, repeat // 4),
            _chart._cache.clear,
        )

        def afresh() -> None:  # the chart, and the store's summaries, made again
            _chart._cache.clear()
            _summaries._CACHES.clear()

        # The big rollout's chart against the 10-device one's (web.md: as fast), drawn
        # afresh with the store's summaries forgotten: the counts written with each
        # entry (schema 7) are read, not the journal folded.
        figures["big chart"] = _median(
            client, timed, "/rollouts/big/chart.svg", max(3, repeat // 4), afresh
        )
        extra["chart, 10 devices, drawn afresh"] = _median(
            client, timed, "/rollouts/small/chart.svg", max(3, repeat // 4), afresh
        )
    met = True
    for name, seconds in figures.items():
        ok = seconds <= TARGETS[name]
        met = met and ok
        verdict = "met" if ok else "MISSED"
        target = TARGETS[name] * 1000
        print(f"  {name:<10} {seconds * 1000:8.1f} ms  (target {target:.0f} ms)  {verdict}")
    for name, seconds in extra.items():
        print(f"  {name}: {seconds * 1000:.1f} ms")
    print(f"  load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run PostgreSQL on this (empty) database rather than on a server of its own",
    )
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    print(
        f"web console benchmark on {platform.python_implementation()} {platform.python_version()}"
    )
    met = True
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as servers:
        path = Path(folder) / "bench.db"
        met = run("SQLite", lambda: open_store(path), args.devices, args.repeat) and met
        if args.no_postgresql:
            return 0 if met else 1
        url = args.postgres
        if url is None:
            # As root, the server runs as the postgres user, which must pass through this
            # folder (tempfile makes it 0700): search permission only.
            Path(folder).chmod(0o711)
            server = LocalPostgres(parent=Path(folder), settings=POSTGRES_SETTINGS)
            try:
                servers.enter_context(server)
            except PostgresUnavailable as error:
                print(f"PostgreSQL skipped: {error}")
                return 0 if met else 1
            url = server.create_database("bench_web")
        target = url
        met = run("PostgreSQL", lambda: open_store(target), args.devices, args.repeat) and met
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
