"""Commands check their own fields when they are built."""

from __future__ import annotations

import pytest

import certflow as cf
from tests.core.strategies import DAY, T0, build, distributing

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


# --- a device id new to a rollout (issue 18: ids reached every table unbounded) ----------------


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ("a\tb", "character 2 is '\\t' (U+0009), which is not printable"),
        ("line\nbreak", "character 5 is '\\n' (U+000A), which is not printable"),
        ("nul\x00", "character 4 is '\\x00' (U+0000), which is not printable"),
        ("rtl\u202eevil", "character 4 is '\\u202e' (U+202E RIGHT-TO-LEFT OVERRIDE)"),
        ("x" * 257, "it is 257 characters long"),
        ("", "it is empty"),
    ],
)
def test_a_new_device_id_is_printable_and_bounded(device: str, problem: str) -> None:
    with pytest.raises(cf.InvalidInput, match="is not valid: ") as refused:
        build([device, "ok"])
    assert problem in str(refused.value)
    assert "a device id is 1 to 256 printable characters" in str(refused.value)
    if device:  # an empty id is refused when the command is built, as ever
        with pytest.raises(cf.InvalidInput, match="is not valid: "):
            cf.apply(distributing(["ok"]), cf.Enroll(device), T0 + DAY)


def test_the_widest_ids_the_rule_allows_are_taken() -> None:
    ids = ["x" * 256, "Über Laptop 3", "端末-7", "emoji 🙂", "with space"]
    rollout = build(ids)
    assert [d.device_id for d in rollout.devices()] == ids
    enrolled = cf.apply(distributing(["ok"]), cf.Enroll("端末-8"), T0 + DAY).rollout
    assert enrolled.device("端末-8").state is cf.DeviceState.PUSHED


def test_a_rollout_stored_before_the_rule_with_an_odd_id_still_loads_and_takes_its_reports() -> (
    None
):
    document = cf.dumps(distributing(["a", "zz"])).replace('"zz"', '"z\\tz"')
    old = cf.loads(document)
    done = cf.apply(old, cf.DeviceInstalled("z\tz"), T0 + DAY).rollout
    assert done.device("z\tz").state is cf.DeviceState.INSTALLED
    assert cf.loads(cf.dumps(done)).device("z\tz").state is cf.DeviceState.INSTALLED


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_an_id_of_exactly_the_longest_length_is_a_valid_new_id() -> None:
    enrolled = cf.apply(distributing(["ok"]), cf.Enroll("x" * 256), T0 + DAY).rollout
    assert enrolled.device("x" * 256).state is cf.DeviceState.PUSHED


def test_a_new_device_id_that_is_not_text_is_refused_as_invalid_input() -> None:
    for bad in (5, None):
        with pytest.raises(
            cf.InvalidInput, match=f"is not valid: it is of type {type(bad).__name__}"
        ):
            build([bad])  # type: ignore[list-item]
