"""``certflow simulate``: the main job, as the command line runs it."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from certflow.cli import EXIT_OK, main
from tools.pgserver import LocalPostgres


def test_simulate_quiet_prints_one_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(["simulate", "--devices", "300", "--quiet"], standalone_mode=False)
    assert code == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "trust the root" in lines[0]


def test_simulate_ends_with_the_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(["simulate", "--devices", "200"], standalone_mode=False)
    assert code == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1].startswith("simulated ")


def test_simulate_json_is_the_runs_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from certflow.demo import run

    code = main.main(["simulate", "--devices", "300", "--json"], standalone_mode=False)
    assert code == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    result = run(300, 7, io.StringIO(), quiet=True)
    assert document["import_day"] == result.import_day
    assert document["reenrollment_required"] == result.reenrollment_required
    assert sum(document["counts"].values()) == result.rollout.device_count


def test_simulate_runs_sweeps_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(
        ["simulate", "--devices", "200", "--runs", "6", "--seed", "3"], standalone_mode=False
    )
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("6 runs of 200 devices\nimport: day ")
    assert "re-enrolment: mean " in out
    assert out.splitlines()[-1].startswith("swept 6 runs of 200 devices in ")


def test_simulate_runs_json_has_one_row_per_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(
        ["simulate", "--devices", "200", "--runs", "4", "--seed", "10", "--json"],
        standalone_mode=False,
    )
    assert code == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert [row["seed"] for row in document["rows"]] == [10, 11, 12, 13]
    assert document["summary"]["runs"] == 4


@pytest.mark.parametrize("args", [[], ["--runs", "3"], ["--json"]])
def test_simulate_chart_writes_the_file(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "chart.svg"
    code = main.main(
        ["simulate", "--devices", "200", "--chart", str(target), *args], standalone_mode=False
    )
    assert code == EXIT_OK
    assert "<svg" in target.read_text()
    out = capsys.readouterr().out
    if "--json" not in args:
        assert out.splitlines()[-1] == f"chart: {target}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chart", "out.pdf"], "Invalid value for '--chart': 'out.pdf' must end in .png or .svg"),
        (["--runs", "0"], "Invalid value for '--runs'"),
    ],
)
def test_simulate_bad_input_exits_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(["simulate", *args], standalone_mode=False)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"certflow: error: {message}")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_simulate_through_a_store_ends_with_its_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    code = main.main(["simulate", "--devices", "300", "--db", str(db)], standalone_mode=False)
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert f"database: {db.resolve()} (rollout demo)" in out
    assert "$ certflow rollout status demo --db" in out
    status = out[out.index("$ certflow rollout status") :]
    assert "Rollout:          demo: " in status
    assert "DEVICE" in status
    # The status shows the certificate the demo rolled out, and the root it pushed.
    assert "Certificate:      CN=mdm.demo.example,O=certflow demo" in status
    assert "Root:             CN=certflow demo root CA,O=certflow demo (private)" in status
    assert "Hosts:            mdm.demo.example" in status
    # The same name again is refused before anything runs.
    with pytest.raises(SystemExit) as exited:
        main.main(["simulate", "--devices", "300", "--db", str(db)], standalone_mode=False)
    assert exited.value.code == 2
    err = capsys.readouterr()
    assert "already holds a rollout named 'demo'" in err.err
    assert err.out == ""
    code = main.main(
        ["simulate", "--devices", "300", "--db", str(db), "--name", "again", "--json"],
        standalone_mode=False,
    )
    document = json.loads(capsys.readouterr().out)
    assert (document["database"], document["rollout"]) == (str(db.resolve()), "again")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the token line runs openssl")
def test_simulate_through_a_store_prints_the_console_that_opens_its_rollout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the status, the lines that serve the web console over the demo's database:
    run as printed (the token line in a shell, `certflow serve` with uvicorn's run
    caught), the console signs in with that token and shows the rollout at the URL."""
    import uvicorn

    from tests.web.conftest import CSRF, TestClient

    monkeypatch.chdir(tmp_path)
    code = main.main(["simulate", "--devices", "300", "--db", "demo.db"], standalone_mode=False)
    assert code == EXIT_OK
    out = capsys.readouterr().out
    lines = out[out.index("$ certflow rollout status") :].splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("the console: "))
    said, token_line, serve_line = lines[start : start + 3]
    url = re.search(r"http://127\.0\.0\.1:8080(/rollouts/[^ ]+) ", said)
    assert url is not None
    assert url[1] == "/rollouts/demo"
    assert serve_line == "$ certflow serve --db demo.db --token-file TOKEN_FILE"
    subprocess.run(token_line.removeprefix("$ "), shell=True, check=True, cwd=tmp_path)
    token = (tmp_path / "TOKEN_FILE").read_text().strip()
    assert len(token) == 64
    assert (tmp_path / "TOKEN_FILE").stat().st_mode & 0o077 == 0
    caught: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: caught.update(options, app=app))
    argv = shlex.split(serve_line.removeprefix("$ "))
    assert argv[0] == "certflow"
    assert main.main(argv[1:], standalone_mode=False) == EXIT_OK
    assert (caught["host"], caught["port"]) == ("127.0.0.1", 8080)
    with TestClient(caught["app"]) as client:
        form = CSRF.search(client.get("/sign-in").text)
        assert form is not None
        signed = client.post(
            "/sign-in", data={"csrf_token": form[1], "token": token, "next": url[1]}
        )
        assert signed.status_code == 200
        assert "<h1>Rollout demo</h1>" in signed.text  # View Details of the demo's rollout
        assert "mdm.demo.example" in signed.text


