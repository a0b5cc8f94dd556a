"""PostgreSQL's own faults (``store.md``, Faults; issue 9, item 4): the server restarted
while nodes write, a node killed inside its transaction, a connection lost during COMMIT.

All against the real server the test run starts (``tools/pgserver.py``), never a mock.
A test that restarts the server restarts the session's shared one, so each restart
happens in a test of its own, which leaves the server up and answering
(:func:`_restart`). Node processes are forked with no connection open in the parent, and
open their own stores after the fork.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import socket
import threading
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest

import certflow as cf
from certflow.core.serialization import decode_command, encode
from certflow.store import (
    PostgresStore,
    StoredEffect,
    StoreError,
    StoreUnavailable,
    retrying,
    without_password,
)
from certflow.store._postgres import _FETCH
from tests.backends import PostgresBackend
from tests.core.strategies import T0, build, day, distributing
from tests.store.test_faults import (
    FORK,
    SKEW,
    _fork,
    _fork_safe,
    _join_all,
    _kill,
    _Log,
    _run_child,
    _server_pid,
    _server_view,
    _shared_now,
    _wait_gone,
)
from tools.pgserver import LocalPostgres, PostgresUnavailable

PASSWORD = "s3cret-never-shown"


@pytest.fixture
def pg(postgres_server: LocalPostgres, postgres_url: str) -> Iterator[PostgresBackend]:
    """A fresh database of its own on the session's server."""
    backend = PostgresBackend(postgres_server, postgres_url)
    try:
        yield backend
    finally:
        backend.close()


def _with_password(server: LocalPostgres, url: str) -> str:
    """``url``'s database, reached with a password in the URL (the server trusts every
    local connection; this is for checking that messages never show it)."""
    return server.url(urllib.parse.urlsplit(url).path.lstrip("/"), password=PASSWORD)


