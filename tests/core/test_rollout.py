"""The rollout value: its named constructor, its refusals of bad input, its accessors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

import certflow as cf
from certflow.core.commands import DEVICE_ID_RULE as RULE
from tests.core.strategies import DAY, T0, build, distributing


def test_new_rollout_makes_a_pending_rollout() -> None:
    rollout = cf.new_rollout(
        ["a", "b"],
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0,
        new_not_after=T0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
        trusted_device_ids=["b"],
    )
    assert rollout.state is cf.RolloutState.PENDING
    assert rollout.clock == T0
    assert [r.state for r in rollout.devices()] == [
        cf.DeviceState.PENDING,
        cf.DeviceState.INSTALLED,
    ]


def test_the_storage_layout_and_caches_are_not_public_fields() -> None:
    import attrs

    public = [f.name for f in attrs.fields(cf.Rollout) if not f.name.startswith("_")]
    assert public == ["plan", "phase", "clock"]
    assert "next_due" not in [f.name for f in attrs.fields(cf.Phase)]


def test_equal_rollouts_compare_equal_whatever_their_storage() -> None:
    a = cf.apply(distributing(3), cf.DeviceInstalled("d1"), T0).rollout
    b = cf.loads(cf.dumps(a))
    assert a == b
    assert a != cf.apply(a, cf.DeviceInstalled("d2"), T0).rollout


def test_duplicate_device_ids_are_refused_naming_them() -> None:
    with pytest.raises(cf.InvalidInput, match="duplicate device ids: 'a', 'b'"):
        build(["a", "b", "a", "c", "b"])


@pytest.mark.parametrize("bad", ["", 7, None])
def test_device_ids_must_be_non_empty_strings(bad: object) -> None:
    with pytest.raises(cf.InvalidInput, match=r"device id .* is not valid: it is (empty|of type)"):
        build(["a", bad])  # type: ignore[list-item]


def test_trusted_devices_must_be_known() -> None:
    with pytest.raises(cf.InvalidInput, match="unknown devices"):
        build(["a"], trusted=("b",))


def test_unknown_certificate_kind_is_refused() -> None:
    with pytest.raises(cf.InvalidInput, match="unknown certificate kind 'web'"):
        build(1, kind="web")  # type: ignore[arg-type]


def _create(**changes: Any) -> cf.Rollout:
    facts: dict[str, Any] = {
        "existing_not_after": T0 + 60 * DAY,
        "new_not_before": T0 - DAY,
        "new_not_after": T0 + 300 * DAY,
        "root_publicly_trusted": False,
        "created_at": T0,
    }
    device_ids = changes.pop("device_ids", ["a", "b"])
    return cf.new_rollout(device_ids, **{**facts, **changes})


NAIVE = datetime(2026, 7, 1, 9, 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        *(
            (
                {name: NAIVE},
                f"{name} is a naive datetime (2026-07-01T09:00:00); certflow needs a "
                "timezone-aware instant, e.g. datetime(..., tzinfo=timezone.utc)",
            )
            for name in ("created_at", "existing_not_after", "new_not_before", "new_not_after")
        ),
        ({"kind": "web"}, "unknown certificate kind 'web'; choose one of mdm_server, agent_server"),
        ({"policy": "strict"}, "policy must be a certflow.Policy, got str"),
        ({"root_publicly_trusted": 1}, "root_publicly_trusted must be a bool, got 1"),
        (
            {"new_not_before": T0, "new_not_after": T0},
            "the new certificate's validity is empty: not_before 2026-07-01 09:00 UTC is not "
            "before not_after 2026-07-01 09:00 UTC",
        ),
        (
            {"new_not_before": T0 + DAY, "new_not_after": T0 + 300 * DAY},
            "the new certificate is not valid yet at 2026-07-01 09:00 UTC: it becomes valid at "
            "2026-07-02 09:00 UTC; start at or after that instant",
        ),
        ({"device_ids": "abc"}, "device_ids must be an iterable of ids, not one string"),
        (
            {"device_ids": ["a", "b", "a", "c", "b", "d", "e", "f", "g", *"cdefg"]},
            "duplicate device ids: 'a', 'b', 'c', 'd', 'e' and 2 more; each device must appear once",
        ),
        (
            {"device_ids": list("abcde") * 2},
            "duplicate device ids: 'a', 'b', 'c', 'd', 'e'; each device must appear once",
        ),
        (
            {"device_ids": ["a", 7, ""]},
            f"device id 7 is not valid: it is of type int, not text; a device id is {RULE}",
        ),
        (
            {"device_ids": ["a", "", 7]},
            f"device id '' is not valid: it is empty; a device id is {RULE}",
        ),
        (
            {"trusted_device_ids": "a"},
            "trusted_device_ids must be an iterable of ids, not one string",
        ),
        (
            {"trusted_device_ids": ["a", "x", "y"]},
            "trusted_device_ids names unknown devices: ['x', 'y']",
        ),
    ],
)
def test_each_bad_input_at_creation_is_named_with_its_problem(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        _create(**changes)
    assert str(refused.value) == message


def test_a_certificate_that_ends_exactly_at_the_deadline_may_start_a_rollout() -> None:
    rollout = _create(new_not_after=T0 + 21 * DAY)
    assert rollout.state is cf.RolloutState.PENDING
    with pytest.raises(cf.InvalidInput, match="expires at 2026-07-22 08:59:59 UTC, before the"):
        _create(new_not_after=T0 + 21 * DAY - timedelta(seconds=1))


def test_rollout_create_is_the_deprecated_spelling_of_new_rollout() -> None:
    facts: dict[str, Any] = {
        "existing_not_after": T0 + 60 * DAY,
        "new_not_before": T0,
        "new_not_after": T0 + 300 * DAY,
        "root_publicly_trusted": False,
        "created_at": T0,
    }
    with pytest.warns(DeprecationWarning, match=r"Rollout.create is deprecated"):
        old = cf.Rollout.create(["a"], **facts)
    assert old == cf.new_rollout(["a"], **facts)


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_rollout_create_warns_in_full_and_names_the_caller() -> None:
    from pathlib import Path

    from certflow.core import rollout as module

    with pytest.warns(DeprecationWarning, match=r"^Rollout\.create is deprecated") as caught:
        cf.Rollout.create(
            ["a"],
            existing_not_after=T0 + 60 * DAY,
            new_not_before=T0,
            new_not_after=T0 + 300 * DAY,
            root_publicly_trusted=False,
            created_at=T0,
        )
    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert str(warning.message) == (
        "Rollout.create is deprecated and will be removed in certflow 0.3: use "
        "certflow.new_rollout, the one name of a new rollout"
    )
    # stacklevel: the line that called Rollout.create, not certflow's own
    assert Path(warning.filename).resolve() != Path(module.__file__).resolve()


def test_an_unknown_device_is_named_by_the_accessors_with_what_to_do() -> None:
    rollout = distributing(1)
    message = (
        "unknown device 'ghost': it is not in this rollout (send Enroll first if it just enrolled)"
    )
    with pytest.raises(cf.UnknownDevice) as state:
        rollout.device_state("ghost")
    assert str(state.value) == message
    with pytest.raises(cf.UnknownDevice) as record:
        rollout.device("ghost")
    assert str(record.value) == message


def test_each_push_awaits_its_answer_until_its_own_instant() -> None:
    import json

    hour = timedelta(hours=1)
    rollout = distributing(0, policy=cf.Policy(ack_timeout=2 * DAY))
    rollout = cf.apply(rollout, cf.Enroll("a"), T0 + hour).rollout
    rollout = cf.apply(rollout, cf.Enroll("b"), T0 + 2 * hour).rollout
    assert json.loads(cf.dumps(rollout))["awaiting"] == [
        {"due": (T0 + 2 * DAY + hour).isoformat(), "devices": [0]},
        {"due": (T0 + 2 * DAY + 2 * hour).isoformat(), "devices": [1]},
    ]


def test_only_the_ids_that_repeat_are_named_as_duplicates() -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        _create(device_ids=["a", "b", "a"])
    assert str(refused.value) == "duplicate device ids: 'a'; each device must appear once"


def test_six_duplicate_ids_show_five_and_one_more() -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        _create(device_ids=list("abcdef") * 2)
    assert str(refused.value) == (
        "duplicate device ids: 'a', 'b', 'c', 'd', 'e' and 1 more; each device must appear once"
    )


def test_unknown_trusted_ids_are_shown_five_at_most() -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        _create(trusted_device_ids=["x1", "x2", "x3", "x4", "x5", "x6"])
    assert str(refused.value) == (
        "trusted_device_ids names unknown devices: ['x1', 'x2', 'x3', 'x4', 'x5']"
    )
