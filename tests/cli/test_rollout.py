"""``certflow rollout``: a stored rollout driven from the command line alone.

Every test runs the real command group in-process. A test that uses a database runs once
per backend (the ``backend`` fixture): on a real SQLite file in ``tmp_path`` and on a real
PostgreSQL database of the server the test run starts, named by ``--db`` either way. The
tests about files (a corrupt file, the default ``./certflow.db``) are SQLite's alone; the
PostgreSQL ones about URLs (an unreachable server, a password in the URL) are at the end.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from certflow import ExtendManually, ImportNow
from certflow.cli import main
from certflow.core.instants import show
from certflow.store import SqlStore, open_store, without_password
from tests.backends import Backend, SqliteBackend
from tests.certs.factory import DAY, HOST, NOW, build, key_pem, pem, pki, rsa_key
from tools.pgserver import LocalPostgres

DEVICES = [f"d{n}" for n in range(1, 7)]


def at(days: float = 0, hours: float = 0) -> str:
    """The instant ``days`` and ``hours`` after the rollout's t0 (the factory's NOW)."""
    return (NOW + timedelta(days=days, hours=hours)).isoformat()


def cli(
    *args: str | Path,
    expect: int = 0,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run ``certflow ARGS``; check the exit code, and that no traceback ever shows."""
    result = CliRunner().invoke(
        main, [str(a) for a in args], input=input, env=env, prog_name="certflow"
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == expect, result.output
    if expect == 2:  # the error is the last thing said (after a prompt, say)
        assert "\ncertflow: error: " in "\n" + result.stderr, result.stderr
    return result


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def upload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of an upload: the new certificate with its chain and key, the server's
    current certificate (expiring in 40 days), and a device list."""
    folder = tmp_path_factory.mktemp("upload")
    good = pki()
    (folder / "server.crt").write_bytes(pem(good.leaf, good.intermediate, good.root))
    (folder / "server.key").write_bytes(key_pem(good.leaf_key))
    current = build(
        HOST, key=rsa_key(2048, 8), not_before=NOW - 300 * DAY, not_after=NOW + 40 * DAY
    )
    (folder / "current.crt").write_bytes(pem(current))
    (folder / "devices.txt").write_text("\n".join(DEVICES[:3]) + "\n\n  " + "\n".join(DEVICES[3:]))
    return folder


def new_args(upload: Path, db: str | Path, name: str = "r1", *extra: str) -> list[str | Path]:
    return [
        "rollout", "new", name,
        "--cert", upload / "server.crt", "--cert", upload / "server.key",
        "--existing", upload / "current.crt", "--devices", upload / "devices.txt",
        "--host", HOST, "--db", db, "--now", at(), *extra,
    ]  # fmt: skip


@pytest.fixture
def db(upload: Path, backend: Backend) -> str:
    """The backend's database (what ``--db`` takes) holding rollout ``r1`` over d1..d6,
    pending at t0."""
    cli(*new_args(upload, backend.target))
    return backend.target


def created_nothing(backend: Backend) -> bool:
    """Whether the backend's database is still untouched: no SQLite file; or, in the test's
    own PostgreSQL database, no ``certflow`` schema and no table in any schema."""
    if isinstance(backend, SqliteBackend):
        return not backend.path.exists()  # a query would create the file
    schemas = backend.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'certflow'")
    tables = backend.query(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    return schemas == tables == [(0,)]


def status(db: str, when: str, *extra: str) -> dict[str, Any]:
    data: dict[str, Any] = as_json(
        cli("rollout", "status", "r1", "--db", db, "--now", when, "--json", *extra)
    )
    return data


def history(db: str) -> list[dict[str, Any]]:
    out = cli("rollout", "history", "r1", "--db", db, "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


# --- a whole rollout ---------------------------------------------------------------------------


def test_a_whole_rollout_from_the_command_line(
    upload: Path, tmp_path: Path, backend: Backend
) -> None:
    db = backend.target
    created = as_json(cli(*new_args(upload, db), "--json"))
    assert created["state"] == "pending"
    assert created["devices"] == 6
    assert created["root_publicly_trusted"] is False
    # The rollout is in the database --db names (not, say, a file named like the URL).
    assert backend.query("SELECT name, size FROM rollouts") == [("r1", 6)]
    assert "r1" in cli("rollout", "list", "--db", db, "--now", at()).stdout

    text = cli("rollout", "distribute", "r1", "--db", db, "--now", at()).stdout
    assert "rollout r1 is distributing" in text
    assert "r1:2:0  2026-03-01 12:00 UTC  push root to 6 devices (attempt 1)" in text

    # Single reports, then a file of them (one transaction, one journal entry).
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    cli(
        "rollout",
        "report",
        "r1",
        "d2",
        "failed",
        "--reason",
        "disk full",
        "--db",
        db,
        "--now",
        at(hours=1),
    )
    reports = tmp_path / "reports.csv"
    reports.write_text('d3,installed\r\nd4,failed,"timeout, no answer"\n\n')
    done = as_json(
        cli(
            "rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=2), "--json"
        )
    )
    assert done["done"] == "2 reports"
    head = status(db, at(hours=2))
    assert head["counts"] == {
        "pending": 0, "pushed": 2, "installed": 2, "failed": 2, "removed": 0, "reenroll_required": 0,
    }  # fmt: skip
    # 33.333...: one decimal in --json, as the text shows it (not 33.33 beside 33.3%).
    assert head["percent_complete"] == 33.3
    shown = cli("rollout", "status", "r1", "--db", db, "--now", at(hours=2), "--summary").stdout
    assert "Complete:         33.3% (2 of 6 in-scope devices trust the root)" in shown
    listed = as_json(cli("rollout", "list", "--db", db, "--now", at(hours=2), "--json"))
    assert listed[0]["percent_complete"] == 33.3
    assert "  33.3%  " in cli("rollout", "list", "--db", db, "--now", at(hours=2)).stdout
    failed = {
        d["device"]: d["reason"] for d in status(db, at(hours=2), "--state", "failed")["devices"]
    }
    assert failed == {"d2": "disk full", "d4": "timeout, no answer"}
    assert history(db)[-1]["kind"] == "batch"

    # Retries: one device, then every failed one; each push is an effect with its attempt.
    one = cli("rollout", "retry", "r1", "d2", "--db", db, "--now", at(hours=3)).stdout
    assert "push root to d2 (attempt 2)" in one
    cli("rollout", "report", "r1", "d2", "failed", "--db", db, "--now", at(hours=4))
    bulk = as_json(
        cli("rollout", "retry", "r1", "--all-failed", "--db", db, "--now", at(hours=5), "--json")
    )
    pushed = sorted((e["effect"]["device_ids"], e["effect"]["attempt"]) for e in bulk["effects"])
    assert pushed == [(["d2"], 3), (["d4"], 2)]

    # Fleet changes: a new device is pushed the root, a departing one leaves the scope.
    enrolled = cli("rollout", "enroll", "r1", "d7", "--db", db, "--now", at(hours=6)).stdout
    assert "push root to d7 (attempt 1)" in enrolled
    cli("rollout", "unenroll", "r1", "d6", "--db", db, "--now", at(hours=6))

    # The manual extension opens on day 6: refused before (exit 1), taken then.
    early = cli("rollout", "extend", "r1", "--db", db, "--now", at(days=5), expect=1)
    assert early.stderr.startswith("certflow: refused: ")
    assert "day 6" in early.stderr
    assert status(db, at(days=5))["manual_extension_available"] is False
    assert status(db, at(days=5))["manual_extension_opens_at"] == at(days=6)
    extended = cli("rollout", "extend", "r1", "--db", db, "--now", at(days=6)).stdout
    assert extended.splitlines()[:3] == [
        f"The extension moved the next checkpoint from {show(NOW + 7 * DAY)} to "
        f"{show(NOW + 14 * DAY)}",
        f"The extension moved the deadline from {show(NOW + 21 * DAY)} to {show(NOW + 28 * DAY)}",
        "extend: rollout r1 is distributing",
    ]
    head = status(db, at(days=6))
    assert (head["state"], head["manual_extensions"]) == ("distributing", 1)
    assert head["next_checkpoint"] == at(days=14)  # day 7 moved by the week

    # Ticks: past day 7 nothing is due any more; past day 14 and 21 the checkpoints postpone.
    quiet = as_json(cli("rollout", "tick", "--db", db, "--now", at(days=7, hours=1), "--json"))
    assert quiet["effects"] == []
    day14 = as_json(cli("rollout", "tick", "--db", db, "--now", at(days=14, hours=1), "--json"))
    assert "ImportPostponed" in [e["effect"]["type"] for e in day14["effects"]]
    assert status(db, at(days=14, hours=1))["state"] == "extended"  # a postponed checkpoint
    day21 = as_json(
        cli("rollout", "tick", "r1", "--db", db, "--now", at(days=21, hours=1), "--json")
    )
    assert "ImportPostponed" in [e["effect"]["type"] for e in day21["effects"]]
    assert day21["state"] == "extended"
    # The deadline (day 28 with the extension) forces the import.
    end = as_json(cli("rollout", "tick", "r1", "--db", db, "--now", at(days=28, hours=1), "--json"))
    assert end["state"] == "forced"
    kinds = [e["effect"]["type"] for e in end["effects"]]
    assert {"ImportCertificate", "RestartRequired", "ReenrollmentRequired"} <= set(kinds)
    assert status(db, at(days=28, hours=1))["restart_required"] is True
    cli("rollout", "restarted", "r1", "--db", db, "--now", at(days=28, hours=2))
    cli("rollout", "reenrolled", "r1", "d5", "--db", db, "--now", at(days=28, hours=2))
    head = status(db, at(days=28, hours=3))
    assert head["restart_required"] is False
    assert head["counts"]["installed"] == 3  # d1, d3, and the re-enrolled d5

    # The outbox: every effect has an id; acknowledging twice is harmless.
    pending = as_json(cli("rollout", "effects", "r1", "--db", db, "--json"))
    ids = [e["id"] for e in pending]
    assert ids
    assert all(re.fullmatch(r"r1:\d+:\d+", i) for i in ids)
    listing = cli("rollout", "effects", "r1", "--db", db).stdout
    assert "datetime" not in listing
    assert re.search(
        rf"^{ids[0]} +2026-03-01 12:00 UTC  push root to 6 devices \(attempt 1\), "
        r"root SHA-256 [0-9a-f]{16}…$",
        listing,
        re.M,
    )
    acked = cli("rollout", "ack", "r1", *ids[:2], "--db", db, "--now", at(days=29)).stdout
    assert acked.startswith("Acknowledged 2 effects")
    again = as_json(cli("rollout", "ack", "r1", ids[0], "--db", db, "--now", at(days=29), "--json"))
    assert again == {
        "rollout": "r1",
        "acknowledged": 0,
        "already_acknowledged": 1,
        "changed": False,
    }
    twice = cli("rollout", "ack", "r1", ids[0], "--db", db, "--now", at(days=29)).stdout
    assert twice == "no change: every effect named was acknowledged already\n"
    left = [e["id"] for e in as_json(cli("rollout", "effects", "r1", "--db", db, "--json"))]
    assert left == ids[2:]
    # Everything: the notices the forced import superseded too, never to be delivered.
    everything = as_json(cli("rollout", "effects", "r1", "--all", "--db", db, "--json"))
    moot = [e for e in everything if e["id"] not in ids]
    assert [e["id"] for e in everything if e["id"] in ids] == ids
    assert moot
    assert {e["effect"]["type"] for e in moot} == {"Notify"}
    assert everything[0]["acknowledged_at"] == at(days=29)

    # The journal: JSON lines from the creation on, and readable text.
    entries = history(db)
    assert entries[0]["kind"] == "create"
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1]["commands"] == [{"type": "Reenrolled", "device_id": "d5"}]
    text = cli("rollout", "history", "r1", "--db", db).stdout
    assert "created (6 devices) -> pending" in text
    # In the command line's words: what to type, not the Python class.
    assert "report d2 failed (disk full) -> distributing" in text
    assert "  distribute -> distributing  effect " in text
    listed = as_json(cli("rollout", "list", "--db", db, "--json"))
    assert [(r["rollout"], r["state"], r["devices"]) for r in listed] == [("r1", "forced", 7)]


def test_status_pages_by_keyset_and_filters_by_state(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    for device in ("d2", "d5"):
        cli("rollout", "report", "r1", device, "failed", "--db", db, "--now", at(hours=1))
    first = status(db, at(hours=1), "--limit", "4")
    assert [d["device"] for d in first["devices"]] == ["d1", "d2", "d3", "d4"]
    assert first["next_after"] == "d4"
    second = status(db, at(hours=1), "--limit", "4", "--after", "d4")
    assert [d["device"] for d in second["devices"]] == ["d5", "d6"]
    assert second["next_after"] is None
    failed = status(db, at(hours=1), "--state", "failed", "--limit", "1")
    assert [d["device"] for d in failed["devices"]] == ["d2"]
    rest = status(db, at(hours=1), "--state", "failed", "--after", "d2")
    assert [d["device"] for d in rest["devices"]] == ["d5"]
    both = status(db, at(hours=1), "--state", "failed", "--state", "pushed", "--after", "d3")
    assert [(d["device"], d["state"]) for d in both["devices"]] == [
        ("d4", "pushed"), ("d5", "failed"), ("d6", "pushed"),
    ]  # fmt: skip
    row = both["devices"][1]
    assert (row["attempts"], row["last_push"], row["last_report"]) == (1, at(), at(hours=1))

    text = cli("rollout", "status", "r1", "--db", db, "--now", at(hours=1), "--limit", "2").stdout
    assert "Complete:         0.0% (0 of 6 in-scope devices trust the root)" in text
    assert "Extension:        not yet, from 2026-03-07 12:00 UTC" in text
    assert re.search(r"d2\s+failed\s+1\s+2026-03-01 12:00 UTC\s+2026-03-01 13:00 UTC", text)
    # The next page's command names the database it came from (a URL without password).
    shown = without_password(str(db))
    assert (
        f"More: certflow rollout status r1 --db {shlex.quote(shown)} --limit 2 --after d2" in text
    )
    from_env = cli(
        "rollout",
        "status",
        "r1",
        "--now",
        at(hours=1),
        "--limit",
        "2",
        env={"CERTFLOW_DB": str(db)},
    )
    assert "More: certflow rollout status r1 --limit 2 --after d2" in from_env.stdout
    cli("rollout", "status", "r1", "--db", db, "--after", "nope", "--now", at(hours=1), expect=2)


def test_the_database_comes_from_certflow_db_when_not_given(db: str) -> None:
    listed = cli("rollout", "list", "--json", env={"CERTFLOW_DB": str(db)})
    assert [r["rollout"] for r in as_json(listed)] == ["r1"]


# --- confirmations -------------------------------------------------------------------------------


def test_proceed_lists_the_devices_cut_off_and_declining_changes_nothing(db: str) -> None:
    before = history(db)
    declined = cli("rollout", "proceed", "r1", "--db", db, "--now", at(), input="n\n", expect=1)
    assert (
        "6 devices do not trust the new root and would lose communication: d1, d2, d3, d4, d5, d6"
        in declined.stderr
    )
    assert "Proceed to Import anyway? [y/N]" in declined.stderr
    assert (
        "certflow: not imported: Proceed to Import declined; the import was not run"
        in declined.stderr
    )
    assert declined.stdout == ""
    assert history(db) == before
    assert status(db, at())["state"] == "pending"
    accepted = cli("rollout", "proceed", "r1", "--db", db, "--now", at(), input="y\n")
    assert "import the new certificate (FORCED" in accepted.stdout
    assert status(db, at())["state"] == "forced"


def test_import_now_asks_too_and_needs_an_answer(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from certflow.cli import _rollout

    monkeypatch.setattr(_rollout, "FIRST_IDS", 2)
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    before = history(db)
    nothing = cli("rollout", "import-now", "r1", "--db", db, "--now", at(hours=2), expect=2)
    assert "lose communication: d2, d3, ... (3 more)" in nothing.stderr
    assert "give --yes" in nothing.stderr  # no answer on standard input: say how to skip it
    declined = cli(
        "rollout", "import-now", "r1", "--db", db, "--now", at(hours=2), input="n\n", expect=1
    )
    assert "not imported" in declined.stderr
    assert history(db) == before
    accepted = cli("rollout", "import-now", "r1", "--db", db, "--now", at(hours=3), input="y\n")
    assert "import the new certificate (FORCED" in accepted.stdout
    assert status(db, at(hours=3))["state"] == "forced"


def test_yes_skips_the_question(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    done = cli("rollout", "import-now", "r1", "--yes", "--json", "--db", db, "--now", at(hours=1))
    assert "lose communication: d1" in done.stderr  # still listed, not asked
    assert "anyway?" not in done.stderr
    assert as_json(done)["state"] == "forced"


def test_extend_json_carries_the_dates_it_moved(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    done = as_json(cli("rollout", "extend", "r1", "--db", db, "--now", at(days=6), "--json"))
    assert (done["done"], done["changed"]) == ("extend", True)
    assert done["next_checkpoint"] == {"from": at(days=7), "to": at(days=14)}
    assert done["deadline"] == {"from": at(days=21), "to": at(days=28)}


def test_a_batch_in_the_journal_counts_its_commands_as_the_command_line_spells_them(
    db: str, tmp_path: Path
) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    reports = tmp_path / "r.csv"
    reports.write_text("d1,installed\nd2,failed,x\nd3,failed,y\n")
    cli("rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=1))
    text = cli("rollout", "history", "r1", "--db", db).stdout
    assert "batch of 3 (report failed x2, report installed x1) -> distributing" in text


def test_extend_says_what_it_did_when_another_process_extended_meanwhile(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another node extends the same rollout between this command's preview and its own
    # extension: the command must not print the preview's dates as if they were done.
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    real_preview = SqlStore.preview

    def preview_then_someone_extends(self: SqlStore, *args: Any) -> Any:
        seen = real_preview(self, *args)
        other = open_store(db)
        try:
            other.apply("r1", ExtendManually(), NOW + 6 * DAY)
        finally:
            other.close()
        return seen

    monkeypatch.setattr(SqlStore, "preview", preview_then_someone_extends)
    done = cli("rollout", "extend", "r1", "--db", db, "--now", at(days=6)).stdout
    assert done.splitlines()[:2] == [
        f"The extension set the next checkpoint to {show(NOW + 21 * DAY)}",
        f"The extension set the deadline to {show(NOW + 35 * DAY)}",
    ]


def test_the_confirmation_lists_what_the_engine_would_cut_off(db: str, tmp_path: Path) -> None:
    # The list comes from the engine's own preview: the devices its ReenrollmentRequired
    # names. A failed device that reported again, a removed one, an installed one: only
    # the engine's answer decides, never a rule worked out again here.
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    reports = tmp_path / "some.csv"
    reports.write_text("d1,installed\nd2,failed,disk full\nd3,installed\n")
    cli("rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=1))
    cli("rollout", "unenroll", "r1", "d4", "--db", db, "--now", at(hours=1))
    store = open_store(db)
    try:
        expected = store.preview("r1", ImportNow(), NOW + timedelta(hours=2)).cut_off
    finally:
        store.close()
    assert expected == ("d2", "d5", "d6")
    done = cli("rollout", "import-now", "r1", "--yes", "--db", db, "--now", at(hours=2))
    assert "3 devices do not trust the new root and would lose communication: d2, d5, d6" in (
        done.stderr
    )


def test_no_question_when_no_device_would_lose_communication(
    db: str, upload: Path, tmp_path: Path
) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    reports = tmp_path / "all.csv"
    reports.write_text("".join(f"{d},installed\n" for d in DEVICES))
    cli("rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=1))
    done = cli("rollout", "import-now", "r1", "--db", db, "--now", at(hours=2))
    assert "lose communication" not in done.output
    assert "rollout r1 is imported" in done.stdout
    # A publicly trusted root is on every device already: the import cuts no one off.
    cli(*new_args(upload, db, "pub", "--public-root"))
    public = cli("rollout", "proceed", "pub", "--db", db, "--now", at())
    assert "lose communication" not in public.output
    assert "rollout pub is imported" in public.stdout


# --- creating --------------------------------------------------------------------------------------


def test_new_refuses_a_certificate_with_error_findings_and_creates_nothing(
    upload: Path, backend: Backend
) -> None:
    args = new_args(upload, backend.target)
    args[args.index(HOST)] = "other.example.com"
    refused = cli(*args, expect=1)
    assert "error     host_mismatch" in refused.stdout  # the findings table
    assert refused.stderr.startswith("certflow: refused: the new certificate fails")
    assert created_nothing(backend)
    report = as_json(cli(*args, "--json", expect=1))
    assert report["ok"] is False


def test_new_with_an_explicit_root_and_kind(upload: Path, backend: Backend) -> None:
    db = backend.target
    made = as_json(
        cli(*new_args(upload, db, "r2", "--public-root", "--kind", "agent_server", "--json"))
    )
    assert (made["root_publicly_trusted"], made["kind"]) == (True, "agent_server")
    # The next step follows the root: distribute a private one, proceed with a public one.
    assert (
        "Next: certflow rollout distribute r3"
        in cli(*new_args(upload, db, "r3", "--private-root")).stdout
    )
    assert (
        "Next: certflow rollout proceed r4"
        in cli(*new_args(upload, db, "r4", "--public-root")).stdout
    )
    # The kind decides the rules: an agent-server rollout refuses retries.
    cli("rollout", "distribute", "r2", "--db", db, "--now", at())
    cli("rollout", "report", "r2", "d1", "failed", "--db", db, "--now", at(hours=1))
    cli("rollout", "retry", "r2", "d1", "--db", db, "--now", at(hours=2), expect=1)


def test_new_refuses_a_bad_device_list(upload: Path, tmp_path: Path, backend: Backend) -> None:
    devices = tmp_path / "devices.txt"
    devices.write_text("a\nb\n\na\nc\nb\n")
    args = new_args(upload, backend.target)
    args[args.index(upload / "devices.txt")] = devices
    error = cli(*args, expect=2).stderr
    assert "2 bad lines" in error
    assert "line 4: device 'a' is already on line 1" in error
    assert "line 6: device 'b' is already on line 2" in error
    devices.write_text("\n  \n")
    assert "no device ids" in cli(*args, expect=2).stderr
    devices.write_bytes(b"ok\n\xff\xfe\n")
    assert "line 2: not UTF-8 text" in cli(*args, expect=2).stderr
    devices.unlink()
    assert "no such file" in cli(*args, expect=2).stderr
    assert created_nothing(backend)


def test_new_refuses_a_name_already_taken(upload: Path, db: str) -> None:
    assert "already exists" in cli(*new_args(upload, db), expect=2).stderr


def test_progress_shows_only_at_a_terminal(
    upload: Path, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from certflow.cli import _rollout

    monkeypatch.setattr(_rollout, "PROGRESS_FROM", 1)  # even a small upload is "long"
    quiet = cli(*new_args(upload, backend.target, "a"))
    assert "Writing devices" not in quiet.output  # not a terminal: nothing extra
    monkeypatch.setattr(_rollout, "_interactive", lambda as_json: not as_json)
    shown = cli(*new_args(upload, backend.target, "b"))
    assert "Writing devices" in shown.stderr
    data = cli(*new_args(upload, backend.target, "c", "--json"))
    assert "Writing devices" not in data.output
    json.loads(data.stdout)


# --- bad input ---------------------------------------------------------------------------------------


def test_a_report_file_with_bad_lines_is_refused_whole(db: str, tmp_path: Path) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    before = status(db, at(hours=1))
    reports = tmp_path / "bad.csv"
    reports.write_text(
        "d1,installed\n"
        "d2,done\n"
        ",failed,reason\n"
        "d3,installed,why\n"
        "d4\n"
        "d1,failed,again\n"
        "d5,failed,fine\n"
    )
    error = cli(
        "rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=1), expect=2
    ).stderr
    assert "5 bad lines, nothing was applied" in error
    for expected in (
        "line 2: the outcome must be 'installed' or 'failed', got 'done'",
        "line 3: no device id",
        "line 4: a reason is only for 'failed'",
        "line 5: the outcome must be 'installed' or 'failed', it is missing",
        "line 6: device 'd1' is already reported on line 1",
    ):
        assert expected in error
    assert "line 1:" not in error
    assert "line 7:" not in error
    assert status(db, at(hours=1)) == before

    reports.write_text("d1,installed\nghost,installed\nd2,failed\nspook,failed,x\n")
    error = cli(
        "rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=1), expect=2
    ).stderr
    assert "line 2: unknown device 'ghost'" in error
    assert "line 4: unknown device 'spook'" in error
    assert status(db, at(hours=1)) == before

    # A line the rules refuse refuses the file (exit 1), naming its line.
    cli("rollout", "unenroll", "r1", "d3", "--db", db, "--now", at(hours=1))
    before = status(db, at(hours=1))
    reports.write_text("d1,installed\nd3,installed\n")
    refused = cli(
        "rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(hours=2), expect=1
    )
    assert f"{reports}: line 2: " in refused.stderr
    assert "nothing was applied" in refused.stderr
    assert status(db, at(hours=1))["counts"] == before["counts"]

    reports.write_text("\n\n")
    assert (
        "no reports"
        in cli("rollout", "report", "r1", "--file", reports, "--db", db, expect=2).stderr
    )


def test_unknown_rollout_and_unknown_device(db: str) -> None:
    missing = cli("rollout", "distribute", "nope", "--db", db, "--now", at(), expect=2)
    assert "no rollout named 'nope'" in missing.stderr
    assert str(db) in missing.stderr
    for command in (["status", "nope"], ["history", "nope"], ["effects", "nope"], ["tick", "nope"]):
        cli("rollout", *command, "--db", db, "--now", at(), expect=2)
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    ghost = cli(
        "rollout", "report", "r1", "ghost", "installed", "--db", db, "--now", at(), expect=2
    )
    assert "ghost" in ghost.stderr
    assert (
        "no effect with id 'r1:99:0'"
        in cli("rollout", "ack", "r1", "r1:99:0", "--db", db, expect=2).stderr
    )
    other = cli("rollout", "ack", "r1", "r2:2:0", "--db", db, expect=2)
    assert "not of rollout 'r1'" in other.stderr


def test_time_never_goes_backwards_and_needs_an_offset(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at(days=1))
    before = history(db)
    earlier = cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(), expect=2)
    assert "earlier than the last instant" in earlier.stderr
    cli("rollout", "tick", "r1", "--db", db, "--now", at(), expect=2)
    naive = cli(
        "rollout",
        "report",
        "r1",
        "d1",
        "installed",
        "--db",
        db,
        "--now",
        "2026-03-02T12:00:00",
        expect=2,
    )
    assert "--now" in naive.stderr
    assert "no UTC offset" in naive.stderr
    garbage = cli("rollout", "status", "r1", "--db", db, "--now", "tomorrow", expect=2)
    assert "not an ISO 8601 time" in garbage.stderr
    assert history(db) == before
    # Other offsets are the same instant in UTC.
    cli(
        "rollout",
        "report",
        "r1",
        "d1",
        "installed",
        "--db",
        db,
        "--now",
        "2026-03-02T17:30:00+05:30",
    )
    assert history(db)[-1]["at"] == at(days=1)


def test_a_refused_command_exits_1_and_changes_nothing(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    before = history(db)
    again = cli("rollout", "distribute", "r1", "--db", db, "--now", at(hours=1), expect=1)
    assert again.stderr.startswith("certflow: refused: `distribute` refused")
    cli("rollout", "reenrolled", "r1", "d1", "--db", db, "--now", at(hours=1), expect=1)
    assert history(db) == before


def test_usage_errors_of_report_and_retry(db: str) -> None:
    assert "--file" in cli("rollout", "report", "r1", "--db", db, expect=2).stderr
    assert (
        "--reason"
        in cli(
            "rollout", "report", "r1", "d1", "installed", "--reason", "x", "--db", db, expect=2
        ).stderr
    )
    assert "--all-failed" in cli("rollout", "retry", "r1", "--db", db, expect=2).stderr
    assert (
        "--all-failed"
        in cli("rollout", "retry", "r1", "d1", "--all-failed", "--db", db, expect=2).stderr
    )
    cli("rollout", "report", "r1", "d1", "maybe", "--db", db, expect=2)


def test_a_missing_database_is_an_error_and_is_not_created(backend: Backend) -> None:
    # SQLite: no file at the path; PostgreSQL: a database without certflow's schema.
    missing = backend.target
    for command in (["status", "r1"], ["distribute", "r1"], ["list"], ["tick"], ["history", "r1"]):
        error = cli("rollout", *command, "--db", missing, "--now", at(), expect=2).stderr
        assert f"{missing}: no certflow database there" in error
    assert created_nothing(backend)


def test_a_database_in_a_missing_folder_says_the_folder_does_not_exist(
    upload: Path, tmp_path: Path
) -> None:  # SQLite's files only
    missing = tmp_path / "nosuch"
    db = missing / "x.db"
    made = cli(*new_args(upload, db), expect=2).stderr
    assert made == (
        f"certflow: error: {db}: cannot create the database: the folder {missing} does not "
        "exist; create it first\n"
    )
    for command in (["status", "r1"], ["list"], ["distribute", "r1"]):
        error = cli("rollout", *command, "--db", db, "--now", at(), expect=2).stderr
        assert error == (
            f"certflow: error: {db}: no certflow database there: the folder {missing} does not "
            "exist (check --db / CERTFLOW_DB)\n"
        )
    simulated = cli("simulate", "--devices", "5", "--quiet", "--db", db, expect=2).stderr
    assert f"the folder {missing} does not exist" in simulated
    assert not missing.exists()


def test_a_corrupt_database_file_is_refused(tmp_path: Path) -> None:  # SQLite's files only
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00\x13garbage, not SQLite" * 300)
    error = cli("rollout", "status", "r1", "--db", junk, "--now", at(), expect=2).stderr
    assert str(junk) in error
    assert junk.read_bytes() == b"\x00\x13garbage, not SQLite" * 300


def test_a_newer_database_is_refused(db: str, backend: Backend) -> None:
    backend.query("UPDATE certflow_schema SET version = version + 1")
    newer = cli("rollout", "list", "--db", db, "--now", at(), expect=2).stderr
    assert "written by a newer certflow" in newer
    assert db in newer


def test_an_unsupported_database_url_is_refused(tmp_path: Path) -> None:
    assert "unknown URL scheme" in cli("rollout", "list", "--db", "mysql://x/y", expect=2).stderr


# --- refusals as data ------------------------------------------------------------------------------


def test_a_refusal_s_hint_is_its_data_in_the_command_line_s_words() -> None:
    """The hint is the core's field (never read out of the text, where a device id may
    hold anything), its commands spelled as command lines of the rollout."""
    from certflow.cli._rollout import refusal_data
    from certflow.core.errors import CommandRefused

    removed = CommandRefused(
        "device 'x: it is removed; y' cannot be enrolled: it is removed; send Enroll",
        reason="device_state",
        device_id="x: it is removed; y",
        device_state="removed",
        hint="send Enroll",
    )
    assert refusal_data(removed, "r1")["hint"] == (
        "send `certflow rollout enroll r1 x: it is removed; y`"
    )
    restart = CommandRefused("`restarted` refused: the restart is required", reason="restart_state")
    assert refusal_data(restart, "r1")["hint"] is None


# --- help and messages ---------------------------------------------------------------------------

# store.md's table, and `forecast` (issue 10's command over a stored rollout).
SUBCOMMANDS = [
    "new", "distribute", "proceed", "import-now", "extend", "cancel", "report", "retry",
    "enroll", "unenroll", "reenrolled", "restarted", "tick", "effects", "ack", "status",
    "history", "list", "forecast", "export",
]  # fmt: skip


def test_the_subcommands_are_the_contracts_spellings() -> None:
    from certflow.cli._lazy import subcommands
    from certflow.cli._rollout import rollout_group

    assert sorted(subcommands(rollout_group)) == sorted(SUBCOMMANDS)


def _options(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help_and_the_shared_options(command: str) -> None:
    text = cli("rollout", command, "--help").stdout
    assert text.startswith(f"Usage: certflow rollout {command}")
    assert {"--db", "--now", "--json"} <= _options(text)


# (subcommand, arguments): errors of the rollout commands that name an option.
ERRORS_NAMING_OPTIONS: list[tuple[str, list[str]]] = [
    ("report", ["r1"]),
    ("report", ["r1", "d1", "installed", "--reason", "x"]),
    ("report", ["r1", "d1", "--file", "x.csv"]),
    ("retry", ["r1"]),
    ("status", ["r1", "--now", "2026-03-01T12:00:00"]),
    ("distribute", ["r1", "--now", "soon"]),
    ("new", ["r1"]),
]


@pytest.mark.parametrize(
    ("command", "args"),
    ERRORS_NAMING_OPTIONS,
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_every_option_an_error_names_is_an_option_of_that_command(
    command: str, args: list[str], db: str
) -> None:
    done = cli("rollout", command, *args, "--db", db, expect=2)
    named = _options(done.stderr)
    assert named, f"the error names no option: {done.stderr}"
    offered = _options(cli("rollout", command, "--help").stdout)
    assert named <= offered, f"{done.stderr} names {named - offered}, not in --help"


def test_the_import_prompt_names_an_option_of_its_command(db: str) -> None:
    for command in ("proceed", "distribute", "import-now"):  # import from pending, distributing
        if command == "distribute":
            cli("rollout", command, "r1", "--db", db, "--now", at(hours=1))
            continue
        error = cli("rollout", command, "r1", "--db", db, "--now", at(hours=1), expect=2).stderr
        named = _options(error)
        assert "--yes" in named
        assert named <= _options(cli("rollout", command, "--help").stdout)


def test_the_clock_is_read_only_without_now(db: str) -> None:
    # No --now: the current time, which is after t0, so the rollout accepts it.
    cli("rollout", "enroll", "r1", "d9", "--db", db)
    assert datetime.fromisoformat(history(db)[-1]["at"]) > datetime.now(UTC) - timedelta(minutes=5)


def run_process(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``certflow rollout ARGS`` as a real process in ``cwd``; never a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "certflow", "rollout", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done


def test_a_real_process_exits_with_the_codes_and_no_traceback(db: str, tmp_path: Path) -> None:
    assert run_process(tmp_path, "distribute", "r1", "--db", db, "--now", at()).returncode == 0
    refused = run_process(tmp_path, "distribute", "r1", "--db", db, "--now", at(hours=1))
    assert (refused.returncode, refused.stderr[:18]) == (1, "certflow: refused:")


def test_a_real_process_refuses_a_corrupt_file_and_creates_no_default(tmp_path: Path) -> None:
    # SQLite's files only: a relative --db path, and ./certflow.db when --db is not given.
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_process(tmp_path, *args)

    (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
    corrupt = run("list", "--db", "junk.db")
    assert (corrupt.returncode, corrupt.stderr[:16]) == (2, "certflow: error:")
    assert "junk.db" in corrupt.stderr
    # Without --db, ./certflow.db in the working folder: missing here, and not created.
    assert run("list").returncode == 2
    assert not (tmp_path / "certflow.db").exists()


def test_new_with_a_bad_name_creates_no_database(tmp_path: Path, backend: Backend) -> None:
    for name in "xyz":
        (tmp_path / name).write_text("")
    result = CliRunner().invoke(
        main,
        ["rollout", "new", "bad name", "--db", backend.target, "--cert", str(tmp_path / "x"),
         "--existing", str(tmp_path / "y"), "--devices", str(tmp_path / "z"), "--host", "h"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "rollout name 'bad name' is not valid" in result.output
    assert created_nothing(backend)


@pytest.mark.parametrize("name", ["Über-2026", "परीक्षण.1", "r_٣"])
def test_a_rollout_name_may_be_letters_of_any_script(
    upload: Path, tmp_path: Path, name: str
) -> None:
    """The rule says letters, and Ü is a letter (issue 18); so are the marks of Hindi."""
    db = tmp_path / "names.db"
    cli(*new_args(upload, db, name))
    assert as_json(cli("rollout", "list", "--db", db, "--json"))[0]["rollout"] == name
    assert cli("rollout", "distribute", name, "--db", db, "--now", at()).stdout.startswith(
        f"distribute: rollout {name} is distributing"
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a b", "character 2 is ' ' (U+0020 SPACE)"),
        ("-x", "it starts with '-' (U+002D HYPHEN-MINUS)"),
        ("e\u0301", "it is not in NFC form (a letter and its accent typed apart)"),
        ("a:b", "character 2 is ':' (U+003A COLON)"),
        ("x" * 101, "it is 101 characters long"),
    ],
)
def test_a_bad_rollout_name_is_refused_saying_what_is_wrong_and_the_rule(
    tmp_path: Path, name: str, problem: str
) -> None:
    error = cli("rollout", "status", "--db", tmp_path / "none.db", "--", name, expect=2).stderr
    assert f"is not valid: {problem}; a rollout name is 1 to 100 characters" in error
    assert "Unicode categories L and M" in error


def test_a_long_input_is_cut_in_the_message(tmp_path: Path) -> None:
    name = "n" * 5_000
    for args in (["status", name], ["tick", name], ["history", name]):
        error = cli("rollout", *args, "--db", tmp_path / "none.db", expect=2).stderr
        assert f"rollout name '{'n' * 60}'… (5,000 characters) is not valid" in error
        assert len(error) < 600, error


def test_forecast_of_a_stored_rollout_reads_its_journal(backend: Backend) -> None:
    import certflow as cf
    from tests.core.strategies import HOUR, T0, build

    db = backend.target
    with backend.open() as store:
        store.create("live", build(60))
        store.apply("live", cf.DistributeRoot(), T0)
        for n in range(40):  # answers spread over two days, a few failures
            report = cf.DeviceFailed(f"d{n}", "x") if n % 8 == 0 else cf.DeviceInstalled(f"d{n}")
            store.apply("live", report, T0 + (n + 1) * HOUR)
        store.apply("live", cf.DeviceInstalled("d1"), T0 + 50 * HOUR)  # a duplicate
        pushes, reports = store.activity("live")
    assert pushes["d59"] == [T0]
    assert reports["d1"] == [T0 + 2 * HOUR]  # the duplicate answered no push
    assert "d59" not in reports
    now = (T0 + 3 * 24 * HOUR).isoformat()
    result = cli("rollout", "forecast", "live", "--db", db, "--now", now, "--runs", "20", "--json")
    document = as_json(result)
    assert document["rollout"] == "live"
    assert (document["answered"], document["censored"]) == (40, 20)
    chances = [c["probability"] for c in document["as_is"]["checkpoints"]]
    assert abs(sum(chances) + document["as_is"]["other"] - 1) < 1e-9
    text = cli("rollout", "forecast", "live", "--db", db, "--now", now, "--runs", "20").stdout
    assert text.startswith(f"forecast at {now[:10]} 09:00 UTC from 20 simulated futures")
    with backend.open(create=False) as store:  # a forecast writes nothing
        assert [e.kind for e in store.journal("live")][-1] == "command"
        store.create("waiting", build(3))
    refused = cli("rollout", "forecast", "waiting", "--db", db, "--now", now, expect=2)
    assert "only a distributing rollout can be forecast; this one is pending" in refused.stderr


def test_an_import_the_rules_refuse_is_refused_before_any_question(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    before = history(db)
    refused = cli("rollout", "proceed", "r1", "--db", db, "--now", at(hours=1), expect=1)
    assert "anyway?" not in refused.stderr  # nothing asked, no answer needed
    assert "lose communication" not in refused.stderr
    assert refused.stderr.startswith("certflow: refused: `proceed` refused: the rollout is")
    assert history(db) == before


# --- found by review: inputs that once gave a traceback or changed what they should not ---------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "r1", "\udcff", "installed"], "is not valid UTF-8 text"),  # argv b'\xff'
        (["status", "\udcff"], "it starts with '\\udcff' (U+DCFF)"),
        (["ack", "r1", "r1:99999999999999999999999:0"], "no effect with id"),
        (["ack", "r1", "r1:2:99999999999999999999"], "no effect with id"),
        (["ack", "r1", "r1:02:0"], "no effect with id 'r1:02:0'"),
    ],
)
def test_odd_input_is_a_clear_error_not_a_traceback(db: str, args: list[str], message: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    result = cli("rollout", *args, "--db", db, "--now", at(1), expect=2)
    assert message in result.stderr


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_out_of_range_is_bad_input(db: str, when: str) -> None:
    result = cli("rollout", "status", "r1", "--db", db, "--now", when, expect=2)
    assert "is out of range" in result.stderr


def test_distributing_near_the_end_of_time_is_bad_input(db: str) -> None:
    result = cli(
        "rollout", "distribute", "r1", "--db", db, "--now", "9999-12-31T00:00:00Z", expect=2
    )
    assert "out of range" in result.stderr


def test_status_with_an_unknown_after_advances_nothing(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    before = history(db)
    result = cli(
        "rollout", "status", "r1", "--after", "typo", "--db", db, "--now", at(25), expect=2
    )
    assert "unknown device 'typo'" in result.stderr
    assert history(db) == before  # the day-21 import was not run by a failed read


def test_status_before_the_rollout_s_clock_is_refused(db: str) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at(1))
    result = cli("rollout", "status", "r1", "--db", db, "--now", at(0), expect=2)
    assert "is earlier than the last instant rollout 'r1' has seen" in result.stderr


def test_the_exported_history_replays_to_the_stored_rollout(db: str, backend: Backend) -> None:
    import certflow as cf
    from certflow.core.serialization import decode_command

    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    cli("rollout", "report", "r1", "d1", "installed", "--db", db, "--now", at(hours=1))
    first, *rest = history(db)
    rollout = cf.loads(json.dumps(first["document"]))
    for entry in rest:
        commands = [decode_command(c) for c in entry["commands"]]
        rollout = cf.apply_all(rollout, commands, datetime.fromisoformat(entry["at"])).rollout
    with backend.open(create=False) as store:
        assert cf.dumps(rollout) == store.dumps("r1")


def test_an_empty_reason_column_is_no_reason(db: str, tmp_path: Path) -> None:
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    reports = tmp_path / "r.csv"
    reports.write_text("d2,installed,\nd3,failed,timeout\n")
    cli("rollout", "report", "r1", "--file", reports, "--db", db, "--now", at(1))
    counts = status(db, at(1))["counts"]
    assert (counts["installed"], counts["failed"]) == (1, 1)


# --- PostgreSQL URLs -------------------------------------------------------------------------------

PASSWORD = "s3cret"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections: bound for the test (so that nothing
    else takes it) but never listening."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port: int = holder.getsockname()[1]
        yield port


def test_an_unreachable_server_is_one_line_naming_the_url_without_its_password(
    upload: Path, closed_port: int
) -> None:
    url = f"postgresql://certflow:{PASSWORD}@127.0.0.1:{closed_port}/x"
    shown = f"postgresql://certflow:***@127.0.0.1:{closed_port}/x"
    # A temporary failure (exit 75): nothing changed, and the same command may work later.
    runs = [
        cli("rollout", *command, "--db", url, "--now", at(), expect=75)
        for command in (["status", "r1"], ["list"], ["tick"], ["distribute", "r1"])
    ]
    runs.append(cli(*new_args(upload, url), expect=75))
    for done in runs:
        said = done.stdout + done.stderr
        assert PASSWORD not in said
        assert "***" in said
        assert "Traceback" not in said
        assert shown in done.stderr
        assert "cannot connect" in done.stderr
        assert "try again" in done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr


def rollouts_in(url: str) -> list[str]:
    """The names of the rollouts in the ``certflow`` schema of the database at ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT name FROM certflow.rollouts ORDER BY name").fetchall()
    return [name for (name,) in rows]