def _answering(server: LocalPostgres) -> bool:
    try:
        with psycopg.connect(server.url(), connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _restart(server: LocalPostgres) -> None:
    """Restart the session's server (fast shutdown: every client is disconnected), and
    whatever happens leave it up and answering for the tests that follow."""
    try:
        server.restart()
    finally:
        give_up = time.monotonic() + 60
        while not _answering(server):
            assert time.monotonic() < give_up, "the server did not come back after a restart"
            with suppress(PostgresUnavailable):
                server.restart()


def _until(condition: Callable[[], object], what: str, within: float = 60) -> None:
    """Wait for ``condition()`` (a guard against hanging, not a timing assertion)."""
    give_up = time.monotonic() + within
    while not condition():
        assert time.monotonic() < give_up, f"gave up waiting: {what}"
        time.sleep(0.005)


# --- the server restarted while nodes write ----------------------------------------------------

RESTART_NODES = 3
RESTART_SHARE = 1_500
# The patient nodes back off for up to 0.05 * (2**12 - 1) s, about 200 s in all: far longer
# than a restart. The impatient one does not retry at all: the restart is its failure.
PATIENCE = {0: 12, 1: 12, 2: 1}


def _restart_report(node: int, j: int) -> cf.DeviceInstalled | cf.DeviceFailed:
    device = f"d{node * RESTART_SHARE + j}"
    if j % 5 == 2:
        return cf.DeviceFailed(device, f"node {node} report {j}")
    return cf.DeviceInstalled(device)


def _restart_node(url: str, node: int, clock: Any, acked: Path, outcome: Path) -> None:
    """Report this node's share, one transaction each, through ``retrying``; write how it
    ended to ``outcome``. A certflow StoreError is a clean failure; anything else escapes
    to :func:`_run_child`, which records its traceback, and the test fails."""
    log = _Log(acked)
    unavailable = 0

    def report(command: cf.Command) -> list[StoredEffect]:
        nonlocal unavailable
        try:
            return store.apply("fleet", command, _shared_now(clock))
        except StoreUnavailable:
            unavailable += 1
            raise

    try:
        with PostgresStore(url, clock_skew=SKEW) as store:
            for j in range(RESTART_SHARE):
                command = _restart_report(node, j)
                retrying(
                    lambda command=command: report(command),  # type: ignore[misc]
                    attempts=PATIENCE[node],
                    first_delay=0.05,
                )
                log.note("A", command=encode(command))
    except StoreError as error:
        ended = {"outcome": "failed", "kind": type(error).__name__, "message": str(error)}
    else:
        ended = {"outcome": "finished"}
    outcome.write_text(json.dumps({**ended, "unavailable": unavailable}))


def test_a_server_restarted_while_nodes_write_loses_nothing_and_doubles_nothing(
    pg: PostgresBackend, postgres_server: LocalPostgres, tmp_path: Path
) -> None:
    """3 node processes report 1,500 devices each (one in five a failure), one
    transaction per report, when the server is restarted (``pg_ctl restart -m fast``)
    a third of the way through. Two retry with enough attempts to outlast the restart
    and finish; the third does not retry, and fails with a clear certflow error naming
    the URL without its password, or finishes if it was done; no node lets a traceback
    or a psycopg exception escape. No report is in the journal twice, and every one a
    node saw return is there. After every report is sent again (the nodes re-sending
    what they were not sure about): the counts are exact, every device is in the state
    and has the reason its report gave, and the journal replays to the stored rollout."""
    url = _with_password(postgres_server, pg.url)
    size = RESTART_NODES * RESTART_SHARE
    with pg.open() as store:
        store.create("fleet", distributing(size))
    clock = FORK.Value("q", 0)
    acked = [tmp_path / f"acked-{n}.log" for n in range(RESTART_NODES)]
    outcomes = [tmp_path / f"outcome-{n}.json" for n in range(RESTART_NODES)]
    errors = [tmp_path / f"error-{n}.txt" for n in range(RESTART_NODES)]
    _fork_safe(pg)
    nodes = [
        FORK.Process(
            target=_run_child,
            args=(errors[n], lambda n=n: _restart_node(url, n, clock, acked[n], outcomes[n])),
        )
        for n in range(RESTART_NODES)
    ]
    for node in nodes:
        node.start()
    try:
        _until(
            lambda: (
                pg.query("SELECT seq FROM rollouts")[0][0] > size // 3
                or not all(n.is_alive() for n in nodes)
            ),
            "the nodes to report a third of the fleet",
            within=120,
        )
        [(before,)] = pg.query("SELECT seq - 1 FROM rollouts")
        pg.close()
        _restart(postgres_server)
    finally:
        _join_all(nodes, errors)

    ended = [json.loads(o.read_text()) for o in outcomes]
    print(f"reports stored before the restart: {before} of {size}")
    for n, outcome in enumerate(ended):
        print(f"  node {n} (attempts {PATIENCE[n]}): {outcome}")
    assert before < size  # the restart came while the nodes were writing
    assert sum(o["unavailable"] for o in ended) >= 1  # and they met it
    for n, outcome in enumerate(ended):
        if outcome["outcome"] == "failed":
            assert PATIENCE[n] == 1, outcome  # the patient ones outlast the restart
            assert outcome["kind"] == "StoreUnavailable", outcome
            assert without_password(url) in outcome["message"], outcome
            assert PASSWORD not in outcome["message"], outcome
            assert "connect" in outcome["message"] or "connection" in outcome["message"]
        else:
            assert outcome["outcome"] == "finished", outcome

    reports = {
        n: [_restart_report(n, j) for j in range(RESTART_SHARE)] for n in range(RESTART_NODES)
    }
    with pg.open(create=False) as store:
        stored = Counter(c for e in store.journal("fleet") for c in e.commands)
    assert max(stored.values()) == 1  # a report retried across the restart went in once
    for n in range(RESTART_NODES):
        returned = [decode_command(line["command"]) for line in _read_lines(acked[n])]
        assert all(stored[c] == 1 for c in returned), n  # nothing acknowledged is missing
        if ended[n]["outcome"] == "finished":
            assert returned == reports[n]

    # The nodes send everything again (in batches), and nothing changes but the journal.
    with pg.open(create=False) as store:
        everything = [c for n in range(RESTART_NODES) for c in reports[n]]
        at = store.rollouts()[0].clock
        for start in range(0, size, 500):
            batch = everything[start : start + 500]
            retrying(lambda batch=batch: store.apply_all("fleet", batch, at))  # type: ignore[misc]
        failed = sum(isinstance(c, cf.DeviceFailed) for c in everything)
        info = store.rollouts()[0]
        assert info.devices == size
        assert info.counts[cf.DeviceState.FAILED] == failed
        assert info.counts[cf.DeviceState.INSTALLED] == size - failed
        assert info.counts[cf.DeviceState.PUSHED] == 0
        rows: dict[str, cf.DeviceRecord] = {}
        after = None
        while page := store.devices("fleet", after=after, limit=1_000):
            rows.update((row.device_id, row) for row in page)
            after = page[-1].device_id
        assert len(rows) == size
        for command in everything:
            row = rows[command.device_id]
            if isinstance(command, cf.DeviceFailed):
                assert row.state is cf.DeviceState.FAILED, row
                assert row.last_failure_reason == command.reason, row
            else:
                assert row.state is cf.DeviceState.INSTALLED, row
    pg.check_consistent("fleet")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]]


