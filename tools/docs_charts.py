"""Draw the documentation's charts into ``docs/images/`` (part of ``make docs``).

``python tools/docs_charts.py [FOLDER]``: seeded simulations through the real evaluator,
drawn by :mod:`certflow.sim.chart`. The pages ``docs/simulation.md`` and
``docs/forecast.md`` show them; the files are committed.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from certflow.sim import AdminPolicy, DeviceModel, Setup, forecast, simulate, sweep
from certflow.sim.chart import forecast_chart, save, states_chart, sweep_chart

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
FOLDER = Path(__file__).resolve().parent.parent / "docs" / "images"


def draw(folder: Path) -> list[Path]:
    """Draw every chart into ``folder``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    retries = AdminPolicy(retry_every=3, extend_on_day=6)
    run = simulate(Setup(devices=10_000, admin=retries), 7, trace=True)
    assert run.trace is not None
    title = "10,000 devices, seed 7: bulk retries every 3 days, manual extension on day 6"
    written.append(
        save(
            states_chart(run.trace, run.effects, run.start, title=title), folder / "one_rollout.png"
        )
    )
    tables = {
        "nobody acts": sweep(Setup(devices=2_000), 200, progress=False),
        "bulk retries every 3 days": sweep(
            Setup(devices=2_000, admin=AdminPolicy(retry_every=3)), 200, progress=False
        ),
        "retries + extension on day 6": sweep(
            Setup(devices=2_000, admin=retries), 200, progress=False
        ),
    }
    written.append(
        save(
            sweep_chart(tables, title="2,000 devices: 200 runs per choice"), folder / "what_if.png"
        )
    )
    admin = AdminPolicy(retry_every=3)
    live = Setup(
        devices=3_000,
        model=DeviceModel(online_chance=0.8, failure_probability=0.15, never_answer=0.004),
        admin=admin,
    )
    snapshot = simulate(live, 11, snapshot_at=6 * DAY + 2 * HOUR).snapshot
    assert snapshot is not None
    result = forecast(
        snapshot.rollout,
        snapshot.now,
        snapshot.pushes,
        snapshot.reports,
        admin=admin,
        runs=300,
        seed=1,
    )
    written.append(
        save(
            forecast_chart(result, title="Forecast on day 6 of a live rollout"),
            folder / "forecast_day_6.png",
        )
    )
    return written


if __name__ == "__main__":
    for path in draw(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER):
        print(f"wrote {path}")
