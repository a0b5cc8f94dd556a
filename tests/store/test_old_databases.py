"""Databases an earlier certflow wrote open, read and go on (``store.md``, Migrations).

``data/certflow-schema-3.db`` was written by certflow at commit 348c23d (store schema
version 3, rollout documents of version 2) with ``tools/old_fixtures.py``, from the
histories it names. Each test works on a copy: opening may migrate the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import certflow as cf
from certflow.store import SqlStore, open_store
from tests.core.strategies import build
from tools.old_fixtures import DATABASE_ROLLOUTS, HISTORIES, HOUR, T0

DATA = Path(__file__).parent / "data"


@pytest.fixture
def old_store(tmp_path: Path) -> SqlStore:
    copy = tmp_path / "certflow.db"
    shutil.copyfile(DATA / "certflow-schema-3.db", copy)
    return open_store(copy, create=False)


def test_a_schema_3_database_opens_and_reads_its_rollouts(old_store: SqlStore) -> None:
    with old_store as store:
        assert [info.name for info in store.rollouts()] == sorted(DATABASE_ROLLOUTS)
        for name in DATABASE_ROLLOUTS:
            # The store's document is the one the same history gives today in memory.
            assert cf.loads(store.dumps(name)) == HISTORIES[name]()
            assert store.replay(name) == cf.loads(store.dumps(name))
        assert store.overview("public", T0 + 2 * HOUR).state is cf.RolloutState.IMPORTED
        for name in DATABASE_ROLLOUTS:  # made before rollouts knew what they roll out
            assert store.plan(name).identity is None
            assert store.overview(name, T0 + 6 * HOUR).identity is None
        pending = store.effects("distributing")
        assert [type(e.effect).__name__ for e in pending] == ["PushRoot"] * 3


def test_a_schema_3_database_takes_commands(old_store: SqlStore) -> None:
    with old_store as store:
        store.apply("distributing", cf.DeviceInstalled("c"), T0 + 6 * HOUR)
        assert store.device("distributing", "c").state is cf.DeviceState.INSTALLED
        expected = cf.apply(HISTORIES["distributing"](), cf.DeviceInstalled("c"), T0 + 6 * HOUR)
        assert cf.loads(store.dumps("distributing")) == expected.rollout
        assert store.replay("distributing") == expected.rollout
        store.apply("public", cf.ServerRestarted(), T0 + 3 * HOUR)
        assert not store.overview("public", T0 + 3 * HOUR).restart_required


def test_a_schema_3_database_takes_a_rollout_that_knows_what_it_rolls_out(
    old_store: SqlStore,
) -> None:
    rollout = build(3, identified=True)
    with old_store as store:
        store.create("identified", rollout)
        assert store.plan("identified") == rollout.plan
        assert store.overview("identified", T0).identity == rollout.plan.identity
        assert store.dumps("identified") == cf.dumps(rollout)
        assert store.plan("distributing").identity is None
