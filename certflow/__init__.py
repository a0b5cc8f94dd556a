"""certflow: replace an MDM/endpoint server's TLS certificate without losing devices.

The rollout core is pure: :func:`new_rollout` creates a
value, :func:`advance` and :func:`apply` return ``(rollout, effects)`` and never read a
clock or perform I/O; :func:`next_due` says when time will next move a rollout, and
:func:`preview` what a command would do, without doing it. Every
rule is data in :data:`RULES` (see ``docs/machines.md``). :func:`describe_effect` and
:func:`describe_refusal` put effects and refusals into words.
A rollout made from checked material knows what it rolls out: its plan's
:class:`Identity` (:func:`certflow.certs.rollout_for` fills it).
Certificate tools live in :mod:`certflow.certs`.
"""

from certflow.core.commands import (
    Cancel,
    Command,
    DeviceCommand,
    DeviceFailed,
    DeviceInstalled,
    DistributeRoot,
    Enroll,
    ExtendManually,
    ImportNow,
    ProceedToImport,
    Reenrolled,
    Retry,
    RetryAllFailed,
    ServerRestarted,
    Unenroll,
)
from certflow.core.effects import (
    AcknowledgementTimedOut,
    Effect,
    ImportCertificate,
    ImportPostponed,
    Notify,
    PushRoot,
    ReenrollmentRequired,
    RestartRequired,
    RolloutCancelled,
)
from certflow.core.errors import (
    CertflowError,
    CommandRefused,
    InvalidInput,
    SerializationError,
    TimeWentBackwards,
    UnknownDevice,
)
from certflow.core.evaluator import (
    Evaluator,
    Step,
    advance,
    apply,
    apply_all,
    new_rollout,
    next_due,
)
from certflow.core.identity import CertificateIdentity, Identity, RootIdentity
from certflow.core.machines import (
    DEVICE_MACHINE,
    RESTART_MACHINE,
    ROLLOUT_MACHINE,
    RULES,
    MachineSpec,
    Rules,
    Transition,
)
from certflow.core.plan import DeviceRecord, DeviceState, Phase, Plan, RolloutState
from certflow.core.policy import CertificateKind, ImportRule, Policy
from certflow.core.preview import Preview, preview
from certflow.core.rollout import Rollout
from certflow.core.serialization import SCHEMA_VERSION, dumps, loads
from certflow.core.summary import Summary, summarize
from certflow.core.wording import (
    API_NAMES,
    describe_effect,
    describe_refusal,
    describe_trust,
    narrate,
)

__all__ = [
    "API_NAMES",
    "DEVICE_MACHINE",
    "RESTART_MACHINE",
    "ROLLOUT_MACHINE",
    "RULES",
    "SCHEMA_VERSION",
    "AcknowledgementTimedOut",
    "Cancel",
    "CertflowError",
    "CertificateIdentity",
    "CertificateKind",
    "Command",
    "CommandRefused",
    "DeviceCommand",
    "DeviceFailed",
    "DeviceInstalled",
    "DeviceRecord",
    "DeviceState",
    "DistributeRoot",
    "Effect",
    "Enroll",
    "Evaluator",
    "ExtendManually",
    "Identity",
    "ImportCertificate",
    "ImportNow",
    "ImportPostponed",
    "ImportRule",
    "InvalidInput",
    "MachineSpec",
    "Notify",
    "Phase",
    "Plan",
    "Policy",
    "Preview",
    "ProceedToImport",
    "PushRoot",
    "Reenrolled",
    "ReenrollmentRequired",
    "RestartRequired",
    "Retry",
    "RetryAllFailed",
    "Rollout",
    "RolloutCancelled",
    "RolloutState",
    "RootIdentity",
    "Rules",
    "SerializationError",
    "ServerRestarted",
    "Step",
    "Summary",
    "TimeWentBackwards",
    "Transition",
    "Unenroll",
    "UnknownDevice",
    "advance",
    "apply",
    "apply_all",
    "describe_effect",
    "describe_refusal",
    "describe_trust",
    "dumps",
    "loads",
    "narrate",
    "new_rollout",
    "next_due",
    "preview",
    "summarize",
]
