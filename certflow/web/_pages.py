"""The console's pages (GET: each reads, none changes anything): Rollouts, New rollout,
View Details with its device table and CSV, History, Effects, the chart, and the
confirmation pages whose consequences come from the store's preview."""

from __future__ import annotations

import csv
import functools
import io
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from certflow.core import commands as c
from certflow.core.errors import InvalidInput
from certflow.core.plan import DeviceRecord, DeviceState
from certflow.store import EntrySummary, SqlStore, check_rollout_name
from certflow.web import _chart, _words
from certflow.web._app import Console
from certflow.web._uploads import Form

__all__ = [
    "ACTIONS",
    "CONFIRMED",
    "DevicePage",
    "device_page",
    "digest",
    "routes",
]

#: Devices on a page of the device table.
PAGE = 50
#: The most device rows one page request reads to fill a page filtered by id prefix: the
#: store pages in creation order, not by id, so a prefix is matched as the rows go by, and
#: a page that found fewer offers to search on from where it stopped.
SCAN = 20_000
#: Devices a confirmation page names (the rest are counted).
NAMED = 1_000
#: Rows a CSV download reads per store call (other requests go between two of them).
CSV_CHUNK = 5_000
#: Rollouts on a page of the rollout list.
ROLLOUTS_PAGE = 100

#: The commands of the rollout's actions, by the path segment that names them.
ACTIONS: dict[str, c.Command] = {
    "distribute": c.DistributeRoot(),
    "proceed": c.ProceedToImport(),
    "import-now": c.ImportNow(),
    "extend": c.ExtendManually(),
    "retry-all": c.RetryAllFailed(),
    "restarted": c.ServerRestarted(),
    "cancel": c.Cancel(),
}
#: What the page after an action says it did (by the ``done`` query).
DONE: dict[str, str] = {
    "distribute": "Distribution started: the root is pushed to every device.",
    "proceed": "Proceed to Import: the import ran.",
    "import-now": "The import ran.",
    "extend": "The manual extension was applied: the new dates are below.",
    "retry-all": "Every failed device is pushed again.",
    "retry": "The device is pushed again.",
    "restarted": "The server restart is recorded.",
    "cancel": "The rollout was cancelled: the current certificate stays.",
}
#: The actions that are confirmed on a page of their own first (their consequence shown).
CONFIRMED = ("proceed", "import-now", "extend", "cancel")


def digest(device_ids: Sequence[str]) -> str:
    """A short fingerprint of a list of devices: a confirmation carries the list it showed,
    and the action is refused if the engine's list has changed meanwhile."""
    import hashlib

    hashed = hashlib.sha256()
    for device in device_ids:
        hashed.update(device.encode("utf-8", "surrogatepass") + b"\0")
    return hashed.hexdigest()[:32]


def _name(request: Request) -> str:
    return check_rollout_name(request.path_params["name"])


def _states(request: Request) -> list[DeviceState]:
    chosen = request.query_params.get("state", "")
    if not chosen:
        return []
    try:
        return [DeviceState(chosen)]
    except ValueError:
        names = ", ".join(state.value for state in DeviceState)
        raise InvalidInput(f"state {chosen!r} is not a device state; one of {names}") from None


# --- Rollouts -------------------------------------------------------------------------------------


async def rollouts(console: Console, request: Request, user: str, form: Form | None) -> Response:
    now = console.now()
    start = request.query_params.get("after", "")
    # One read of the store: a page of the list by name, each line read as of now (as a
    # tick now would leave it) with its view's overview; one more than the page says
    # whether a next page exists.
    infos = await console.store.run(
        lambda store: store.rollouts(now, after=start or None, limit=ROLLOUTS_PAGE + 1)
    )
    more = len(infos) > ROLLOUTS_PAGE
    infos = infos[:ROLLOUTS_PAGE]
    context = {"rows": infos, "next": infos[-1].name if more else "", "after": start}
    return console.render(request, "rollouts.html", user, context)


async def new_rollout(console: Console, request: Request, user: str, form: Form | None) -> Response:
    return console.render(request, "new.html", user, {"kinds": _kinds()})


def _kinds() -> list[str]:
    from certflow.core.policy import CertificateKind

    return [kind.value for kind in CertificateKind]


# --- View Details ---------------------------------------------------------------------------------


@attrs.frozen
class DevicePage:
    """A page of the device table: its rows, where the next page starts (``None``: no
    more), and whether the prefix search stopped at its budget before filling the page."""

    rows: tuple[DeviceRecord, ...]
    next: str | None
    searched_to: str | None = None


