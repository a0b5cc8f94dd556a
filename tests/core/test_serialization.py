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
        (json.dumps({**_document(), "extra": 1}), "the document: unexpected field 'extra'"),
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
            "devices.ids\\[1\\]: duplicate device id 'a'",
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


def _with(path: str, value: object) -> str:
    """The serialised `distributing(2)` with one field at ``path`` (dotted) replaced."""
    document = _document()
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_with("plan.bogus", 1), "plan: unexpected field 'bogus'"),
        (
            _with("phase.state", "flying"),
            "phase.state: 'flying' is not a valid RolloutState",
        ),
        (
            _with("plan.root_publicly_trusted", "no"),
            "plan.root_publicly_trusted: expected bool, got str 'no'",
        ),
        (
            _with("phase.checkpoints_done", 1.5),
            "phase.checkpoints_done: expected int, got float 1.5",
        ),
        (_with("devices.ids", "d0"), "devices.ids: expected a list, got str"),
        (_with("devices.ids.1", 3), "devices.ids: expected a list of str, got int 3"),
        (
            _with("devices.attempts.0", 1.0),
            "devices.attempts: expected a list of int, got float 1.0",
        ),
        (_with("failure_reasons", ["d0"]), "failure_reasons: expected an object, got list"),
        (_with("devices.ids.0", ""), "devices.ids\\[0\\]: a device id must not be empty"),
        (_with("devices.attempts.1", -1), "devices.attempts\\[1\\]: -1 is negative"),
        (_with("devices.initial_push", [0, 5]), "devices.initial_push: 5 is not a device index"),
        (_with("failure_reasons", {"ghost": "x"}), "failure_reasons: unknown device 'ghost'"),
        (
            _with(
                "ack_timeouts",
                [
                    {
                        "due": "2026-07-01T10:00:00+00:00",
                        "first": 0,
                        "last": 9,
                        "attempt": 1,
                        "initial": True,
                    }
                ],
            ),
            "ack_timeouts\\[0\\]: devices 0..9 of attempt 1",
        ),
        (
            _with("plan.policy.notice_before", -5.0),
            "invalid Policy: notice_before must be positive",
        ),
        (_with("devices.bogus", []), "devices: unexpected field 'bogus'"),
    ],
    ids=lambda x: x[:40] if isinstance(x, str) and x.startswith("{") is False else None,
)
def test_each_malformed_document_names_the_field_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(cf.SerializationError, match="^malformed serialised rollout: .*" + message):
        cf.loads(text)


def test_a_bad_saved_rollout_never_reads_like_cattrs_internals() -> None:
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(_with("phase.bogus", 1))
    assert str(refused.value) == "malformed serialised rollout: phase: unexpected field 'bogus'"
    assert "@ $" not in str(refused.value)


def test_several_unexpected_fields_are_all_named() -> None:
    document = json.loads(_with("plan.zeta", 1))
    document["plan"]["alpha"] = 2
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(json.dumps(document))
    assert str(refused.value) == (
        "malformed serialised rollout: plan: unexpected fields 'alpha', 'zeta'"
    )


@pytest.mark.parametrize(
    ("path", "value", "detail"),
    [
        ("phase.manual_extensions", "2", "expected int, got str '2'"),
        ("plan.created_at", 5, "expected an ISO 8601 instant, got int 5"),
        ("plan.policy.notice_before", "1 day", "expected seconds, got str '1 day'"),
        ("plan.root_publicly_trusted", 1, "expected bool, got int 1"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(
    path: str, value: object, detail: str
) -> None:
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(_with(path, value))
    assert str(refused.value) == f"malformed serialised rollout: {path}: {detail}"


def test_every_problem_of_a_document_is_named_and_a_missing_field_reads_so() -> None:
    document = json.loads(_with("plan.kind", "toaster"))
    del document["phase"]["state"]
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(json.dumps(document))
    assert str(refused.value) == (
        "malformed serialised rollout: plan.kind: 'toaster' is not a valid CertificateKind; "
        "phase.state: missing field"
    )


def test_the_document_is_compact_json() -> None:
    text = cf.dumps(distributing(2))
    assert ", " not in text
    assert ": " not in text
