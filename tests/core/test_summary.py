"""The "view details" summary."""

from __future__ import annotations

import attrs

import certflow as cf
from tests.core.strategies import DAY, T0, build, day, distributing


def test_summary_lists_every_device_with_state_attempts_and_last_failure_reason() -> None:
    rollout = distributing(["a", "b", "c"])
    rollout = cf.apply(rollout, cf.DeviceInstalled("a"), day(1)).rollout
    rollout = cf.apply(rollout, cf.DeviceFailed("b", "store locked"), day(1)).rollout
    summary = cf.summarize(rollout, day(2))
    assert (summary.now, summary.in_scope, summary.started_at) == (day(2), 3, T0)
    assert list(summary.devices()) == [
        cf.DeviceRecord("a", cf.DeviceState.INSTALLED, 1, None),
        cf.DeviceRecord("b", cf.DeviceState.FAILED, 1, "store locked"),
        cf.DeviceRecord("c", cf.DeviceState.PUSHED, 1, None),
    ]
    assert summary.counts[cf.DeviceState.FAILED] == 1
    assert sum(summary.counts.values()) == 3
    assert round(summary.percent_complete, 2) == 33.33


def test_summary_shows_next_checkpoint_deadline_and_whether_manual_extension_is_available() -> None:
    rollout = distributing(1)
    early = cf.summarize(rollout, day(5))
    assert (early.next_checkpoint, early.deadline) == (day(7), day(21))
    assert not early.manual_extension_available
    assert early.manual_extension_opens_at == day(6)
    later = cf.summarize(rollout, day(8))
    assert later.state is cf.RolloutState.EXTENDED
    assert later.next_checkpoint == day(14)
    assert later.manual_extension_available


def test_summary_says_manual_extension_is_unavailable_when_the_certificate_would_not_cover_it() -> (
    None
):
    rollout = distributing(1, new_valid_for=28 * DAY)
    assert not cf.summarize(rollout, day(6)).manual_extension_available


def test_summary_pages_and_filters_the_device_list_lazily() -> None:
    rollout = distributing(10)
    rollout = cf.apply(rollout, cf.DeviceInstalled("d3"), day(1)).rollout
    summary = cf.summarize(rollout, day(1))
    assert [r.device_id for r in summary.devices(offset=2, limit=3)] == ["d2", "d3", "d4"]
    assert [r.device_id for r in summary.devices(state=cf.DeviceState.INSTALLED)] == ["d3"]
    assert list(summary.devices(offset=20)) == []


def test_summary_of_an_empty_scope_is_complete_and_of_a_pending_rollout_has_no_timeline() -> None:
    summary = cf.summarize(build(0), day(0))
    assert summary.percent_complete == 100.0
    assert summary.next_checkpoint is None
    assert summary.deadline is None
    assert summary.manual_extension_opens_at is None
    assert summary.manual_extensions == 0


def test_summary_counts_manual_extensions_and_drops_the_window_once_ended() -> None:
    rollout = cf.apply(distributing(1), cf.ExtendManually(), day(6)).rollout
    assert cf.summarize(rollout, day(7)).manual_extensions == 1
    ended = cf.summarize(rollout, day(40))
    assert (ended.manual_extensions, ended.manual_extension_opens_at) == (1, None)


def test_summary_is_taken_at_now_without_changing_the_rollout() -> None:
    rollout = distributing(1)
    summary = cf.summarize(rollout, day(30))
    assert summary.state is cf.RolloutState.FORCED
    assert summary.restart_required
    assert rollout.state is cf.RolloutState.DISTRIBUTING


def test_the_overview_from_a_rollout_s_parts_is_the_summary_s_head() -> None:
    from certflow.core.summary import overview

    rollout = cf.apply(distributing(4), cf.DeviceInstalled("d0"), day(1)).rollout
    for at in (day(1), day(6), day(6.5)):
        summary = cf.summarize(rollout, at)
        advanced = cf.advance(rollout, at).rollout
        head = overview(advanced.plan, advanced.phase, advanced.counts(), at)
        assert attrs.asdict(head) == {
            k: v for k, v in attrs.asdict(summary, recurse=False).items() if k != "rollout"
        }
    assert summary.manual_extension_available


def test_summary_reads_as_a_few_lines_and_as_an_html_table() -> None:
    rollout = distributing(["a", "b"])
    rollout = cf.apply(rollout, cf.DeviceInstalled("a"), day(1)).rollout
    summary = cf.summarize(rollout, day(6))
    assert str(summary) == "\n".join(
        [
            "state: distributing",
            "at: 2026-07-07 09:00 UTC",
            "trust the root: 50.0% of 2 in scope",
            "next checkpoint: 2026-07-08 09:00 UTC",
            "deadline: 2026-07-22 09:00 UTC",
            "manual extension: available; 0 used",
            "existing certificate: expires 2026-08-30 09:00 UTC",
            "identity: none (made from dates alone)",
            "devices: pushed 1, installed 1",
        ]
    )
    html = summary._repr_html_()
    assert html.startswith("<table><tr><th style='text-align:left'>state</th><td>distributing</td>")
    assert "<th style='text-align:left'>devices installed</th><td>1</td>" in html
    assert html.count("<tr>") == 8 + len(summary.counts)


