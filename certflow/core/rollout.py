"""The rollout value: an immutable snapshot of one certificate import and its fleet.

A :class:`Rollout` never changes; :func:`certflow.advance` and :func:`certflow.apply`
return new ones. Its public parts are ``plan`` (the facts fixed at creation), ``phase``
(the rollout machine's state and timeline) and ``clock`` (the last instant it has
seen); every device is read through methods. How the devices are stored is private
(:mod:`certflow.core._fleet`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import attrs

from certflow.core import guards
from certflow.core._fleet import (
    Fleet,
    attempts_of,
    fact,
    state_of,
    unpack_counts,
)
from certflow.core.commands import check_device_ids
from certflow.core.errors import InvalidInput
from certflow.core.identity import Identity
from certflow.core.instants import require_aware, show
from certflow.core.machines import ROLLOUT_MACHINE
from certflow.core.plan import DeviceRecord, DeviceState, Phase, Plan, RolloutState
from certflow.core.policy import CertificateKind, Policy

__all__ = ["Rollout", "new_rollout"]


@attrs.frozen(eq=False)
class Rollout:
    """One import of a new server certificate: an immutable value.

    Create one with :func:`certflow.new_rollout`;
    move it with :func:`certflow.advance` and :func:`certflow.apply`. Two rollouts are
    equal when they hold the same facts, phase, clock and devices, however their
    storage is laid out.
    """

    plan: Plan
    phase: Phase
    clock: datetime
    _fleet: Fleet = attrs.field(alias="fleet", repr=False)

    @classmethod
    def create(cls, device_ids: Iterable[str], **facts: Any) -> Rollout:
        """Deprecated spelling of :func:`certflow.new_rollout` (removed in certflow 0.3)."""
        warnings.warn(
            "Rollout.create is deprecated and will be removed in certflow 0.3: use "
            "certflow.new_rollout, the one name of a new rollout",
            DeprecationWarning,
            stacklevel=2,
        )
        return new_rollout(device_ids, **facts)

    @property
    def state(self) -> RolloutState:
        """The rollout machine's current state."""
        return self.phase.state

    @property
    def device_count(self) -> int:
        """How many devices the rollout knows, removed ones included."""
        return self._fleet.size

    def device_ids(self) -> Iterator[str]:
        """Every device id, in creation then enrolment order."""
        return self._fleet.all_ids()

    def device_state(self, device_id: str) -> DeviceState:
        """The state of one device; :class:`UnknownDevice` if the rollout does not know it."""
        return state_of(self._fleet.codes[self._fleet.locate(device_id)])

    def device(self, device_id: str) -> DeviceRecord:
        """One device's state, push attempts and last failure reason."""
        return self._record(self._fleet.locate(device_id), device_id)

    def devices(self) -> Iterator[DeviceRecord]:
        """Every device's record, lazily, in creation then enrolment order."""
        for index, device_id in enumerate(self._fleet.all_ids()):
            yield self._record(index, device_id)

    def _record(self, index: int, device_id: str) -> DeviceRecord:
        code = self._fleet.codes[index]
        return DeviceRecord(
            device_id=device_id,
            state=state_of(code),
            attempts=attempts_of(code),
            last_failure_reason=self._fleet.roster.reasons.get(index),
        )

    def counts(self) -> dict[DeviceState, int]:
        """How many devices are in each state (O(1): the counts are kept, not recounted)."""
        return unpack_counts(self._fleet.counts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rollout):
            return NotImplemented
        mine, theirs = self._fleet, other._fleet
        # The initial-push mark and the timer queue's layout are storage choices; the
        # facts are each device's state and attempts, and which pushes await an answer.
        return (
            self.plan == other.plan
            and self.phase == other.phase
            and self.clock == other.clock
            and mine.size == theirs.size
            and all(fact(a) == fact(b) for a, b in zip(mine.codes, theirs.codes, strict=True))
            and list(mine.all_ids()) == list(theirs.all_ids())
            and dict(mine.roster.reasons) == dict(theirs.roster.reasons)
            and mine.awaiting() == theirs.awaiting()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<Rollout {self.phase.state.value} at {self.clock.isoformat()} "
            f"devices={self.device_count}>"
        )


