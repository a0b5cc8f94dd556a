"""The rollout value: its named constructor, its refusals of bad input, its accessors."""

from __future__ import annotations

import pytest

import certflow as cf
from tests.core.strategies import DAY, T0, build, distributing


def test_new_rollout_is_the_documented_alias_of_the_named_constructor() -> None:
    assert cf.new_rollout == cf.Rollout.create
    rollout = cf.Rollout.create(
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
    with pytest.raises(cf.InvalidInput, match="non-empty strings"):
        build(["a", bad])  # type: ignore[list-item]


def test_trusted_devices_must_be_known() -> None:
    with pytest.raises(cf.InvalidInput, match="unknown devices"):
        build(["a"], trusted=("b",))


def test_unknown_certificate_kind_is_refused() -> None:
    with pytest.raises(cf.InvalidInput, match="unknown certificate kind 'web'"):
        build(1, kind="web")  # type: ignore[arg-type]