def device_page(
    store: SqlStore,
    name: str,
    states: Sequence[DeviceState],
    prefix: str,
    after: str | None,
    now: datetime,
    limit: int = PAGE,
) -> DevicePage:
    """A keyset page of the devices of ``states`` whose id starts with ``prefix``, after
    device ``after``, as a tick at ``now`` would leave them. One read transaction; at most
    :data:`SCAN` rows read, so a page of a million devices costs what one of ten does."""
    found = store.iter_devices(
        name, states, after=after, now=now, page=limit + 1 if not prefix else 1_000
    )
    try:
        if not prefix:
            rows = tuple(itertools.islice(found, limit + 1))
            more = len(rows) > limit
            return DevicePage(rows[:limit], rows[limit - 1].device_id if more else None)
        kept: list[DeviceRecord] = []
        last: str | None = None
        for scanned, record in enumerate(found, start=1):
            last = record.device_id
            if record.device_id.startswith(prefix):
                if len(kept) == limit:
                    return DevicePage(tuple(kept), kept[-1].device_id)
                kept.append(record)
            if scanned >= SCAN:
                return DevicePage(tuple(kept), None, searched_to=last)
        return DevicePage(tuple(kept), None)
    finally:
        found.close()


async def details(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    now = console.now()
    states = _states(request)
    prefix = request.query_params.get("prefix", "")
    after = request.query_params.get("after") or None

    def read(store: SqlStore) -> dict[str, Any]:
        # Read at the rollout's clock if this server's is behind it (a read before the
        # rollout's clock is refused): the page shows the rollout as it stands.
        at = max(now, store.info(name).clock)
        view = store.view(name, at)
        # The server's restart is the host's report, not a rule's decision: it is offered
        # while a restart is required (store.refusal judges administrators' commands only).
        refusals = {
            action: store.refusal(name, command, at)
            for action, command in ACTIONS.items()
            if action != "restarted"
        }
        page = device_page(store, name, states, prefix, after, at)
        return {"view": view, "refusals": refusals, "page": page}

    found = await console.store.run(read)
    refusals = found["refusals"]
    context = {
        "name": name,
        "view": found["view"],
        "head": found["view"].overview,
        "page": found["page"],
        "state": states[0].value if states else "",
        "prefix": prefix,
        "after": after or "",
        "states": list(DeviceState),
        "actions": [
            (action, _words.BUTTONS[type(command).__name__], refusals[action])
            for action, command in ACTIONS.items()
            if action in refusals
        ]
        + (
            [("restarted", _words.BUTTONS["ServerRestarted"], None)]
            if found["view"].overview.restart_required
            else []
        ),
        "refusal_text": _words.refusal_text,
        "confirmed": CONFIRMED,
        "done": DONE.get(request.query_params.get("done", ""), ""),
        "scan": SCAN,
    }
    return console.render(request, "details.html", user, context)


def _csv_cell(value: str) -> str:
    # A spreadsheet runs a cell that starts so as a formula: a device id or a reason from
    # outside must stay text (OWASP's CSV injection advice: a leading apostrophe).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def devices_csv(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    states = _states(request)
    prefix = request.query_params.get("prefix", "")
    await console.store.run(lambda store: store.info(name))  # an unknown rollout is a 404 page

    def chunk(store: SqlStore, *, after: str | None) -> tuple[list[DeviceRecord], str | None]:
        found = store.iter_devices(name, states, after=after, now=console.now(), page=CSV_CHUNK)
        try:
            rows = list(itertools.islice(found, CSV_CHUNK))
        finally:
            found.close()
        return rows, (rows[-1].device_id if len(rows) == CSV_CHUNK else None)

    async def lines() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["device", "state", "attempts", "last_push", "last_report", "reason"])
        yield out.getvalue()
        after: str | None = None
        while True:
            rows, after = await console.store.run(functools.partial(chunk, after=after))
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            for row in rows:
                if prefix and not row.device_id.startswith(prefix):
                    continue
                writer.writerow(
                    [
                        _csv_cell(row.device_id),
                        row.state.value,
                        row.attempts,
                        "" if row.last_push is None else row.last_push.isoformat(),
                        "" if row.last_report is None else row.last_report.isoformat(),
                        _csv_cell(row.last_failure_reason or ""),
                    ]
                )
            yield out.getvalue()
            if after is None:
                return

    suffix = "-".join(part for part in (states[0].value if states else "", "devices") if part)
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{suffix}.csv"'},
    )


