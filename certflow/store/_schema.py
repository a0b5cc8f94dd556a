"""The schema of each backend, as a list of forward migrations.

``MIGRATIONS[n]`` (SQLite) and ``POSTGRES_MIGRATIONS[n]`` take a database from version
``n`` to ``n + 1``; version 0 is an empty file, or a PostgreSQL database without
certflow's schema (namespace). ``certflow_schema`` holds the version, and both backends
number their versions alike: the same tables, columns and indexes, in each one's types.
A database newer than ``SCHEMA_VERSION`` is refused, never downgraded.

SQLite stores instants as ISO 8601 text in UTC (``datetime.isoformat()`` of a UTC
instant), which sorts chronologically, so ``MIN(ack_due)`` and ``ack_due <= :now`` are
index reads; PostgreSQL stores them as ``timestamptz``. JSON is stored as text in both,
exactly as written, so that the journal's export is the bytes the store wrote.
"""

from __future__ import annotations

__all__ = [
    "MIGRATIONS",
    "OUTBOX_ADDED",
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION",
    "outbox_as_current",
    "summaries_as_current",
]

_VERSION_1 = """
CREATE TABLE certflow_schema (version INTEGER NOT NULL);
INSERT INTO certflow_schema (version) VALUES (0);

-- One row per rollout: the rollout machine's state and the per-state device counts,
-- kept up to date by every transition, so that a device report reads and writes O(1) rows.
CREATE TABLE rollouts (
    id        INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL UNIQUE,
    state     TEXT    NOT NULL,
    plan      TEXT    NOT NULL,  -- JSON (certflow.core.serialization.encode)
    phase     TEXT    NOT NULL,  -- JSON
    clock     TEXT    NOT NULL,  -- the last instant the rollout has seen
    counts    TEXT    NOT NULL,  -- JSON: device state -> number
    size      INTEGER NOT NULL,  -- devices known; the next enrolment's index
    phase_due TEXT,              -- the next timer that does not read the fleet
    seq       INTEGER NOT NULL   -- the last journal sequence number
);

CREATE TABLE devices (
    rollout     INTEGER NOT NULL REFERENCES rollouts (id),
    idx         INTEGER NOT NULL,  -- creation, then enrolment order
    device_id   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL,
    reason      TEXT,              -- the last failure reason
    last_push   TEXT,
    last_report TEXT,
    ack_due     TEXT,              -- while the latest push awaits its answer
    PRIMARY KEY (rollout, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX devices_by_id ON devices (rollout, device_id);
CREATE INDEX devices_by_state ON devices (rollout, state, idx);
CREATE INDEX devices_by_ack_due ON devices (rollout, ack_due) WHERE ack_due IS NOT NULL;

-- Append-only: never updated, never deleted.
CREATE TABLE journal (
    rollout INTEGER NOT NULL REFERENCES rollouts (id),
    seq     INTEGER NOT NULL,
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,  -- create | advance | command | batch
    body    TEXT    NOT NULL,  -- JSON
    PRIMARY KEY (rollout, seq)
) WITHOUT ROWID;

-- The effects of journal entry (rollout, seq), in order; acknowledged, never deleted.
CREATE TABLE outbox (
    rollout  INTEGER NOT NULL REFERENCES rollouts (id),
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    body     TEXT    NOT NULL,  -- JSON
    due_at   TEXT    NOT NULL,
    acked_at TEXT,
    PRIMARY KEY (rollout, seq, position)
) WITHOUT ROWID;
CREATE INDEX outbox_pending ON outbox (rollout, seq, position) WHERE acked_at IS NULL;
"""

# Version 2: the outbox remembers delivery failures, so that `effects` can show why an
# effect is still pending and a drainer can back off from one that keeps failing.
_VERSION_2 = """
ALTER TABLE outbox ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
"""

# Version 3: leases, so that two drainers do not deliver the same effect while both run
# (`lease`); a lease that runs out (its drainer died) frees the effect again.
_VERSION_3 = """
ALTER TABLE outbox ADD COLUMN leased_until TEXT;
"""

# Version 4: an outbox that ends cleanly (store.md, "Superseded effects", "Dead letters").
# `attempts` counts the deliveries started (leases), `last_attempt_at` is the latest;
# a failed one sets `next_attempt_at` (exponential back-off) and, at the store's
# max_attempts, `dead_at`; the end of a rollout sets `superseded_at` on what no longer
# applies. An effect is deliverable while all three of acked_at, superseded_at and
# dead_at are NULL.
_VERSION_4 = """
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
ALTER TABLE outbox ADD COLUMN dead_at TEXT;
ALTER TABLE outbox ADD COLUMN superseded_at TEXT;
"""