def test_after_a_restart_the_same_store_object_reconnects(
    pg: PostgresBackend, postgres_server: LocalPostgres
) -> None:
    """The server restarted between two commands: the next command on the same store
    object either works or is one StoreUnavailable that changed nothing, and the one
    after it works; through ``retrying`` the first command after a restart just works.
    Every command that returned is in the journal once."""
    with pg.open() as store:
        store.create("r", distributing(10))
        store.apply("r", cf.DeviceInstalled("d0"), day(1))
        pg.close()
        _restart(postgres_server)
        first = cf.DeviceInstalled("d1")
        applied: list[cf.Command] = [cf.DeviceInstalled("d0")]
        met: StoreUnavailable | None = None
        try:
            store.apply("r", first, day(1))
        except StoreUnavailable as error:
            met = error
        if met is None:
            applied.append(first)
        else:  # the store learnt of the restart here; it changed nothing
            print(f"the first command after the restart: {met}")
            assert "connection" in str(met)
            assert "nothing was changed" in str(met)
        store.apply("r", cf.DeviceInstalled("d2"), day(1))
        applied.append(cf.DeviceInstalled("d2"))

        _restart(postgres_server)
        retrying(lambda: store.apply("r", cf.DeviceFailed("d3", "unreachable"), day(1)))
        applied.append(cf.DeviceFailed("d3", "unreachable"))
        _restart(postgres_server)
        assert retrying(lambda: store.device("r", "d3")).state is cf.DeviceState.FAILED

        assert [c for e in store.journal("r") for c in e.commands] == applied
    pg.check_consistent("r")


# --- a node killed inside its transaction ------------------------------------------------------

HELD = 7  # a worker's mark: inside its transaction, its locks taken, waiting to be killed
OPERATIONS = ("report", "batch", "advance", "tick", "create", "lease")