def test_simulate_db_does_not_go_with_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(["simulate", "--runs", "2", "--db", "x.db"], standalone_mode=False)
    assert exited.value.code == 2
    assert "--db stores one simulated rollout" in capsys.readouterr().err


def test_simulate_through_postgresql_never_shows_the_password(
    postgres_server: LocalPostgres, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    # The test server trusts local connections: the password is accepted and ignored.
    dbname = urllib.parse.urlsplit(postgres_url).path.lstrip("/")
    url = postgres_server.url(dbname, password="s3cret")
    shown = f"postgresql://certflow:***@{postgres_server.host}:{postgres_server.port}/{dbname}"
    code = main.main(["simulate", "--devices", "2000", "--db", url], standalone_mode=False)
    assert code == EXIT_OK
    said = capsys.readouterr()
    assert "s3cret" not in said.out + said.err
    assert f"database: {shown} (rollout demo)" in said.out
    assert f"$ certflow rollout status demo --db {shown} " in said.out
    # The console's command names the database as shown, and says where the password goes.
    assert f"$ certflow serve --db '{shown}' --token-file TOKEN_FILE\n(the password" in said.out
    status = said.out[said.out.index("$ certflow rollout status") :]
    assert "Rollout:          demo: " in status
    assert "DEVICE" in status
    # The status shows the certificate the demo rolled out, and the root it pushed.
    assert "Certificate:      CN=mdm.demo.example,O=certflow demo" in status
    assert "Root:             CN=certflow demo root CA,O=certflow demo (private)" in status
    assert "Hosts:            mdm.demo.example" in status
    # The same name again is refused before anything runs, naming the database safely.
    with pytest.raises(SystemExit) as exited:
        main.main(["simulate", "--devices", "300", "--db", url], standalone_mode=False)
    assert exited.value.code == 2
    refused = capsys.readouterr()
    assert f"{shown} already holds a rollout named 'demo'" in refused.err
    assert "s3cret" not in refused.out + refused.err
    code = main.main(
        ["simulate", "--devices", "20", "--db", url, "--name", "again", "--json"],
        standalone_mode=False,
    )
    assert code == EXIT_OK
    said = capsys.readouterr()
    assert "s3cret" not in said.out + said.err
    document = json.loads(said.out)
    assert (document["database"], document["rollout"]) == (shown, "again")
    # Both runs are in the PostgreSQL database, every device of them (the demo enrols some
    # devices as it goes, hence at least 2000).
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT name, size FROM certflow.rollouts ORDER BY name"
        ).fetchall()
    assert [name for name, _ in rows] == ["again", "demo"]
    assert rows[0][1] == sum(document["counts"].values())
    assert rows[1][1] >= 2000


