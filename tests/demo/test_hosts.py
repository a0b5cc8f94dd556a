"""The demo's two hosts: in memory and through a store, the same story."""

from __future__ import annotations

import io
from pathlib import Path

from certflow import dumps
from certflow.demo import SimulationResult, run
from certflow.store import SqliteStore
from tests.demo.conftest import DEVICES


def test_through_the_store_the_story_is_the_same_and_every_effect_went_through_the_outbox(
    simulated: tuple[SimulationResult, str], tmp_path: Path
) -> None:
    result, text = simulated
    out = io.StringIO()
    with SqliteStore(tmp_path / "demo.db") as store:
        stored = run(devices=DEVICES, seed=7, out=out, store=store, name="demo")
        lines = out.getvalue().splitlines()
        # The same timeline, with the store named first and the outbox accounted for last.
        assert lines[5].startswith("store: rollout 'demo' in ")
        effects = store.effects("demo", include_acknowledged=True)
        outbox = lines.index(
            f"outbox: {len(effects):,} effects delivered and acknowledged, 0 pending"
        )
        assert lines[outbox - 1] == ""
        assert lines[:5] + lines[6 : outbox - 1] + lines[outbox + 1 :] == text.splitlines()
        assert all(e.acked_at is not None for e in effects)
        assert [e.effect for e in effects] == list(stored.effects) == list(result.effects)
        assert dumps(store.replay("demo")) == store.dumps("demo")
        kinds = {e.kind for e in store.journal("demo")}
        assert kinds == {"create", "command", "batch", "advance"}
    assert stored.summary.counts == result.summary.counts
    assert (stored.import_day, stored.forced) == (result.import_day, result.forced)
