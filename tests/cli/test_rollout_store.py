"""How ``certflow rollout`` opens its store and words what the store did
(``certflow/cli/_rollout_store.py``): the real clock's skew, read-only opens, "no
change", and each effect's delivery record. The commands themselves are tested in
``test_rollout*.py``; this holds the module's own promises, on both backends.
"""

from __future__ import annotations

from datetime import timedelta

import click
import pytest
from click.testing import CliRunner

import certflow as cf
from certflow.cli._rollout_render import _command_text
from certflow.cli._rollout_store import (
    REAL_CLOCK_SKEW,
    effect_data,
    outcome,
    print_outbox,
    store_for,
)
from certflow.store import Applied, PostgresStore, SqliteStore, StoreError
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build

AnyStore = SqliteStore | PostgresStore


@pytest.fixture
def target(backend: Backend) -> str:
    with backend.open() as store:
        store.create("r", build(3, policy=cf.Policy(ack_timeout=HOUR)))
        store.apply("r", cf.DistributeRoot(), T0)
    return backend.target


def test_the_real_clock_is_read_with_a_skew_an_explicit_instant_strictly(target: str) -> None:
    with store_for(target, real_clock=True) as store:
        assert store.clock_skew == REAL_CLOCK_SKEW == timedelta(seconds=5)
        assert not store.read_only
    with store_for(target, real_clock=False, read_only=True) as store:
        assert store.clock_skew == timedelta(0)
        assert store.read_only
        with pytest.raises(StoreError, match="opened read-only"):
            store.apply("r", cf.Cancel(), T0)


def test_an_instant_within_the_skew_is_taken_as_the_rollout_s_clock(target: str) -> None:
    with store_for(target, real_clock=True) as store:
        store.apply("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        late = T0 + HOUR - timedelta(seconds=4)
        assert store.apply("r", cf.DeviceInstalled("d1"), late).changed
        assert list(store.journal("r"))[-1].at == T0 + HOUR
        with pytest.raises(cf.TimeWentBackwards):
            store.apply("r", cf.DeviceInstalled("d2"), T0 + HOUR - timedelta(seconds=6))
    with store_for(target, real_clock=False) as store, pytest.raises(cf.TimeWentBackwards):
        store.apply("r", cf.DeviceInstalled("d2"), T0 + HOUR - timedelta(seconds=1))


def said(work: object) -> str:
    @click.command()
    def run() -> None:
        work()  # type: ignore[operator]

    return CliRunner().invoke(run).output


def test_no_change_is_said_and_marked_in_json(target: str) -> None:
    with store_for(target, real_clock=False) as store:
        what = _command_text(cf.Enroll("d0"))
        assert what == "enroll d0"  # the command line's spelling, not the Python class
        text = said(lambda: outcome(store, "r", what, Applied(changed=False), T0, False))
        assert text == "enroll d0: no change (rollout r is distributing); nothing was recorded\n"
        data = said(lambda: outcome(store, "r", what, Applied(changed=False), T0, True))
        assert '"changed": false' in data


def test_a_command_is_said_as_the_command_line_spells_it() -> None:
    assert [
        _command_text(command)
        for command in (
            cf.DistributeRoot(),
            cf.DeviceInstalled("d0"),
            cf.DeviceFailed("dev-1210", "disk full"),
            cf.RetryAllFailed(),
        )
    ] == [
        "distribute",
        "report d0 installed",
        "report dev-1210 failed (disk full)",
        "retry --all-failed",
    ]


def test_each_effect_says_what_became_of_it(backend: Backend) -> None:
    with backend.open(max_attempts=2) as store:
        for name in ("r", "s", "t"):
            store.create(name, build(3))
            store.apply(name, cf.DistributeRoot(), T0)
        store.apply("r", cf.DeviceFailed("d0", "x"), T0)
        store.apply("r", cf.Retry("d0"), T0 + HOUR)
        [first, retry] = store.effects("r")
        store.record_failure(retry.id, "refused", now=T0 + HOUR)
        store.record_failure(first.id, "refused", now=T0 + HOUR)
        store.record_failure(first.id, "refused again", now=T0 + 2 * HOUR)
        store.apply("s", cf.Cancel(), T0 + 2 * HOUR)
        store.acknowledge(["t:2:0"], T0 + HOUR)
        shown = [
            e for e in store.effects(include_acknowledged=True) if isinstance(e.effect, cf.PushRoot)
        ]
        lines = said(lambda: print_outbox(shown)).splitlines()
        assert lines[0].endswith(
            "[dead since 2026-07-01 11:00 UTC after 2 failed deliveries, last: refused again]"
        )
        assert lines[1].endswith(
            "[1 failed delivery, last: refused; next attempt 2026-07-01 10:01 UTC]"
        )
        assert lines[2].endswith("[superseded 2026-07-01 11:00 UTC: never delivered]")
        assert lines[3].endswith("[acknowledged 2026-07-01 10:00 UTC]")
        data = [effect_data(e) for e in shown]
        assert [d["status"] for d in data] == ["dead", "pending", "superseded", "acknowledged"]
        assert data[1]["next_attempt_at"] == (T0 + HOUR + timedelta(minutes=1)).isoformat()
        assert data[2]["superseded_at"] == (T0 + 2 * HOUR).isoformat()
        assert {"attempts", "last_attempt_at", "dead_at"} <= set(data[0])
