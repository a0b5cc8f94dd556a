"""The device rows of one rollout as one transaction sees them: the interpreter's
fleet (its ``FleetPort``, whose fleet-wide moves are ``UPDATE`` statements generated from
the declarations, :mod:`certflow.store._fleetsql`), and the device rows that the
transaction's device commands read and change, held until it writes them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from certflow.core import interpreter as i
from certflow.core.effects import PushRoot
from certflow.store._driver import DEVICE, REPORTS, Driver, Row

__all__ = ["Held", "Port"]


@attrs.define
class Held:
    """One device row held by the port until the transaction writes it."""

    values: list[Any]  # idx, state, attempts, reason, last_push, last_report, ack_due
    new: bool = False
    dirty: bool = False


class Port:
    """The interpreter's view of one rollout's device rows (a FleetPort), and the
    device rows that the transaction's device commands read and changed.

    A fleet-wide statement sees the database, so the changed rows are written before
    one runs, and forgotten after a move (which may change any of them)."""

    def __init__(self, store: Driver, row: Row) -> None:
        self.store = store
        self.row = row
        self.devices: dict[str, Held | None] = {}  # None: known to be absent
        compiled = store._compiled
        self.wait_span = compiled.wait_span(row.plan.policy)
        self.timeout_reason = i.timeout_reason(compiled, row.plan.policy)
        self.state_index = {name: k for k, name in enumerate(store._states)}
        # The instants written into device rows, in their stored form: a batch writes
        # the same one or two instants into every row it moves, converted once each (a
        # transaction sees a few: its instant, the timers it caught up, their deadlines).
        self._stored: dict[datetime, Any] = {}

    def put(self, instant: datetime) -> Any:
        """``instant`` as the database stores it (``store._put``: equal instants are
        stored alike)."""
        stored = self._stored.get(instant)
        if stored is None:
            stored = self._stored[instant] = self.store._put(instant)
        return stored

    def state_counts(self) -> dict[str, int]:
        """How many devices are in each state, by name (kept on the rollout row)."""
        return dict(self.row.counts)

    def untrusting(self) -> int:
        counts = self.row.counts
        return sum(counts.get(name, 0) for name in self.store._untrusting)

    def next_timeout(self) -> datetime | None:
        self.flush()
        found = self.store._q(
            "SELECT MIN(ack_due) FROM devices WHERE rollout = ? AND ack_due IS NOT NULL",
            (self.row.id,),
        ).fetchone()[0]
        return self.store._get(found)

    def move(self, move: i.FleetMove, now: datetime) -> i.FleetResult:
        self.flush()
        self.devices.clear()
        store = self.store
        statement = store._statements[move.action]
        row = self.row
        params: dict[str, Any] = {"rollout": row.id, "now": store._put(now)}
        if statement.pushes:
            span = self.wait_span
            params["ack_due"] = None if span is None else store._put(now + span)
        if ":timeout_reason" in statement.sql:
            params["timeout_reason"] = self.timeout_reason
        if statement.selection == "due":
            params["due"] = store._put(now)
            moved = dict(
                store._q(
                    f"SELECT state, COUNT(*) FROM {store._by_ack_due} "
                    "WHERE rollout = ? AND ack_due = ? GROUP BY state",
                    (row.id, params["due"]),
                ).fetchall()
            )
        else:
            moved = {s: row.counts.get(s, 0) for s in statement.sources}
        results = store._q(statement.sql, params).fetchall()
        names = store._states
        for s, d in enumerate(move.dest):
            if d >= 0 and moved.get(names[s]):
                n = moved[names[s]]
                row.counts[names[s]] = row.counts.get(names[s], 0) - n
                row.counts[names[d]] = row.counts.get(names[d], 0) + n
        if statement.pushes:
            results.sort(key=lambda r: (r[2], r[0]))
            pushes: dict[int, list[str]] = {}
            for _, device_id, attempt in results:
                pushes.setdefault(attempt, []).append(device_id)
            return i.FleetResult(pushes=pushes)
        results.sort()
        return i.FleetResult(ids=[device_id for _, device_id, _ in results])

    def drop_timeouts(self) -> None:
        self.flush()
        self.devices.clear()
        self.store._q(
            "UPDATE devices SET ack_due = NULL WHERE rollout = ? AND ack_due IS NOT NULL",
            (self.row.id,),
        )

    def drop_timeouts_due(self, due: datetime) -> None:
        self.flush()
        self.devices.clear()
        self.store._q(
            "UPDATE devices SET ack_due = NULL WHERE rollout = ? AND ack_due <= ?",
            (self.row.id, self.store._put(due)),
        )

    # --- DevicePort: the device rows of device commands -------------------------------------

    def locate(self, device_id: str) -> Held | None:
        """The held row of ``device_id`` (read once), or ``None`` if there is none."""
        # :meth:`device` written out: a batch locates every device it names (read
        # already by the batch's fetch), one call each.
        devices = self.devices
        if device_id not in devices:
            self.fetch((device_id,))
        return devices[device_id]

    def state_of(self, device: Held) -> int:
        """The state index of a held row."""
        return self.state_index[device.values[1]]

    def add(self, device_id: str) -> Held:
        """A new device row in the initial state, held until the transaction writes it."""
        row = self.row
        initial = self.store._compiled.rules.device.initial
        held = Held([row.size, initial, 0, None, None, None, None], new=True)
        row.size += 1
        row.counts[initial] = row.counts.get(initial, 0) + 1
        self.devices[device_id] = held
        return held

    def transition(
        self,
        device: Held,
        device_id: str,
        dest: int,
        calls: tuple[i.DeviceAction, ...],
        command: Any,
        run: i.Turn,
    ) -> None:
        """Move a held row to ``dest`` and make the declared writes of ``calls``."""
        store = self.store
        values = device.values  # idx, state, attempts, reason, last_push, last_report, ack_due
        source, target = values[1], store._states[dest]
        values[1] = target
        now = run.now
        for act in calls:
            if act.counts:
                values[2] += 1
            if act.reason:
                values[3] = command.reason if act.reason == "command" else self.timeout_reason
            if act.starts_wait:
                span = self.wait_span
                values[6] = None if span is None else self.put(now + span)
            if act.pushes:
                values[4] = self.put(now)
                known = run.plan.identity  # the root it pushes, by its fingerprint
                root = None if known is None else known.root.fingerprint
                run.effects.append(PushRoot((device_id,), values[2], now, root))
        if not store._compiled.keeps_wait(dest, calls):
            values[6] = None  # the device left the declared wait: it awaits no answer
        if isinstance(command, REPORTS):
            values[5] = self.put(now)
        device.dirty = True
        counts = self.row.counts
        counts[source] -= 1
        counts[target] = counts.get(target, 0) + 1

    # --- the device rows of device commands ------------------------------------------------

    def fetch(self, device_ids: Iterable[str]) -> None:
        """Read the rows of ``device_ids`` (the ones not held yet), a chunk at a time."""
        devices = self.devices
        wanted = [d for d in dict.fromkeys(device_ids) if d not in devices]
        size = self.store._fetch_chunk
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            devices.update(dict.fromkeys(chunk))  # None: absent, unless a row is found
            for device_id, *values in self.store._fetch_devices(self.row.id, chunk):
                devices[device_id] = Held(values)  # the unpacking made a new list

    def device(self, device_id: str) -> Held | None:
        if device_id not in self.devices:
            self.fetch((device_id,))
        return self.devices[device_id]

    def flush(self) -> None:
        """Write the device rows changed since the last flush."""
        changed = [(d, held) for d, held in self.devices.items() if held and held.dirty]
        if not changed:
            return
        store, rollout = self.store, self.row.id
        inserts = [(rollout, d, *held.values) for d, held in changed if held.new]
        updates = [
            (*held.values[1:], rollout, held.values[0]) for _, held in changed if not held.new
        ]
        if inserts:
            store._many(
                f"INSERT INTO devices (rollout, device_id, {DEVICE}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
        if updates:
            store._many(
                "UPDATE devices SET state = ?, attempts = ?, reason = ?, last_push = ?, "
                "last_report = ?, ack_due = ? WHERE rollout = ? AND idx = ?",
                updates,
            )
        for _, held in changed:
            held.new = held.dirty = False
