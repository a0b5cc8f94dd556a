"""What a rollout asks its host to do: frozen value classes, never performed here.

Every effect carries ``due_at``, the instant it became due. Effects come back from
:func:`certflow.advance` and :func:`certflow.apply` in the order they fell due.
"""

from __future__ import annotations

from datetime import datetime

import attrs

__all__ = [
    "AcknowledgementTimedOut",
    "Effect",
    "ImportCertificate",
    "ImportPostponed",
    "Notify",
    "PushRoot",
    "ReenrollmentRequired",
    "RestartRequired",
]


@attrs.frozen
class PushRoot:
    """Push the root certificate to ``device_ids``; this is push number ``attempt``.

    One effect per batch: distribution start pushes every in-scope device in one
    effect; a bulk retry emits one effect per attempt number, in ascending order; a
    single retry or an enrolment emits an effect for one device.
    """

    device_ids: tuple[str, ...]
    attempt: int
    due_at: datetime


@attrs.frozen
class Notify:
    """E-mail the administrators: checkpoint ``checkpoint`` (1-based) is at ``checkpoint_at``.

    ``final`` is true when that checkpoint is the deadline: the import happens then
    whatever the state of the fleet.
    """

    checkpoint: int
    checkpoint_at: datetime
    final: bool
    due_at: datetime


@attrs.frozen
class ImportPostponed:
    """A checkpoint found the import condition false; the next one is ``next_checkpoint_at``."""

    checkpoint: int
    next_checkpoint_at: datetime
    due_at: datetime


@attrs.frozen
class ImportCertificate:
    """Import the new certificate into the server now. ``forced``: some devices lose contact."""

    forced: bool
    due_at: datetime


@attrs.frozen
class RestartRequired:
    """Restart the server so that it loads the imported certificate."""

    due_at: datetime


@attrs.frozen
class ReenrollmentRequired:
    """These in-scope devices did not trust the root at the import and must re-enrol."""

    device_ids: tuple[str, ...]
    due_at: datetime


@attrs.frozen
class AcknowledgementTimedOut:
    """These pushed devices did not answer within the policy's ``ack_timeout``: now failed."""

    device_ids: tuple[str, ...]
    due_at: datetime


Effect = (
    PushRoot
    | Notify
    | ImportPostponed
    | ImportCertificate
    | RestartRequired
    | ReenrollmentRequired
    | AcknowledgementTimedOut
)
