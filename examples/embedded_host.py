"""A host product that embeds certflow: a scheduler, worker processes and an effect drainer.

Run it from the repository root::

    python examples/embedded_host.py                     # 500 devices, 2 workers, a temp db
    python examples/embedded_host.py --devices 5000 --workers 4 --seed 3 --db /tmp/x.db
    python examples/embedded_host.py --db postgresql://user:password@host:5432/mdm

``docs/embedding.md`` explains every part. In short, a real host has three roles, each
with its own store (one per process or thread), which :func:`certflow.store.open_store`
opens on an SQLite file or on a PostgreSQL database named by a ``postgresql://`` URL:

* **workers** execute device reports as they arrive from the devices, each one
  transaction, wrapped in :func:`certflow.store.retrying` (another writer may hold the
  database for a moment);
* **a scheduler** sleeps until :meth:`~certflow.store.SqlStore.next_due` and calls
  :meth:`~certflow.store.SqlStore.tick`: that is how checkpoints, notices and the
  deadline happen;
* **a drainer** performs the effects in the outbox (push the root, e-mail the
  administrators, import the certificate, ...) with :func:`certflow.store.drain`, which
  acknowledges each effect whose handler returned. Delivery is at-least-once, so the
  handlers deduplicate by effect id.

A rollout lasts weeks, so this example does not sleep: it runs on a **simulated clock**.
Every instant is passed in (certflow never reads a clock), and where a real host would
sleep until the next due instant or the next device report, the example jumps its
virtual clock there. The device reports are drawn from ``--seed`` (who installs when,
who fails and is retried, who never answers and must re-enrol after the forced import),
so a run is deterministic: the same seed prints the same lines and leaves the same
rollout. It ends with the rollout's overview and where the database is.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import certflow
from certflow import (
    AcknowledgementTimedOut,
    Command,
    CommandRefused,
    DeviceFailed,
    DeviceInstalled,
    DistributeRoot,
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    Reenrolled,
    ReenrollmentRequired,
    RestartRequired,
    Retry,
    ServerRestarted,
)
from certflow.store import drain, open_store, retrying, without_password

ROLLOUT = "mdm-2026"
T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)  # the simulated day the administrator starts
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# What one worker is asked to do at one instant: (device index, command) pairs.
Work = list[tuple[int, Command]]


# --- the device reports, drawn from the seed -------------------------------------------------


def device_id(index: int) -> str:
    return f"mac-{index:05d}"


def plan_reports(devices: int, seed: int) -> dict[datetime, Work]:
    """Every device's reports, by the (whole-hour) instant they reach the host.

    Most devices install within ten days; some fail first and are retried by the
    helpdesk a few hours later (``Retry``), then install; some never answer: the
    deadline on day 21 forces the import without them, and a few re-enrol afterwards.
    """
    rng = random.Random(seed)
    plan: dict[datetime, Work] = defaultdict(list)
    for index in range(devices):
        draw = rng.random()
        name = device_id(index)
        first = T0 + HOUR * rng.randint(1, 10 * 24)
        if draw < 0.80:
            plan[first].append((index, DeviceInstalled(name)))
        elif draw < 0.92:
            reason = rng.choice(["keychain locked", "profile removed by the user", "disk full"])
            retry = first + HOUR * rng.randint(2, 48)
            plan[first].append((index, DeviceFailed(name, reason)))
            plan[retry].append((index, Retry(name)))
            plan[retry + HOUR * rng.randint(1, 24)].append((index, DeviceInstalled(name)))
        else:  # never answers; one in three re-enrols after the forced import
            if rng.random() < 1 / 3:
                plan[T0 + 22 * DAY + HOUR * rng.randint(0, 47)].append((index, Reenrolled(name)))
    return dict(plan)


# --- the worker processes --------------------------------------------------------------------


def worker(number: int, db: str, inbox: Any, outbox: Any) -> None:
    """A worker process: its own store; executes the reports it is handed at an instant.

    A real worker would take reports from the devices' check-ins (an HTTP endpoint, a
    queue) and read the clock; here the instant comes with the work.
    """
    store = open_store(db, create=False)
    try:
        while True:
            job = inbox.get()
            if job is None:
                break
            now, work = job
            done = refused = 0
            for _, command in work:
                try:
                    retrying(partial(store.apply, ROLLOUT, command, now))
                    done += 1
                except CommandRefused:  # e.g. a report for a device already cut off
                    refused += 1
            outbox.put((number, done, refused))
    finally:
        store.close()


class Workers:
    """K worker processes, each fed through its own queue."""

    def __init__(self, count: int, db: str) -> None:
        # "spawn": every worker is a fresh interpreter that opens its own database
        # connection; a database connection must never cross a fork.
        context = multiprocessing.get_context("spawn")
        self.inboxes = [context.Queue() for _ in range(count)]
        self.results = context.Queue()
        self.processes = [
            context.Process(target=worker, args=(k, db, self.inboxes[k], self.results))
            for k in range(count)
        ]
        for process in self.processes:
            process.start()
        self.done = self.refused = 0

    def run(self, now: datetime, work: Work) -> None:
        """Hand ``work`` out (a device always to the same worker) and wait for it."""
        shares: list[Work] = [[] for _ in self.inboxes]
        for item in work:
            shares[item[0] % len(shares)].append(item)
        busy = 0
        for inbox, share in zip(self.inboxes, shares, strict=True):
            if share:
                inbox.put((now, share))
                busy += 1
        for _ in range(busy):
            _, done, refused = self.results.get(timeout=120)
            self.done += done
            self.refused += refused

    def stop(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for process in self.processes:
            process.join(timeout=60)
        failed = [p.exitcode for p in self.processes if p.exitcode != 0]
        if failed:
            raise SystemExit(f"a worker process failed (exit codes {failed})")


# --- the effect drainer ----------------------------------------------------------------------


class Drainer:
    """Performs the effects: prints them, and remembers what it performed by effect id.

    ``performed`` stands for the host's own record (in production: the same database
    transaction as the side effect, or an idempotency key given to the push service).
    The e-mail server is "down" the first time it is used, to show a failing handler:
    that effect stays pending and is delivered again, with the same id, next time.
    """

    def __init__(self, db: str) -> None:
        self.store = open_store(db, create=False)
        self.performed: set[str] = set()
        self.failed: set[str] = set()
        self.mail_down_once = True
        self.restart_needed = False
        self.lines: list[str] = []

    def perform(self, effect_id: str, effect: Effect) -> None:
        if effect_id in self.performed:
            return  # delivered again after a crash: already done, acknowledge only
        # The effect in the words the command line and the simulator use too.
        line = f"{effect.due_at:%b %d %H:%M}  {certflow.describe_effect(effect)}"
        if isinstance(effect, Notify) and self.mail_down_once:
            self.mail_down_once = False
            self.failed.add(effect_id)
            self.lines.append(f"{line}: FAILED (mail server down), stays pending")
            raise ConnectionError("mail server unavailable")
        if isinstance(effect, RestartRequired):
            self.restart_needed = True
        if effect_id in self.failed:
            line += " (delivered again, same id)"
        self.lines.append(line)
        self.performed.add(effect_id)

    def drain(self, now: datetime) -> None:
        handlers = dict.fromkeys(
            (
                PushRoot,
                Notify,
                ImportPostponed,
                ImportCertificate,
                ReenrollmentRequired,
                RestartRequired,
                AcknowledgementTimedOut,
            ),
            self.perform,
        )
        report = retrying(partial(drain, self.store, handlers, now))
        # Within one instant, effects from several workers commit in any order: print
        # them sorted, so that a seed always prints the same lines.
        for line in sorted(self.lines):
            print(f"  effect   {line}")
        self.lines.clear()
        if report.unhandled:  # pragma: no cover - every effect has a handler
            raise SystemExit(f"no handler for {report.unhandled}")


# --- the host --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=500, help="fleet size (default 500)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="draws the device reports")
    default_db = Path(tempfile.gettempdir()) / "certflow-embedded-host.db"
    parser.add_argument(
        "--db",
        default=str(default_db),
        help=f"the database: a file, replaced if it exists (default {default_db}), or a "
        f"postgresql:// URL of a database that does not hold rollout {ROLLOUT!r} yet",
    )
    args = parser.parse_args(argv)
    if args.devices < 1 or args.workers < 1:
        parser.error("--devices and --workers must be at least 1")
    db: str = args.db
    if db.startswith(("postgresql://", "postgres://")):
        where = without_password(db)  # never print a password
    else:  # an SQLite file: start from a fresh one
        path = Path(db)
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        where = str(path.resolve())

    # The host creates the rollout when the administrator uploads the new certificate
    # (certflow.certs.rollout_for builds it from the uploaded files; here, from dates).
    reports = plan_reports(args.devices, args.seed)
    with open_store(db) as store:
        store.create(
            ROLLOUT,
            certflow.new_rollout(
                [device_id(i) for i in range(args.devices)],
                existing_not_after=T0 + 40 * DAY,
                new_not_before=T0 - DAY,
                new_not_after=T0 + 397 * DAY,
                root_publicly_trusted=False,
                created_at=T0 - HOUR,
            ),
        )
    print(f"created rollout {ROLLOUT!r}: {args.devices:,} devices, {args.workers} workers")

    workers = Workers(args.workers, db)
    drainer = Drainer(db)
    scheduler = open_store(db, create=False)
    try:
        # The administrator clicks "Distribute Root Certificate".
        print(f"{T0:%b %d %H:%M}  administrator: distribute the root certificate")
        retrying(partial(scheduler.execute, ROLLOUT, DistributeRoot(), T0))
        drainer.drain(T0)
        arrivals = sorted(reports)
        position = 0
        now = T0
        while True:
            # A real scheduler sleeps until the next due instant (or until a report comes
            # in); the simulated one jumps there.
            due = scheduler.next_due()
            report_at = arrivals[position] if position < len(arrivals) else None
            if due is None and report_at is None:
                break
            now = min(t for t in (due, report_at) if t is not None)
            if now == report_at:
                workers.run(now, reports[now])
                position += 1
            if due is not None and due <= now:
                ticked = retrying(partial(scheduler.tick, now))
                state = scheduler.rollouts()[0].state.value
                # A report at this same instant may have advanced the rollout already
                # (every command first catches up with the timers due by its instant).
                what = f"{len(ticked)} effects" if ticked else "nothing left to do"
                print(f"{now:%b %d %H:%M}  scheduler: tick ({what}), rollout {state}")
            drainer.drain(now)
            if drainer.restart_needed:
                drainer.restart_needed = False
                retrying(partial(scheduler.execute, ROLLOUT, ServerRestarted(), now))
                print(f"{now:%b %d %H:%M}  host: the MDM server restarted, new certificate")
        kinds = Counter(type(c).__name__ for work in reports.values() for _, c in work)
        listed = ", ".join(f"{kinds[k]:,} {k}" for k in sorted(kinds))
        print(f"workers: {workers.done:,} executed, {workers.refused:,} refused ({listed})")
        head = scheduler.overview(ROLLOUT, now)
        pending = scheduler.effects(ROLLOUT)
    finally:
        workers.stop()
        drainer.store.close()
        scheduler.close()

    counts = ", ".join(f"{s.value} {n}" for s, n in head.counts.items() if n)
    print()
    print(f"rollout {ROLLOUT!r}: {head.state.value}, {head.percent_complete:.1f}% complete")
    print(f"devices: {counts}")
    print(f"restart required: {'yes' if head.restart_required else 'no'}")
    print(f"effects pending: {len(pending)}")
    print(f"database: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