# Version 5: the next due instant of every rollout from two index reads (`next_due`), so
# that a scheduler's idle pass costs the same with 10 rollouts and with 10,000: the
# earliest timer that does not read the fleet, and the earliest acknowledgement deadline
# of any rollout (devices_by_ack_due leads with the rollout: one read per rollout).
_VERSION_5 = """
CREATE INDEX rollouts_by_phase_due ON rollouts (phase_due) WHERE phase_due IS NOT NULL;
CREATE INDEX devices_by_deadline ON devices (ack_due, rollout) WHERE ack_due IS NOT NULL;
"""

# Version 6: the lease takes the due effects of every rollout in the order they fell due
# (then by rollout, journal entry and position), so that a rollout's new effects do not
# wait behind another rollout's backlog that fell due after them. outbox_pending leads
# with the rollout, so that order would be a scan and a sort; this index reads the
# deliverable effects due by an instant in that order, and stops at the lease's limit.
_VERSION_6 = """
CREATE INDEX outbox_by_due ON outbox (due_at, rollout, seq, position)
    WHERE acked_at IS NULL AND superseded_at IS NULL AND dead_at IS NULL;
"""

# Version 7: each journal entry and each effect that names devices written with its
# summary (JSON), what the console's History, Effects and chart show of it, so that those
# pages read the same few bytes whatever the fleet: an entry's rollout state, effect
# count, list sizes and the device counts after it; an effect's body with its device list
# cut to its first ids. Tables of their own, not columns, with the entry's instant and
# kind: SQLite reads a row of the journal or the outbox with its overflow pages, whatever
# column is asked for (4 ms for the key alone of a million-device creation, measured), so
# a page lists its entries from journal_summaries alone. Rows written before have no
# summary and are summarized from their bodies.
_VERSION_7 = """
CREATE TABLE journal_summaries (
    rollout INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    at      TEXT    NOT NULL,  -- the entry's, as the journal has them: a page lists
    kind    TEXT    NOT NULL,  -- these without reading the journal's big rows
    summary TEXT    NOT NULL,  -- JSON
    PRIMARY KEY (rollout, seq),
    FOREIGN KEY (rollout, seq) REFERENCES journal (rollout, seq)
) WITHOUT ROWID;
CREATE TABLE outbox_summaries (
    rollout  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    summary  TEXT    NOT NULL,  -- JSON
    PRIMARY KEY (rollout, seq, position),
    FOREIGN KEY (rollout, seq, position) REFERENCES outbox (rollout, seq, position)
) WITHOUT ROWID;
"""

MIGRATIONS: tuple[str, ...] = (
    _VERSION_1,
    _VERSION_2,
    _VERSION_3,
    _VERSION_4,
    _VERSION_5,
    _VERSION_6,
    _VERSION_7,
)
#: The schema version this certflow writes, one per migration: an older database is migrated
#: to it when opened to write (a read-only store reads it as it is); a newer one is refused.
SCHEMA_VERSION = len(MIGRATIONS)

# PostgreSQL: the same tables, in its types. The foreign keys hold there (SQLite does not
# enforce them unless asked); every reference is to the rollout row a writer has locked.
_POSTGRES_1 = """
CREATE TABLE certflow_schema (version integer NOT NULL);
INSERT INTO certflow_schema (version) VALUES (0);

CREATE TABLE rollouts (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name      text        COLLATE "C" NOT NULL UNIQUE,  -- ordered as SQLite orders it
    state     text        NOT NULL,
    plan      text        NOT NULL,
    phase     text        NOT NULL,
    clock     timestamptz NOT NULL,
    counts    text        NOT NULL,
    size      bigint      NOT NULL,
    phase_due timestamptz,
    seq       bigint      NOT NULL
);

CREATE TABLE devices (
    rollout     bigint      NOT NULL REFERENCES rollouts (id),
    idx         bigint      NOT NULL,
    device_id   text        NOT NULL,
    state       text        NOT NULL,
    attempts    integer     NOT NULL,
    reason      text,
    last_push   timestamptz,
    last_report timestamptz,
    ack_due     timestamptz,
    PRIMARY KEY (rollout, idx)
);
CREATE UNIQUE INDEX devices_by_id ON devices (rollout, device_id);
CREATE INDEX devices_by_state ON devices (rollout, state, idx);
CREATE INDEX devices_by_ack_due ON devices (rollout, ack_due) WHERE ack_due IS NOT NULL;

CREATE TABLE journal (
    rollout bigint      NOT NULL REFERENCES rollouts (id),
    seq     bigint      NOT NULL,
    at      timestamptz NOT NULL,
    kind    text        NOT NULL,
    body    text        NOT NULL,
    PRIMARY KEY (rollout, seq)
);

CREATE TABLE outbox (
    rollout  bigint      NOT NULL REFERENCES rollouts (id),
    seq      bigint      NOT NULL,
    position integer     NOT NULL,
    kind     text        NOT NULL,
    body     text        NOT NULL,
    due_at   timestamptz NOT NULL,
    acked_at timestamptz,
    PRIMARY KEY (rollout, seq, position)
);
CREATE INDEX outbox_pending ON outbox (rollout, seq, position) WHERE acked_at IS NULL;
"""

