"""Fixtures of what a certflow wrote: serialised rollouts and a small SQLite database.

The tests keep them to prove that what an earlier certflow wrote still loads: run this
script against a checkout of that certflow, never against the working tree's::

    git worktree add /tmp/old COMMIT
    PYTHONPATH=/tmp/old .venv/bin/python tools/old_fixtures.py tests/core/data tests/store/data

It writes, into the first folder, ``rollout-vN-NAME.json`` for each history of
:data:`HISTORIES` (N: that certflow's ``SCHEMA_VERSION``), and into the second
``certflow-schema-M.db`` (M: that store's schema version), the database of
:func:`fill_database`. The histories live here, not in the tests, so that the tests
replay them with today's certflow and compare: a fixture loads as the rollout the same
history gives today. Only the public API that every version since 0.2 has is used.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import certflow as cf

#: Creation instant of every history (t0 where the distribution starts at once).
T0 = datetime(2026, 7, 1, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _new(
    ids: list[str],
    *,
    policy: cf.Policy | None = None,
    public: bool = False,
    trusted: tuple[str, ...] = (),
) -> cf.Rollout:
    return cf.new_rollout(
        ids,
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=public,
        created_at=T0,
        policy=policy,
        trusted_device_ids=trusted,
    )


def _run(rollout: cf.Rollout, steps: list[tuple[timedelta, cf.Command | None]]) -> cf.Rollout:
    """Each step at T0 plus its offset: a command, or ``None`` to advance only."""
    for offset, command in steps:
        at = T0 + offset
        step = cf.advance(rollout, at) if command is None else cf.apply(rollout, command, at)
        rollout = step.rollout
    return rollout


def pending() -> cf.Rollout:
    """Three devices, one of them already trusting the root; nothing started."""
    return _new(["laptop-1", "phone-7", "kiosk-3"], trusted=("phone-7",))


#: Pushes awaiting an answer (2-day timeout), a failure, a retry, an enrolment, a removal.
DISTRIBUTING: list[tuple[timedelta, cf.Command | None]] = [
    (timedelta(0), cf.DistributeRoot()),
    (HOUR, cf.DeviceInstalled("a")),
    (2 * HOUR, cf.DeviceFailed("b", 'disk full: "C:" é')),
    (3 * HOUR, cf.Retry("b")),
    (4 * HOUR, cf.Enroll("e")),
    (5 * HOUR, cf.Unenroll("d")),
]


def _distributing_start() -> cf.Rollout:
    return _new(["a", "b", "c", "d"], policy=cf.Policy(ack_timeout=2 * DAY))


def distributing() -> cf.Rollout:
    """:data:`DISTRIBUTING` from a pending rollout of four devices."""
    return _run(_distributing_start(), DISTRIBUTING)


def extended() -> cf.Rollout:
    """Day 7 found devices without the root; a manual extension on day 8."""
    return _run(
        _new(["a", "b", "c"]),
        [
            (timedelta(0), cf.DistributeRoot()),
            (DAY, cf.DeviceInstalled("a")),
            (8 * DAY, cf.ExtendManually()),
            (9 * DAY, None),
        ],
    )


def forced() -> cf.Rollout:
    """Imported now with devices cut off; one re-enrolled; the server restarted."""
    return _run(
        _new(["a", "b", "c"]),
        [
            (timedelta(0), cf.DistributeRoot()),
            (DAY, cf.DeviceInstalled("a")),
            (2 * DAY, cf.ImportNow()),
            (3 * DAY, cf.Reenrolled("b")),
            (4 * DAY, cf.ServerRestarted()),
        ],
    )


def public() -> cf.Rollout:
    """A publicly trusted root imported at once (Proceed to Import); restart pending."""
    return _run(_new(["a", "b"], public=True), [(HOUR, cf.ProceedToImport())])


HISTORIES: dict[str, Callable[[], cf.Rollout]] = {
    "pending": pending,
    "distributing": distributing,
    "extended": extended,
    "forced": forced,
    "public": public,
}

#: The rollouts of the fixture database, each by the history that made it.
DATABASE_ROLLOUTS = ("distributing", "public")


def fill_database(path: Path) -> None:
    """A database holding each of :data:`DATABASE_ROLLOUTS`, made through the store's
    commands (so its journal and outbox are the store's own), with some effects
    acknowledged and some pending."""
    from certflow.store import open_store

    store = open_store(path)
    try:
        store.create("distributing", _distributing_start())
        for offset, command in DISTRIBUTING:
            if command is not None:
                store.apply("distributing", command, T0 + offset)
        store.create("public", _new(["a", "b"], public=True))
        done = store.apply("public", cf.ProceedToImport(), T0 + HOUR)
        store.acknowledge([effect.id for effect in done[:1]], T0 + 2 * HOUR)
    finally:
        store.close()
    # One compact file, nothing beside it (no -wal).
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("VACUUM")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()


def main(documents: Path, databases: Path) -> None:
    """Write the documents and the database of the certflow that runs this."""
    from certflow.core.serialization import SCHEMA_VERSION
    from certflow.store._schema import SCHEMA_VERSION as STORE_VERSION

    for name, history in HISTORIES.items():
        target = documents / f"rollout-v{SCHEMA_VERSION}-{name}.json"
        target.write_text(cf.dumps(history()) + "\n", encoding="utf-8")
        print(f"wrote {target}")
    database = databases / f"certflow-schema-{STORE_VERSION}.db"
    database.unlink(missing_ok=True)
    fill_database(database)
    print(f"wrote {database} ({database.stat().st_size:,} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: old_fixtures.py DOCUMENTS_FOLDER DATABASE_FOLDER")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