def test_a_password_in_the_url_is_never_shown(
    upload: Path, postgres_server: LocalPostgres, postgres_url: str
) -> None:
    # The test server trusts local connections: the password is accepted and ignored.
    dbname = urllib.parse.urlsplit(postgres_url).path.lstrip("/")
    url = postgres_server.url(dbname, password=PASSWORD)
    shown = f"postgresql://certflow:***@{postgres_server.host}:{postgres_server.port}/{dbname}"
    runs = {
        "new": cli(*new_args(upload, url)),
        "new --json": cli(*new_args(upload, url, "r2", "--json")),
        "list": cli("rollout", "list", "--db", url, "--now", at()),
        "status": cli("rollout", "status", "r1", "--db", url, "--now", at()),
        "CERTFLOW_DB": cli("rollout", "list", "--now", at(), env={"CERTFLOW_DB": url}),
        # Errors that name the database.
        "no such rollout": cli("rollout", "distribute", "no", "--db", url, "--now", at(), expect=2),
        "name taken": cli(*new_args(upload, url), expect=2),
    }
    assert rollouts_in(postgres_url) == ["r1", "r2"]
    assert "r1" in runs["list"].stdout
    assert shown in runs["no such rollout"].stderr
    # `rollout new` echoes --db as given ("Created rollout ... in URL", and "database" in
    # its --json): the one place that showed the password when this test was written.
    shown_in = [what for what, done in runs.items() if PASSWORD in done.stdout + done.stderr]
    assert shown_in == []