def _held_worker(target: PostgresBackend, operation: str, shared: mmap.mmap, ready: int) -> None:
    """Open a store, start ``operation`` and stop inside its transaction, once it holds
    its locks: a command after writing its devices (at the journal entry it is about to
    write), a creation after inserting the rollout row, a lease after claiming and
    updating its outbox rows."""
    store = target.open()

    def hold() -> None:
        shared[0] = HELD
        time.sleep(120)

    if operation == "lease":
        claim = store._many

        def many(text: str, rows: Any) -> None:
            claim(text, rows)
            hold()

        store._many = many  # type: ignore[method-assign]
    else:
        note = store._committed

        def committed(marker: tuple[int, int, str]) -> None:
            note(marker)
            hold()

        store._committed = committed  # type: ignore[method-assign]
    os.write(ready, b"r" + _server_pid(store).to_bytes(4, "little"))
    if operation == "report":
        store.apply("r", cf.DeviceInstalled("d1"), day(2))
    elif operation == "batch":
        store.apply_all("r", [cf.DeviceInstalled(f"d{i}") for i in range(1, 40)], day(2))
    elif operation == "advance":
        store.advance("r", day(6.5))
    elif operation == "tick":
        store.tick(day(6.5))
    elif operation == "create":
        store.create("other", distributing(1_000))
    else:
        store.lease(now=day(2))


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_node_killed_inside_its_transaction_leaves_no_lock_behind(
    pg: PostgresBackend, operation: str, tmp_path: Path
) -> None:
    """A node process SIGKILLed while it holds its transaction's locks (the server shows
    its transaction open with a transaction id): the next writer, which needs the same
    locks, goes ahead at once, without retrying and within ``busy_timeout`` (else
    StoreBusy); what the killed node was doing left nothing; the invariants hold."""
    with pg.open() as store:
        store.create("r", build(40))
        store.apply("r", cf.DistributeRoot(), T0)  # one PushRoot effect to lease
        store.apply("r", cf.DeviceFailed("d0", "unreachable"), day(1))
    before = pg.tables()
    shared = mmap.mmap(-1, 1)
    errors = tmp_path / "error.txt"
    _fork_safe(pg)
    pid, server_pid = _fork(lambda fd: _held_worker(pg, operation, shared, fd), errors)
    _until(lambda: shared[0] == HELD or errors.exists(), "the worker to hold its locks")
    assert _server_view(pg, server_pid) == "server: transaction holding row locks"
    _kill(pid, errors)

    with pg.open(busy_timeout=5) as store:  # the next writer, at once
        if operation == "create":
            store.create("other", distributing(1_000))
        elif operation == "lease":
            assert store.acknowledge(["r:2:0"], day(2)) == 1  # the same outbox row
        else:
            store.apply("r", cf.DeviceFailed("d2", "unreachable"), day(7.5))
    _wait_gone(pg, server_pid)
    after = pg.tables()
    # The killed operation left nothing: only the next writer's change is there.
    if operation == "lease":
        assert pg.query("SELECT COUNT(*) FROM outbox WHERE leased_until IS NOT NULL") == [(0,)]
        assert after["journal"] == before["journal"]
    elif operation == "create":
        assert pg.query("SELECT name FROM rollouts ORDER BY id") == [("r",), ("other",)]
        pg.check_consistent("other")
    else:
        assert after["journal"][: len(before["journal"])] == before["journal"]
        [(kind, body)] = [(row[3], row[4]) for row in after["journal"][len(before["journal"]) :]]
        assert kind == "command"
        assert json.loads(body)["command"]["device_id"] == "d2"
    pg.check_consistent("r")
    shared.close()


# --- a connection lost during COMMIT -----------------------------------------------------------

HOLD_KEY = 4242


class _Call(threading.Thread):
    """``operation`` through ``retrying``, in a thread of its own (the store is used by
    that thread alone meanwhile); every StoreError an attempt met is kept."""

    def __init__(self, operation: Callable[[], list[StoredEffect]]) -> None:
        super().__init__(daemon=True)
        self.operation = operation
        self.met: list[StoreError] = []
        self.result: list[StoredEffect] | None = None
        self.error: BaseException | None = None
        self.trace = ""

    def run(self) -> None:
        def attempt() -> list[StoredEffect]:
            try:
                return self.operation()
            except StoreError as error:
                self.met.append(error)
                raise

        try:
            self.result = retrying(attempt)
        except BaseException as error:
            self.error = error
            self.trace = traceback.format_exc()


def _activity(pg: PostgresBackend, pid: int) -> tuple[Any, ...]:
    rows = pg.query(
        "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity WHERE pid = ?",
        pid,
    )
    return rows[0] if rows else ()


def _committing(pg: PostgresBackend, pid: int, wait_event: str) -> bool:
    found = _activity(pg, pid)
    return bool(found) and found[2] == wait_event and found[3] == "COMMIT"


def _a_certflow_connection_waits_for_a_lock(pg: PostgresBackend, besides: int) -> bool:
    return bool(
        pg.query(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'certflow' "
            "AND wait_event_type = 'Lock' AND pid <> ?",
            besides,
        )
    )


def _entries(pg: PostgresBackend, command: cf.Command) -> int:
    with pg.open(create=False) as store:
        return sum(e.commands == (command,) for e in store.journal("r"))


