"""What one command's transaction does beyond the rules (``store.md``), on both backends:
the transaction that ends a rollout supersedes the undelivered effects its end made moot
("Superseded effects"), and a command that changes nothing journals and commits nothing
(a no-op: ``Applied.changed`` is false). The rules themselves are compared with the
evaluator in ``test_sql.py`` and ``test_variants.py``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

import certflow as cf
from certflow.store import Applied, PostgresStore, SqliteStore, drain
from tests.backends import Backend
from tests.core.strategies import HOUR, T0, build, day

AnyStore = SqliteStore | PostgresStore
EFFECTS = typing.get_args(cf.Effect)  # every effect class


def statuses(store: AnyStore, name: str = "r") -> dict[str, tuple[str, str]]:
    """Every effect of the outbox: its id -> (class, status)."""
    return {
        e.id: (type(e.effect).__name__, e.status)
        for e in store.effects(name, include_acknowledged=True)
    }


@pytest.fixture
def store(backend: Backend) -> Iterator[AnyStore]:
    """Rollout ``r`` distributing since T0 over d0..d3 (a 6-hour acknowledgement wait);
    d0 installed, d1 failed and retried; on day 6 the notice of the first checkpoint.
    The first push (``r:2:0``) is acknowledged; the retry's push and the notice are not."""
    with backend.open() as opened:
        opened.create("r", build(4, policy=cf.Policy(ack_timeout=6 * HOUR)))
        opened.apply("r", cf.DistributeRoot(), T0)
        opened.apply("r", cf.DeviceInstalled("d0"), T0 + HOUR)
        opened.apply("r", cf.DeviceFailed("d1", "no space"), T0 + HOUR)
        opened.apply("r", cf.Retry("d1"), T0 + 2 * HOUR)
        opened.tick(day(6))
        opened.acknowledge(["r:2:0"], day(6))
        yield opened


# --- superseded effects ----------------------------------------------------------------------


def test_cancelling_supersedes_every_undelivered_push_and_notice(store: AnyStore) -> None:
    before = statuses(store)
    assert {kind for kind, status in before.values() if status == "pending"} >= {
        "PushRoot",
        "Notify",
    }
    done = store.apply("r", cf.Cancel(), day(6.5))
    after = statuses(store)
    for effect_id, (kind, status) in before.items():
        if status == "pending" and kind in ("PushRoot", "Notify"):
            assert after[effect_id] == (kind, "superseded"), effect_id
        else:  # delivered, or of another kind: as it was
            assert after[effect_id] == (kind, status), effect_id
    # What the end itself emitted stands, and is what is left to deliver.
    ended = {e.id for e in done}
    assert {e.status for e in store.effects("r", include_acknowledged=True) if e.id in ended} <= {
        "pending"
    }
    assert [e.id for e in store.effects("r")] == [
        e.id for e in store.effects("r", include_acknowledged=True) if e.status == "pending"
    ]
    superseded = [e for e in store.effects("r", include_acknowledged=True) if e.superseded_at]
    assert {e.superseded_at for e in superseded} == {day(6.5)}


def test_superseded_effects_are_never_delivered(store: AnyStore) -> None:
    store.apply("r", cf.Cancel(), day(6.5))
    delivered: list[cf.Effect] = []
    report = drain(store, dict.fromkeys(EFFECTS, lambda i, e: delivered.append(e)), day(30))
    assert not any(isinstance(e, cf.PushRoot | cf.Notify) for e in delivered)
    assert store.lease("r", now=day(30)) == []
    assert all(statuses(store)[i][1] == "acknowledged" for i in report.delivered)


def test_an_import_supersedes_the_notices_and_keeps_the_pushes(store: AnyStore) -> None:
    before = statuses(store)
    store.apply("r", cf.ImportNow(), day(6.5))
    after = statuses(store)
    for effect_id, (kind, status) in before.items():
        moot = status == "pending" and kind == "Notify"
        assert after[effect_id] == (kind, "superseded" if moot else status), effect_id
    assert "PushRoot" in {kind for kind, status in after.values() if status == "pending"}


def test_a_catch_up_that_imports_supersedes_the_notices_it_emitted_first(
    backend: Backend,
) -> None:
    """One tick on day 22 fires every notice, checkpoint and the deadline's import in
    one transaction: the notices it emitted before the import are superseded at the
    import's instant; the import's own effects stand. The effects are the evaluator's."""
    rollout = cf.apply(build(3), cf.DistributeRoot(), T0).rollout
    with backend.open() as store:
        store.create("r", rollout)
        done = store.tick(day(22))
        expected = cf.advance(rollout, day(22)).effects
        assert [e.effect for e in done] == list(expected)
        kinds = [type(e.effect).__name__ for e in done]
        imported = kinds.index("ImportCertificate")
        assert "Notify" in kinds[:imported]
        for n, stored in enumerate(done):
            moot = n < imported and kinds[n] == "Notify"
            assert stored.status == ("superseded" if moot else "pending"), kinds[n]
        assert [(e.id, e.status) for e in done] == [
            (e.id, e.status) for e in store.effects("r", include_acknowledged=True)
        ]
        ended = store.journal("r")
        assert list(ended)[-1].kind == "advance"
        deadline = next(e for e in done if isinstance(e.effect, cf.ImportCertificate)).due_at
        assert {e.superseded_at for e in done if e.superseded_at} == {deadline}
        assert store.effects("r", dead=True) == []
    backend.check_consistent("r")


