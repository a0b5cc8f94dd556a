"""A batch whose refused commands are skipped or listed (``apply_all(..., refused=...)``),
on both backends: what the rules refuse and the devices the rollout does not know are
found in the batch's one transaction, as the default ``"raise"`` would find the first of
them, and the others are applied (``"skip"``) or nothing is (``"list"``). The stateful
comparison with the evaluator, one command at a time, is in ``test_sql.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import certflow as cf
from certflow.store import Applied, PostgresStore, Refused, SqliteStore
from tests.backends import Backend
from tests.core.strategies import T0, day, distributing
from tests.store.test_sql import _statements_of

AnyStore = SqliteStore | PostgresStore


@pytest.fixture
def store(backend: Backend) -> Iterator[AnyStore]:
    """Rollout ``r`` distributing over d0..d5 since T0; d5 has left (unenrolled)."""
    with backend.open() as opened:
        opened.create("r", distributing(6))
        opened.apply("r", cf.Unenroll("d5"), T0)
        yield opened


#: Reports for d0..d5 and two ids the rollout does not know: positions 2 and 5 are
#: unknown devices, position 6 a device whose state (removed) does not take a report.
BATCH: list[cf.Command] = [
    cf.DeviceInstalled("d0"),
    cf.DeviceFailed("d1", "disk full"),
    cf.DeviceInstalled("ghost"),
    cf.DeviceInstalled("d2"),
    cf.DeviceFailed("d3", "no answer"),
    cf.DeviceFailed("spook", "x"),
    cf.DeviceInstalled("d5"),
]
ACCEPTED = [BATCH[p] for p in (0, 1, 3, 4)]


def _why(found: tuple[Refused, ...]) -> list[tuple[int, cf.Command, str]]:
    return [(r.position, r.command, type(r.error).__name__) for r in found]


EXPECTED = [
    (2, BATCH[2], "UnknownDevice"),
    (5, BATCH[5], "UnknownDevice"),
    (6, BATCH[6], "CommandRefused"),
]


def test_skip_applies_the_others_in_one_transaction_and_lists_the_refused(
    store: AnyStore, backend: Backend
) -> None:
    expected = cf.apply_all(cf.loads(store.dumps("r")), ACCEPTED, day(1))
    done = store.apply_all("r", BATCH, day(1), refused="skip")
    assert done.changed
    assert _why(done.refused) == EXPECTED
    # The errors are the ones the default would raise, in the rules' words.
    assert "unknown device 'ghost'" in str(done.refused[0].error)
    refusal = done.refused[2].error
    assert isinstance(refusal, cf.CommandRefused)
    assert (refusal.device_id, refusal.device_state) == ("d5", "removed")
    # The state is the evaluator's for the accepted commands alone...
    assert store.dumps("r") == cf.dumps(expected.rollout)
    assert [e.effect for e in done] == list(expected.effects)
    # ...in one journal entry that names only them, and which replays.
    last = list(store.journal("r"))[-1]
    assert (last.kind, list(last.commands)) == ("batch", ACCEPTED)
    backend.check_consistent("r")


def test_list_applies_nothing_when_a_command_is_refused_and_names_every_one(
    store: AnyStore, backend: Backend
) -> None:
    before = backend.tables()
    done = store.apply_all("r", BATCH, day(1), refused="list")
    assert not done.changed
    assert list(done) == []
    assert _why(done.refused) == EXPECTED
    assert backend.tables() == before


def test_list_applies_a_batch_with_no_refusal_as_the_default_does(
    store: AnyStore, backend: Backend
) -> None:
    expected = cf.apply_all(cf.loads(store.dumps("r")), ACCEPTED, day(1))
    done = store.apply_all("r", ACCEPTED, day(1), refused="list")
    assert (done.changed, done.refused) == (True, ())
    assert store.dumps("r") == cf.dumps(expected.rollout)
    backend.check_consistent("r")


def test_a_later_command_is_judged_after_the_earlier_ones(store: AnyStore) -> None:
    # d0 installs, then a second report of d0 is a duplicate (ignored, not refused); a
    # device enrolled earlier in the batch is known to a report after it.
    done = store.apply_all(
        "r",
        [cf.DeviceInstalled("new"), cf.Enroll("new"), cf.DeviceInstalled("new")],
        day(1),
        refused="skip",
    )
    assert _why(done.refused) == [(0, cf.DeviceInstalled("new"), "UnknownDevice")]
    assert store.device("r", "new").state is cf.DeviceState.INSTALLED


def test_the_default_still_raises_the_first_refusal_and_applies_nothing(
    store: AnyStore, backend: Backend
) -> None:
    before = backend.tables()
    with pytest.raises(cf.UnknownDevice, match="ghost"):
        store.apply_all("r", BATCH, day(1))
    assert backend.tables() == before


def test_a_batch_refused_whole_under_skip_is_a_no_op(store: AnyStore, backend: Backend) -> None:
    before = backend.tables()
    done = store.apply_all("r", [BATCH[2], BATCH[6]], day(1), refused="skip")
    assert (done.changed, list(done), [r.position for r in done.refused]) == (False, [], [0, 1])
    assert backend.tables() == before


def test_bad_input_still_raises_under_skip(store: AnyStore, backend: Backend) -> None:
    before = backend.tables()
    with pytest.raises(cf.InvalidInput, match="NUL"):
        store.apply_all("r", [BATCH[0], cf.DeviceInstalled("a\x00b")], day(1), refused="skip")
    with pytest.raises(cf.InvalidInput, match="refused must be 'raise', 'skip' or 'list'"):
        store.apply_all("r", BATCH, day(1), refused="ignore")  # type: ignore[arg-type]
    with pytest.raises(cf.TimeWentBackwards):
        store.apply_all("r", BATCH, day(-1), refused="skip")
    assert backend.tables() == before


def _skipping_unknown_ids(store: AnyStore, size: int) -> tuple[list[str], list[int]]:
    """The statements and the chunks of ids read (``_fetch_devices``) when a batch of one
    report and 1,200 unknown ids is applied with ``refused="skip"`` to a fleet of ``size``."""
    store.create("r", distributing(size))
    batch = [cf.DeviceInstalled("d1"), *(cf.DeviceInstalled(f"ghost-{n}") for n in range(1_200))]
    chunks: list[int] = []
    fetch = store._fetch_devices

    def counted(rollout: int, device_ids: list[str]) -> Any:
        chunks.append(len(device_ids))
        return fetch(rollout, device_ids)

    store._fetch_devices = counted  # type: ignore[method-assign]
    done: list[Applied] = []
    sent = _statements_of(
        store, lambda: done.append(store.apply_all("r", batch, day(1), refused="skip"))
    )
    assert len(done[0].refused) == 1_200
    assert max(chunks) <= store._fetch_chunk
    return sent, chunks


def test_unknown_devices_are_found_through_the_index_a_chunk_at_a_time(
    backend: Backend,
) -> None:
    # The same statements at two fleet sizes, and the batch's ids read a chunk at a time
    # through the device-id index (``_fetch_devices``): unknown ids cost index reads,
    # never a read of the fleet.
    with backend.fresh() as small, backend.fresh() as large:
        sent, chunks = _skipping_unknown_ids(small, 10)
        assert (sent, chunks) == _skipping_unknown_ids(large, 3_000)
    assert sum(chunks) == 1_201
