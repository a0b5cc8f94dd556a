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


def test_a_string_of_exactly_the_limit_is_quoted_whole_and_a_longer_one_cut() -> None:
    from certflow.core.errors import QUOTED, quoted

    assert quoted("a" * QUOTED) == repr("a" * QUOTED)
    assert quoted("a" * (QUOTED + 1)) == f"{'a' * QUOTED!r}… ({QUOTED + 1} characters)"
    assert quoted("ab", limit=2) == "'ab'"