@contextmanager
def _a_standby_that_never_answers(pg: PostgresBackend, store: PostgresStore) -> Iterator[None]:
    """Synchronous replication to a standby that does not exist, for ``store``'s session
    alone (the server runs with ``synchronous_commit=off``; the session turns it on): its
    COMMIT writes the commit record and then waits, committed on the server but not yet
    visible, still holding its locks, until the setting is cleared, which releases it."""
    pg.query("ALTER SYSTEM SET synchronous_standby_names = 'certflow_test_nobody'")
    try:
        pg.query("SELECT pg_reload_conf()")
        store._conn.execute("SET synchronous_commit = on")
        _until(
            lambda: (
                store._conn.execute("SHOW synchronous_standby_names").fetchone()
                == ("certflow_test_nobody",)
            ),
            "the session to read the new setting",
        )
        # A session reads the setting at once, but COMMITs wait only once the server's
        # checkpointer has taken it in too: wait until a probe's COMMIT does wait.
        _until(lambda: _a_commit_waits_for_the_standby(pg), "commits to wait for the standby")
        yield
    finally:
        _release_standby_waits(pg)


def _a_commit_waits_for_the_standby(pg: PostgresBackend) -> bool:
    """Whether a probe's COMMIT (of a transaction that wrote: one that only took a
    transaction id commits without waiting) now waits for the standby; a waiting probe
    is cancelled, which commits it locally."""
    with psycopg.connect(pg.url, autocommit=True) as probe:
        probe.execute("SET synchronous_commit = on")
        pid = probe.info.backend_pid

        def commit() -> None:
            probe.execute("BEGIN")
            probe.execute("CREATE TEMP TABLE probe (x int)")  # it writes, so COMMIT waits
            probe.execute("COMMIT")

        committing = threading.Thread(target=commit, daemon=True)
        committing.start()
        waited = False
        give_up = time.monotonic() + 1
        while committing.is_alive() and time.monotonic() < give_up:
            if _committing(pg, pid, "SyncRep"):
                waited = True
                pg.query("SELECT pg_cancel_backend(?)", pid)
            time.sleep(0.005)
        committing.join(30)
        return waited


def _release_standby_waits(pg: PostgresBackend) -> None:
    pg.query("ALTER SYSTEM RESET synchronous_standby_names")
    pg.query("SELECT pg_reload_conf()")


@pytest.fixture
def stored(pg: PostgresBackend) -> None:
    with pg.open() as store:
        store.create("r", distributing(10))


@pytest.mark.usefixtures("stored")
def test_a_connection_lost_in_a_commit_that_did_not_commit_is_store_unavailable(
    pg: PostgresBackend,
) -> None:
    """The server ends the store's session while its COMMIT runs (held by a deferred
    trigger waiting for a lock the test holds) and before it commits: the command is
    StoreUnavailable, saying it was not applied, and ``retrying`` applies it once."""
    pg.query(
        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM set_config('lock_timeout', '0', true); "
        f"PERFORM pg_advisory_xact_lock({HOLD_KEY}); RETURN NULL; END $$"
    )
    pg.query(
        "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON journal "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()"
    )
    command = cf.DeviceInstalled("d1")
    with psycopg.connect(pg.url, autocommit=True) as holder, pg.open() as store:
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_KEY,))
        pid = _server_pid(store)
        call = _Call(lambda: store.apply("r", command, day(1)))
        call.start()
        _until(lambda: _committing(pg, pid, "advisory"), "the COMMIT to wait in its trigger")
        pg.query("SELECT pg_terminate_backend(?)", pid)
        _until(lambda: call.met or not call.is_alive(), "the attempt to fail")
        holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_KEY,))
        call.join(60)
    assert call.error is None, call.trace
    assert call.result == []
    [met] = call.met
    assert isinstance(met, StoreUnavailable)
    assert "while committing" in str(met)
    assert "not applied" in str(met)
    assert _entries(pg, command) == 1
    pg.check_consistent("r")


