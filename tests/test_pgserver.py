"""tools/pgserver.py against a real PostgreSQL server: it starts, serves fresh databases,
restarts under its clients, cleans up after itself however its process ends, and says
why when no server can be started; and the CERTFLOW_REQUIRE_POSTGRES rule of conftest.py."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

import tools.pgserver as pgserver
from tests.conftest import REQUIRE_POSTGRES
from tools.pgserver import LocalPostgres, PostgresUnavailable

REPOSITORY = Path(__file__).resolve().parent.parent


def database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def nobody_listens(port: int) -> bool:
    """Whether the port can be bound (SO_REUSEADDR, as a server does: closed connections'
    TIME_WAIT does not count, a listening socket does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def eventually(condition: Callable[[], bool], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_fresh_database_is_empty_and_serves_queries(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        row = connection.execute(
            "SELECT current_user, current_setting('server_version_num')::int"
        ).fetchone()
        assert row is not None
        assert row[0] == "certflow"
        assert row[1] >= 150000
        tables = connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
        connection.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
        connection.execute("INSERT INTO t VALUES (1, 'één')")
        assert connection.execute("SELECT name FROM t").fetchall() == [("één",)]
        encoding = connection.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
        )
        assert encoding.fetchone() == ("UTF8",)


def test_databases_are_unique_and_dropped_even_with_clients(postgres_server: LocalPostgres) -> None:
    urls = [postgres_server.create_database(prefix="unique") for _ in range(3)]
    assert len(set(urls)) == 3
    assert all(database_name(url).startswith("unique_") for url in urls)
    with psycopg.connect(urls[0]) as left_open:
        postgres_server.drop_database(database_name(urls[0]))
        with pytest.raises(psycopg.OperationalError):
            left_open.execute("SELECT 1")
    for url in urls[1:]:
        postgres_server.drop_database(database_name(url))
    postgres_server.drop_database(database_name(urls[0]))  # already gone: no error
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(urls[1]).close()
    with pytest.raises(ValueError, match="prefix"):
        postgres_server.create_database(prefix='x"; DROP')


def test_url_names_host_port_database_and_an_encoded_password(
    postgres_server: LocalPostgres,
) -> None:
    port = postgres_server.port
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.url() == f"postgresql://certflow@127.0.0.1:{port}/postgres"
    url = postgres_server.url("other", password="p@ss:w/rd %")
    parts = urllib.parse.urlsplit(url)
    assert (parts.username, parts.hostname, parts.port, parts.path) == (
        "certflow",
        "127.0.0.1",
        port,
        "/other",
    )
    assert urllib.parse.unquote(parts.password or "") == "p@ss:w/rd %"
    # The server trusts local connections: a URL with a password connects too.
    with psycopg.connect(postgres_server.url(password="secret")) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_restart_disconnects_clients_who_then_reconnect_to_their_data(
    postgres_server: LocalPostgres, postgres_url: str
) -> None:
    port = postgres_server.port
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (n int)")
        connection.execute("INSERT INTO kept VALUES (42)")
        postgres_server.restart()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    assert postgres_server.port == port
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT n FROM kept").fetchall() == [(42,)]


def test_stop_removes_the_folder_and_frees_the_port() -> None:
    with LocalPostgres() as server:
        folder, port = server.folder, server.port
        assert server.startup_seconds is not None
        assert server.startup_seconds < 10
        assert folder.is_dir()
        assert not nobody_listens(port)
        if os.geteuid() == 0:
            # initdb and the server ran as postgres, in a folder reachable by it.
            data = folder / "data"
            assert data.stat().st_uid == pwd.getpwnam("postgres").pw_uid
            assert data.stat().st_mode & 0o777 == 0o700
            assert folder.stat().st_mode & 0o777 == 0o755
        with psycopg.connect(server.url()) as connection:
            connection.execute("SELECT 1")
    assert not folder.exists()
    assert nobody_listens(port)
    server.stop()  # a second stop does nothing
    with pytest.raises(RuntimeError, match="not started"):
        server.url()


def server_settings(url: str, *names: str) -> dict[str, str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
        ).fetchall()
    return dict(rows)


def test_settings_override_the_defaults_and_survive_a_restart(
    postgres_server: LocalPostgres,
) -> None:
    names = ("fsync", "synchronous_commit", "full_page_writes", "cluster_name", "max_connections")
    # The session's server runs with the defaults: durability off.
    assert server_settings(postgres_server.url(), *names) == {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "cluster_name": "",
        "max_connections": "200",
    }
    chosen = {"fsync": "on", "full_page_writes": "on", "cluster_name": "it's a bench"}
    with LocalPostgres(settings=chosen) as server:
        expected = {**chosen, "synchronous_commit": "off", "max_connections": "200"}
        assert server_settings(server.url(), *names) == expected
        server.restart()
        assert server_settings(server.url(), *names) == expected
    with pytest.raises(ValueError, match="server setting 'fsync=off -c x'"):
        LocalPostgres(settings={"fsync=off -c x": "on"})


def test_a_server_that_fails_to_start_says_why_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        pgserver, "SERVER_SETTINGS", pgserver.SERVER_SETTINGS + " -c no_such_setting=1"
    )
    # A parent folder of its own: servers that other tests (other pytest-xdist workers, other
    # runs) start meanwhile do not show there. Not tmp_path: the server user must reach it.
    parent = Path(tempfile.mkdtemp(prefix="certflow-pg-test-"))
    parent.chmod(0o711)
    try:
        with pytest.raises(PostgresUnavailable) as failure:
            LocalPostgres(parent=parent).start()
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    message = str(failure.value)
    assert "pg_ctl start" in message
    assert "end of the server log" in message
    assert 'unrecognized configuration parameter "no_such_setting"' in message


def test_an_empty_bindir_is_reported_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFLOW_PG_BINDIR", str(tmp_path))
    with pytest.raises(PostgresUnavailable) as failure:
        LocalPostgres().start()
    message = str(failure.value)
    assert f"CERTFLOW_PG_BINDIR={tmp_path}" in message
    assert "no initdb and pg_ctl" in message
    assert "apt-get install postgresql" in message


def test_as_root_without_a_postgres_user_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_user(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    with pytest.raises(
        PostgresUnavailable, match="refuse to run as root, but there is no 'postgres' user"
    ):
        LocalPostgres().start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the folder to another user")
def test_a_folder_the_postgres_user_cannot_reach_is_named(tmp_path: Path) -> None:
    # pytest's tmp_path is under a folder private to root (0700).
    with pytest.raises(PostgresUnavailable, match="is not searchable by other users"):
        LocalPostgres(parent=tmp_path).start()
    assert list(tmp_path.iterdir()) == []


def test_the_newest_debian_version_with_a_server_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version, programs in [
        ("9.6", ["initdb", "pg_ctl"]),
        ("15", ["initdb", "pg_ctl"]),
        ("16", ["pg_dump"]),
        ("common", ["initdb", "pg_ctl"]),
    ]:
        (tmp_path / version / "bin").mkdir(parents=True)
        for program in programs:
            (tmp_path / version / "bin" / program).touch()
    monkeypatch.delenv("CERTFLOW_PG_BINDIR", raising=False)
    monkeypatch.setattr(pgserver, "DEBIAN_ROOT", tmp_path)
    assert pgserver.find_bindir() == tmp_path / "15" / "bin"


def test_no_server_anywhere_names_every_place_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CERTFLOW_PG_BINDIR", raising=False)
    monkeypatch.setattr(pgserver, "DEBIAN_ROOT", tmp_path / "nothing")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        PostgresUnavailable,
        match=r"no PostgreSQL server programs .*initdb on the PATH.*apt-get install postgresql",
    ):
        pgserver.find_bindir()


# The process that started the server ends without calling stop(): normally (atexit), or
# killed (the watchdog). Either way the server stops and its folder goes.
ORPHAN = textwrap.dedent(
    """
    import sys, time
    from tools.pgserver import LocalPostgres
    server = LocalPostgres().start()
    print(server.folder, server.port, flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(60)
    """
)


@pytest.mark.parametrize("ending", ["exit", "SIGKILL"])
def test_a_server_never_outlives_its_process(ending: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", ORPHAN, "exit" if ending == "exit" else "sleep"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        folder, port = child.stdout.readline().split()
        if ending == "SIGKILL":
            assert Path(folder).is_dir()
            child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if ending == "exit":
            assert child.returncode == 0
            assert not Path(folder).exists()  # atexit: gone by the time the process ended
        assert eventually(lambda: not Path(folder).exists())
        assert eventually(lambda: nobody_listens(int(port)))
    finally:
        child.kill()
        child.wait()


# The rule for CI, run in an inner pytest where no server can start (an empty bindir).
INNER_TESTS = textwrap.dedent(
    """
    import pytest

    def test_needs_the_server(postgres_server):
        pass

    def test_skips_itself():
        pytest.skip("no PostgreSQL driver on this machine")
    """
)


def inner_pytest(folder: Path, test: str, *, required: bool) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["CERTFLOW_PG_BINDIR"] = str(folder / "empty")
    env.pop(REQUIRE_POSTGRES, None)
    if required:
        env[REQUIRE_POSTGRES] = "1"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-c",
            str(folder / "pytest.ini"),
            f"{folder / 'test_inner.py'}::{test}",
        ],
        cwd=REPOSITORY,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_without_postgresql_tests_skip_unless_ci_requires_them(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    runs = {
        (test, required): inner_pytest(tmp_path, test, required=required)
        for test in ("test_needs_the_server", "test_skips_itself")
        for required in (False, True)
    }
    results = {key: (run.communicate(timeout=60)[0], run.returncode) for key, run in runs.items()}

    output, status = results["test_needs_the_server", False]
    assert status == 0, output
    assert "1 skipped" in output
    assert "PostgreSQL tests skipped: CERTFLOW_PG_BINDIR=" in output

    output, status = results["test_needs_the_server", True]
    assert status == 1, output
    assert "1 error" in output
    assert "PostgreSQL unavailable and CERTFLOW_REQUIRE_POSTGRES=1: CERTFLOW_PG_BINDIR=" in output

    # A test that skips itself for want of PostgreSQL passes the fixture by: the hook fails it.
    output, status = results["test_skips_itself", False]
    assert status == 0, output
    assert "1 skipped" in output

    output, status = results["test_skips_itself", True]
    assert status == 1, output
    assert "CERTFLOW_REQUIRE_POSTGRES=1, yet PostgreSQL tests were skipped" in output
    assert "test_skips_itself: Skipped: no PostgreSQL driver on this machine" in output