def test_a_dead_effect_is_superseded_too_and_cannot_be_revived(backend: Backend) -> None:
    with backend.open(max_attempts=1) as store:
        store.create("r", build(2))
        store.apply("r", cf.DistributeRoot(), T0)
        [push] = store.effects("r")
        assert store.record_failure(push.id, "unreachable", now=T0).status == "dead"
        store.apply("r", cf.Cancel(), T0 + HOUR)
        assert statuses(store)[push.id] == ("PushRoot", "superseded")
        assert store.effects("r", dead=True) == []
        with pytest.raises(cf.InvalidInput, match="is superseded; only a dead effect"):
            store.revive([push.id])


def test_the_end_of_one_rollout_supersedes_nothing_of_another(backend: Backend) -> None:
    with backend.open() as store:
        for name in ("a", "b"):
            store.create(name, build(2))
            store.apply(name, cf.DistributeRoot(), T0)
        store.apply("a", cf.Cancel(), T0 + HOUR)
        assert {status for _, status in statuses(store, "b").values()} == {"pending"}


# --- no-ops -------------------------------------------------------------------------------------


def nothing_changes(
    backend: Backend, store: AnyStore, command: cf.Command | str, at: datetime
) -> Applied:
    """``command`` (``"advance"``, ``"tick"``: those) at ``at`` is a no-op: an empty
    ``Applied`` whose ``changed`` is false, and every table as it was (the journal, the
    outbox, the rollout's clock)."""
    before = backend.tables()
    if command == "advance":
        done = store.advance("r", at)
    elif command == "tick":
        done = store.tick(at)
    else:
        assert not isinstance(command, str)
        done = store.apply("r", command, at)
    assert (list(done), done.changed) == ([], False)
    assert backend.tables() == before
    return done


@pytest.mark.parametrize(
    ("first", "command"),
    [
        (None, cf.DeviceInstalled("d0")),  # a duplicate report
        (None, cf.Enroll("d0")),  # enrolling an enrolled device
        (cf.RetryAllFailed(), cf.RetryAllFailed()),  # the first retried every failed one
        (None, cf.ServerRestarted()),  # no restart required
    ],
    ids=lambda value: repr(value),
)
def test_a_command_that_changes_nothing_journals_and_commits_nothing(
    store: AnyStore, backend: Backend, first: cf.Command | None, command: cf.Command
) -> None:
    if first is not None:
        assert store.apply("r", first, day(6)).changed
    nothing_changes(backend, store, command, day(6) + HOUR)
    # The clock stayed where it was: an instant between is still accepted.
    assert store.apply("r", cf.Unenroll("d3"), day(6) + timedelta(minutes=1)).changed


def test_advancing_or_ticking_with_nothing_due_journals_nothing(
    store: AnyStore, backend: Backend
) -> None:
    due = store.next_due("r")
    assert due is not None
    nothing_changes(backend, store, "advance", due - timedelta(seconds=1))
    nothing_changes(backend, store, "tick", due - timedelta(seconds=1))
    assert store.advance("r", due).changed


def test_a_change_without_effects_is_a_change(store: AnyStore) -> None:
    done = store.apply("r", cf.DeviceInstalled("d2"), day(6) + HOUR)
    assert (list(done), done.changed) == ([], True)
    assert list(store.journal("r"))[-1].commands == (cf.DeviceInstalled("d2"),)


def test_a_batch_with_one_change_is_journaled_whole(store: AnyStore) -> None:
    batch = [cf.DeviceInstalled("d0"), cf.DeviceInstalled("d2")]
    assert store.apply_all("r", batch, day(6) + HOUR).changed
    assert list(store.journal("r"))[-1].commands == tuple(batch)


def test_a_repeated_failure_with_a_new_reason_is_a_change(
    store: AnyStore, backend: Backend
) -> None:
    """Whatever the rules make of a second failure, the store keeps what it wrote: a
    device row that changed (its reason, its last report) is a change."""
    store.apply("r", cf.DeviceFailed("d2", "first"), day(6) + HOUR)
    before = backend.tables()
    done = store.apply("r", cf.DeviceFailed("d2", "second"), day(6) + 2 * HOUR)
    assert done.changed == (backend.tables() != before)
    assert store.dumps("r") == cf.dumps(store.replay("r"))


def test_an_applied_is_a_list_that_says_whether_it_changed_anything() -> None:
    assert Applied() == []
    assert Applied().changed
    assert repr(Applied(changed=False)) == "Applied([], changed=False)"
