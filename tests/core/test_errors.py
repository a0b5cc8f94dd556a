"""The exceptions: their hierarchy and how they read."""

from __future__ import annotations

import certflow as cf


def test_unknown_device_reads_as_its_message_not_as_a_key() -> None:
    assert str(cf.UnknownDevice("unknown device 'x'")) == "unknown device 'x'"
    assert str(cf.UnknownDevice()) == ""
    assert isinstance(cf.UnknownDevice(), KeyError)


def test_every_error_is_a_certflow_error_and_the_input_ones_are_value_errors() -> None:
    for error in (cf.InvalidInput, cf.TimeWentBackwards, cf.SerializationError):
        assert issubclass(error, cf.CertflowError)
        assert issubclass(error, ValueError)
    assert issubclass(cf.CommandRefused, cf.CertflowError)
    assert issubclass(cf.TimeWentBackwards, cf.InvalidInput)


def test_a_refusal_built_with_only_a_message_has_empty_fields() -> None:
    refused = cf.CommandRefused("no")
    assert (refused.command, refused.state, refused.reason, refused.allowed_at) == (
        "",
        "",
        "",
        None,
    )
    assert (refused.device_id, refused.device_state) == (None, None)
