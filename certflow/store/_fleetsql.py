"""SQL generated from the declarations: the fleet-wide transitions as set-based updates.

Nothing here knows which state goes where. :func:`fleet_update` reads a
:class:`~certflow.core.interpreter.FleetMove` (the ``from -> to`` mapping of a fleet-wide
action, and the compiled device actions of each row) and writes the one ``UPDATE`` that
applies it to every device row of a rollout. A device action is its declared writes
(:class:`~certflow.core.interpreter.DeviceAction`), each one column here: no action is
known by its name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from certflow.core.interpreter import Compiled, DeviceAction, FleetMove

__all__ = ["FleetStatement", "fleet_update"]


# The device writes of a compiled device action, as columns and their new values (SQL
# over the old row). The command's reason is written by the single-device path only:
# validation refuses it on a row that a rollout action fires fleet-wide.
def _columns(act: DeviceAction) -> dict[str, str]:
    columns: dict[str, str] = {}
    if act.counts:
        columns["attempts"] = "attempts + 1"
    if act.pushes:
        columns["last_push"] = ":now"
    if act.starts_wait:
        columns["ack_due"] = ":ack_due"
    if act.reason == "timeout":
        columns["reason"] = ":timeout_reason"
    elif act.reason:
        raise ValueError(f"device action {act.name!r} writes the command's reason fleet-wide")
    return columns


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
    compiled: Compiled,
    *,
    by_ack_due: str = "devices",
) -> FleetStatement:
    """The ``UPDATE`` that applies ``move`` to one rollout's device rows. ``by_ack_due``
    names the table as a read through the acknowledgement-deadline index (SQLite's
    planner needs ``INDEXED BY`` to be told; PostgreSQL's keeps statistics). ``compiled``
    says when a device's declared wait (its ``ack_due``) ends."""
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
        for act in move.calls[s]:
            for column, value in _columns(act).items():
                case(source, column, value)
        pushes = pushes or any(act.starts_wait for act in move.calls[s])
        if not compiled.keeps_wait(move.dest[s], move.calls[s]):
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
