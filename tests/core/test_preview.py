"""The preview (:mod:`certflow.core.preview`): what a command would do, by the engine.

The store's preview is held to the same answers by the differential test of
``tests/store/test_sql.py`` (``a_command_is_previewed_then_done``).
"""

from __future__ import annotations

import contextlib
import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certflow as cf
from certflow.core.evaluator import DEFAULT
from certflow.core.preview import Preview, preview

from .strategies import DAY, T0, day, distributing

ADMIN = [
    cf.DistributeRoot(),
    cf.ProceedToImport(),
    cf.ImportNow(),
    cf.ExtendManually(),
    cf.RetryAllFailed(),
    cf.Cancel(),
]


def test_an_import_now_lists_the_devices_it_would_cut_off() -> None:
    rollout = cf.apply(distributing(4), cf.DeviceInstalled("d1"), day(1)).rollout
    seen = preview(rollout, cf.ImportNow(), day(2))
    assert seen.accepted
    assert seen.cut_off == ("d0", "d2", "d3")
    assert seen.overview is not None
    assert seen.overview.state is cf.RolloutState.FORCED
    # Nothing happened to the rollout it was asked about.
    assert rollout.phase.state is cf.RolloutState.DISTRIBUTING


def test_a_manual_extension_shows_the_dates_it_would_set() -> None:
    rollout = distributing(2)
    before = cf.summarize(rollout, day(6))
    seen = preview(rollout, cf.ExtendManually(), day(6))
    assert seen.overview is not None
    assert before.deadline is not None
    assert seen.overview.deadline == before.deadline + rollout.plan.policy.manual_extension
    assert seen.overview.manual_extensions == 1
    assert seen.before is not None
    assert (seen.before.next_checkpoint, seen.before.deadline) == (
        before.next_checkpoint,
        before.deadline,
    )
    assert seen.cut_off == ()


def test_a_refused_command_is_previewed_as_its_refusal() -> None:
    seen = preview(distributing(2), cf.ExtendManually(), day(1))
    assert not seen.accepted
    assert isinstance(seen.refusal, cf.CommandRefused)
    assert seen.refusal.allowed_at == day(6)
    assert (seen.effects, seen.overview, seen.rollout) == ((), None, None)


def test_bad_input_raises_as_apply_raises() -> None:
    rollout = distributing(2)
    with pytest.raises(cf.InvalidInput):
        preview(rollout, cf.ImportNow(), day(1).replace(tzinfo=None))
    with pytest.raises(cf.TimeWentBackwards):
        preview(rollout, cf.ImportNow(), T0 - DAY)


@settings(max_examples=150, deadline=None)
@given(
    reports=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=8),
    command=st.sampled_from(ADMIN) | st.builds(cf.Retry, st.sampled_from(["d0", "d3", "x"])),
    at=st.floats(min_value=0.5, max_value=30),
)
def test_a_preview_is_what_apply_then_does(
    reports: list[tuple[int, bool]], command: cf.Command, at: float
) -> None:
    rollout = distributing(6)
    for index, (device, installed) in enumerate(reports):
        name = f"d{device}"
        report = cf.DeviceInstalled(name) if installed else cf.DeviceFailed(name, "no")
        with contextlib.suppress(cf.CommandRefused):
            rollout = cf.apply(rollout, report, T0 + timedelta(minutes=index + 1)).rollout
    try:
        seen = preview(rollout, command, day(at))
    except cf.UnknownDevice:  # not a refusal by the rules: raised, as apply raises it
        with pytest.raises(cf.UnknownDevice):
            cf.apply(rollout, command, day(at))
        return
    refusal = DEFAULT.refusal(rollout, command, day(at)) if command in ADMIN else None
    if seen.refusal is not None:
        assert seen == Preview((), None, seen.refusal)
        with pytest.raises(cf.CommandRefused, match=re.escape(str(seen.refusal))):
            cf.apply(rollout, command, day(at))
        if command in ADMIN:
            assert str(refusal) == str(seen.refusal)
        return
    assert refusal is None
    step = cf.apply(rollout, command, day(at))
    assert seen.effects == tuple(step.effects)
    assert seen.rollout is not None
    assert cf.dumps(seen.rollout) == cf.dumps(step.rollout)
    summary = cf.summarize(step.rollout, day(at))
    assert seen.overview is not None
    assert seen.overview.deadline == summary.deadline
    assert seen.overview.counts == summary.counts


def test_a_preview_says_when_a_command_would_change_nothing() -> None:
    rollout = distributing(2)
    assert preview(rollout, cf.DeviceInstalled("d0"), day(1)).changes
    installed = cf.apply(rollout, cf.DeviceInstalled("d0"), day(1)).rollout
    seen = preview(installed, cf.DeviceInstalled("d0"), day(2))
    assert seen.accepted
    assert not seen.changes
    assert seen.effects == ()
    assert seen.overview is not None
    assert seen.overview.now == day(2)


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_the_heads_are_the_evaluator_s_own() -> None:
    # Rules under which an extension opens at once: the preview's heads say so when the
    # preview runs them, whatever the default rules would say.
    import attrs

    rows = tuple(
        attrs.evolve(row, guards=("valid_through_moved_deadline",))
        if (row.source, row.trigger) == ("distributing", "extend_manually")
        else row
        for row in cf.RULES.rollout.transitions
    )
    rules = attrs.evolve(cf.RULES, rollout=attrs.evolve(cf.RULES.rollout, transitions=rows))
    evaluator = cf.Evaluator(_rules=rules)
    rollout = distributing(2)
    seen = preview(rollout, cf.DeviceInstalled("d0"), day(1), evaluator)
    assert seen.overview is not None
    assert seen.before is not None
    assert seen.overview.manual_extension_available
    assert seen.before.manual_extension_available
    default = preview(rollout, cf.DeviceInstalled("d0"), day(1))
    assert default.overview is not None
    assert not default.overview.manual_extension_available
