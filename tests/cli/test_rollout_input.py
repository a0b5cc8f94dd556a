"""``certflow rollout report --file``: the file as it arrives (``store.md``, the ``report
NAME --file CSV`` row). ``-`` reads standard input; a first line ``device,outcome`` is a
header; a malformed line refuses the file, and the bad lines are named by number (the
first 20, then how many more), an unclosed quote at the line where it opens. Through the
real command line, on both backends; what the rules refuse is in
``test_rollout_devices.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result

from certflow.cli import _rollout_input
from tests.cli.test_rollout import as_json, at, cli, history, status
from tests.cli.test_rollout import db as db  # the fixture: rollout r1, pending at t0
from tests.cli.test_rollout import upload as upload  # the fixture: the uploaded files


def _distributing(db: str) -> list[dict[str, object]]:
    """r1 distributing since t0; its history then."""
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())
    return history(db)


def _report(
    db: str, source: str | Path, *extra: str, expect: int = 0, input: str | None = None
) -> Result:
    return cli(
        "rollout", "report", "r1", "--file", source, "--db", db, "--now", at(hours=1), *extra,
        expect=expect, input=input,
    )  # fmt: skip


def _states(db: str) -> dict[str, str]:
    return {d["device"]: d["state"] for d in status(db, at(hours=1))["devices"]}


# --- standard input and the header -------------------------------------------------------------


def test_a_dash_reads_the_reports_from_standard_input(db: str) -> None:
    _distributing(db)
    done = as_json(_report(db, "-", "--json", input="d1,installed\nd2,failed,disk full\n"))
    assert done["done"] == "2 reports"
    states = _states(db)
    assert (states["d1"], states["d2"]) == ("installed", "failed")


def test_standard_input_is_named_so_in_errors(db: str) -> None:
    _distributing(db)
    error = _report(db, "-", input="d1,installed\nd2,done\n", expect=2).stderr
    assert "standard input: 1 bad line, nothing was applied" in error
    assert "standard input: line 2: the outcome must be 'installed' or 'failed'" in error


def test_standard_input_is_read_with_a_bound(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _distributing(db)
    monkeypatch.setattr(_rollout_input, "FILE_LIMIT", 32)
    error = _report(db, "-", input="d1,installed\n" * 3, expect=2).stderr
    assert "standard input: larger than 32 bytes (the limit for a report file)" in error
    assert history(db) == before


@pytest.mark.parametrize(
    "header",
    ["device,outcome", " Device , OUTCOME ", "DEVICE,Outcome,Reason", "\ufeffdevice,outcome"],
    ids=["plain", "spaces and case", "with a reason column", "after a byte order mark"],
)
def test_a_first_line_device_outcome_is_a_header(db: str, tmp_path: Path, header: str) -> None:
    _distributing(db)
    reports = tmp_path / "export.csv"
    reports.write_text(f"{header}\r\nd1,installed\r\nd2,failed,no space\r\n")
    assert _report(db, reports).stdout.startswith("2 reports: ")
    states = _states(db)
    assert (states["d1"], states["d2"]) == ("installed", "failed")


def test_only_the_first_line_is_a_header(db: str, tmp_path: Path) -> None:
    before = _distributing(db)
    reports = tmp_path / "export.csv"
    reports.write_text("d1,installed\ndevice,outcome\n")
    error = _report(db, reports, expect=2).stderr
    assert "line 2: the outcome must be 'installed' or 'failed', got 'outcome'" in error
    assert history(db) == before


# --- malformed lines -------------------------------------------------------------------------


def test_an_unclosed_quote_is_named_where_it_opens_and_swallows_no_line(
    db: str, tmp_path: Path
) -> None:
    before = _distributing(db)
    reports = tmp_path / "quote.csv"
    reports.write_text(
        'd1,installed\nd2,failed,"disk, full"\nd3,failed,"no answer\nd4,installed\nd5,done\n'
        "d6,installed\n"
    )
    error = _report(db, reports, expect=2).stderr
    assert f"{reports}: 2 bad lines, nothing was applied" in error
    assert f"{reports}: line 3: a quote opens on this line and is not closed on it" in error
    # The lines after it are read on their own: line 5's own problem is named.
    assert f"{reports}: line 5: the outcome must be 'installed' or 'failed', got 'done'" in error
    assert history(db) == before
    # A quoted comma is no problem; with the quote closed the file applies, line by line.
    reports.write_text('d1,installed\nd2,failed,"disk, full"\nd3,failed,"no answer"\n')
    _report(db, reports)
    failed = {
        d["device"]: d["reason"] for d in status(db, at(hours=1), "--state", "failed")["devices"]
    }
    assert failed == {"d2": "disk, full", "d3": "no answer"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('d1,"installed"x', "not a CSV row (',' expected after '\"')"),
        ("d1,installed\rd2,installed", "a carriage return inside the line"),
        ("d\x001,installed", "the line contains a NUL character"),
    ],
    ids=["text after a closing quote", "a bare carriage return", "a NUL character"],
)
def test_a_line_that_is_no_csv_row_is_named(
    db: str, tmp_path: Path, line: str, problem: str
) -> None:
    before = _distributing(db)
    reports = tmp_path / "odd.csv"
    reports.write_text(f"d2,installed\n{line}\n", newline="")
    error = _report(db, reports, expect=2).stderr
    assert f"{reports}: line 2: {problem}" in error
    assert history(db) == before


def test_malformed_lines_are_named_the_first_20_then_counted(db: str, tmp_path: Path) -> None:
    before = _distributing(db)
    reports = tmp_path / "bad.csv"
    reports.write_text("d1,installed\n" + "".join(f"x{n},maybe\n" for n in range(2, 27)))
    error = _report(db, reports, expect=2).stderr
    assert f"{reports}: 25 bad lines, nothing was applied" in error
    named = [n for n in range(1, 30) if f"{reports}: line {n}: " in error]
    assert named == list(range(2, 22))
    assert error.rstrip().endswith("and 5 more")
    assert len(error.splitlines()) == 22
    assert history(db) == before


# --- device ids: printable and bounded (issue 18, item 5) --------------------------------------


def test_a_report_file_s_odd_device_ids_are_bad_lines_each_named(db: str, tmp_path: Path) -> None:
    before = _distributing(db)
    reports = tmp_path / "odd.csv"
    long_id = "y" * 3_000
    reports.write_text(f"d1,installed\nd\x07x,installed\n{long_id},failed,r\n", encoding="utf-8")
    error = _report(db, reports, expect=2).stderr
    assert "2 bad lines, nothing was applied (a device id is 1 to 256 printable" in error
    assert f"{reports}: line 2: device id 'd\\x07x' is not valid: character 2 is '\\x07'" in error
    assert f"line 3: device id '{'y' * 60}'… (3,000 characters) is not valid: it is 3,000" in error
    assert long_id not in error
    assert history(db) == before


def test_a_device_list_s_odd_ids_are_named_and_nothing_is_created(
    upload: Path, tmp_path: Path
) -> None:
    devices = tmp_path / "devices.txt"
    devices.write_text("d1\nd\tx\n" + "z" * 257 + "\nd1\n", encoding="utf-8")
    db = tmp_path / "odd.db"
    args: list[str | Path] = [
        "rollout", "new", "r1", "--cert", upload / "server.crt", "--cert", upload / "server.key",
        "--existing", upload / "current.crt", "--devices", devices, "--host", "mdm.example.com",
        "--db", db, "--now", at(),
    ]  # fmt: skip
    error = cli(*args, expect=2).stderr
    assert f"{devices}: 3 bad lines" in error
    assert "line 2: device id 'd\\tx' is not valid: character 2 is '\\t' (U+0009)" in error
    assert "line 3: device id 'zzz" in error
    assert "(257 characters) is not valid" in error
    assert "line 4: device 'd1' is already on line 1" in error
    assert not db.exists()


def test_enroll_refuses_an_odd_new_id_saying_the_rule(db: str) -> None:
    _distributing(db)
    error = cli("rollout", "enroll", "r1", "new\x1b[31m", "--db", db, "--now", at(1), expect=2)
    assert "device id 'new\\x1b[31m' is not valid: character 4 is '\\x1b'" in error.stderr
    assert "a device id is 1 to 256 printable characters" in error.stderr
