"""The SQL store: one driver of the declarations, for every SQL backend.

Theory of operation
-------------------
A rollout is one row of ``rollouts`` (the rollout machine's phase and the per-state
device counts) and one row of ``devices`` per device. Every command runs in one write
transaction, which the backend makes exclusive for that rollout (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: the rollout row locked ``FOR NO KEY UPDATE``):

1. read the rollout row;
2. run the rollout machine through the generic interpreter
   (:mod:`certflow.core.interpreter`): catch-up of the timers due by ``now``, then the
   command. The interpreter reaches the fleet through the device port
   (:class:`~certflow.store._port.Port`), whose fleet-wide moves are ``UPDATE``
   statements generated from the declarations (:mod:`certflow.store._fleetsql`);
3. a device command reads its one device row, takes its destination and actions from
   the compiled :class:`~certflow.core.interpreter.DeviceTable`, and keeps the new row in
   the port until the transaction writes it (O(1) rows per report: the counts live in
   the rollout row and change by the transition's delta). A batch reads its devices a
   chunk at a time through the device-id index and writes them back with one
   ``executemany``;
4. append the journal entry and the effects (the outbox), write the rollout row, commit.

So a refused command, a crash or a kill leaves the database as it was before the
command, and the journal always replays to the stored rollout: each entry is the
command (or batch, or advance) and its instant, and replaying it through the in-memory
evaluator gives the same ``dumps``.

A backend (:class:`~certflow.store.SqliteStore`,
:class:`~certflow.store.PostgresStore`) supplies the connection, the transactions, the
error messages, the placeholder style, how an instant is stored, and how a whole fleet
is inserted; every rule and every statement's meaning is in the shared driver, once.

Limits, stated plainly: one store object belongs to one thread; writers of one rollout
take turns (several rollouts may be written at once where the backend allows it); the
per-device acknowledgement deadline (``ack_due``) is the store's form of the in-memory
timer queue, equal to it for the shipped rules (a row that moved a device into
``pushed`` without pushing would keep the previous deadline).

Where each part lives: :class:`SqlStore` (here) is the API, what a backend implements,
the transactions and the rollout row; its methods run, by concern, the functions of
:mod:`._commands` (create, apply, preview, advance, tick), :mod:`._reads`,
:mod:`._journal` (appending an entry, reading, replay, activity) and :mod:`._outbox`,
which see the store through the :class:`~certflow.store._driver.Driver` protocol;
:mod:`._port` holds a transaction's device rows, and :mod:`._inputs` says what the
store accepts.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any, ClassVar

from certflow.core import interpreter as i
from certflow.core.commands import Command
from certflow.core.errors import CommandRefused, InvalidInput
from certflow.core.evaluator import Evaluator
from certflow.core.instants import require_utc
from certflow.core.machines import Rules
from certflow.core.plan import DeviceRecord, DeviceState, Phase, Plan
from certflow.core.preview import Preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import encode
from certflow.core.summary import Overview
from certflow.store import _commands, _journal, _outbox, _reads, _summaries
from certflow.store._driver import DEVICE, ROLLOUT, Cursor, Progress, Row, row_of
from certflow.store._errors import StoreError, UnknownRollout
from certflow.store._fleetsql import FleetStatement, fleet_update
from certflow.store._inputs import (
    DELIVERY,
    can_store,
    check_delivery,
    check_rollout_name,
    storable,
)
from certflow.store._model import (
    Applied,
    JournalEntry,
    RefusedMode,
    RolloutInfo,
    StoredEffect,
    View,
)

__all__ = ["Cursor", "Progress", "SqlStore", "check_rollout_name", "storable"]


def _renamed(old: str, new: str) -> None:
    warnings.warn(
        f"SqlStore.{old} is deprecated and will be removed in certflow 0.3: use {new}, the "
        "name certflow gives the same act everywhere (certflow.apply, certflow.apply_all)",
        DeprecationWarning,
        stacklevel=3,
    )


# Device rows a batch reads per statement: well under every backend's parameter limit.
_FETCH_CHUNK = 500


class SqlStore:
    """What every SQL backend shares: the commands, the reads, the journal and the outbox.

    A backend sets ``_where`` (the database as messages name it) and implements the
    hooks below; its constructor calls :meth:`_setup` first.
    """

    _where: str
    clock_skew: timedelta
    #: Opened read-only: every transaction only reads, and a command is refused.
    read_only: bool = False
    # The outbox and the summary tables as reads name them: a read-only store of an older
    # database adds what it lacks (_schema.*_as_current), as it may not migrate it.
    _outbox: str = "outbox"
    _summary_tables: tuple[str, str] = ("journal_summaries", "outbox_summaries")
    max_attempts: int
    retry_backoff: timedelta
    retry_backoff_limit: timedelta
    # A read of the acknowledgement deadlines that goes through their index.
    _by_ack_due: ClassVar[str] = "devices"
    # A read of devices by id that goes through that index (a batch's IN lists).
    _by_device_id: ClassVar[str] = "devices"
    # How many devices a batch reads per statement.
    _fetch_chunk: ClassVar[int] = _FETCH_CHUNK
    # What a write transaction appends to its read of the rollout row to own it.
    _lock_rollout: ClassVar[str] = ""
    # What a lease appends to its read of the outbox, so that drainers skip each other.
    _skip_locked: ClassVar[str] = ""
    # The driver's own error class, which every backend turns into a StoreError.
    _driver_error: ClassVar[type[Exception]] = Exception

    # --- the backend's hooks ---------------------------------------------------------------

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Cursor:
        """Run one statement, written with ``?`` and ``:name`` placeholders."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""
        raise NotImplementedError

    def _put(self, instant: datetime) -> Any:
        """An instant as the database stores it."""
        raise NotImplementedError

    def _get(self, stored: Any) -> datetime | None:
        """A stored instant (or NULL) as a UTC datetime."""
        raise NotImplementedError

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[None]:
        """One transaction: a write one owns what it changes and commits; a read one
        sees one snapshot and is rolled back (a read commits nothing). Whatever fails
        inside it rolls it back; a driver's error becomes a :class:`StoreError` that
        names the database."""
        if write:
            self._writable()
        self._begin(write)
        try:
            yield
        except self._driver_error as error:
            self._rollback()
            raise self._error(error, "transaction failed") from None
        except BaseException:
            self._rollback()
            raise
        if write:
            self._commit(write)
        else:
            self._end_read()

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(
                f"{self._where}: opened read-only (read_only=True), so it cannot be "
                "changed; open it for writing to run commands"
            )

    @contextmanager
    def _rehearsal(self) -> Iterator[None]:
        """A write transaction that is always rolled back: a command run for its answer
        (:meth:`preview`), never kept."""
        self._writable()
        self._begin(True)
        try:
            yield
        except self._driver_error as error:
            raise self._error(error, "preview failed") from None
        finally:
            self._rollback()

    def _begin(self, write: bool) -> None:
        """Start a write (exclusive for what it changes) or a read transaction."""
        raise NotImplementedError

    def _commit(self, write: bool) -> None:
        """Commit the open transaction (rolled back, and a StoreError, if that fails)."""
        raise NotImplementedError

    def _rollback(self) -> None:
        """Roll the open transaction back, if the database still has one."""
        raise NotImplementedError

    def _end_read(self) -> None:
        """End a read transaction that went well: rolled back, never committed."""
        self._rollback()

    def _error(self, error: Any, doing: str) -> StoreError:
        """The driver's ``error`` (an instance of ``_driver_error``: each backend names its
        own class) as a StoreError naming the database and the problem."""
        raise NotImplementedError

    def _insert_devices(
        self, rows: Iterator[tuple[Any, ...]], total: int, progress: Progress | None
    ) -> None:
        """Insert a new rollout's device rows (rollout, idx, device_id, state, attempts,
        reason, ack_due), calling ``progress(done, total)`` as they go."""
        raise NotImplementedError

    def _fetch_devices(self, rollout: int, device_ids: list[str]) -> Cursor:
        """The rows (device_id, then the device columns) of those of ``device_ids`` that
        rollout ``rollout`` has, through the device-id index."""
        marks = ", ".join("?" * len(device_ids))
        return self._q(
            f"SELECT device_id, {DEVICE} FROM {self._by_device_id} WHERE rollout = ? "
            f"AND device_id IN ({marks})",
            (rollout, *device_ids),
        )

    def _batched(self) -> AbstractContextManager[object]:
        """A block of writes whose results nobody reads: a backend may send them together
        (PostgreSQL: one pipeline, one round trip). Errors surface by the block's end."""
        return nullcontext()

    def _created(self) -> None:
        """A new rollout's device rows were committed (a backend may gather statistics)."""

    def _committed(self, marker: tuple[int, int, str]) -> None:
        """Note the journal entry (rollout id, seq, body) the open transaction writes, so
        that a backend that loses its connection while committing can look it up."""

    def close(self) -> None:
        """Release the database."""
        raise NotImplementedError

    # --- setting up --------------------------------------------------------------------------

    def _setup(
        self,
        clock_skew: timedelta,
        rules: Rules | None,
        _rules: Rules | None,
        delivery: tuple[int, timedelta, timedelta] = DELIVERY,
    ) -> None:
        if not isinstance(clock_skew, timedelta) or clock_skew < timedelta(0):
            raise InvalidInput(f"clock_skew must be a timedelta of 0 or more, got {clock_skew!r}")
        self.max_attempts, self.retry_backoff, self.retry_backoff_limit = check_delivery(*delivery)
        if rules is not None:
            warnings.warn(
                "the store's rules= is deprecated and will be removed in certflow 0.3: the "
                "rules are certflow's own (docs/decisions.md, 'Rules are internal')",
                DeprecationWarning,
                stacklevel=3,
            )
            _rules = rules
        self.clock_skew = clock_skew
        self._evaluator = Evaluator(_rules=_rules)
        self._compiled = compiled = self._evaluator.compiled
        self._states = compiled.device_states
        self._untrusting = tuple(compiled.device_states[s] for s in compiled.untrusting_states)
        self._statements: dict[str, FleetStatement] = {
            name: fleet_update(move, self._states, compiled, by_ack_due=self._by_ack_due)
            for name, move in compiled.moves.items()
        }
        self._plans: dict[int, tuple[str, Plan]] = {}
        self._phases: dict[int, tuple[str, Phase]] = {}

    @property
    def location(self) -> str:
        """The database as messages name it: a file path, or a URL without its password."""
        return self._where

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the rollout row ---------------------------------------------------------------------

    def _unknown(self, name: object) -> UnknownRollout:
        return UnknownRollout(f"{self._where}: no rollout named {name!r}")

    def _row(self, name: str, *, own: bool = False) -> Row:
        if not isinstance(name, str) or not can_store(name):
            raise self._unknown(name)
        found = self._q(
            f"SELECT {ROLLOUT} FROM rollouts WHERE name = ?" + (self._lock_rollout if own else ""),
            (name,),
        ).fetchone()
        if found is None:
            raise self._unknown(name)
        return row_of(self, found)

    def _save(self, row: Row, now: datetime) -> None:
        phase = self._phases.get(row.id)
        if phase is None or phase[1] is not row.phase:
            phase = (json.dumps(encode(row.phase), separators=(",", ":")), row.phase)
            self._phases[row.id] = phase
        due = i.next_timer(self._compiled, row.plan, row.phase, None)
        self._q(
            "UPDATE rollouts SET state = ?, phase = ?, clock = ?, counts = ?, size = ?, "
            "phase_due = ?, seq = ? WHERE id = ?",
            (
                row.phase.state.value,
                phase[0],
                self._put(now),
                json.dumps(row.counts, separators=(",", ":")),
                row.size,
                None if due is None else self._put(due[0]),
                row.seq,
                row.id,
            ),
        )

    def _check_now(self, row: Row, now: object) -> datetime:
        rollout = f"rollout {row.name!r}"
        return i.check_now(
            now, row.clock, rollout=rollout, skew=self.clock_skew, require=require_utc
        )

    # --- creating ----------------------------------------------------------------------------

    def create(
        self, name: str, rollout: Rollout, *, progress: Progress | None = None
    ) -> RolloutInfo:
        """Store ``rollout`` (usually new from :func:`certflow.new_rollout` or
        :func:`certflow.certs.rollout_for`) under ``name``; its document is the journal's
        first entry. ``progress(done, total)`` is called as device rows are written."""
        _commands.create(self, name, rollout, progress)
        return self.info(name)

    # --- commands ----------------------------------------------------------------------------

    def apply(self, name: str, command: Command, now: datetime) -> Applied:
        """Apply ``command`` to rollout ``name`` at ``now``, as :func:`certflow.apply`
        would (timers due by ``now`` first); one transaction. Returns the effects, as
        placed in the outbox (:class:`~certflow.store.Applied`: a list, whose ``changed``
        is false for a no-op, which journals and commits nothing). The transaction that
        ends the rollout supersedes the undelivered effects its end made moot."""
        return _commands.apply(self, name, [command], now, "command")

    def apply_all(
        self,
        name: str,
        commands: Iterable[Command],
        now: datetime,
        *,
        refused: RefusedMode = "raise",
    ) -> Applied:
        """Apply ``commands`` in order at ``now``, as :func:`certflow.apply_all` would:
        one transaction, refused whole if any command is refused (a no-op as
        :meth:`apply`'s). A command is refused by the rules (``CommandRefused``) or for
        naming a device the rollout does not know (``UnknownDevice``); ``refused`` says
        what then happens, in the same one transaction and at the same cost:

        * ``"raise"``: the first refusal is raised and nothing is applied;
        * ``"skip"``: each refused command is skipped and the others applied (and
          journaled) as if it were not in the batch; ``Applied.refused`` lists them;
        * ``"list"``: every refusal is listed in ``Applied.refused`` (those ``"skip"``
          would list) and, if there is any, nothing is applied (``changed`` false).

        Bad input (a non-UTF-8 id, an instant before the rollout's clock) still raises."""
        return _commands.apply(self, name, list(commands), now, "batch", refused)

    def execute(self, name: str, command: Command, now: datetime) -> Applied:
        """Deprecated spelling of :meth:`apply` (removed in certflow 0.3)."""
        _renamed("execute", "apply")
        return self.apply(name, command, now)

    def execute_many(self, name: str, commands: Iterable[Command], now: datetime) -> Applied:
        """Deprecated spelling of :meth:`apply_all` (removed in certflow 0.3)."""
        _renamed("execute_many", "apply_all")
        return self.apply_all(name, commands, now)

    def preview(self, name: str, command: Command, now: datetime) -> Preview:
        """What ``command`` would do to rollout ``name`` at ``now``, and nothing done: the
        store runs it exactly as :meth:`apply` would (timers due by ``now`` first, the
        same rows, guards and device actions) in a transaction that it then rolls back.
        The answer is the store's own, as :func:`certflow.preview` is the evaluator's:
        the refusal, or the effects and the overview after the command. It holds the
        rollout's write lock while it runs, as a command does."""
        return _commands.preview(self, name, command, now)

    def advance(self, name: str, now: datetime) -> Applied:
        """Advance rollout ``name`` to ``now``, as :func:`certflow.advance` would: every
        timer due by then fires, in order, and the rollout's clock moves to ``now``. With
        nothing due it is a no-op: nothing is journaled, and the clock stays."""
        return _commands.advance(self, name, now)

    def tick(self, now: datetime) -> Applied:
        """Advance every rollout with something due by ``now``, each in its own
        transaction. A rollout another process has just advanced is skipped, so two
        schedulers ticking at once produce each effect once. With nothing due it
        journals nothing (``changed`` is false)."""
        return _commands.tick(self, now)

    # --- reading -----------------------------------------------------------------------------

    def overview(self, name: str, now: datetime) -> Overview:
        """The view-details head of rollout ``name`` at ``now``: :meth:`view`'s overview.
        It only reads: if timers fell due by ``now``, it is what a tick would leave,
        and nothing is stored. An instant earlier than the rollout's clock is refused,
        as :func:`certflow.summarize` refuses it (within ``clock_skew``: read at the
        clock)."""
        return _reads.view(self, name, now).overview

    def view(self, name: str, now: datetime) -> View:
        """The view-details head of rollout ``name`` at ``now``, in one read transaction
        that writes nothing. If timers fell due between the rollout's clock and ``now``
        (no tick stored them yet), it is what a tick at ``now`` would leave, and says so
        (``projected``, and ``due``: the first of them); nothing is stored. The
        projection costs what a tick's reads cost: the rollout row, and for a timeout a
        count of its devices through the deadline index."""
        return _reads.view(self, name, now)

    def devices(
        self,
        name: str,
        states: Sequence[DeviceState] = (),
        *,
        after: str | None = None,
        limit: int = 50,
        now: datetime | None = None,
    ) -> list[DeviceRecord]:
        """A page of rollout ``name``'s devices in creation order, of ``states`` (all when
        empty), starting after device ``after``: keyset paging, one index range read.
        With ``now``, as a tick at ``now`` would leave them (:meth:`view`): if timers that
        fell due by then move devices (timeouts, an import), the page comes from the
        whole rollout, read in memory (O(fleet)); nothing is stored."""
        return _reads.devices(self, name, states, after, limit, now)

    def iter_devices(
        self,
        name: str,
        states: Sequence[DeviceState] = (),
        *,
        after: str | None = None,
        now: datetime | None = None,
        page: int = 1_000,
    ) -> Generator[DeviceRecord, None, None]:
        """Every device :meth:`devices` would page (of ``states``, after ``after``, at
        ``now``), with no page limit: ``page`` rows per keyset read, in one read
        transaction open until the iterator ends or is closed, so memory stays constant
        whatever the fleet (make no other call on this store meanwhile). Read past due
        timers, each row is moved as a tick would move it. Errors come with the first row."""
        return _reads.iter_devices(self, name, states, after, now, page)

    def refusal(self, name: str, command: Command, now: datetime) -> CommandRefused | None:
        """The refusal an administrator's ``command`` would meet at ``now``, or ``None``;
        as :meth:`certflow.Evaluator.refusal`, it chooses the row without running it, so
        nothing is written. A rollout with timers due by ``now`` is judged as a tick at
        ``now`` would leave it (:meth:`view`)."""
        return _reads.refusal(self, name, command, now)

    def plan(self, name: str) -> Plan:
        """The facts rollout ``name`` was created from (O(1))."""
        return _reads.plan(self, name)

    def device(self, name: str, device_id: str) -> DeviceRecord:
        """One device of rollout ``name``; :class:`~certflow.UnknownDevice` if unknown."""
        return _reads.device(self, name, device_id)

    def info(self, name: str, now: datetime | None = None) -> RolloutInfo:
        """Rollout ``name``'s line of the list: state, clock, counts, progress (O(1)); at
        ``now``, projected as :meth:`view` is (``projected``). An instant earlier than
        the rollout's clock shows it as stored (a list reads every rollout at one
        instant, and some may be ahead of it)."""
        return _reads.info(self, name, now)

    def rollouts(
        self, now: datetime | None = None, *, after: str | None = None, limit: int | None = None
    ) -> list[RolloutInfo]:
        """The rollouts by name (at ``now``: each projected as :meth:`info` is), each with
        its ``overview``: those whose name sorts after ``after`` (code point order), at
        most ``limit``; every one by default. One read transaction and one query through
        the name's index (a rollout with timers due is projected as :meth:`view` is)."""
        return _reads.rollouts(self, now, after, limit)

    def next_due(self, name: str | None = None) -> datetime | None:
        """The next instant at which time moves rollout ``name`` (or any rollout), or
        ``None``: a host's scheduler sleeps until then and calls :meth:`tick`."""
        return _reads.next_due(self, name)

    def dumps(self, name: str) -> str:
        """Rollout ``name`` as :func:`certflow.dumps` writes it (the same text as the
        in-memory rollout with the same history)."""
        return _reads.dumps(self, name)

    # --- the journal -------------------------------------------------------------------------

    def journal(self, name: str) -> Iterator[JournalEntry]:
        """Rollout ``name``'s journal, oldest first."""
        return _journal.read(self, name)

    def journal_page(
        self, name: str, *, before: int | None = None, limit: int = _summaries.JOURNAL_PAGE
    ) -> list[_summaries.EntrySummary]:
        """Up to ``limit`` entries of ``name``'s journal before seq ``before``, newest first,
        their device and command lists counted by the database, not read (History)."""
        return _summaries.journal_page(self, name, before, limit)

    def activity(self, name: str) -> tuple[dict[str, list[datetime]], dict[str, list[datetime]]]:
        """What each device of rollout ``name`` was sent and answered, from the journal:
        the instants of its pushes (``PushRoot`` effects) and of the reports that answered
        a push (``DeviceInstalled``/``DeviceFailed`` while it was pushed; duplicates left
        out: a report that came while the device awaited an answer, as the device machine
        declares it), in order. The forecast's input (:func:`certflow.sim.forecast`).

        Folds the journal through the in-memory evaluator one command at a time (a batch
        equals its commands applied in turn), so it costs a replay.
        """
        return _journal.activity(self, name)

    def replay(self, name: str) -> Rollout:
        """Rollout ``name`` rebuilt from its journal alone, through the in-memory
        evaluator: ``dumps(store.replay(n)) == store.dumps(n)``."""
        return _journal.replay(self, name)

    # --- the outbox --------------------------------------------------------------------------

    def effects(
        self,
        name: str | None = None,
        *,
        include_acknowledged: bool = False,
        due_by: datetime | None = None,
        dead: bool = False,
    ) -> list[StoredEffect]:
        """The effects in the outbox in the order they were emitted: the pending ones
        (to be delivered: neither acknowledged, superseded nor dead); every one with
        ``include_acknowledged`` (the whole record: acknowledged, superseded and dead
        too); only the dead ones with ``dead``. Only those due by ``due_by`` if given."""
        return _outbox.effects(self, name, include_acknowledged, due_by, dead)

    def effect_summaries(self, name: str, *, shown: int = 3) -> list[_summaries.EffectSummary]:
        """Every effect of ``name`` (as ``effects(include_acknowledged=True)``), each device
        list cut to its first ``shown`` ids by the database, with its length (Effects)."""
        return _summaries.effect_summaries(self, name, shown)

    def lease(
        self,
        name: str | None = None,
        *,
        now: datetime,
        duration: timedelta = timedelta(minutes=5),
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[StoredEffect]:
        """Claim pending effects due by ``now`` for delivery until ``now + duration``.

        Another drainer's lease skips them until then, so two drainers do not deliver
        the same effect while both run; an effect whose drainer died is claimed again
        when its lease runs out (delivery stays at-least-once). ``kinds`` limits the
        claim to those effect classes (by name, such as ``"PushRoot"``), ``limit`` to
        that many effects, in the order they fell due (then rollout, journal entry and
        position: across rollouts, so one rollout's backlog never holds up another's
        newer effects). Acknowledge what was
        delivered; :meth:`record_failure` gives an effect back at once.
        """
        return _outbox.lease(self, name, now, duration, kinds, limit)

    def acknowledge(self, effect_ids: Iterable[str], now: datetime) -> int:
        """Mark effects as performed; returns how many were pending. Acknowledging twice
        is harmless; an unknown id is refused and nothing is acknowledged."""
        return _outbox.acknowledge(self, effect_ids, now)

    def record_failure(
        self, effect_id: str, error: str, *, now: datetime | None = None
    ) -> StoredEffect:
        """Remember that delivering an effect failed at ``now`` (by default, when its
        latest lease started); its lease (if any) ends. It stays pending, and a drainer
        tries it again after a back-off (``retry_backoff``, doubled for each failure, at
        most ``retry_backoff_limit``: ``next_attempt_at``), unless this was its
        ``max_attempts``-th failure: then it is dead (``dead_at``), no longer retried,
        until :meth:`revive`. Returns the effect as it now stands; an effect that is
        not pending (acknowledged, superseded, dead) is left as it is."""
        return _outbox.record_failure(self, effect_id, error, now)

    def revive(self, effect_ids: Iterable[str]) -> int:
        """Make dead effects pending again, each with ``max_attempts`` more tries (its
        attempts and last error stay, for the record); returns how many were dead. An
        effect already pending is left as it is; an unknown id, or one acknowledged or
        superseded, is refused and nothing is revived."""
        return _outbox.revive(self, effect_ids)