_POSTGRES_2 = """
ALTER TABLE outbox ADD COLUMN failures integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;
"""

_POSTGRES_3 = """
ALTER TABLE outbox ADD COLUMN leased_until timestamptz;
"""

_POSTGRES_4 = """
ALTER TABLE outbox ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_attempt_at timestamptz;
ALTER TABLE outbox ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE outbox ADD COLUMN dead_at timestamptz;
ALTER TABLE outbox ADD COLUMN superseded_at timestamptz;
"""

_POSTGRES_5 = """
CREATE INDEX rollouts_by_phase_due ON rollouts (phase_due) WHERE phase_due IS NOT NULL;
CREATE INDEX devices_by_deadline ON devices (ack_due, rollout) WHERE ack_due IS NOT NULL;
"""

_POSTGRES_6 = """
CREATE INDEX outbox_by_due ON outbox (due_at, rollout, seq, position)
    WHERE acked_at IS NULL AND superseded_at IS NULL AND dead_at IS NULL;
"""

_POSTGRES_7 = """
CREATE TABLE journal_summaries (
    rollout bigint      NOT NULL,
    seq     bigint      NOT NULL,
    at      timestamptz NOT NULL,
    kind    text        NOT NULL,
    summary text        NOT NULL,
    PRIMARY KEY (rollout, seq),
    FOREIGN KEY (rollout, seq) REFERENCES journal (rollout, seq)
);
CREATE TABLE outbox_summaries (
    rollout  bigint  NOT NULL,
    seq      bigint  NOT NULL,
    position integer NOT NULL,
    summary  text    NOT NULL,
    PRIMARY KEY (rollout, seq, position),
    FOREIGN KEY (rollout, seq, position) REFERENCES outbox (rollout, seq, position)
);
"""

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    _POSTGRES_1,
    _POSTGRES_2,
    _POSTGRES_3,
    _POSTGRES_4,
    _POSTGRES_5,
    _POSTGRES_6,
    _POSTGRES_7,
)
if len(POSTGRES_MIGRATIONS) != SCHEMA_VERSION:  # pragma: no cover - a maintainer's slip
    raise ValueError("every schema version needs a migration for each backend")


#: The outbox columns that versions after the first added, and what a row of an older
#: database holds in their place. A read-only store never migrates a database, so it
#: reads an older one's outbox through :func:`outbox_as_current`, and the summary tables
#: of version 7 through :func:`summaries_as_current`; the other tables have not changed
#: since version 1.
OUTBOX_ADDED = (
    ("failures", "0"),
    ("last_error", "NULL"),
    ("leased_until", "NULL"),
    ("attempts", "0"),
    ("last_attempt_at", "NULL"),
    ("next_attempt_at", "NULL"),
    ("dead_at", "NULL"),
    ("superseded_at", "NULL"),
)


def outbox_as_current(present: set[str]) -> str:
    """The outbox as reads name it, when it has the columns ``present``: the table
    itself, or a subquery that adds each missing column's value."""
    missing = [f"{value} AS {name}" for name, value in OUTBOX_ADDED if name not in present]
    if not missing:
        return "outbox"
    return f"(SELECT outbox.*, {', '.join(missing)} FROM outbox)"


def summaries_as_current(version: int) -> tuple[str, str]:
    """The journal's and the outbox's summary tables as reads name them in a database
    of schema ``version``: the tables, or empty ones before version 7 (every row is
    then summarized from its body)."""
    if version >= 7:
        return "journal_summaries", "outbox_summaries"
    return (
        "(SELECT rollout, seq, at, kind, body AS summary FROM journal WHERE 1 = 0)",
        "(SELECT rollout, seq, position, body AS summary FROM outbox WHERE 1 = 0)",
    )