def new_rollout(
    device_ids: Iterable[str],
    *,
    existing_not_after: datetime,
    new_not_before: datetime,
    new_not_after: datetime,
    root_publicly_trusted: bool,
    created_at: datetime,
    kind: CertificateKind = CertificateKind.MDM_SERVER,
    policy: Policy | None = None,
    trusted_device_ids: Iterable[str] = (),
    identity: Identity | None = None,
) -> Rollout:
    """A ``pending`` rollout of a new certificate over the in-scope ``device_ids``.

    ``existing_not_after`` is the expiry of the certificate being replaced;
    ``new_not_before``/``new_not_after`` the validity of the new one, which must
    pass, at ``created_at``, the guards that starting the distribution then would
    check (valid from then through the deadline). ``trusted_device_ids`` are devices
    known to trust the root already. ``identity`` is what the rollout rolls out (the
    certificate, its root, the hosts: :func:`certflow.certs.rollout_for` fills it from
    checked material); without it the rollout is made from dates alone and has no
    identity. Raises :class:`~certflow.errors.InvalidInput` for naive datetimes,
    duplicate or empty ids, a certificate that would not stay valid through the
    deadline, or an identity whose validity or root's public trust differs from the
    dates and ``root_publicly_trusted`` given.
    """
    created_at = require_aware("created_at", created_at)
    existing_not_after = require_aware("existing_not_after", existing_not_after)
    new_not_before = require_aware("new_not_before", new_not_before)
    new_not_after = require_aware("new_not_after", new_not_after)
    try:
        kind = CertificateKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in CertificateKind)
        raise InvalidInput(f"unknown certificate kind {kind!r}; choose one of {choices}") from None
    if policy is None:
        policy = Policy()
    elif not isinstance(policy, Policy):
        raise InvalidInput(f"policy must be a certflow.Policy, got {type(policy).__name__}")
    if not isinstance(root_publicly_trusted, bool):
        raise InvalidInput(f"root_publicly_trusted must be a bool, got {root_publicly_trusted!r}")
    if new_not_before >= new_not_after:
        raise InvalidInput(
            f"the new certificate's validity is empty: not_before {show(new_not_before)} "
            f"is not before not_after {show(new_not_after)}"
        )
    plan = Plan(
        kind=kind,
        policy=policy,
        existing_not_after=existing_not_after,
        new_not_before=new_not_before,
        new_not_after=new_not_after,
        root_publicly_trusted=root_publicly_trusted,
        created_at=created_at,
        identity=identity,
    )
    phase = Phase(state=RolloutState(ROLLOUT_MACHINE.initial))
    _require_startable(plan, phase, created_at)

    if isinstance(device_ids, str):
        raise InvalidInput("device_ids must be an iterable of ids, not one string")
    ids = tuple(device_ids)
    index = dict(zip(ids, range(len(ids)), strict=True))
    if len(index) != len(ids):
        counted = Counter(ids)
        duplicates = [d for d, n in counted.items() if n > 1]
        shown = ", ".join(repr(d) for d in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise InvalidInput(f"duplicate device ids: {shown}{more}; each device must appear once")
    check_device_ids(ids)  # printable and bounded: every table and message shows them
    if isinstance(trusted_device_ids, str):
        raise InvalidInput("trusted_device_ids must be an iterable of ids, not one string")
    trusted = [index.get(d, -1) for d in dict.fromkeys(trusted_device_ids)]
    if -1 in trusted:
        unknown = [d for d in trusted_device_ids if d not in index]
        raise InvalidInput(f"trusted_device_ids names unknown devices: {unknown[:5]!r}")

    fleet = Fleet.new(ids, index, trusted)
    return Rollout(plan=plan, phase=phase, clock=created_at, fleet=fleet)


def _require_startable(plan: Plan, phase: Phase, at: datetime) -> None:
    """Refuse a plan that the distribution's guards would refuse at ``at``.

    The guards are those of the initial state's ``distribute_root`` row, so creation
    checks exactly what starting the distribution then would check.
    """
    situation = guards.Situation(plan, phase, at, 0)
    for row in ROLLOUT_MACHINE.rows(ROLLOUT_MACHINE.initial, "distribute_root"):
        for name in row.guards:
            if not guards.GUARDS[name](situation):
                raise InvalidInput(guards.explain(ROLLOUT_MACHINE.guard(name), situation))