async def chart(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    now = console.now()
    entries = await console.store.run(lambda store: _chart.read(store, name, now))
    svg = await _chart.render_cached(console, name, entries, now)
    return Response(svg, media_type="image/svg+xml")


# --- History and Effects --------------------------------------------------------------------------


#: Journal entries on a page of History (older ones on the next page).
HISTORY_PAGE = 100


def _entry_line(entry: EntrySummary) -> str:
    # The store counted the creation's devices and a batch's commands (by class) in the
    # database: at a million devices, decoding them took half a second for these words.
    if entry.kind == "create":
        return f"created with {entry.devices or 0:,} devices"
    if entry.kind == "advance":
        return "time moved the rollout (notices, checkpoints, timeouts)"
    if entry.kind == "command":
        return _words.command_text(entry.commands[0])
    kinds: dict[str, int] = {}
    for name, count in entry.command_kinds.items():
        label = _words.BUTTONS[name].replace("DEVICE", "a device")
        kinds[label] = kinds.get(label, 0) + count
    parts = ", ".join(f"{label} x{count:,}" for label, count in sorted(kinds.items()))
    return f"a batch of {entry.command_count:,}: {parts}"


def _before(request: Request) -> int | None:
    given = request.query_params.get("before", "")
    if not given:
        return None
    if not given.isdigit() or not 0 < int(given) < 2**63:
        raise InvalidInput(f"before {given!r}: a journal entry's number")
    return int(given)


async def history(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    before = _before(request)
    # One more than the page shows: whether older entries follow.
    entries = await console.store.run(
        lambda store: store.journal_page(name, before=before, limit=HISTORY_PAGE + 1)
    )
    shown = entries[:HISTORY_PAGE]
    older = str(shown[-1].seq) if len(entries) > HISTORY_PAGE else ""
    lines = [(entry, _entry_line(entry)) for entry in shown]
    context = {"name": name, "lines": lines, "older": older, "paged": before is not None}
    return console.render(request, "history.html", user, context)


#: The effect lists of the Effects page, by the ``show`` query.
EFFECT_LISTS = ("pending", "dead", "superseded", "acknowledged", "all")


async def effects(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    show = request.query_params.get("show", "pending")
    if show not in EFFECT_LISTS:
        raise InvalidInput(f"show {show!r}: one of {', '.join(EFFECT_LISTS)}")
    # Each device list cut to the ids the words name, and counted, by the database.
    everything = await console.store.run(
        lambda store: store.effect_summaries(name, shown=_words.SHOWN)
    )
    counts = dict.fromkeys(EFFECT_LISTS, 0)
    for summary in everything:
        counts[summary.stored.status] += 1
    counts["all"] = len(everything)
    shown = [e for e in everything if show == "all" or e.stored.status == show]
    context = {
        "name": name,
        "show": show,
        "lists": EFFECT_LISTS,
        "counts": counts,
        "effects": [(e.stored, _words.summary_text(e.stored.effect, e.devices)) for e in shown],
    }
    return console.render(request, "effects.html", user, context)


# --- confirmations --------------------------------------------------------------------------------


async def confirm(console: Console, request: Request, user: str, form: Form | None) -> Response:
    name = _name(request)
    action = request.path_params["action"]
    if action not in CONFIRMED:
        raise InvalidInput(f"{action!r} needs no confirmation page; one of {', '.join(CONFIRMED)}")
    command = ACTIONS[action]
    now = console.now()
    seen = await console.store.run(lambda store: store.preview(name, command, now))
    if seen.refusal is not None:
        raise seen.refusal
    cut_off = seen.cut_off
    context = {
        "name": name,
        "action": action,
        "button": _words.BUTTONS[type(command).__name__],
        "preview": seen,
        "cut_off": cut_off[:NAMED],
        "cut_off_count": len(cut_off),
        "digest": digest(cut_off),
        "effects": [_words.effect_text(effect) for effect in seen.effects],
    }
    return console.render(request, "confirm.html", user, context)


def routes(console: Console) -> list[Route]:
    """The pages, each signed-in only and reading only."""
    return [
        console.route("/", rollouts, "rollouts"),
        console.route("/new", new_rollout, "new_rollout"),
        console.route("/rollouts/{name}", details, "details"),
        console.route("/rollouts/{name}/devices.csv", devices_csv, "devices_csv"),
        console.route("/rollouts/{name}/chart.svg", chart, "chart"),
        console.route("/rollouts/{name}/history", history, "history"),
        console.route("/rollouts/{name}/effects", effects, "effects"),
        console.route("/rollouts/{name}/confirm/{action}", confirm, "confirm"),
    ]
