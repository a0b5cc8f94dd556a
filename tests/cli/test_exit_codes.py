"""Every command of ``certflow`` held to the one table of exit codes (docs/scripting.md,
"Exit codes"), and to its machine-readable failures.

The table below names, for every command the ``certflow`` group has (found by walking
it, so that a new command without cases fails here), a run for each code that applies
to it: 0 (done), 1 (refused by the rules, or a failed check), 2 (bad input, for every
command) and, for the commands of a database, 75 (an unreachable one). Under ``--json``
each failure is also one JSON object on standard output. Interrupts (130, or 0 once
applied) and a closed pipe (141, or 0 once applied) have their own tests at the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certflow import certs
from certflow.cli import _rollout_outbox, main
from certflow.cli._rollout import _refusals
from certflow.store import SqlStore
from tests.certs.factory import DAY, HOST, NOW, build, key_pem, pem, pki, rsa_key
from tests.cli.test_rollout import DEVICES, at

# --- the commands and their cases ----------------------------------------------------------------


def leaf_commands(group: click.Group = main, path: str = "") -> dict[str, click.Command]:
    """Every command of the ``certflow`` group that runs (not a group), by its path."""
    found: dict[str, click.Command] = {}
    context = click.Context(group)
    for name in group.list_commands(context):  # a group may load its commands lazily
        command = group.get_command(context, name)
        assert command is not None, name
        spelled = f"{path} {name}".strip()
        if isinstance(command, click.Group):
            found |= leaf_commands(command, spelled)
        else:
            found[spelled] = command
    return found


SUBJECT = (
    "--country IN --state Kerala --locality Kochi --org Example --common-name "
    "mdm.example.com --no-input"
)
T0, H3, D6 = at(), at(hours=3), at(days=6)
UPLOAD = (
    "--cert {w}/server.crt --cert {w}/server.key --existing {w}/current.crt "
    "--devices {w}/devices.txt --host " + HOST
)

#: For each command, a run giving each code that applies to it. ``{w}`` is the folder of
#: the material, ``{db}`` a copy of a database holding rollouts ``pending``, ``live``
#: (distributing, d1 failed), ``gone`` (cancelled) and ``done`` (imported, forced),
#: ``{out}`` an empty folder and ``{tmp}`` the test's folder.
CASES: dict[str, dict[int, str]] = {
    "cert inspect": {0: "{w}/server.crt", 2: "{w}/missing.crt"},
    "cert check": {
        0: f"{{w}}/server.crt {{w}}/server.key --host {HOST} --now {T0}",
        1: f"{{w}}/server.crt {{w}}/server.key --host other.example.com --now {T0}",
        2: f"{{w}}/missing.crt --host {HOST}",
    },
    "cert export": {0: "{w}/server.crt --out {out}", 2: "{w}/server.crt --out {tmp}/missing"},
    "csr new": {0: f"{SUBJECT} --out {{out}}", 2: "--country IN --no-input --out {out}"},
    "csr show": {0: "{w}/server.csr", 1: "{w}/tampered.der", 2: "{w}/missing.csr"},
    "csr openssl-config": {0: SUBJECT, 2: f"{SUBJECT} --out {{tmp}}/missing/x.conf"},
    "key decrypt": {
        0: "{w}/enc.key --out {out}/k.pem --password-file {w}/pw.txt",
        2: "{w}/enc.key --out {out}/k.pem --password-file {w}/wrong.txt",
    },
    "key encrypt": {
        0: "{w}/plain.key --out {out}/k.pem --new-password-file {w}/pw.txt",
        2: "{w}/missing.key --out {out}/k.pem --new-password-file {w}/pw.txt",
    },
    "simulate": {0: "--devices 10 --quiet", 2: "--devices 0"},
    # Each gets --db {db} too. `serve` serves until stopped: its server is not started here.
    "serve": {0: "--token-file {w}/token", 2: "--token-file {w}/missing-token"},
    "worker": {
        0: f"--config {{w}}/worker.toml --once --now {H3}",
        2: f"--config {{w}}/missing.toml --once --now {H3}",
    },
    # The rollout commands: each gets --db {db} (75: an unreachable server instead).
    "rollout new": {
        0: f"r2 {UPLOAD} --now {T0}",
        1: f"r2 {UPLOAD} --host other.example.com --now {T0}",
        2: f"'bad name' {UPLOAD} --now {T0}",
    },
    "rollout distribute": {0: f"pending --now {T0}", 1: f"gone --now {T0}", 2: "nosuch"},
    "rollout proceed": {0: f"pending --yes --now {T0}", 1: f"gone --yes --now {T0}", 2: "nosuch"},
    "rollout import-now": {0: f"live --yes --now {H3}", 1: f"pending --yes --now {T0}", 2: "x"},
    "rollout extend": {0: f"live --now {D6}", 1: f"live --now {H3}", 2: "nosuch"},
    "rollout cancel": {0: f"pending --now {T0}", 1: f"gone --now {T0}", 2: "nosuch"},
    "rollout report": {
        0: f"live d2 installed --now {H3}",
        1: f"gone d1 installed --now {H3}",
        2: f"live nosuch installed --now {H3}",
    },
    "rollout retry": {0: f"live d1 --now {H3}", 1: f"gone d1 --now {H3}", 2: "live"},
    "rollout enroll": {
        0: f"pending d9 --now {T0}",
        1: f"gone d9 --now {T0}",
        2: "pending d9 --now 2026-03-01",
    },
    "rollout unenroll": {0: f"pending d1 --now {T0}", 1: f"gone d1 --now {T0}", 2: "x d1"},
    "rollout reenrolled": {0: f"done d1 --now {H3}", 1: f"pending d1 --now {T0}", 2: "x d1"},
    "rollout restarted": {0: f"done --now {H3}", 2: "nosuch"},
    "rollout tick": {0: f"--now {H3}", 2: "--now yesterday"},
    "rollout effects": {0: "live", 2: "live --all --dead"},
    "rollout ack": {0: f"live live:2:0 --now {H3}", 2: "live other:2:0"},
    "rollout status": {0: f"live --now {H3}", 2: "nosuch"},
    "rollout history": {0: "live", 2: "nosuch"},
    "rollout list": {0: f"--now {H3}", 2: "--now yesterday"},
    "rollout forecast": {0: f"live --runs 20 --now {H3}", 2: f"pending --now {T0}"},
    "rollout export": {0: "live --out {out}", 2: "live --out {tmp}/missing"},
}

#: The rollout commands that run the rules yet that no state refuses under the shipped
#: rules: a restart nobody waits for is ignored, and time is never refused.
NEVER_REFUSED = {"rollout restarted", "rollout tick"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The material every case reads, and ``template.db`` (the rollouts named above)."""
    w = tmp_path_factory.mktemp("world")
    good = pki()
    (w / "server.crt").write_bytes(pem(good.leaf, good.intermediate, good.root))
    (w / "server.key").write_bytes(key_pem(good.leaf_key))
    (w / "plain.key").write_bytes(key_pem(good.leaf_key))
    current = build(
        HOST, key=rsa_key(2048, 8), not_before=NOW - 300 * DAY, not_after=NOW + 40 * DAY
    )
    (w / "current.crt").write_bytes(pem(current))
    (w / "devices.txt").write_text("\n".join(DEVICES) + "\n")
    (w / "token").write_text("a-sign-in-token-of-32-characters\n")
    # Every effect to a command that takes it and succeeds.
    (w / "worker.toml").write_text(
        '[worker]\nlease = "5m"\n\n[exec]\ncommand = ["true"]\ntimeout = "5s"\n\n'
        '[routes]\n"*" = ["exec"]\n'
    )
    (w / "pw.txt").write_text("k3y-k3y\n")
    (w / "wrong.txt").write_text("not it\n")
    (w / "enc.key").write_bytes(certs.encrypt_key(key_pem(good.leaf_key), "k3y-k3y"))
    subject = certs.Subject.create(
        country="IN", state="Kerala", locality="Kochi", organization="Example",
        organizational_unit="", common_name=HOST, sans="",
    )  # fmt: skip
    request = certs.create_csr(subject, rsa_key(2048, 3))
    (w / "server.csr").write_bytes(request.public_bytes(serialization.Encoding.PEM))
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # the signature no longer verifies: an unusable CSR
    (w / "tampered.der").write_bytes(bytes(der))
    x509.load_der_x509_csr(bytes(der))  # still a CSR: `csr show` reads it, and finds it bad
    db = w / "template.db"
    upload = shlex.split(UPLOAD.format(w=w))
    for name in ("pending", "live", "gone", "done"):
        run("rollout", "new", name, *upload, "--db", db, "--now", T0)
    run("rollout", "distribute", "live", "--db", db, "--now", T0)
    run("rollout", "report", "live", "d1", "failed", "--db", db, "--now", at(hours=1))
    run("rollout", "cancel", "gone", "--db", db, "--now", T0)
    run("rollout", "proceed", "done", "--yes", "--db", db, "--now", T0)
    return w


