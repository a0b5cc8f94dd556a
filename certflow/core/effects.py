"""What a rollout asks its host to do: frozen value classes, never performed here.

Every effect carries ``due_at``, the instant it became due. Effects come back from
:func:`certflow.advance` and :func:`certflow.apply` in the order they fell due.
``str(effect)`` reads as one line for a log or a notebook (``repr`` stays exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from certflow.core.identity import optional_fingerprint, pem_named, short
from certflow.core.instants import show

if TYPE_CHECKING:
    from certflow.core.plan import Plan
    from certflow.core.rollout import Rollout

__all__ = [
    "AcknowledgementTimedOut",
    "Effect",
    "ImportCertificate",
    "ImportPostponed",
    "Notify",
    "PushRoot",
    "ReenrollmentRequired",
    "RestartRequired",
    "RolloutCancelled",
]


def _devices(device_ids: Sequence[str], shown: int = 3) -> str:
    """``3 devices: a, b, c`` / ``1 device: a`` / ``5 devices: a, b, c, ...``."""
    count = len(device_ids)
    names = ", ".join(device_ids[:shown]) + (", ..." if count > shown else "")
    return f"{count:,} device{'s' if count != 1 else ''}: {names}"


@attrs.frozen
class PushRoot:
    """Push the root certificate to ``device_ids``; this is push number ``attempt``.

    One effect per batch: distribution start pushes every in-scope device in one
    effect; a bulk retry emits one effect per attempt number, in ascending order; a
    single retry or an enrolment emits an effect for one device.

    ``root_fingerprint`` names the root to push: the SHA-256 fingerprint of the
    rollout's ``plan.identity.root`` (``None`` when the rollout has no identity);
    :meth:`root_pem` gives its PEM.
    """

    device_ids: tuple[str, ...]
    attempt: int
    due_at: datetime
    root_fingerprint: str | None = attrs.field(default=None, validator=optional_fingerprint)

    def root_pem(self, of: Rollout | Plan) -> str:
        """The PEM of the root to push, from the rollout that emitted this effect or its
        plan (a store's ``plan(name)``); :class:`~certflow.errors.InvalidInput` when the
        effect names no root or ``of`` is another rollout's."""
        return pem_named(of, self.root_fingerprint, "PushRoot")

    def __str__(self) -> str:
        devices = _devices(self.device_ids)
        root = "" if self.root_fingerprint is None else f" {short(self.root_fingerprint)}"
        return f"{show(self.due_at)}  push the root{root} (attempt {self.attempt}) to {devices}"


@attrs.frozen
class Notify:
    """E-mail the administrators: checkpoint ``checkpoint`` (1-based) is at ``checkpoint_at``.

    ``final`` is true when that checkpoint is the deadline: the import happens then
    whatever the state of the fleet; ``expiry`` when it is the existing certificate's
    expiry, which imports as a checkpoint does. What the notice states at the instant it
    is emitted: the progress (``in_scope``, ``trusting``, ``failed``, ``unanswered``:
    pushed, no answer yet), what the checkpoint will do if nothing changes (``outcome``:
    ``"import"``, ``"forced import"`` cutting off ``cut_off`` devices, or ``"postpone"``),
    and whether a manual extension is available now. (Effects stored before these
    fields existed read as zeros and ``""``.)
    """

    checkpoint: int
    checkpoint_at: datetime
    final: bool
    due_at: datetime
    expiry: bool = False
    in_scope: int = 0
    trusting: int = 0
    failed: int = 0
    unanswered: int = 0
    outcome: str = ""
    cut_off: int = 0
    extension_available: bool = False

    def __str__(self) -> str:
        if self.expiry:
            what = "the current certificate expires: import then"
        elif self.final:
            what = "the deadline: import whatever the fleet's state"
        else:
            what = "import if ready"
        text = (
            f"{show(self.due_at)}  notice: checkpoint {self.checkpoint} on "
            f"{show(self.checkpoint_at)} ({what})"
        )
        if self.outcome:
            cut = f", cutting off {self.cut_off:,} device(s)" if self.cut_off else ""
            text += (
                f"; {self.trusting:,} of {self.in_scope:,} trust the root; if nothing changes: "
                f"{self.outcome}{cut}"
            )
        return text


@attrs.frozen
class ImportPostponed:
    """A checkpoint found the import condition false; the next one is ``next_checkpoint_at``."""

    checkpoint: int
    next_checkpoint_at: datetime
    due_at: datetime

    def __str__(self) -> str:
        return (
            f"{show(self.due_at)}  checkpoint {self.checkpoint}: import postponed to "
            f"{show(self.next_checkpoint_at)}"
        )


@attrs.frozen
class ImportCertificate:
    """Import the new certificate into the server now. ``forced``: some devices lose contact.

    ``certificate_fingerprint`` names the certificate: the SHA-256 fingerprint of the
    rollout's ``plan.identity.certificate`` (``None`` when the rollout has no identity);
    :meth:`certificate_pem` gives its PEM.
    """

    forced: bool
    due_at: datetime
    certificate_fingerprint: str | None = attrs.field(default=None, validator=optional_fingerprint)

    def certificate_pem(self, of: Rollout | Plan) -> str:
        """The PEM of the certificate to import, from the rollout that emitted this effect
        or its plan; :class:`~certflow.errors.InvalidInput` as for
        :meth:`PushRoot.root_pem`."""
        return pem_named(of, self.certificate_fingerprint, "ImportCertificate")

    def __str__(self) -> str:
        what = "FORCED import (some devices are cut off)" if self.forced else "import"
        fingerprint = self.certificate_fingerprint
        named = "" if fingerprint is None else f" {short(fingerprint)}"
        return f"{show(self.due_at)}  {what} of the new certificate{named}"


@attrs.frozen
class RolloutCancelled:
    """The rollout was cancelled: the old certificate stays; nothing more will happen."""

    due_at: datetime

    def __str__(self) -> str:
        return f"{show(self.due_at)}  rollout cancelled: the current certificate stays"


@attrs.frozen
class RestartRequired:
    """Restart the server so that it loads the imported certificate."""

    due_at: datetime

    def __str__(self) -> str:
        return f"{show(self.due_at)}  restart required: the server must load the new certificate"


@attrs.frozen
class ReenrollmentRequired:
    """These in-scope devices did not trust the root at the import and must re-enrol."""

    device_ids: tuple[str, ...]
    due_at: datetime

    def __str__(self) -> str:
        return f"{show(self.due_at)}  re-enrolment required for {_devices(self.device_ids)}"


@attrs.frozen
class AcknowledgementTimedOut:
    """These pushed devices did not answer within the policy's ``ack_timeout``: now failed."""

    device_ids: tuple[str, ...]
    due_at: datetime

    def __str__(self) -> str:
        return f"{show(self.due_at)}  no answer in time, now failed: {_devices(self.device_ids)}"


Effect = (
    PushRoot
    | Notify
    | ImportPostponed
    | ImportCertificate
    | RestartRequired
    | ReenrollmentRequired
    | AcknowledgementTimedOut
    | RolloutCancelled
)