@pytest.mark.usefixtures("stored")
def test_a_connection_lost_in_a_commit_that_committed_returns_normally(
    pg: PostgresBackend,
) -> None:
    """The server ends the store's session while its COMMIT waits for a synchronous
    standby, after the commit record was written: the command committed, and the store,
    looking up its journal entry, returns normally; applied once."""
    command = cf.DeviceInstalled("d1")
    with pg.open() as store, _a_standby_that_never_answers(pg, store):
        pid = _server_pid(store)
        call = _Call(lambda: store.apply("r", command, day(1)))
        call.start()
        _until(lambda: _committing(pg, pid, "SyncRep"), "the COMMIT to wait for the standby")
        pg.query("SELECT pg_terminate_backend(?)", pid)
        call.join(60)
    assert call.error is None, call.trace
    assert call.result == []
    assert call.met == []
    assert _entries(pg, command) == 1
    pg.check_consistent("r")


def _cut(fileno: int) -> None:
    """Cut a connection (its socket's file descriptor) on the client's side, as a network
    fault would: the server is not told, and its session goes on with what it was doing."""
    cut = socket.socket(fileno=os.dup(fileno))
    try:
        cut.shutdown(socket.SHUT_RDWR)
    finally:
        cut.close()


@pytest.mark.usefixtures("stored")
def test_a_connection_cut_while_the_server_still_commits_waits_for_the_outcome(
    pg: PostgresBackend,
) -> None:
    """The connection is cut on the client's side while the COMMIT waits for a
    synchronous standby, so the server's session goes on, committed but not yet visible.
    The store must not conclude from a lookup made meanwhile that the command was not
    applied: it waits for the transaction to end (the standby wait is then released)
    and returns normally, and the command is applied once, not twice.

    This found a bug: the lookup did not wait, said "not applied, try again", and
    ``retrying`` applied the report a second time once the first committed."""
    command = cf.DeviceInstalled("d1")
    with pg.open() as store, _a_standby_that_never_answers(pg, store):
        pid, fileno = _server_pid(store), store._conn.fileno()
        call = _Call(lambda: store.apply("r", command, day(1)))
        call.start()
        _until(lambda: _committing(pg, pid, "SyncRep"), "the COMMIT to wait for the standby")
        _cut(fileno)
        _until(
            lambda: _a_certflow_connection_waits_for_a_lock(pg, pid) or not call.is_alive(),
            "the store to wait for the transaction, or to give up",
        )
        assert _committing(pg, pid, "SyncRep")  # the first transaction still runs
        _release_standby_waits(pg)
        call.join(60)
    assert call.error is None, call.trace
    assert call.met == []
    assert call.result == []
    assert _entries(pg, command) == 1
    pg.check_consistent("r")


@pytest.mark.usefixtures("stored")
def test_a_commit_whose_outcome_stays_unknown_is_a_store_error_not_retried(
    pg: PostgresBackend,
) -> None:
    """As above, but the server's session is still committing when ``in_doubt_wait``
    runs out: the error says the outcome is unknown (a StoreError that ``retrying`` does
    not retry, not StoreUnavailable), and the command, committed afterwards, is in the
    journal once."""
    command = cf.DeviceInstalled("d1")
    with pg.open(busy_timeout=0.2, in_doubt_wait=1) as store:
        with _a_standby_that_never_answers(pg, store):
            pid, fileno = _server_pid(store), store._conn.fileno()
            call = _Call(lambda: store.apply("r", command, day(1)))
            call.start()
            _until(lambda: _committing(pg, pid, "SyncRep"), "the COMMIT to wait")
            _cut(fileno)
            call.join(60)
            assert _committing(pg, pid, "SyncRep")  # still undecided when the store gave up
        _until(lambda: not _activity(pg, pid), "the released session to end")
    assert isinstance(call.error, StoreError), call.trace
    assert not isinstance(call.error, StoreUnavailable)
    assert "unknown" in str(call.error)
    assert call.met == [call.error]
    assert _entries(pg, command) == 1
    pg.check_consistent("r")