def run(*args: str | Path, input: str = "") -> Result:
    """``certflow ARGS`` in-process; never a traceback, never an exception that escapes."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, prog_name="certflow")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port: int = holder.getsockname()[1]
        yield port


def case_args(command: str, code: int, world: Path, tmp_path: Path, db: str) -> list[str]:
    """The arguments of ``command``'s case for ``code``, in a fresh place in ``tmp_path``."""
    if not (tmp_path / "certflow.db").exists():
        shutil.copyfile(world / "template.db", tmp_path / "certflow.db")
        (tmp_path / "out").mkdir()
    text = CASES[command][0 if code == 75 else code]
    args = shlex.split(text.format(w=world, out=tmp_path / "out", tmp=tmp_path))
    if command in WITH_DB:
        args += ["--db", db]
    return [*command.split(), *args]


def run_case(command: str, code: int, world: Path, tmp_path: Path, db: str, *extra: str) -> Result:
    result = run(*case_args(command, code, world, tmp_path, db), *extra)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


ALL = [(command, code) for command, cases in CASES.items() for code in cases]
ROLLOUT = [command for command in CASES if command.startswith("rollout ")]
#: The commands of a database (``simulate`` has one only with --db: it runs in memory).
WITH_DB = [*ROLLOUT, "serve", "worker"]


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`certflow serve` hands its console to uvicorn, which would serve until stopped."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)


