"""Benchmark of the store at fleet scale, SQLite and PostgreSQL, with a naive store and
``eventsourcing``.

Run ``python benchmarks/bench_store.py`` (``make bench``): 10,000 and 1,000,000 devices
in one run, on SQLite and then on PostgreSQL at each size. ``--quick`` is a smoke run
(10,000 only); ``--sizes 2000,50000`` chooses the fleets; ``--no-compare`` skips the
comparisons; ``--no-postgresql`` the PostgreSQL rows, which are also skipped, with a note
that says why, where no PostgreSQL server can start (no server programs, no psycopg).
Prints one table: size, implementation (``certflow-sqlite``, ``certflow-postgresql``,
then a ``ratio`` row: PostgreSQL's figure / SQLite's), metric, measured value, target
(the SQLite store's issue's, stated for 1,000,000 devices, held to both backends), and
whether the target is met. ``docs/benchmarks.md`` ("The SQLite store", "PostgreSQL")
holds a full run.

Method, in short (``benchmarks/bench_rollout.py`` is the in-memory counterpart):

* inputs (device ids, command objects, the random draws) are built before a clock
  starts; every database is fresh: a file in a temporary folder, or a database on a
  PostgreSQL server of its own (``tools/pgserver.py``) whose data folder is in that same
  temporary folder, so on the same disk;
* the store runs as a host runs it, every call its own transaction: SQLite with
  ``synchronous=NORMAL`` (the default) in WAL mode; PostgreSQL with ``fsync=on`` and
  ``synchronous_commit=off`` (``POSTGRES_PROMISE`` says what each promises), client and
  server on this machine over TCP;
* at each size, on each backend, in order: create and persist (``new_rollout`` +
  ``create``), distribute (``DistributeRoot``, fleet-wide), single device reports (3
  rounds of up to 1,000 reports on distinct random devices, each ``execute`` its own
  transaction; the round with the lowest median is reported with its p99), one batch of
  a tenth of the fleet (``execute_many``, random order, one report in ten a failure),
  untimed reports until a fifth of the fleet is installed, the summary (``overview``,
  median of 21), a page of 50 failed devices (first page and a deep keyset page, median
  of 21 each), a cold process (a fresh ``python -c`` that imports certflow, opens the
  store and executes one report, timed end to end from here, and its in-process part as
  it measures it), the tick across day 21 (four fifths of the fleet not installed: the
  forced import), and the database size (SQLite: file + ``-wal`` after a checkpoint;
  PostgreSQL: the tables with their indexes and TOAST) once distributing and once at the
  end; both backends get the same inputs (the same function, ``bench_certflow``, runs
  them);
* then, at each size on each backend, a report file naming every device (issue 18,
  item 7: a million lines on a million-device SQLite rollout in at most 15 s): the
  rollout made anew and distributing, ``certflow rollout report bench --file`` run in a
  process of its own and timed end to end (with its CPU time and the load average at
  its start), then on another such database the ``apply_all`` that command makes, alone
  (``--no-report-file`` skips both);
* the comparisons run at the smallest size, on fresh SQLite databases, with the same
  1,000 single reports (one in ten a failure) for every implementation, interleaved in
  chunks of 50 in a rotating order (so that a change of machine speed hits all alike):
  certflow
  (``synchronous`` NORMAL and FULL), a naive store (one SQLite row holding the whole
  ``certflow.dumps`` document: per report read it, ``loads``, ``apply``, ``dumps``,
  write it back, in one transaction) and ``eventsourcing``'s SQLite recorder (one
  aggregate per device, ``repository.get`` + the event + ``save``). At every larger
  size the naive store is timed on 3 reports, to show that its cost grows with the fleet.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

# Run as a script, sys.path[0] is benchmarks/ (hence `from common import`); the repository
# root goes next, for tools/pgserver.py (the tests' throwaway PostgreSQL server).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import attrs
from common import (
    DAY,
    T0,
    Row,
    make_ids,
    pending_rollout,
    percentile,
    reference_ms,
    render,
    seconds,
    time_each,
)

import certflow
from certflow import (
    Command,
    DeviceFailed,
    DeviceInstalled,
    DeviceState,
    DistributeRoot,
    ReenrollmentRequired,
    Rollout,
    RolloutState,
)
from certflow.store import SqliteStore, open_store
from tools.pgserver import LocalPostgres, PostgresUnavailable

NOW = T0 + timedelta(hours=1)  # every report arrives in the first hour
DAY21 = T0 + 21 * DAY + timedelta(seconds=1)
ROUNDS = 3  # rounds of single reports; the round with the lowest median is reported
SINGLES = 1_000  # single reports per round (fewer on small fleets)
COMPARED = 1_000  # the single reports of the comparisons
CHUNK = 50  # the comparisons take turns every CHUNK reports
NAIVE_AT_SCALE = 3  # naive-store reports at the larger sizes
BATCH = 100_000  # the reports of the batch row (a tenth of smaller fleets)
REPEATS = 21  # calls of the fast reads; the median is reported
NOISE = 1.5  # "the same as at 10k, within noise": a median at most this many times as large
REPO = Path(__file__).resolve().parent.parent
# PostgreSQL with a commit's promise close to SQLite's default (POSTGRES_PROMISE); the
# rest of its settings are PostgreSQL's defaults (LocalPostgres switches fsync and
# full_page_writes off for the tests: switched back on here).
POSTGRES_SETTINGS = {"fsync": "on", "synchronous_commit": "off", "full_page_writes": "on"}
POSTGRES_SHOWN = (
    *POSTGRES_SETTINGS,
    "wal_writer_delay",
    "shared_buffers",
    "work_mem",
    "max_wal_size",
    "checkpoint_timeout",
)
POSTGRES_PROMISE = (
    "What a commit promises. PostgreSQL with fsync=on, synchronous_commit=off: COMMIT "
    "returns before its WAL is flushed; a crash of the client (the node) loses nothing "
    "committed; a crash of the server, the OS or the power can lose the commits of the last "
    "3 x wal_writer_delay, and never leaves the database inconsistent. SQLite in WAL with "
    "synchronous=NORMAL: a commit is written to the WAL file (not fsynced) before it returns, "
    "so it survives a crash of the process (the store is inside it), may be lost to an OS "
    "crash or power loss, which never leave the database inconsistent either."
)

# The cold process: imports certflow, opens the store (a file path or a URL), executes one
# report. It measures its own part from its first statement and prints it; the caller
# times it end to end.
COLD = """
import time
start = time.perf_counter()
import sys
from datetime import datetime
import certflow
from certflow.store import open_store
imported = time.perf_counter()
store = open_store(sys.argv[1], create=False)
now = datetime.fromisoformat(sys.argv[4])
store.apply(sys.argv[2], certflow.DeviceInstalled(sys.argv[3]), now)
store.close()
done = time.perf_counter()
print(f"{done - start:.6f} {done - imported:.6f}")
"""


def _ms(nanoseconds: float) -> str:
    return f"{nanoseconds / 1e6:.3f} ms"


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


Report = DeviceInstalled | DeviceFailed


def report(device_id: str, position: int) -> Report:
    """The ``position``-th report of a list: one in ten a failure."""
    if position % 10 == 9:
        return DeviceFailed(device_id, "the keychain refused the root")
    return DeviceInstalled(device_id)


def db_size(path: Path) -> int:
    """The database file plus its ``-wal``, after a checkpoint that empties the log."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def pg_size(url: str) -> int:
    """The certflow schema's tables with their indexes and TOAST (dead row versions
    included: no VACUUM first)."""
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'certflow' AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0]) if row else 0


