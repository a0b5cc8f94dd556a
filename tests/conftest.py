"""Shared pytest configuration: one hypothesis profile for every property test, and a real
PostgreSQL server for the tests that need one."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tools.pgserver import LocalPostgres, PostgresUnavailable

# No per-example deadline: CI machines are noisy and speed is measured by the benchmark.
settings.register_profile(
    "certflow",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("certflow"), max_examples=1000)
# `make mutate` runs the core's tests once per mutant: fewer examples, same strategies.
settings.register_profile("mutate", parent=settings.get_profile("certflow"), max_examples=20)
settings.load_profile(os.environ.get("CERTFLOW_HYPOTHESIS_PROFILE", "certflow"))


# A real PostgreSQL server (tools/pgserver.py): one per session, a fresh database per test.
# Where none can be started the tests are skipped, except under CERTFLOW_REQUIRE_POSTGRES=1
# (CI), where that fails the run: CI must never skip them silently.
REQUIRE_POSTGRES = "CERTFLOW_REQUIRE_POSTGRES"


def postgres_required() -> bool:
    """Whether this run must not skip the PostgreSQL tests (CI sets the variable)."""
    return os.environ.get(REQUIRE_POSTGRES) == "1"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A started throwaway PostgreSQL server, stopped (and its folder removed) at the end."""
    server = LocalPostgres()
    try:
        server.start()
    except PostgresUnavailable as error:
        if postgres_required():
            pytest.fail(f"PostgreSQL unavailable and {REQUIRE_POSTGRES}=1: {error}")
        pytest.skip(f"PostgreSQL tests skipped: {error}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: LocalPostgres) -> Iterator[str]:
    """The URL of a fresh, empty database of its own, dropped after the test (WITH (FORCE):
    clients the test left connected are disconnected; a failure to drop is ignored)."""
    url = postgres_server.create_database()
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(urllib.parse.urlsplit(url).path.lstrip("/"))


class PostgresSkips:
    """Under CERTFLOW_REQUIRE_POSTGRES=1, any skip whose reason names PostgreSQL (or its
    driver) fails the run, however it was raised: a test's own ``pytest.skip`` or
    ``importorskip`` would not go through the fixture's check."""

    def __init__(self) -> None:
        self.skips: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if re.search(r"postgres|psycopg", reason, re.IGNORECASE):
            self.skips.append(f"{report.nodeid}: {reason}")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skips and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skips:
            terminalreporter.section(f"{REQUIRE_POSTGRES}=1, yet PostgreSQL tests were skipped")
            for line in self.skips:
                terminalreporter.line(line)


def pytest_configure(config: pytest.Config) -> None:
    if postgres_required():
        config.pluginmanager.register(PostgresSkips(), "certflow-postgres-skips")