# --- the table covers every command --------------------------------------------------------------


def test_the_exit_codes_are_the_one_documented_table() -> None:
    from certflow.cli import _app

    page = Path(__file__).resolve().parents[2] / "docs" / "scripting.md"
    table = re.findall(r"^\| (\d+) \| `(EXIT_\w+)` \|", page.read_text(), flags=re.MULTILINE)
    constants = {name: value for name, value in vars(_app).items() if name.startswith("EXIT_")}
    assert {name: int(code) for code, name in table} == constants
    assert set(constants.values()) == {0, 1, 2, 75, 130, 141}


def test_every_command_has_a_case_for_every_code_that_applies() -> None:
    commands = leaf_commands()
    assert set(CASES) == set(commands), "a command without cases, or cases of none"
    # The commands the rules decide: their callback is _rollout._refusals' wrapper.
    wrapped = _refusals(lambda: 0).__code__
    ruled = {n for n, c in commands.items() if getattr(c.callback, "__code__", None) is wrapped}
    assert ruled > NEVER_REFUSED
    for name in commands:
        assert 2 in CASES[name], f"{name}: no bad-input case"
        assert 0 in CASES[name], f"{name}: no case that works"
        if name in ruled - NEVER_REFUSED:
            assert 1 in CASES[name], f"{name}: the rules can refuse it, and no case shows it"