def file_system(path: Path) -> str:
    """The type and mount point of the file system that holds ``path`` (Linux), such as
    ``ext4 at /``, to show that the databases are on a disk and not in memory."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return "file system unknown"
    path = path.resolve()
    found = ("", "unknown")
    for line in mounts:
        fields = line.split()
        mount, kind = Path(fields[1]), fields[2]
        if (mount == path or mount in path.parents) and len(fields[1]) > len(found[0]):
            found = (fields[1], kind)
    return f"{found[1]} at {found[0]}"


def settle() -> None:
    gc.collect()


# --- certflow at one size, on either backend ----------------------------------------------


@attrs.frozen
class Backend:
    """Where the certflow rows keep their databases: a fresh database per fleet size,
    opened with ``open_store`` (a file path is SQLite, a ``postgresql://`` URL PostgreSQL)."""

    impl: str  # the table's implementation column
    fresh: Callable[[str], str]  # a new database, named by a tag: its path or URL
    size: Callable[[str], int]  # a database's size in bytes
    size_how: str  # what size() counts


def sqlite_backend(folder: Path) -> Backend:
    return Backend(
        "certflow-sqlite",
        lambda tag: str(folder / f"certflow-{tag}.db"),
        lambda path: db_size(Path(path)),
        "file + -wal after a checkpoint",
    )


def postgres_backend(
    servers: contextlib.ExitStack, folder: Path
) -> tuple[Backend, list[str]] | str:
    """The PostgreSQL backend on a server of its own whose cluster lives in ``folder``
    (stopped and removed when ``servers`` closes) and lines that describe it; or, where
    no server can start, why."""
    # As root, the server runs as the postgres user, which must pass through this folder
    # (tempfile makes it 0700): search permission only, still nobody else can list it.
    folder.chmod(0o711)
    server = LocalPostgres(parent=folder, settings=POSTGRES_SETTINGS)
    try:
        servers.enter_context(server)
    except PostgresUnavailable as error:
        return str(error)
    import psycopg

    with psycopg.connect(server.url()) as db:
        version = db.execute("SHOW server_version").fetchone()
        shown = db.execute(
            "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
            [list(POSTGRES_SHOWN)],
        ).fetchall()
    backend = Backend(
        "certflow-postgresql",
        lambda tag: server.create_database(f"bench_{tag}"),
        pg_size,
        "tables with their indexes and TOAST; the WAL not counted",
    )
    return backend, [
        f"PostgreSQL {version[0] if version else '?'}: a server of its own "
        f"(tools/pgserver.py), client and server on this machine over TCP on 127.0.0.1; its "
        f"data folder {server.folder} is inside the SQLite files' folder, on the same disk",
        "PostgreSQL settings: "
        + ", ".join(f"{name}={value}" for name, value in shown)
        + "; the rest are PostgreSQL's defaults",
        POSTGRES_PROMISE,
    ]


def bench_certflow(n: int, backend: Backend, baseline: dict[str, float]) -> list[Row]:
    """Every certflow row for a fleet of ``n`` devices on ``backend``."""
    rows: list[Row] = []
    impl = backend.impl
    target = backend.fresh(str(n))
    ids = make_ids(n)
    rng = random.Random(n)
    order = rng.sample(range(n), n)  # the order in which devices report
    per_round = min(SINGLES, max(1, n // 40))
    singles = [
        [report(ids[i], k) for k, i in enumerate(order[r * per_round : (r + 1) * per_round])]
        for r in range(ROUNDS)
    ]
    taken = ROUNDS * per_round
    batch_size = min(BATCH, n // 10)
    batch = [report(ids[i], k) for k, i in enumerate(order[taken : taken + batch_size])]
    taken += batch_size
    installed = sum(isinstance(c, DeviceInstalled) for round_ in singles for c in round_)
    installed += sum(isinstance(c, DeviceInstalled) for c in batch)
    fill = max(0, n // 5 - installed - 1)  # the cold process installs one more
    filler = [DeviceInstalled(ids[i]) for i in order[taken : taken + fill]]
    taken += fill
    cold_device = ids[order[taken]]
    del order

    # Create and persist.
    settle()
    start = time.perf_counter()
    rollout = pending_rollout(ids)
    built = time.perf_counter() - start
    store = open_store(target)
    store.create("bench", rollout)
    elapsed = time.perf_counter() - start
    del rollout
    rows.append(
        Row(
            n,
            impl,
            "create and persist (new_rollout + create)",
            seconds(elapsed),
            "≤ 10 s",
            elapsed <= 10,
            note=f"of which new_rollout in memory: {seconds(built)}",
            amount=elapsed,
        )
    )

    # Distribute.
    settle()
    start = time.perf_counter()
    store.apply("bench", DistributeRoot(), T0)
    elapsed = time.perf_counter() - start
    rows.append(
        Row(
            n,
            impl,
            "distribute (fleet-wide)",
            seconds(elapsed),
            "≤ 10 s",
            elapsed <= 10,
            amount=elapsed,
        )
    )
    size = backend.size(target)
    rows.append(
        Row(
            n,
            impl,
            "database size per device, distributing",
            f"{size / n:.0f} B",
            note=f"{size / 1e6:.1f} MB ({backend.size_how}): device rows and their indexes, "
            "the journal's creation document, the outbox's PushRoot",
            amount=size,
        )
    )

    # Single reports, each its own transaction.
    rounds = []
    for commands in singles:
        settle()
        rounds.append(time_each(lambda c: store.apply("bench", c, NOW), commands))
    samples = min(rounds, key=statistics.median)
    median = statistics.median(samples)
    rows.append(
        Row(
            n,
            impl,
            f"one report in its own transaction: median ({per_round:,} reports, best of {ROUNDS})",
            _ms(median),
            "≤ 1 ms",
            median <= 1e6,
            note="medians of all rounds: " + ", ".join(_ms(statistics.median(r)) for r in rounds),
            amount=median / 1e9,
        )
    )
    p99 = percentile(samples, 0.99)
    rows.append(
        Row(
            n,
            impl,
            "one report in its own transaction: p99 (same round)",
            _ms(p99),
            amount=p99 / 1e9,
        )
    )
    if "single" not in baseline:
        baseline["single"] = median
        baseline["size"] = n
    else:
        ratio = median / baseline["single"]
        rows.append(
            Row(
                n,
                impl,
                f"  median against {int(baseline['size']):,} devices",
                f"{ratio:.2f}x",
                f"≤ {NOISE}x (noise)",
                ratio <= NOISE,
            )
        )

    # One batch: a tenth of the fleet, at most 100,000 reports.
    settle()
    start = time.perf_counter()
    store.apply_all("bench", batch, NOW)
    elapsed = time.perf_counter() - start
    rows.append(
        Row(
            n,
            impl,
            f"{batch_size:,} reports in one batch (execute_many)",
            seconds(elapsed),
            "≤ 5 s" if batch_size == BATCH else "-",
            elapsed <= 5 if batch_size == BATCH else None,
            note=f"{elapsed / max(1, batch_size) * 1e6:.1f} µs a report",
            amount=elapsed,
        )
    )
    store.apply_all("bench", filler, NOW)
    del batch, filler, singles, rounds, samples

    # The summary and a page of failed devices.
    settle()
    samples = time_each(lambda _: store.overview("bench", NOW), range(REPEATS))
    median = statistics.median(samples)
    rows.append(
        Row(
            n,
            impl,
            "summary (overview), median",
            _ms(median),
            "≤ 100 ms",
            median <= 1e8,
            amount=median / 1e9,
        )
    )
    failed = [DeviceState.FAILED]
    count = store.overview("bench", NOW).counts[DeviceState.FAILED]
    deep = None
    position = 0
    if count > 100:
        page = store.devices("bench", failed, limit=count // 2)
        deep = page[-1].device_id
        position = len(page)
        del page
    for label, after in (("first page", None), ("deep keyset page", deep)):
        if label != "first page" and after is None:
            continue
        settle()
        samples = time_each(
            lambda a: store.devices("bench", failed, after=a, limit=50), [after] * REPEATS
        )
        page_size = len(store.devices("bench", failed, after=after, limit=50))
        assert page_size == min(50, count - (0 if after is None else position))
        median = statistics.median(samples)
        where = "" if after is None else f" (after the {position:,}th of {count:,})"
        rows.append(
            Row(
                n,
                impl,
                f"a page of 50 failed devices, {label}{where}, median",
                _ms(median),
                "≤ 20 ms",
                median <= 2e7,
                amount=median / 1e9,
            )
        )

    # A cold process: open the store and serve the first report.
    store.close()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD, target, "bench", cold_device, NOW.isoformat()],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    end_to_end = time.perf_counter() - start
    inside, opened = (float(x) for x in done.stdout.split())
    rows.append(
        Row(
            n,
            impl,
            "cold process: open and serve the first report, end to end",
            seconds(end_to_end),
            "≤ 1 s",
            end_to_end <= 1,
            note=(
                f"in-process {seconds(inside)} (imports included), of which open + report "
                f"{seconds(opened)} (psycopg is imported on opening PostgreSQL); the OS page "
                "cache is warm"
            ),
            amount=end_to_end,
        )
    )
    store = open_store(target)
    assert store.device("bench", cold_device).state is DeviceState.INSTALLED

    # The tick across day 21: the forced import.
    before = store.overview("bench", NOW).counts
    stragglers = n - before.get(DeviceState.INSTALLED, 0)
    settle()
    start = time.perf_counter()
    effects = store.tick(DAY21)
    elapsed = time.perf_counter() - start
    info = store.rollouts()[0]
    assert info.state is RolloutState.FORCED, info
    reenrol = sum(
        len(e.effect.device_ids) for e in effects if isinstance(e.effect, ReenrollmentRequired)
    )
    rows.append(
        Row(
            n,
            impl,
            f"tick across day 21: forced import ({stragglers:,} not installed)",
            seconds(elapsed),
            "≤ 15 s",
            elapsed <= 15,
            note=f"{len(effects)} effects; ReenrollmentRequired lists {reenrol:,} devices",
            amount=elapsed,
        )
    )
    store.close()

    size = backend.size(target)
    rows.append(
        Row(
            n,
            impl,
            "database size per device, after the whole run above",
            f"{size / n:.0f} B",
            note=f"{size / 1e6:.1f} MB ({backend.size_how}): the journal holds every report "
            "of the run, the outbox the ReenrollmentRequired of the stragglers",
            amount=size,
        )
    )
    return rows


# The command line of a report file, as an operator runs it (issue 18, item 7).
REPORT_FILE = "from certflow.cli import main; main()"


def _distributing(backend: Backend, tag: str, ids: list[str]) -> str:
    """A fresh database holding rollout ``bench`` of ``ids``, distributing since T0."""
    target = backend.fresh(tag)
    with open_store(target) as store:
        store.create("bench", pending_rollout(ids))
        store.apply("bench", DistributeRoot(), T0)
    return target


def bench_report_file(n: int, backend: Backend, folder: Path) -> list[Row]:
    """A report file naming every device of a distributing ``n``-device rollout (each
    line ``ID,installed``, in the fleet's order), applied by ``certflow rollout report
    --file`` in a process of its own, timed end to end (its CPU time too); then, on a
    second such database, the store's part alone: the ``apply_all`` the command makes
    (``refused="list"``), wall and CPU time of this process."""
    ids = make_ids(n)
    path = folder / f"reports-{n}.csv"
    path.write_text("".join(f"{d},installed\n" for d in ids))
    target = _distributing(backend, f"{n}_file", ids)
    settle()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", REPORT_FILE, "rollout", "report", "bench", "--file", str(path),
         "--db", target, "--now", NOW.isoformat(), "--json"],
        capture_output=True, check=True, cwd=REPO,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    path.unlink()
    with open_store(target) as store:
        installed = store.overview("bench", NOW).counts[DeviceState.INSTALLED]
    assert installed == n, installed
    local = backend.impl == "certflow-sqlite"  # the target is SQLite's
    rows = [
        Row(
            n,
            impl := backend.impl,
            f"report --file of every device ({n:,} lines), a process end to end",
            seconds(elapsed),
            "≤ 15 s" if local else "-",
            elapsed <= 15 if local else None,
            note=f"its CPU time {seconds(cpu)}; load average {load:.2f} at its start",
            amount=elapsed,
        )
    ]
    target = _distributing(backend, f"{n}_batch", ids)
    batch: list[Command] = [DeviceInstalled(d) for d in ids]
    with open_store(target) as store:
        settle()
        started, cpu_start = time.perf_counter(), time.process_time()
        store.apply_all("bench", batch, NOW, refused="list")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_start
    rows.append(
        Row(
            n,
            impl,
            f"  of which the store's apply_all of the {n:,} reports",
            seconds(elapsed),
            note=f"CPU time of this process {seconds(cpu)}",
            amount=elapsed,
        )
    )
    return rows


def side_by_side(rows: list[Row], others: list[Row]) -> list[Row]:
    """``rows``, each followed by the row of ``others`` with the same metric (if any) and
    the ratio of their amounts (``others`` / ``rows``); ``others``' unmatched rows last."""
    matches = {row.metric: row for row in others}
    merged: list[Row] = []
    for row in rows:
        merged.append(row)
        other = matches.pop(row.metric, None)
        if other is None:
            continue
        merged.append(other)
        if row.amount and other.amount is not None:
            ratio = other.amount / row.amount
            merged.append(
                Row(
                    row.size,
                    "ratio",
                    f"  {other.impl.removeprefix('certflow-')} / "
                    f"{row.impl.removeprefix('certflow-')}",
                    f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x",
                )
            )
    return merged + list(matches.values())


# --- the comparisons -----------------------------------------------------------------------


@attrs.frozen
class Contender:
    """One implementation of "execute a single report": ``one(report)``, then ``close()``."""

    name: str
    label: str
    one: Callable[[Report], object]
    close: Callable[[], object]
    note: str = ""


def compared_reports(ids: Sequence[str]) -> list[Report]:
    """The same single reports for every implementation: distinct random devices."""
    chosen = random.Random(len(ids) + 1).sample(range(len(ids)), min(COMPARED, len(ids)))
    return [report(ids[i], k) for k, i in enumerate(chosen)]


def certflow_contender(path: Path, ids: list[str], sync: str) -> Contender:
    store = SqliteStore(path, synchronous="FULL" if sync == "FULL" else "NORMAL")
    store.create("bench", pending_rollout(ids))
    store.apply("bench", DistributeRoot(), T0)
    label = "certflow (synchronous " + ("FULL)" if sync == "FULL" else "NORMAL, the default)")
    name = "certflow" + (" FULL" if sync == "FULL" else "")
    return Contender(name, label, lambda c: store.apply("bench", c, NOW), store.close)


class NaiveStore:
    """The whole ``certflow.dumps`` document in one SQLite row, rewritten per report."""

    def __init__(self, path: Path, rollout: Rollout) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")  # as certflow's default
        self.db.execute("CREATE TABLE rollouts (name TEXT PRIMARY KEY, document TEXT NOT NULL)")
        self.db.execute("INSERT INTO rollouts VALUES ('bench', ?)", (certflow.dumps(rollout),))

    def execute(self, command: Command, now: datetime) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            (text,) = db.execute("SELECT document FROM rollouts WHERE name = 'bench'").fetchone()
            rollout = certflow.apply(certflow.loads(text), command, now).rollout
            db.execute(
                "UPDATE rollouts SET document = ? WHERE name = 'bench'", (certflow.dumps(rollout),)
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def naive_contender(path: Path, ids: list[str]) -> Contender:
    rollout, _ = certflow.apply(pending_rollout(ids), DistributeRoot(), T0)
    naive = NaiveStore(path, rollout)
    return Contender(
        "naive store",
        "naive store (whole document per report, NORMAL)",
        lambda c: naive.execute(c, NOW),
        naive.close,
    )


def eventsourcing_contender(path: Path, ids: list[str]) -> Contender | None:
    """``eventsourcing``'s SQLite recorder, one aggregate per device, as a user of that
    library writes it (None when it is not installed)."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        return None

    class Device(Aggregate):
        """One device: its events are Registered, Pushed, Installed and Failed."""

        @event("Registered")
        def __init__(self, device_id: str) -> None:
            self.device_id = device_id
            self.state = "pending"
            self.attempts = 0
            self.reason: str | None = None

        @event("Pushed")
        def push(self) -> None:
            self.state = "pushed"
            self.attempts += 1

        @event("Installed")
        def install(self) -> None:
            self.state = "installed"

        @event("Failed")
        def fail(self, reason: str) -> None:
            self.state = "failed"
            self.reason = reason

    class Fleet(Application[UUID]):
        """The application, with the defaults of eventsourcing's SQLite module."""

    app = Fleet(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    start = time.perf_counter()
    devices = []
    for device_id in ids:
        device = Device(device_id)
        device.push()
        devices.append(device)
    app.save(*devices)
    created = time.perf_counter() - start
    uuid_of = {d.device_id: d.id for d in devices}
    del devices

    def one(command: Report) -> None:
        device: Device = app.repository.get(uuid_of[command.device_id])
        if isinstance(command, DeviceFailed):
            device.fail(command.reason)
        else:
            device.install()
        app.save(device)

    with sqlite3.connect(path) as db:
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            db.execute("PRAGMA synchronous").fetchone()[0]
        ]
    db.close()
    note = (
        f"creating and pushing {len(ids):,} aggregates (one save): {seconds(created)}; SQLite "
        f"synchronous={sync} (the library leaves SQLite's default)"
    )
    return Contender(
        "eventsourcing", "eventsourcing SQLite, aggregate per device", one, app.close, note
    )


def bench_comparisons(n: int, folder: Path, naive_sizes: Sequence[int]) -> list[Row]:
    """The comparisons at ``n`` devices, then the naive store alone at ``naive_sizes``.

    The contenders take the same reports in chunks of ``CHUNK``, interleaved (and in a
    rotating order), so that a change of machine speed during the run hits them alike.
    """
    rows: list[Row] = []
    ids = make_ids(n)
    reports = compared_reports(ids)
    k = len(reports)
    contenders = [
        certflow_contender(folder / "cmp-certflow.db", ids, "NORMAL"),
        certflow_contender(folder / "cmp-certflow-full.db", ids, "FULL"),
        naive_contender(folder / "cmp-naive.db", ids),
    ]
    found = eventsourcing_contender(folder / "cmp-eventsourcing.db", ids)
    if found is not None:
        contenders.append(found)
    timed: dict[str, list[int]] = {c.name: [] for c in contenders}
    settle()
    for number, start in enumerate(range(0, k, CHUNK)):
        chunk = reports[start : start + CHUNK]
        turn = number % len(contenders)
        for contender in contenders[turn:] + contenders[:turn]:
            timed[contender.name] += time_each(contender.one, chunk)
    for contender in contenders:
        contender.close()
        samples = timed[contender.name]
        rows.append(
            Row(
                n,
                contender.name,
                f"{contender.label}: {k:,} single reports, median / p99",
                f"{_ms(statistics.median(samples))} / {_ms(percentile(samples, 0.99))}",
                note="; ".join(
                    x for x in (f"total {seconds(sum(samples) / 1e9)}", contender.note) if x
                ),
            )
        )
    for name, against in (
        ("naive store", "certflow"),
        ("eventsourcing", "certflow"),
        ("eventsourcing", "certflow FULL"),
    ):
        if name not in timed:
            continue
        ratio = statistics.median(timed[name]) / statistics.median(timed[against])
        totals = sum(timed[name]) / sum(timed[against])
        rows.append(
            Row(
                n,
                "ratio",
                f"{name} / {against}, same {k:,} reports",
                f"{ratio:.1f}x (median)",
                note=f"{totals:.1f}x in total time",
            )
        )
    if "eventsourcing" not in timed:
        rows.append(Row(n, "eventsourcing", "not installed: pip install '.[bench]'", "-"))
    for size in naive_sizes:
        ids = make_ids(size)
        naive = naive_contender(folder / f"naive-{size}.db", ids)
        settle()
        samples = time_each(naive.one, compared_reports(ids)[:NAIVE_AT_SCALE])
        naive.close()
        median = statistics.median(samples)
        rows.append(
            Row(
                size,
                "naive store",
                f"one report, median of {len(samples)}",
                seconds(median / 1e9),
                note=f"{median / statistics.median(timed['naive store']):.0f}x its time at {n:,}",
            )
        )
        print(f"... naive store at {size:,} done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run every size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", default=None, help="comma-separated fleet sizes (default 10000,1000000)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 devices only")
    parser.add_argument("--no-compare", action="store_true", help="skip the comparisons")
    parser.add_argument(
        "--no-postgresql", action="store_true", help="skip the PostgreSQL rows (SQLite only)"
    )
    parser.add_argument(
        "--no-report-file",
        action="store_true",
        help="skip the report file of every device (two more databases of each size)",
    )
    parser.add_argument(
        "--dir",
        default=None,
        help="where to make the temporary folder of the databases and of the PostgreSQL "
        "server (default: $TMPDIR)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = [
            int(s) for s in (args.sizes or ("10000" if args.quick else "10000,1000000")).split(",")
        ]
    except ValueError:
        parser.error("--sizes must be comma-separated whole numbers")
    if any(n < 100 for n in sizes):
        parser.error("--sizes must be at least 100")
    sizes.sort()

    print(
        f"certflow store benchmark - {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPU(s), {platform.machine()}"
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Load average at start (1, 5, 15 min): {load}; speed reference: a 1,000,000-iteration "
        f"`total += i` loop takes {reference_ms():.0f} ms"
    )
    print(
        "Targets are the SQLite store's issue's, stated at 1,000,000 devices, and held to "
        f"PostgreSQL too; single reports: best of {ROUNDS} rounds (lowest median); fast reads: "
        f"median of {REPEATS}; ratio rows: PostgreSQL's figure / SQLite's, same run."
    )
    with tempfile.TemporaryDirectory(prefix="certflow-bench-", dir=args.dir) as name:
        folder = Path(name)
        print(f"Databases in {folder} ({file_system(folder)}; removed at the end)")
        rows: list[Row] = []
        with contextlib.ExitStack() as servers:  # the PostgreSQL server, if it starts
            backends = [sqlite_backend(folder)]
            found = "--no-postgresql" if args.no_postgresql else postgres_backend(servers, folder)
            if isinstance(found, str):
                print(f"PostgreSQL rows skipped: {found}")
            else:
                backends.append(found[0])
                print("\n".join(found[1]))
            print()
            baselines: dict[str, dict[str, float]] = {b.impl: {} for b in backends}
            for n in sizes:
                measured = []
                for backend in backends:
                    measured.append(bench_certflow(n, backend, baselines[backend.impl]))
                    if not args.no_report_file:
                        measured[-1] += bench_report_file(n, backend, folder)
                    print(f"... {backend.impl} {n:,} done", file=sys.stderr, flush=True)
                rows += side_by_side(measured[0], measured[1] if len(measured) > 1 else [])
                gc.collect()
                rows.append(
                    Row(
                        n,
                        "benchmark",
                        "peak RSS of the benchmark process so far",
                        f"{peak_rss_mb():.0f} MB",
                        note="the client only: not the PostgreSQL server's processes",
                    )
                )
        if not args.no_compare:
            rows += bench_comparisons(sizes[0], folder, sizes[1:])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(render(rows))
    print()
    print(f"Load average at the end (1, 5, 15 min): {load}; peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
