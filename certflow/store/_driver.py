"""What the commands, the reads, the journal and the outbox use of the store, and the
types they share with it: the rollout row as one transaction holds it, a backend's
cursor, the device columns.

:class:`Driver` is a protocol, not a base class: :class:`~certflow.store.SqlStore`
implements it (each backend supplies the hooks) and hands itself to the functions of
:mod:`._commands`, :mod:`._reads`, :mod:`._journal` and :mod:`._outbox`, which import
only this module of it, so that none of them imports the store back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

import attrs

from certflow.core import commands as c
from certflow.core import interpreter as i
from certflow.core.evaluator import Evaluator
from certflow.core.plan import Phase, Plan
from certflow.core.serialization import decode_phase, decode_plan
from certflow.store._errors import StoreError
from certflow.store._fleetsql import FleetStatement

__all__ = ["DEVICE", "REPORTS", "ROLLOUT", "Cursor", "Driver", "Progress", "Row", "row_of"]

Progress = Callable[[int, int], None]

REPORTS = (c.DeviceInstalled, c.DeviceFailed)
DEVICE = "idx, state, attempts, reason, last_push, last_report, ack_due"
#: The columns of the rollout row that :func:`row_of` reads.
ROLLOUT = "id, name, plan, phase, clock, counts, size, seq"


class Cursor(Protocol):
    """What the shared code needs of a backend's cursor (DB-API 2)."""

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""

    def fetchone(self) -> Any:
        """The next row, or ``None``."""

    def fetchall(self) -> list[Any]:
        """The remaining rows."""

    def __iter__(self) -> Iterator[Any]:
        """The remaining rows, one at a time."""


@attrs.define
class Row:
    """The rollout row, as one transaction reads and changes it."""

    id: int
    name: str
    plan: Plan
    phase: Phase
    clock: datetime
    counts: dict[str, int]
    size: int
    seq: int


class Driver(Protocol):
    """The members of :class:`~certflow.store.SqlStore` that its commands, reads, journal
    and outbox use; each is documented there."""

    _where: str
    clock_skew: timedelta
    max_attempts: int
    retry_backoff: timedelta
    retry_backoff_limit: timedelta
    _evaluator: Evaluator
    _compiled: i.Compiled
    _states: tuple[str, ...]
    _untrusting: tuple[str, ...]
    _statements: dict[str, FleetStatement]
    _outbox: str
    _summary_tables: tuple[str, str]
    _by_ack_due: ClassVar[str]
    _fetch_chunk: ClassVar[int]
    _skip_locked: ClassVar[str]
    # The decoded plan and phase of each rollout, by id, with the text they came from.
    _plans: dict[int, tuple[str, Plan]]
    _phases: dict[int, tuple[str, Phase]]

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor: ...

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def _put(self, instant: datetime) -> Any: ...

    def _get(self, stored: Any) -> datetime | None: ...

    def _transaction(self, write: bool) -> AbstractContextManager[None]: ...

    def _rehearsal(self) -> AbstractContextManager[None]: ...

    def _batched(self) -> AbstractContextManager[object]: ...

    def _insert_devices(
        self, rows: Iterator[tuple[Any, ...]], total: int, progress: Progress | None
    ) -> None: ...

    def _fetch_devices(self, rollout: int, device_ids: list[str]) -> Cursor: ...

    def _created(self) -> None: ...

    def _committed(self, marker: tuple[int, int, str]) -> None: ...

    def _row(self, name: str, *, own: bool = False) -> Row: ...

    def _save(self, row: Row, now: datetime) -> None: ...

    def _check_now(self, row: Row, now: object) -> datetime: ...


def row_of(store: Driver, found: Sequence[Any]) -> Row:
    """The rollout row of ``found``, the :data:`ROLLOUT` columns as read. The plan and
    the phase are decoded only when their text changed since this store last read them
    (a plan never changes; a phase changes with each command that moves the rollout)."""
    rollout_id, name, plan_text, phase_text, clock, counts, size, seq = found
    cached = store._plans.get(rollout_id)
    if cached is None or cached[0] != plan_text:
        cached = (plan_text, decode_plan(json.loads(plan_text)))
        store._plans[rollout_id] = cached
    phase = store._phases.get(rollout_id)
    if phase is None or phase[0] != phase_text:
        phase = (phase_text, decode_phase(json.loads(phase_text)))
        store._phases[rollout_id] = phase
    at = store._get(clock)
    if at is None:  # pragma: no cover - the column is NOT NULL
        raise StoreError(f"{store._where}: rollout {name!r} has no clock")
    return Row(rollout_id, name, cached[1], phase[1], at, json.loads(counts), size, seq)