@pytest.mark.parametrize(("command", "code"), ALL, ids=[f"{c} -> {n}" for c, n in ALL])
def test_each_case_exits_with_its_code(
    command: str, code: int, world: Path, tmp_path: Path
) -> None:
    result = run_case(command, code, world, tmp_path, str(tmp_path / "certflow.db"))
    if code == 2:  # bad input: one line that says so, last
        assert result.stderr.splitlines()[-1].startswith("certflow: error: "), result.stderr
    if code == 1 and command.startswith("rollout "):
        assert result.stderr.splitlines()[-1].startswith("certflow: refused: "), result.stderr


@pytest.mark.parametrize("command", WITH_DB)
def test_an_unreachable_database_is_a_temporary_failure_for_every_command_of_one(
    command: str, world: Path, tmp_path: Path, closed_port: int
) -> None:
    url = f"postgresql://certflow@127.0.0.1:{closed_port}/x"
    if command in JSON_COMMANDS:
        data = failure(run_case(command, 75, world, tmp_path, url, "--json"))
        assert data["error"] == "temporary"
    else:
        result = run_case(command, 75, world, tmp_path, url)
        assert "cannot connect" in result.stderr
        assert "127.0.0.1" in result.stderr


# --- --json: every failure is an object on standard output ---------------------------------------

JSON_COMMANDS = [
    name
    for name, command in leaf_commands().items()
    if any("--json" in p.opts for p in command.params)
]


LABELS = {"refused": "refused", "declined": "not imported"}


def failure(result: Result) -> dict[str, Any]:
    """The JSON object a failure printed on standard output: the same message as the line
    on standard error."""
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    assert data["code"] == result.exit_code
    label = LABELS.get(data["error"], "error")
    # The message ends standard error (a report file's names its lines, one per line).
    assert result.stderr.endswith(f"certflow: {label}: {data['message']}\n")
    return data


def test_the_commands_that_take_json_are_known() -> None:
    assert "simulate" in JSON_COMMANDS
    assert set(JSON_COMMANDS) >= set(ROLLOUT)
    assert {"csr openssl-config", "key decrypt", "key encrypt"}.isdisjoint(JSON_COMMANDS)


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_bad_input_under_json_is_an_object_on_stdout(
    command: str, world: Path, tmp_path: Path
) -> None:
    result = run_case(command, 2, world, tmp_path, str(tmp_path / "certflow.db"), "--json")
    assert failure(result)["error"] in ("usage", "bad_input")


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_a_usage_error_under_json_is_an_object_even_before_click_reads_json(
    command: str, world: Path, tmp_path: Path
) -> None:
    args = case_args(command, 0, world, tmp_path, str(tmp_path / "certflow.db"))
    result = run(*args, "--no-such-option", "--json")
    assert result.exit_code == 2
    data = failure(result)
    assert data["error"] == "usage"
    assert "No such option" in data["message"]


def test_a_usage_error_without_json_prints_nothing_on_stdout() -> None:
    result = run("rollout", "status", "--no-such-option")
    assert (result.exit_code, result.stdout) == (2, "")
    # `--json` after `--` is an argument, not the option.
    result = run("rollout", "status", "--no-such-option", "--", "--json")
    assert (result.exit_code, result.stdout) == (2, "")


REFUSED = [c for c in ROLLOUT if 1 in CASES[c] and c != "rollout new"]


@pytest.mark.parametrize("command", REFUSED)
def test_a_refusal_under_json_is_an_object_with_its_hint(
    command: str, world: Path, tmp_path: Path
) -> None:
    result = run_case(command, 1, world, tmp_path, str(tmp_path / "certflow.db"), "--json")
    data = failure(result)
    assert data["error"] == "refused"
    assert data["hint"]
    assert data["message"].endswith(data["hint"])
    assert "allowed_at" in data
    assert data["reason"] in ("rollout_state", "device_state") or data["allowed_at"]


def test_a_refusal_that_time_lifts_says_when(world: Path, tmp_path: Path) -> None:
    """The extension before day 6: the guard's hint, and the instant it opens."""
    db = str(tmp_path / "certflow.db")
    data = failure(run_case("rollout extend", 1, world, tmp_path, db, "--json"))
    hint = data.pop("hint")
    assert hint.startswith("manual extension opens on day 6, ")
    assert data == {
        "error": "refused",
        "code": 1,
        "message": f"`extend` refused: {hint}",
        "allowed_at": at(days=6),
        "reason": "extension_open",
        "state": "distributing",
        "device": None,
        "device_state": None,
    }