# --- found by review -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://certflow:SECRET#PW@127.0.0.1:1/db", "SECRET#PW"),  # libpq reads past #
        ("postgresql://certflow:a?b/SECRETPW@127.0.0.1:1/db", "SECRETPW"),
        ("postgresql://certflow@127.0.0.1:1/db?pass%77ord=SECRETPW", "SECRETPW"),
        ("postgresql://certflow:SECRETPW%zz@127.0.0.1:1/db", "SECRETPW"),  # libpq echoes it
        ("postgresql://u:SECRETPW@[::1/db", "SECRETPW"),
        ("postgresql+psycopg://u:SECRETPW@127.0.0.1:1/db", "SECRETPW"),
    ],
)
def test_no_spelling_of_a_password_is_ever_shown(url: str, secret: str) -> None:
    assert secret not in without_password(url)
    with pytest.raises((StoreError, cf.InvalidInput)) as refused:
        PostgresStore(url, connect_timeout=1)
    assert secret not in str(refused.value)
    assert "***" in str(refused.value)


def test_a_url_libpq_cannot_read_is_bad_input_not_a_server_to_wait_for() -> None:
    for url in ("postgresql://127.0.0.1:1/db?bogus=1", "postgresql://127.0.0.1:1/db?sslmode=bogus"):
        with pytest.raises(cf.InvalidInput, match="not a usable PostgreSQL URL"):
            PostgresStore(url)


def test_a_missing_database_is_refused_for_good_not_retried(postgres_server: LocalPostgres) -> None:
    with pytest.raises(StoreError, match="refused the connection") as refused:
        PostgresStore(postgres_server.url("no_such_database"))
    assert not isinstance(refused.value, StoreUnavailable)  # retrying would only wait


@pytest.mark.parametrize("seconds", [0.0004, 3e6, float("nan"), True])
def test_timeouts_outside_what_postgresql_can_keep_are_refused(
    postgres_url: str, seconds: float
) -> None:
    # lock_timeout = 0 would wait for ever; above 2**31 ms the server refuses the setting.
    with pytest.raises(cf.InvalidInput, match="busy_timeout must be a number of seconds"):
        PostgresStore(postgres_url, busy_timeout=seconds)


