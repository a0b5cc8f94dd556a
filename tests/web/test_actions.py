"""The console's actions over HTTP: each does what the engine does, a refusal shows the
engine's reason and hint, and every consequence shown first is the store's preview."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

import certflow as cf
from certflow.core.instants import show
from certflow.core.plan import DeviceState, RolloutState
from certflow.store import SqliteStore, SqlStore
from certflow.web._pages import digest
from tests.certs.factory import DAY
from tests.web.conftest import Clock, Console, upload

DEVICES = [f"dev-{i:02d}" for i in range(12)]


@pytest.fixture
def running(console: Console, store: SqlStore, clock: Clock) -> Console:
    """Rollout ``r``: distributing since day 0; on day 1 eight devices installed the
    root, two failed, two never answered."""
    assert console.create("r", upload(DEVICES)).status_code == 201
    done = console.post("/rollouts/r/do/distribute")
    assert done.url.path == "/rollouts/r"
    assert "Distribution started" in done.text
    store.apply_all(
        "r",
        [cf.DeviceInstalled(d) for d in DEVICES[:8]]
        + [cf.DeviceFailed(d, "user declined") for d in DEVICES[8:10]],
        clock.move(DAY),
    )
    return console


def test_distribute_starts_the_rollout(running: Console, store: SqlStore) -> None:
    assert store.info("r").state is RolloutState.DISTRIBUTING


def test_a_refused_action_shows_the_engines_reason_and_hint(running: Console) -> None:
    refused = running.post("/rollouts/r/do/extend")
    assert refused.status_code == 409
    text = refused.text
    assert "“Extend” refused: manual extension opens on day 6, 2026-03-07 12:00 UTC" in text
    assert "<code>extension_open</code>" in text
    # The same sentence beside the disabled button on View Details.
    page = running.get("/rollouts/r").text
    assert re.search(r"<button type=\"button\" disabled[^>]*>Extend</button>", page)
    assert "“Extend” refused: manual extension opens on day 6" in page


def test_import_now_lists_the_devices_the_preview_cuts_off_then_imports(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    expected = store.preview("r", cf.ImportNow(), clock.now).cut_off
    assert set(expected) == set(DEVICES[8:])
    page = running.get("/rollouts/r/confirm/import-now").text
    assert "<strong>4 devices</strong> do not trust the new root" in page
    listed = re.findall(r'<td class="device">([^<]*)</td>', page)
    assert listed == list(expected)
    assert store.info("r").state is RolloutState.DISTRIBUTING  # the page changed nothing
    done = running.post("/rollouts/r/do/import-now", {"digest": digest(expected)})
    assert done.url.path == "/rollouts/r"
    assert store.info("r").state is RolloutState.FORCED
    assert store.info("r").counts[DeviceState.REENROLL_REQUIRED] == 4
    assert "The import ran." in done.text


def test_an_import_is_not_run_when_the_list_changed_since_it_was_confirmed(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    shown = store.preview("r", cf.ImportNow(), clock.now).cut_off
    store.apply("r", cf.DeviceInstalled(DEVICES[10]), clock.move(DAY / 24))
    again = running.post("/rollouts/r/do/import-now", {"digest": digest(shown)})
    assert again.status_code == 409
    assert "The rollout changed since the confirmation was shown: nothing was done" in again.text
    assert "<strong>3 devices</strong>" in again.text
    assert store.info("r").state is RolloutState.DISTRIBUTING


def test_the_extension_shows_the_dates_the_preview_sets_and_then_sets_them(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    at = clock.move(5 * DAY)  # day 6
    seen = store.preview("r", cf.ExtendManually(), at)
    assert seen.overview is not None
    assert seen.before is not None
    page = running.get("/rollouts/r/confirm/extend").text
    assert f'id="new-checkpoint">{_show(seen.overview.next_checkpoint)}<' in page
    assert f'id="new-deadline">{_show(seen.overview.deadline)}<' in page
    assert f"<td>{_show(seen.before.deadline)}</td>" in page
    done = running.post("/rollouts/r/do/extend").text
    assert f'id="next-checkpoint">{_show(seen.overview.next_checkpoint)}<' in done
    assert f'id="deadline">{_show(seen.overview.deadline)}<' in done
    assert store.overview("r", at).manual_extensions == 1


def _show(instant: datetime | None) -> str:
    assert instant is not None
    return show(instant)


def test_retry_one_device_then_all_failed(running: Console, store: SqlStore) -> None:
    failed = running.get("/rollouts/r", params={"state": "failed"}).text
    assert 'aria-label="Retry dev-08"' in failed
    back = running.post("/rollouts/r/retry", {"device_id": "dev-08", "state": "failed"})
    assert back.url.path == "/rollouts/r"
    assert back.url.params["state"] == "failed"
    assert store.device("r", "dev-08").state is DeviceState.PUSHED
    assert store.device("r", "dev-09").state is DeviceState.FAILED
    running.post("/rollouts/r/do/retry-all")
    assert store.device("r", "dev-09").state is DeviceState.PUSHED
    assert store.info("r").counts[DeviceState.FAILED] == 0


def test_retrying_a_device_the_rollout_does_not_know_says_so(running: Console) -> None:
    missing = running.post("/rollouts/r/retry", {"device_id": "ghost"})
    assert missing.status_code == 404
    assert "ghost" in missing.text


def test_cancel_is_confirmed_then_ends_the_rollout(running: Console, store: SqlStore) -> None:
    page = running.get("/rollouts/r/confirm/cancel").text
    assert "Cancelling ends the rollout" in page
    running.post("/rollouts/r/do/cancel")
    assert store.info("r").state is RolloutState.CANCELLED
    superseded = running.get("/rollouts/r/effects", params={"show": "superseded"}).text
    assert "push root to" in superseded


def test_a_restart_is_offered_while_one_is_required(
    running: Console, store: SqlStore, clock: Clock
) -> None:
    expected = store.preview("r", cf.ImportNow(), clock.now).cut_off
    running.post("/rollouts/r/do/import-now", {"digest": digest(expected)})
    assert store.overview("r", clock.now).restart_required
    assert 'id="action-restarted"' in running.get("/rollouts/r").text
    running.post("/rollouts/r/do/restarted")
    assert not store.overview("r", clock.now).restart_required


def test_effects_are_acknowledged_and_dead_ones_revived(
    running: Console, db: Path, clock: Clock
) -> None:
    with SqliteStore(db, max_attempts=1) as store:
        (push,) = store.effects("r")
        running.post("/rollouts/r/effects/acknowledge", {"effect_id": push.id})
        assert store.effects("r") == []
        (retried,) = store.apply("r", cf.Retry("dev-08"), clock.now)
        store.lease("r", now=clock.now)
        store.record_failure(retried.id, "push service down", now=clock.now)
        (dead,) = store.effects("r", dead=True)
        page = running.get("/rollouts/r/effects", params={"show": "dead"}).text
        assert "push service down" in page
        running.post("/rollouts/r/effects/revive", {"effect_id": dead.id, "show": "dead"})
        assert store.effects("r", dead=True) == []
        assert [e.id for e in store.effects("r")] == [dead.id]


def test_effects_of_another_rollout_are_refused(running: Console) -> None:
    refused = running.post("/rollouts/r/effects/acknowledge", {"effect_id": "other:2:0"})
    assert refused.status_code == 400
    assert "effects of rollout &#39;r&#39; to acknowledge: none given" in refused.text