def test_a_refused_device_command_names_the_device_and_its_state(
    world: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "certflow.db")
    args = case_args("rollout report", 0, world, tmp_path, db)  # d2 reports to `live`...
    assert run("rollout", "unenroll", "live", "d2", "--db", db, "--now", H3).exit_code == 0
    data = failure(run(*args, "--json"))  # ... which it left
    assert (data["error"], data["code"]) == ("refused", 1)
    assert (data["reason"], data["device"], data["device_state"]) == (
        "device_state",
        "d2",
        "removed",
    )
    # The whole hint, though it holds "; " itself, in the command line's words.
    assert (
        data["hint"] == "it was unenrolled; send `certflow rollout enroll live d2` if it came back"
    )
    assert data["allowed_at"] is None


def test_a_refused_report_file_carries_its_first_refused_line_s_hint(
    db: Path, tmp_path: Path
) -> None:
    assert run("rollout", "unenroll", "live", "d2", "--db", db, "--now", H3).exit_code == 0
    reports = tmp_path / "reports.csv"
    reports.write_text("nosuch,installed\nd2,installed\nd3,failed\n")
    result = run("rollout", "report", "live", "--file", reports, "--db", db, "--now", H3, "--json")
    data = failure(result)
    assert (data["error"], data["code"], data["device"]) == ("refused", 1, "d2")
    assert (
        data["hint"] == "it was unenrolled; send `certflow rollout enroll live d2` if it came back"
    )
    assert "line 1: unknown device 'nosuch'" in data["message"]


def test_a_refused_upload_is_one_object_with_the_check_s_report(
    world: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "certflow.db")
    data = failure(run_case("rollout new", 1, world, tmp_path, db, "--json"))
    assert data["error"] == "refused"
    assert data["message"].startswith("the new certificate fails")
    assert data["ok"] is False  # the check's report, in the same object
    assert "host_mismatch" in {f["code"] for f in data["findings"]}


def test_a_declined_import_is_refused_as_declined(world: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "certflow.db")
    args = case_args("rollout import-now", 0, world, tmp_path, db)
    args.remove("--yes")
    result = run(*args, "--json", input="n\n")
    assert result.exit_code == 1
    data = failure(result)
    assert data["error"] == "declined"
    assert result.stderr.splitlines()[-1].startswith("certflow: not imported: ")


