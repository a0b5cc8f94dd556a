"""``certflow rollout tick``, ``effects`` and ``ack``: a tick with nothing due says "no
change" and records nothing; the outbox lists what became of each effect (superseded by
the end of its rollout, dead after too many failed deliveries) and revives the dead
(``--revive ID...``); bad input is one line, exit 2, and changes nothing. On both
backends, named by ``--db``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import drain
from tests.backends import Backend
from tests.cli.test_rollout import as_json, at, cli, history, new_args
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files

HOUR = timedelta(hours=1)


def effects(db: str, *extra: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = as_json(
        cli("rollout", "effects", "r1", "--db", db, "--json", *extra)
    )
    return found


def fail_deliveries(backend: Backend, times: int, when: str) -> str:
    """A drainer whose push handler fails ``times`` times, an hour apart (past every
    back-off), with the store opened as a host would configure it: two failures make an
    effect dead. Returns the push's id."""

    def refuse(effect_id: str, effect: cf.Effect) -> None:
        raise ConnectionError("the MDM does not answer")

    with backend.open(max_attempts=2) as store:
        for n in range(times):
            drain(store, {cf.PushRoot: refuse}, datetime.fromisoformat(when) + n * HOUR)
    return "r1:2:0"


def test_a_tick_with_nothing_due_says_no_change_and_records_nothing(db: str) -> None:
    before = history(db)
    said = cli("rollout", "tick", "r1", "--db", db, "--now", at(hours=1)).stdout
    assert said == "tick: no change (rollout r1 is pending); nothing was recorded\n"
    every = cli("rollout", "tick", "--db", db, "--now", at(hours=1)).stdout
    assert "no change" in every
    done = as_json(cli("rollout", "tick", "--db", db, "--now", at(hours=1), "--json"))
    assert (done["changed"], done["effects"]) == (False, [])
    assert history(db) == before


def test_cancelling_supersedes_the_pushes_and_notices_and_effects_all_shows_them(
    db: str,
) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "tick", "--db", db, "--now", at(days=6, hours=1))  # the notice
    assert {e["effect"]["type"] for e in effects(db)} >= {"PushRoot", "Notify"}  # type: ignore[index]
    cli("rollout", "cancel", "r1", "--db", db, "--now", at(days=6, hours=2))
    left = effects(db)
    assert not {e["effect"]["type"] for e in left} & {"PushRoot", "Notify"}  # type: ignore[index]
    everything = effects(db, "--all")
    moot = [e for e in everything if e["status"] == "superseded"]
    assert {e["effect"]["type"] for e in moot} == {"PushRoot", "Notify"}  # type: ignore[index]
    assert {e["superseded_at"] for e in moot} == {at(days=6, hours=2)}
    text = cli("rollout", "effects", "r1", "--all", "--db", db).stdout
    assert text.count("never delivered]") == len(moot)


def test_dead_effects_are_listed_and_revived(db: str, backend: Backend) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    push = fail_deliveries(backend, 2, at(hours=1))
    assert [e["id"] for e in effects(db, "--dead")] == [push]
    assert push not in [e["id"] for e in effects(db)]
    [dead] = effects(db, "--dead")
    assert (dead["status"], dead["failures"], dead["attempts"]) == ("dead", 2, 2)
    assert dead["last_error"] == "ConnectionError: the MDM does not answer"
    text = cli("rollout", "effects", "r1", "--dead", "--db", db).stdout
    assert "[dead since" in text
    assert "after 2 failed deliveries, last: ConnectionError: the MDM does not answer]" in text
    said = cli("rollout", "effects", "r1", "--revive", push, "--db", db).stdout
    assert said == "Revived 1 effect: a drainer delivers them again\n"
    assert effects(db, "--dead") == []
    assert push in [e["id"] for e in effects(db)]
    again = as_json(cli("rollout", "effects", "r1", "--revive", push, "--db", db, "--json"))
    assert again == {"rollout": "r1", "revived": 0, "already_pending": 1, "changed": False}
    assert "no change" in cli("rollout", "effects", "r1", "--revive", push, "--db", db).stdout
    assert cli("rollout", "effects", "r1", "--dead", "--db", db).stdout == "No dead effects.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--revive"], "--revive needs the ids of dead effects"),
        (["--revive", "--all", "r1:2:0"], "--revive takes effect ids, not --all or --dead"),
        (["--dead", "--all"], "give --all or --dead, not both"),
        (["r1:2:0"], "effect ids are for --revive"),
        (["--revive", "r2:2:0"], "are not of rollout 'r1'"),
        (["--revive", "r1:2:0", "r1:99:0"], "no effect with id 'r1:99:0'"),
        (["--revive", "r1:02:0"], "no effect with id 'r1:02:0'"),
    ],
)
def test_bad_effects_options_are_one_line_and_change_nothing(
    db: str, backend: Backend, args: list[str], message: str
) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    fail_deliveries(backend, 2, at(hours=1))
    before = backend.tables()
    done = cli("rollout", "effects", "r1", *args, "--db", db, expect=2)
    assert message in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert backend.tables() == before


def test_reviving_an_acknowledged_effect_is_refused(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "ack", "r1", "r1:2:0", "--db", db, "--now", at(hours=1))
    done = cli("rollout", "effects", "r1", "--revive", "r1:2:0", "--db", db, expect=2)
    assert "is acknowledged; only a dead effect can be revived" in done.stderr


def test_the_effects_listing_opens_the_database_read_only(db: str, backend: Backend) -> None:
    before = backend.tables()
    for extra in ([], ["--all"], ["--dead"]):
        cli("rollout", "effects", "r1", "--db", db, *extra)
    assert backend.tables() == before


def test_a_new_rollout_at_the_command_line_then_a_failure_shows_its_next_attempt(
    upload: Path, backend: Backend
) -> None:
    db = backend.target
    cli(*new_args(upload, db))
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    fail_deliveries(backend, 1, at(hours=1))
    text = cli("rollout", "effects", "r1", "--db", db).stdout
    assert (
        "[1 failed delivery, last: ConnectionError: the MDM does not answer; next attempt" in text
    )