def test_writers_wait_for_each_other_even_where_the_database_defaults_to_repeatable_read(
    pg: PostgresBackend,
) -> None:
    # A database whose default isolation is REPEATABLE READ (a common DBA setting) must not
    # turn a writer that waited for the rollout's lock into a serialization failure.
    database = urllib.parse.urlsplit(pg.url).path.lstrip("/")
    pg.query(f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'repeatable read'")
    with PostgresStore(pg.url) as store:
        store.create("r", distributing(4))
    holder = psycopg.connect(pg.url, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("UPDATE certflow.rollouts SET counts = counts WHERE name = 'r'")
    outcome: list[object] = []

    def report() -> None:
        with PostgresStore(pg.url, busy_timeout=30) as store:
            try:
                outcome.append(store.apply("r", cf.DeviceInstalled("d1"), day(1)))
            except cf.CertflowError as error:
                outcome.append(error)

    writer = threading.Thread(target=report)
    writer.start()
    _until(lambda: _a_certflow_connection_waits_for_a_lock(pg, besides=0), "the writer waits")
    holder.execute("COMMIT")
    holder.close()
    writer.join(60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], list), outcome[0]


def test_rollouts_are_listed_in_the_same_order_as_on_sqlite(
    postgres_server: LocalPostgres, tmp_path: Path
) -> None:
    # A database whose collation sorts case-insensitively ('a' < 'B') must still list
    # rollouts and effects in SQLite's order (byte order), and lease as SQLite leases.
    name = f"icu_{os.getpid()}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        # A database of its own, with a natural-language collation.
        admin.execute(
            f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
            "ICU_LOCALE 'en' LOCALE 'C'"
        )
    names = ["ab", "B", "a-c", "a"]
    try:
        with (
            PostgresStore(postgres_server.url(name)) as pg_store,
            cf_sqlite(tmp_path) as lite,
        ):
            for store in (pg_store, lite):
                for n in names:
                    store.create(n, build(1))
                    store.apply(n, cf.DistributeRoot(), T0)  # one PushRoot each
            expected = [i.name for i in lite.rollouts()]
            assert expected == sorted(names)  # byte order: 'B' first
            assert [i.name for i in pg_store.rollouts()] == expected
            assert [e.rollout for e in pg_store.effects()] == expected
            # A lease goes by due instant, then by the rollout's creation (its id), not by
            # name: the four pushes fell due together, so both lease in creation order.
            assert [e.rollout for e in pg_store.lease(now=day(1))] == names
            assert [e.rollout for e in lite.lease(now=day(1))] == names
    finally:
        postgres_server.drop_database(name)


@contextmanager
def cf_sqlite(folder: Path) -> Iterator[Any]:
    from certflow.store import SqliteStore

    with SqliteStore(folder / "order.db") as store:
        yield store


def test_a_batch_reads_its_devices_through_their_index_even_without_statistics(
    pg: PostgresBackend,
) -> None:
    # A role that does not own the tables cannot ANALYZE them; the batch's read must not
    # need statistics to use the device-id index.
    with PostgresStore(pg.url) as store:
        store._created = lambda: None  # type: ignore[method-assign]
        store.create("r", distributing(100_000))
        [(analyzed,)] = store._q(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'devices'"
        ).fetchall()
        assert analyzed is None
        ids = [f"d{i}" for i in range(0, 100_000, 200)]
        read = store._fetch_devices(1, ids)
        assert len(read.fetchall()) == len(ids)
        plan = store._conn.execute("EXPLAIN " + _FETCH, (ids, 1)).fetchall()
        assert "devices_by_id" in str(plan), plan


def _stalled_node(url: str) -> None:
    """A node that takes its rollout's row lock and then stops (as one whose network is
    cut would: the server hears nothing more from it)."""
    with PostgresStore(url, stalled_timeout=1) as store, store._transaction(write=True):
        store._row("r", own=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(120)  # it is killed while stopped


def test_a_node_that_stalls_inside_a_transaction_holds_its_rollout_only_so_long(
    pg: PostgresBackend,
) -> None:
    with PostgresStore(pg.url) as store:
        store.create("r", distributing(4))
    _fork_safe(pg)
    node = FORK.Process(target=_stalled_node, args=(pg.url,))
    node.start()
    try:
        _until(
            lambda: pg.query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'certflow' "
                "AND state = 'idle in transaction'"
            ),
            "the node holds the lock",
        )
        # Its session's limit (stalled_timeout) ends the stalled node's transaction, and
        # the next writer gets the lock without waiting for TCP to notice anything. Had
        # the lock stayed, this would be StoreBusy after busy_timeout.
        with PostgresStore(pg.url, busy_timeout=30) as other:
            assert other._q("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
            other.apply("r", cf.DeviceInstalled("d1"), day(1))
            assert other.device("r", "d1").state is cf.DeviceState.INSTALLED
    finally:
        node.kill()
        node.join(30)


def test_every_spelling_of_a_database_opens_its_backend(postgres_url: str, tmp_path: Path) -> None:
    # store.md: a postgresql:// URL selects PostgreSQL wherever a database is named.
    from certflow.store import SqliteStore, open_store

    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        with open_store(url) as store:
            assert isinstance(store, PostgresStore)
    for path in (tmp_path / "a.db", f"sqlite:///{tmp_path / 'b.db'}"):
        with open_store(path) as store:
            assert isinstance(store, SqliteStore)
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["a.db", "b.db"]
    with pytest.raises(cf.InvalidInput, match="unknown URL scheme") as refused:
        open_store(f"mysql://u:{PASSWORD}@h/db")
    assert PASSWORD not in str(refused.value)


def test_a_store_call_inside_an_open_transaction_is_refused_not_nested(
    pg: PostgresBackend,
) -> None:
    # PostgreSQL only warns about a second BEGIN, and the inner call's ROLLBACK (a
    # preview's) would silently end the outer transaction: refused, as SQLite's driver
    # refuses a nested BEGIN by itself.
    with pg.open() as store:
        store._begin(True)
        try:
            with pytest.raises(StoreError, match="a transaction is already open"):
                store.rollouts()
        finally:
            store._rollback()
        assert store.rollouts() == []
