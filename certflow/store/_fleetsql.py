"""SQL generated from the declarations: the fleet-wide transitions as set-based updates.

Nothing here knows which state goes where. :func:`fleet_update` reads a
:class:`~certflow.core.interpreter.FleetMove` (the ``from -> to`` mapping of a fleet-wide
action, and the device actions of each row) and writes the one ``UPDATE`` that applies it
to every device row of a rollout. The device actions a store knows how to write are
:data:`DEVICE_COLUMNS`; a declaration that names another fails when the store is built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from certflow.core.interpreter import FleetMove
from certflow.core.machines import RULES, MachineSpec

__all__ = ["DEVICE_COLUMNS", "FleetStatement", "fleet_update"]

# Device action -> the columns it writes, and their new values (SQL over the old row).
# ``keep_reason`` needs the command's reason, so it is written by the single-device path
# only; no fleet-wide row may use it.
DEVICE_COLUMNS: dict[str, dict[str, str] | None] = {
    "push_root": {"attempts": "attempts + 1", "last_push": ":now", "ack_due": ":ack_due"},
    "record_timeout": {"reason": ":timeout_reason"},
    "keep_reason": None,
}

_NAME = re.compile(r"^[a-z_]+$")


@attrs.frozen
class FleetStatement:
    """One generated ``UPDATE ... RETURNING idx, device_id, attempts``.

    Parameters: ``:rollout``, ``:now``, ``:ack_due`` (when a row pushes),
    ``:timeout_reason`` (when a row records a timeout), ``:due`` (selection ``due``).
    ``sources`` are the states it moves devices from.
    """

    sql: str
    sources: tuple[str, ...]
    selection: str
    pushes: bool


def _literal(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"state name {name!r} cannot be written as an SQL literal")
    return f"'{name}'"


def fleet_update(
    move: FleetMove,
    states: Sequence[str],
    *,
    by_ack_due: str = "devices",
    device: MachineSpec = RULES.device,
) -> FleetStatement:
    """The ``UPDATE`` that applies ``move`` to one rollout's device rows. ``by_ack_due``
    names the table as a read through the acknowledgement-deadline index (SQLite's
    planner needs ``INDEXED BY`` to be told; PostgreSQL's keeps statistics). ``device``
    is the device machine, whose declared wait says when a device's ``ack_due`` ends."""
    sources = [s for s, d in enumerate(move.dest) if d >= 0]
    if not sources:
        raise ValueError(f"fleet move {move.action!r} moves no state")
    sets: dict[str, list[tuple[str, str]]] = {}  # column -> [(source state, new value)]

    def case(source: str, column: str, value: str) -> None:
        sets.setdefault(column, []).append((source, value))

    pushes = False
    for s in sources:
        source, target = states[s], states[move.dest[s]]
        case(source, "state", _literal(target))
        names = [call.name for call in move.calls[s]]
        for name in names:
            columns = DEVICE_COLUMNS.get(name, ())
            if columns is None:
                raise ValueError(f"device action {name!r} cannot run fleet-wide")
            if not columns:
                raise ValueError(f"the store does not know the device action {name!r}")
            for column, value in columns.items():
                case(source, column, value)
        starts = any(wait.started_by in names for wait in device.waits)
        pushes = pushes or starts
        if not starts and target not in device.awaiting:
            case(source, "ack_due", "NULL")  # the device left the wait: it awaits no answer
    assignments = []
    for column, cases in sets.items():
        if len(cases) == len(sources) and len({v for _, v in cases}) == 1:
            assignments.append(f"{column} = {cases[0][1]}")
            continue
        whens = " ".join(f"WHEN {_literal(src)} THEN {value}" for src, value in cases)
        assignments.append(f"{column} = CASE state {whens} ELSE {column} END")
    where = f"rollout = :rollout AND state IN ({', '.join(_literal(states[s]) for s in sources)})"
    if move.selection == "due":
        where += " AND ack_due = :due"
    # A timeout moves the devices of one deadline: read them through the ack_due index,
    # never the whole rollout.
    table = by_ack_due if move.selection == "due" else "devices"
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} WHERE {where} "
        "RETURNING idx, device_id, attempts"
    )
    return FleetStatement(sql, tuple(states[s] for s in sources), move.selection, pushes)