def test_a_schema_of_other_tables_is_refused_and_left_alone(
    upload: Path, postgres_url: str
) -> None:
    import psycopg

    # PostgreSQL's counterpart of a file that is not certflow's: a schema named `certflow`
    # holding someone else's table.
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA certflow")
        connection.execute("CREATE TABLE certflow.orders (id integer)")
        connection.execute("INSERT INTO certflow.orders VALUES (7)")
    for done in (
        cli("rollout", "list", "--db", postgres_url, "--now", at(), expect=2),
        cli("rollout", "status", "r1", "--db", postgres_url, "--now", at(), expect=2),
        cli(*new_args(upload, postgres_url), expect=2),
    ):
        assert f"{postgres_url}: schema 'certflow' holds tables that are not certflow's" in (
            done.stderr
        )
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'certflow'"
        ).fetchall()
        assert tables == [("orders",)]
        assert connection.execute("SELECT id FROM certflow.orders").fetchall() == [(7,)]


# --- The existing certificate's expiry (rollout-rules.md) ---------------------------------------


def test_new_and_distribute_warn_when_the_existing_certificate_expires_before_day_7(
    upload: Path, backend: Backend
) -> None:
    # The current certificate expires on day 40: created on day 36, it expires before the
    # first checkpoint of a distribution started then.
    created = cli(*new_args(upload, backend.target, "r1", "--now", at(36)))
    assert "certflow: warning: the existing certificate expires on" in created.stderr
    assert "before the first checkpoint" in created.stderr
    data = as_json(cli(*new_args(upload, backend.target, "r2", "--now", at(36), "--json")))
    assert any("before the first checkpoint" in w for w in data["warnings"])
    started = cli("rollout", "distribute", "r1", "--db", backend.target, "--now", at(36))
    assert "lies past the existing certificate's expiry" in started.stderr
    shown = cli("rollout", "status", "r1", "--db", backend.target, "--now", at(37)).stdout
    assert "Existing cert:    expires" in shown
    assert "Warning:" in shown


def test_extend_warns_when_the_moved_deadline_lies_past_the_expiry(
    upload: Path, backend: Backend
) -> None:
    # Created and started on day 15: deadline day 36, before the expiry on day 40; one
    # extension on day 21 moves it to day 43, past the expiry.
    cli(*new_args(upload, backend.target, "r1", "--now", at(15)))
    quiet = cli("rollout", "distribute", "r1", "--db", backend.target, "--now", at(15))
    assert "warning" not in quiet.stderr
    moved = cli("rollout", "extend", "r1", "--db", backend.target, "--now", at(21))
    assert "certflow: warning: the deadline" in moved.stderr
    assert "lies past the existing certificate's expiry" in moved.stderr
