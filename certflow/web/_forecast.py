"""The Forecast page: when a distributing rollout will import and how many devices it
will cut off, as it is and with one manual extension, from
:func:`certflow.sim.forecast` (``docs/forecast.md``).

A forecast takes a minute at a million devices, so the page never waits for one: it
shows the last forecast of the rollout (:class:`certflow.web._background.Latest`), and
while that is not current (the journal grew, the day changed) or there is none yet, says
that one is being computed, since when, and reloads itself every few seconds (an HTML
refresh: no script). The inputs are read in the console's thread of long reads, with a
store of its own (the rollout as stored, and the pushes and reports of its journal: a
replay, seconds at a million devices, which the other pages do not wait for), the
simulation runs in the console's
forecast thread (:class:`certflow.web._runner.Bounded`: seconds of numpy for a big fleet
must not hold the store thread, nor pile up when the page is reloaded), and the page
shows the forecast's
``as_dict()``: what ``certflow rollout forecast --json`` prints, so the console says
nothing the command line does not.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from certflow.core.errors import InvalidInput
from certflow.core.serialization import loads
from certflow.store import SqlStore, check_rollout_name
from certflow.web._app import Console
from certflow.web._uploads import Form

__all__ = ["LEVEL", "RETRY_CHOICES", "RUNS", "SHAPES", "routes"]

#: Simulated futures per forecast: the command line's default. Fixed, not a query
#: parameter, so that a request's cost is bounded (and the page reproducible: one seed).
RUNS = 200
#: The coverage of the intervals shown.
LEVEL = 0.9
#: The administrator's bulk retries the page offers to assume, in days (0: none).
RETRY_CHOICES = (0, 1, 2, 3, 7)
_DAY = timedelta(days=1)
#: The forecast's tail forms (as ``as_dict()`` keys them: a Weibull's shape, or a Lomax's
#: scale), in words: the hazard of answering after the data end.
SHAPES = {
    "1": "constant hazard",
    "0.5": "falling hazard",
    "2": "rising hazard",
    "lomax 24h": "hazard falling as 1 / (1 day + wait)",
    "lomax 2h": "hazard falling as 1 / wait (a power law)",
}


def _retry_every(request: Request) -> int:
    chosen = request.query_params.get("retry_every", "0") or "0"
    if not chosen.isdigit() or int(chosen) not in RETRY_CHOICES:
        choices = ", ".join(str(days) for days in RETRY_CHOICES)
        raise InvalidInput(f"retry_every {chosen!r}: one of {choices} (days; 0: none)")
    return int(chosen)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _branch(found: dict[str, Any] | None, started: datetime | None) -> dict[str, Any] | None:
    """A branch of ``as_dict()`` with its instants parsed and its import days dated."""
    if found is None:
        return None

    def dated(day: float | None) -> datetime | None:
        return None if day is None or started is None else started + day * _DAY

    return {
        **found,
        "checkpoints": [{**k, "at": _instant(k["at"])} for k in found["checkpoints"]],
        "import_at": dated(found["import_day_mean"]),
        "import_at_low": dated(found["import_day_low"]),
        "import_at_high": dated(found["import_day_high"]),
    }


def _computation(
    console: Console, name: str, now: datetime, retry_every: int
) -> Callable[[], tuple[datetime, dict[str, Any]]]:
    """The forecast of rollout ``name`` as of ``now``, to run in the forecast thread:
    its inputs read in the store thread, then the simulation."""

    def read(store: SqlStore) -> tuple[datetime, str, Any, Any]:
        # At the rollout's clock if this server's is behind it, as View Details reads.
        # The rollout's text only: parsing it (0.7 s at a million devices) is the forecast
        # thread's work, not a store thread's.
        at = max(now, store.info(name).clock)
        return (at, store.dumps(name), *store.activity(name))

    def compute() -> tuple[datetime, dict[str, Any]]:
        # numpy and the fit: only when asked, and imported here, not in the request
        # (their first import, 40 ms, would be the first answer's).
        from certflow.sim import AdminPolicy, forecast

        at, text, pushes, reports = console.long_reads.call(read)
        admin = AdminPolicy(retry_every=retry_every or None)
        found = forecast(loads(text), at, pushes, reports, admin=admin, runs=RUNS, level=LEVEL)
        return at, found.as_dict()

    return compute


async def forecast_page(
    console: Console, request: Request, user: str, form: Form | None
) -> Response:
    name = check_rollout_name(request.path_params["name"])
    retry_every = _retry_every(request)
    now = console.now()

    def read(store: SqlStore) -> tuple[Any, int]:
        # What the page needs at once: the head (View Details' read) and the journal's
        # newest entry, whose seq says whether the forecast kept is still current.
        view = store.view(name, max(now, store.info(name).clock))
        newest = store.journal_page(name, limit=1)
        return view, newest[0].seq if newest else 0

    view, seq = await console.store.run(read)
    head = view.overview
    if not head.state.running:
        return console.problem(
            request,
            user,
            "No forecast",
            f"rollout {name!r} is {head.state.value}: only a distributing rollout "
            "(distributing or extended) can be forecast; a pending one has no reports "
            "yet, an ended one has nothing left to forecast",
            409,
        )
    # Current while the journal has not grown and the day is the same (the chart's
    # rule): a forecast is about days, and hours of a quiet rollout change it little.
    seen = console.forecast_pages.look(
        (name, retry_every),
        (seq, f"{now:%Y-%m-%d}"),
        now,
        _computation(console, name, now, retry_every),
    )
    context: dict[str, Any] = {
        "name": name,
        "head": head,
        "retry_every": retry_every,
        "retry_choices": RETRY_CHOICES,
        "current": seen.current,
        "computing": seen.running.started if seen.running is not None else None,
        "busy": seen.busy,
        "found": None,
    }
    if seen.last is not None:
        at, found = seen.last.result
        context.update(
            at=at,
            found=found,
            branches=[
                branch
                for branch in (
                    _branch(found["as_is"], head.started_at),
                    _branch(found["extended"], head.started_at),
                )
                if branch is not None
            ],
            tail=found["tail"],
            shapes=[
                (SHAPES.get(shape, f"tail of form {shape}"), count)
                for shape, count in found["tail"].get("by_shape", {}).items()
            ],
            advice=found["recommendation"],
        )
    return console.render(request, "forecast.html", user, context)


def routes(console: Console) -> list[Route]:
    """The Forecast page, signed-in only and reading only."""
    return [console.route("/rollouts/{name}/forecast", forecast_page, "forecast")]