def test_simulate_through_a_store_ends_with_the_worker_s_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo``'s sinks: beside the database, an .eml per e-mail the SMTP handler
    would send (every notice, and the end of the rollout), composed by the worker's
    composer as the demo's outbox delivered each effect, so that a notice's attachment
    lists the devices that did not trust the root at that instant; and every effect's
    webhook body, once, in delivery order."""
    import csv
    import email
    from email import policy

    from certflow.core.effects import Notify
    from certflow.store import SqliteStore
    from certflow.worker import effect_id_of

    db = tmp_path / "demo.db"
    code = main.main(["simulate", "--devices", "600", "--db", str(db)], standalone_mode=False)
    assert code == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    folder = tmp_path / "demo-outbox"
    mails = sorted((folder / "mail").glob("*.eml"))
    assert out[-2].startswith(f"outbox: what `certflow worker` would have sent, in {folder}: ")
    assert f"{len(mails)} e-mails (mail/*.eml)" in out[-2]
    assert out[-1] == f"the first e-mail: {mails[0]}"
    with SqliteStore(db, create=False) as store:
        effects = store.effects("demo", include_acknowledged=True)
    assert {e.status for e in effects} == {"acknowledged"}
    by_id = {e.id: e for e in effects}
    notices = [e for e in effects if type(e.effect).__name__ == "Notify"]
    mailed = [e for e in effects if type(e.effect).__name__ in (
        "Notify", "ImportCertificate", "ReenrollmentRequired", "RolloutCancelled")]  # fmt: skip
    assert notices
    assert len(mails) == len(mailed)
    seen = []
    for path in mails:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        effect_id = effect_id_of(str(message["Message-ID"]))
        assert effect_id == message["X-Certflow-Effect-Id"]
        assert message["X-Certflow-Rollout"] == "demo"
        assert str(message["Subject"]).startswith("[certflow] demo: ")
        body = message.get_body(("plain",))
        assert body is not None
        assert "Rollout demo" in body.get_content()
        seen.append(effect_id)
        stored = by_id[str(effect_id)]
        if isinstance(stored.effect, Notify):
            [attachment] = list(message.iter_attachments())
            assert attachment.get_filename() == "demo-untrusting.csv"
            rows = list(csv.reader(attachment.get_content().splitlines()))[1:]
            # As at delivery: the notice's own count of the devices not trusting yet.
            assert len(rows) == stored.effect.in_scope - stored.effect.trusting
    assert seen == [e.id for e in mailed]  # in delivery order, each once
    bodies = [json.loads(line) for line in (folder / "webhooks.jsonl").read_text().splitlines()]
    assert [b["id"] for b in bodies] == [e.id for e in effects]
    assert {b["rollout"] for b in bodies} == {"demo"}


def test_simulate_outbox_is_chosen_or_needs_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main.main(["simulate", "--outbox", str(tmp_path / "o")], standalone_mode=False)
    assert exited.value.code == 2
    assert "--outbox writes what the store's outbox delivers: give --db" in capsys.readouterr().err
    chosen = tmp_path / "sinks"
    code = main.main(
        ["simulate", "--devices", "300", "--db", str(tmp_path / "x.db"), "--outbox", str(chosen),
         "--json"],
        standalone_mode=False,
    )  # fmt: skip
    assert code == EXIT_OK
    found = json.loads(capsys.readouterr().out)["outbox"]
    assert found["folder"] == str(chosen.resolve())
    assert found["emails"] == len(list((chosen / "mail").glob("*.eml"))) > 0
    assert found["webhooks"] == len((chosen / "webhooks.jsonl").read_text().splitlines())
    assert Path(found["first_email"]).is_file()
    assert not (tmp_path / "x-outbox").exists()
