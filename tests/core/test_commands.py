"""Commands check their own fields when they are built."""

from __future__ import annotations

import pytest

import certflow as cf

DEVICE_COMMANDS = [cf.DeviceInstalled, cf.Retry, cf.Enroll, cf.Unenroll, cf.Reenrolled]


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
@pytest.mark.parametrize("bad", ["", 7, None, b"d0"])
def test_a_device_id_must_be_a_non_empty_string(command: type, bad: object) -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        command(bad)
    assert str(refused.value) == f"device ids must be non-empty strings, got {bad!r}"


def test_a_failure_reason_must_be_a_string() -> None:
    with pytest.raises(cf.InvalidInput) as refused:
        cf.DeviceFailed("d0", 5)  # type: ignore[arg-type]
    assert str(refused.value) == "DeviceFailed.reason must be a string, got 5"
    with pytest.raises(cf.InvalidInput, match="device ids must be non-empty strings"):
        cf.DeviceFailed(7, "x")  # type: ignore[arg-type]


def test_commands_are_frozen_values() -> None:
    assert cf.DeviceInstalled("d0") == cf.DeviceInstalled("d0")
    assert cf.ExtendManually() == cf.ExtendManually()
    with pytest.raises(AttributeError):
        cf.DeviceInstalled("d0").device_id = "d1"  # type: ignore[misc]