def test_a_failed_check_under_json_is_its_report(world: Path, tmp_path: Path) -> None:
    """A check that finds errors is no failure of the command: its answer is the report
    (``ok`` false), exit 1."""
    result = run(*case_args("cert check", 1, world, tmp_path, ""), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert "error" not in data


def test_a_group_without_a_command_is_a_usage_error_in_one_last_line() -> None:
    result = run("rollout")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: certflow rollout")
    assert result.stderr.splitlines()[-1] == (
        "certflow: error: give a command (see 'certflow rollout --help')"
    )


# --- interrupts: 130 before the commit, 0 after it -------------------------------------------------


def interrupt(*_: object, **__: object) -> None:
    raise KeyboardInterrupt


def journal(db: Path, name: str) -> list[str]:
    done = run("rollout", "history", name, "--db", db, "--json")
    assert done.exit_code == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def db(world: Path, tmp_path: Path) -> Path:
    shutil.copyfile(world / "template.db", tmp_path / "certflow.db")
    return tmp_path / "certflow.db"


def test_an_interrupt_before_the_commit_applied_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = journal(db, "pending")
    monkeypatch.setattr(SqlStore, "apply", interrupt)
    result = run("rollout", "distribute", "pending", "--db", db, "--now", T0, "--json")
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == "certflow: error: interrupted; nothing was applied"
    assert json.loads(result.stdout) == {
        "error": "interrupted",
        "code": 130,
        "message": "interrupted; nothing was applied",
    }
    monkeypatch.undo()
    assert journal(db, "pending") == before


@pytest.mark.parametrize(
    ("args", "name", "where", "after"),
    [
        # What each command calls right after the store committed.
        (["distribute", "pending", "--now", T0], "pending", SqlStore, "view"),
        (["extend", "live", "--now", D6], "live", SqlStore, "overview"),
        (["tick", "--now", D6], "live", _rollout_outbox, "print_outbox"),
        (["ack", "live", "live:2:0", "--now", H3], "", _rollout_outbox, "click"),
    ],
    ids=["distribute", "extend", "tick", "ack"],
)
def test_an_interrupt_after_the_commit_says_applied_and_exits_0(
    args: list[str], name: str, where: object, after: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = journal(db, name) if name else []
    monkeypatch.setattr(where, after, interrupt if after != "click" else Interrupting())
    result = run("rollout", *args, "--db", db)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "certflow: applied; interrupted afterwards (the command's work was committed)"
    )
    monkeypatch.undo()
    if name:
        assert len(journal(db, name)) > len(before)
    else:
        effects = run("rollout", "effects", "live", "--db", db, "--json").stdout
        assert "live:2:0" not in {e["id"] for e in json.loads(effects)}


class Interrupting:
    """``click`` whose ``echo`` is interrupted: the line after the command's work."""

    def __getattr__(self, name: str) -> Any:
        return interrupt if name == "echo" else getattr(click, name)


def test_an_interrupt_after_the_commit_under_json_is_an_object(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SqlStore, "view", interrupt)
    result = run("rollout", "cancel", "pending", "--db", db, "--now", T0, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "error": False,
        "code": 0,
        "applied": True,
        "interrupted": True,
        "message": "applied; interrupted afterwards (the command's work was committed)",
    }


def test_an_interrupt_after_a_new_rollout_was_created_says_applied(
    world: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import certflow.cli._rollout as rollout_module

    monkeypatch.setattr(rollout_module, "expiry_warnings", interrupt)
    upload = shlex.split(UPLOAD.format(w=world))
    result = run("rollout", "new", "r9", *upload, "--db", db, "--now", T0)
    assert result.exit_code == 0
    assert "applied; interrupted afterwards" in result.stderr
    monkeypatch.undo()
    assert journal(db, "r9")


def test_an_interrupt_while_writing_files_says_part_may_be_written(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half(folder: Path, *args: object, **kwargs: object) -> None:
        (Path(folder) / "server.key").write_text("a new key")
        raise KeyboardInterrupt

    monkeypatch.setattr(certs, "write_key_and_csr", half)
    out = tmp_path / "out"
    out.mkdir()
    result = run("csr", "new", *shlex.split(SUBJECT), "--out", out)
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1] == (
        f"certflow: error: interrupted (it stopped while writing server.key and server.csr "
        f"into {out}: part of it may be done)"
    )


# --- a closed pipe: quiet, 141, or 0 once applied ---------------------------------------------------


def closed_stdout(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """``certflow ARGS`` as a process whose standard output nobody reads: its reader has
    closed the pipe before the first line (``| head -0``)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [sys.executable, "-m", "certflow", *map(str, args)],
            cwd=cwd,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    "args",
    [["rollout", "history", "live"], ["rollout", "status", "live", "--json"], ["--help"]],
    ids=" ".join,
)
def test_a_closed_pipe_ends_quietly_with_141(args: list[str], db: Path) -> None:
    extra: list[str | Path] = ["--db", db] if args[0] == "rollout" else []
    done = closed_stdout(db.parent, *args, *extra)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_closed_pipe_after_the_commit_exits_0(db: Path) -> None:
    before = journal(db, "pending")
    done = closed_stdout(db.parent, "rollout", "distribute", "pending", "--db", db, "--now", T0)
    assert (done.returncode, done.stderr) == (0, "")
    assert len(journal(db, "pending")) == len(before) + 1
