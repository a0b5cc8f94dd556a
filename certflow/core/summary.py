"""The "view details" page of a rollout: counts, timeline and every device, lazily."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from html import escape

import attrs

from certflow.core import timeline
from certflow.core.commands import ExtendManually
from certflow.core.evaluator import DEFAULT, Evaluator
from certflow.core.expiry import expiry_warnings
from certflow.core.identity import Identity
from certflow.core.instants import show
from certflow.core.plan import DeviceRecord, DeviceState, Phase, Plan, RolloutState
from certflow.core.progress import Progress
from certflow.core.rollout import Rollout

__all__ = ["Overview", "Summary", "overview", "summarize"]


@attrs.frozen
class Overview:
    """A rollout's state, counts and timeline at ``now``: the head of "view details".

    Everything here is O(1) in the fleet size: it needs the plan, the phase and the
    counts per device state, so a database store builds the same overview from one row
    (:func:`overview`). ``manual_extension_available`` is the declaration's own answer:
    whether ``ExtendManually`` would be accepted at ``now``. ``identity`` is what the
    rollout rolls out (``None``: it was made from dates alone and has none).

    ``percent_complete`` counts every in-scope device as trusting when the root is
    publicly trusted (``distribution_needed`` is then false). ``next_checkpoint`` is the
    next decision, the existing certificate's expiry when it comes first
    (``next_checkpoint_is_expiry``). ``existing_not_after`` and ``existing_expired`` say
    when the certificate being replaced expires, and ``warnings`` what an administrator
    must be told about it (:mod:`certflow.core.expiry`).
    """

    state: RolloutState
    now: datetime
    counts: dict[DeviceState, int]
    in_scope: int
    percent_complete: float
    started_at: datetime | None
    next_notice: datetime | None
    next_checkpoint: datetime | None
    deadline: datetime | None
    manual_extension_available: bool
    manual_extension_opens_at: datetime | None
    manual_extensions: int
    restart_required: bool
    identity: Identity | None
    trusting: int
    distribution_needed: bool
    next_checkpoint_is_expiry: bool
    existing_not_after: datetime
    existing_expired: bool
    warnings: tuple[str, ...]

    def _lines(self) -> list[tuple[str, str]]:
        def shown(instant: datetime | None) -> str:
            return "-" if instant is None else show(instant)

        restart = " (server restart pending)" if self.restart_required else ""
        available = "available" if self.manual_extension_available else "not available"
        trust = f"{self.percent_complete:.1f}% of {self.in_scope:,} in scope"
        if not self.distribution_needed:
            trust += " (the root is publicly trusted: distribution is not needed)"
        checkpoint = shown(self.next_checkpoint)
        if self.next_checkpoint_is_expiry:
            checkpoint += " (the existing certificate's expiry)"
        expires = "expired" if self.existing_expired else "expires"
        existing = [("existing certificate", f"{expires} {show(self.existing_not_after)}")]
        return [
            ("state", f"{self.state.value}{restart}"),
            ("at", show(self.now)),
            ("trust the root", trust),
            ("next checkpoint", checkpoint),
            ("deadline", shown(self.deadline)),
            ("manual extension", f"{available}; {self.manual_extensions} used"),
            *existing,
            *(("warning", warning) for warning in self.warnings),
            *_identity_lines(self.identity),
        ]

    def __str__(self) -> str:
        """A few lines: state, progress, timeline, and the devices per state."""
        lines = [f"{name}: {value}" for name, value in self._lines()]
        counts = ", ".join(f"{state.value} {n:,}" for state, n in self.counts.items() if n)
        lines.append(f"devices: {counts or 'none'}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """The summary as an HTML table, for notebooks."""
        rows = [(name, value) for name, value in self._lines()]
        rows += [(f"devices {state.value}", f"{n:,}") for state, n in self.counts.items()]
        body = "".join(
            f"<tr><th style='text-align:left'>{escape(name)}</th><td>{escape(value)}</td></tr>"
            for name, value in rows
        )
        return f"<table>{body}</table>"


def _identity_lines(identity: Identity | None) -> list[tuple[str, str]]:
    if identity is None:
        return [("identity", "none (made from dates alone)")]
    certificate, root = identity.certificate, identity.root
    trust = "publicly trusted" if root.publicly_trusted else "private"
    return [
        ("certificate", f"{certificate.subject} (SHA-256 {certificate.fingerprint})"),
        ("root", f"{root.subject}, {trust} (SHA-256 {root.fingerprint})"),
        ("hosts", ", ".join(identity.hosts)),
    ]


@attrs.frozen
class Summary(Overview):
    """A rollout as an administrator sees it at ``now``: the :class:`Overview`, and every
    device, read lazily through :meth:`devices` (paged with ``offset``/``limit``).

    Every instant comes from :mod:`certflow.core.timeline`.
    """

    rollout: Rollout = attrs.field(repr=False, eq=False)

    def devices(
        self, offset: int = 0, limit: int | None = None, state: DeviceState | None = None
    ) -> Iterator[DeviceRecord]:
        """Device records in creation order, optionally of one ``state``, paged."""
        taken = 0
        skipped = 0
        for record in self.rollout.devices():
            if state is not None and record.state is not state:
                continue
            if skipped < offset:
                skipped += 1
                continue
            if limit is not None and taken >= limit:
                return
            taken += 1
            yield record


def overview(
    plan: Plan,
    phase: Phase,
    counts: Mapping[DeviceState, int],
    now: datetime,
    evaluator: Evaluator = DEFAULT,
) -> Overview:
    """The overview of a rollout already advanced to ``now`` (pure, O(1))."""
    counts = {state: counts.get(state, 0) for state in DeviceState}
    progress = Progress.of(plan, {state.value: n for state, n in counts.items()})
    # The guards see the devices as they are (a public root is trusted by the guard).
    untrusting = sum(n for state, n in counts.items() if state.in_scope and not state.trusts)
    running = phase.state.running
    return Overview(
        state=phase.state,
        now=now,
        counts=counts,
        in_scope=progress.in_scope,
        percent_complete=progress.percent,
        started_at=phase.started_at,
        next_notice=timeline.next_notice(plan, phase),
        next_checkpoint=timeline.next_decision(plan, phase),
        deadline=timeline.deadline(plan, phase),
        manual_extension_available=evaluator.allows_at(
            plan, phase, untrusting, now, ExtendManually()
        ),
        manual_extension_opens_at=timeline.extension_opens(plan, phase) if running else None,
        manual_extensions=phase.manual_extensions,
        restart_required=phase.restart_required,
        identity=plan.identity,
        trusting=progress.trusting,
        distribution_needed=not progress.public_root,
        next_checkpoint_is_expiry=timeline.next_decision_is_expiry(plan, phase),
        existing_not_after=plan.existing_not_after,
        existing_expired=plan.existing_not_after <= now,
        warnings=expiry_warnings(plan, phase, now),
    )


def summarize(rollout: Rollout, now: datetime) -> Summary:
    """The view-details summary of ``rollout`` as advanced to ``now`` (pure)."""
    rollout = DEFAULT.advance(rollout, now).rollout
    head = overview(rollout.plan, rollout.phase, rollout.counts(), now)
    return Summary(**attrs.asdict(head, recurse=False), rollout=rollout)
