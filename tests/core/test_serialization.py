"""JSON with a schema version: lossless round trips and clear errors for anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import certflow as cf
from tests.core.strategies import HOUR, build, day, distributing, policies


@given(policy=policies(), n=st.integers(0, 20), data=st.data())
def test_a_rollout_round_trips_losslessly_through_json(
    policy: cf.Policy, n: int, data: st.DataObject
) -> None:
    rollout = distributing(n, policy=policy)
    ids = [f"d{i}" for i in range(n)]
    for device_id in data.draw(st.lists(st.sampled_from(ids), max_size=5)) if ids else []:
        rollout = cf.apply(
            rollout, cf.DeviceFailed(device_id, 'é ✓ "quoted"'), rollout.clock
        ).rollout
    rollout = cf.apply(rollout, cf.Enroll("late"), rollout.clock + HOUR).rollout
    rollout = cf.advance(rollout, rollout.clock + data.draw(st.integers(0, 40)) * HOUR * 24).rollout
    text = cf.dumps(rollout)
    again = cf.loads(text)
    assert again == rollout
    assert cf.dumps(again) == text
    # and it behaves the same afterwards
    assert cf.advance(again, day(60)) == cf.advance(rollout, day(60))


def test_the_document_carries_its_schema_and_version() -> None:
    document = json.loads(cf.dumps(build(1)))
    assert (document["schema"], document["version"]) == ("certflow/rollout", cf.SCHEMA_VERSION)


def _document() -> dict:  # type: ignore[type-arg]
    return json.loads(cf.dumps(distributing(2)))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid JSON"),
        ("{not json", "invalid JSON"),
        ("[]", "expected a JSON object with schema"),
        (json.dumps({**_document(), "schema": "other"}), "expected a JSON object with schema"),
        (
            json.dumps({**_document(), "version": 2}),
            "version 2 is newer than this certflow understands",
        ),
        (json.dumps({**_document(), "version": "1"}), "is not a valid version"),
        (json.dumps({**_document(), "extra": 1}), "missing or unexpected"),
        (json.dumps({**_document(), "clock": "yesterday"}), "malformed"),
        (json.dumps({**_document(), "clock": "2026-07-01T09:00:00"}), "naive datetime"),
        (
            json.dumps(
                {**_document(), "devices": {**_document()["devices"], "states": ["pushed", "lost"]}}
            ),
            "unknown device state 'lost'",
        ),
        (
            json.dumps({**_document(), "devices": {**_document()["devices"], "ids": ["a", "a"]}}),
            "duplicate device ids",
        ),
        (
            json.dumps({**_document(), "devices": {**_document()["devices"], "attempts": [1]}}),
            "2 ids, 2 states and 1 attempts",
        ),
        (
            json.dumps({**_document(), "plan": {**_document()["plan"], "kind": "toaster"}}),
            "malformed",
        ),
    ],
)
def test_anything_but_a_serialised_rollout_is_a_clear_serialization_error(
    text: str, message: str
) -> None:
    with pytest.raises(cf.SerializationError, match=message):
        cf.loads(text)
