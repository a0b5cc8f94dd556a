"""The values a rollout is made of: its states, its plan, its phase, a device's record.

The enums are the declarations' states (:mod:`certflow.core.machines`), in the
declarations' order; an import-time check keeps them so.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import attrs

from certflow.core.errors import InvalidInput
from certflow.core.identity import Identity
from certflow.core.machines import DEVICE_MACHINE, ROLLOUT_MACHINE
from certflow.core.policy import CertificateKind, Policy

__all__ = ["DeviceRecord", "DeviceState", "Phase", "Plan", "RolloutState"]


class RolloutState(StrEnum):
    """The rollout machine's states; values are the spec's names."""

    PENDING = "pending"
    DISTRIBUTING = "distributing"
    EXTENDED = "extended"
    IMPORTED = "imported"
    FORCED = "forced"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the rollout has ended in this state."""
        return self in _TERMINAL

    @property
    def running(self) -> bool:
        """Whether time moves the rollout in this state (it declares timers)."""
        return self in _RUNNING


class DeviceState(StrEnum):
    """The device sub-machine's states; values are the spec's names."""

    PENDING = "pending"
    PUSHED = "pushed"
    INSTALLED = "installed"
    FAILED = "failed"
    REMOVED = "removed"
    REENROLL_REQUIRED = "reenroll_required"

    @property
    def in_scope(self) -> bool:
        """Whether a device in this state is in the rollout's scope."""
        return self in _IN_SCOPE

    @property
    def trusts(self) -> bool:
        """Whether a device in this state trusts the root."""
        return self in _TRUSTS


# What the declarations say of each state, looked up once (the properties are hot).
_TERMINAL = ROLLOUT_MACHINE.terminal
_RUNNING = frozenset(s.name for s in ROLLOUT_MACHINE.states if s.timers)
_IN_SCOPE = frozenset(s.name for s in DEVICE_MACHINE.states if s.in_scope)
_TRUSTS = frozenset(s.name for s in DEVICE_MACHINE.states if s.trusts)


def _check_enums() -> None:  # pragma: no mutate block
    # The device codes index DeviceState by declaration order.
    if tuple(RolloutState) != ROLLOUT_MACHINE.state_names:
        raise RuntimeError("RolloutState differs from the rollout machine's states")
    if tuple(DeviceState) != DEVICE_MACHINE.state_names:
        raise RuntimeError("DeviceState differs from the device machine's states")


_check_enums()


def _identity(plan: Plan, _: attrs.Attribute[Identity | None], identity: object) -> None:
    if identity is None:
        return
    if not isinstance(identity, Identity):
        raise InvalidInput(
            f"identity must be a certflow.Identity or None, got {type(identity).__name__}"
        )
    if identity.root.publicly_trusted != plan.root_publicly_trusted:
        raise InvalidInput(
            f"identity.root.publicly_trusted ({identity.root.publicly_trusted}) contradicts "
            f"root_publicly_trusted ({plan.root_publicly_trusted}); give the identity the "
            "rollout's own answer (attrs.evolve its root)"
        )
    certificate = identity.certificate
    for name, mine, theirs in (
        ("not_before", certificate.not_before, plan.new_not_before),
        ("not_after", certificate.not_after, plan.new_not_after),
    ):
        if mine != theirs:
            raise InvalidInput(
                f"identity.certificate.{name} ({mine.isoformat()}) differs from new_{name} "
                f"({theirs.isoformat()}): the identity is of another certificate"
            )


@attrs.frozen
class Plan:
    """The facts a rollout was created from; they never change.

    ``identity`` is what the rollout rolls out (:class:`~certflow.Identity`: the new
    certificate, its root, the hosts, the public certificates), or ``None`` for a
    rollout made from dates alone, which has no identity.
    """

    kind: CertificateKind
    policy: Policy
    existing_not_after: datetime
    new_not_before: datetime
    new_not_after: datetime
    root_publicly_trusted: bool
    created_at: datetime
    identity: Identity | None = attrs.field(default=None, validator=_identity)


@attrs.frozen
class Phase:
    """The rollout machine's state and timeline.

    ``started_at`` is t0 (distribution start); ``checkpoints_done`` counts checkpoints
    already evaluated; ``extension`` is the sum of manual extensions, which moves every
    later checkpoint and the deadline; ``notified_for`` is the checkpoint instant the
    last notice announced; ``restart_required`` is the state of the restart machine.
    """

    state: RolloutState
    started_at: datetime | None = None
    checkpoints_done: int = 0
    extension: timedelta = timedelta(0)
    manual_extensions: int = 0
    notified_for: datetime | None = None
    ended_at: datetime | None = None
    restart_required: bool = False


@attrs.frozen
class DeviceRecord:
    """One device as the "view details" page shows it.

    A store also keeps when the root was last pushed to the device and when it last
    reported; a rollout value does not (``None``).
    """

    device_id: str
    state: DeviceState
    attempts: int
    last_failure_reason: str | None
    last_push: datetime | None = None
    last_report: datetime | None = None