def test_the_summary_says_what_the_rollout_rolls_out() -> None:
    rollout = build(2, identified=True)
    known = rollout.plan.identity
    assert known is not None
    summary = cf.summarize(rollout, T0)
    assert summary.identity == known
    lines = str(summary).splitlines()
    assert (
        f"certificate: CN=mdm.example.com,O=Example (SHA-256 {known.certificate.fingerprint})"
        in lines
    )
    assert f"root: CN=Root mdm.example.com, private (SHA-256 {known.root.fingerprint})" in lines
    assert "hosts: mdm.example.com, 203.0.113.10" in lines
    public = cf.summarize(build(2, identified=True, public=True), T0)
    assert "publicly trusted (SHA-256" in str(public)
    assert cf.summarize(build(2), T0).identity is None


def test_a_public_root_needs_no_distribution_and_counts_every_device_as_trusting() -> None:
    rollout = cf.apply(build(3, public=True), cf.ProceedToImport(), T0).rollout
    summary = cf.summarize(rollout, T0)
    assert summary.percent_complete == 100.0
    assert summary.trusting == summary.in_scope == 3
    assert not summary.distribution_needed
    assert "distribution is not needed" in str(summary)
    assert cf.summarize(build(3), T0).distribution_needed


def test_the_summary_shows_the_existing_certificates_expiry_and_whether_it_passed() -> None:
    rollout = distributing(1, existing_expires_in=5 * DAY)
    before = cf.summarize(rollout, day(1))
    assert before.existing_not_after == T0 + 5 * DAY
    assert not before.existing_expired
    assert before.next_checkpoint == T0 + 5 * DAY  # the expiry is the next decision
    assert before.next_checkpoint_is_expiry
    assert "(the existing certificate's expiry)" in str(before)
    assert any("lies past the existing certificate's expiry" in w for w in before.warnings)
    strict = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    after = cf.summarize(distributing(1, existing_expires_in=5 * DAY, policy=strict), day(6))
    assert after.existing_expired
    assert "existing certificate: expired" in str(after)
    assert not after.next_checkpoint_is_expiry


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_pending_empty_rollout_reads_dashes_for_its_timeline_and_none_for_its_devices() -> None:
    lines = str(cf.summarize(build(0), T0)).splitlines()
    assert "next checkpoint: -" in lines
    assert "deadline: -" in lines
    assert "manual extension: not available; 0 used" in lines
    assert lines[-1] == "devices: none"


def test_the_summary_says_a_server_restart_is_pending_in_lines_and_in_html() -> None:
    summary = cf.summarize(distributing(1), day(30))  # forced at the deadline
    assert summary.restart_required
    assert str(summary).splitlines()[0] == "state: forced (server restart pending)"
    html = summary._repr_html_()
    assert "<td>forced (server restart pending)</td></tr><tr><th" in html
    assert html.count("</tr><tr>") == html.count("<tr>") - 1  # rows follow each other


def test_the_overview_counts_a_state_it_is_not_given_as_none() -> None:
    from certflow.core.summary import overview

    rollout = distributing(2)
    head = overview(rollout.plan, rollout.phase, {cf.DeviceState.PUSHED: 2}, day(1))
    assert head.counts == {
        state: 2 if state is cf.DeviceState.PUSHED else 0 for state in cf.DeviceState
    }
    assert head.in_scope == 2


def test_the_overview_gives_the_evaluator_the_in_scope_devices_that_do_not_trust() -> None:
    # Rules under which an extension needs every device to trust the root: the answer
    # follows the in-scope untrusting count (a removed device is out of scope).
    from certflow.core.summary import overview

    rows = tuple(
        attrs.evolve(row, guards=(*row.guards, "all_trust"))
        if (row.source, row.trigger) == ("distributing", "extend_manually")
        else row
        for row in cf.RULES.rollout.transitions
    )
    rules = attrs.evolve(cf.RULES, rollout=attrs.evolve(cf.RULES.rollout, transitions=rows))
    evaluator = cf.Evaluator(_rules=rules)
    rollout = distributing(3)
    state = cf.DeviceState
    trusting = {state.INSTALLED: 2, state.REMOVED: 1}
    waiting = {state.INSTALLED: 2, state.PUSHED: 1}
    at = day(6)
    assert overview(rollout.plan, rollout.phase, trusting, at, evaluator).manual_extension_available
    assert not overview(
        rollout.plan, rollout.phase, waiting, at, evaluator
    ).manual_extension_available
    assert overview(rollout.plan, rollout.phase, waiting, at).manual_extension_available


def test_the_summary_lines_say_the_public_root_the_expiry_checkpoint_and_each_warning() -> None:
    public = cf.summarize(cf.apply(build(3, public=True), cf.ProceedToImport(), T0).rollout, T0)
    assert (
        "trust the root: 100.0% of 3 in scope "
        "(the root is publicly trusted: distribution is not needed)"
    ) in str(public).splitlines()
    before = cf.summarize(distributing(1, existing_expires_in=5 * DAY), day(1))
    lines = str(before).splitlines()
    assert "next checkpoint: 2026-07-06 09:00 UTC (the existing certificate's expiry)" in lines
    assert before.warnings
    assert [line for line in lines if line.startswith("warning: ")] == [
        f"warning: {warning}" for warning in before.warnings
    ]


def test_the_existing_certificate_has_expired_at_its_expiry_instant() -> None:
    strict = cf.Policy(import_rule=cf.ImportRule.DISTRIBUTED_AND_EXPIRED)
    rollout = distributing(1, existing_expires_in=5 * DAY, policy=strict)
    assert not cf.summarize(rollout, T0 + 5 * DAY - DAY / 24).existing_expired
    assert cf.summarize(rollout, T0 + 5 * DAY).existing_expired
