"""The e-mails' words, and the command line's spellings of the commands: the letters a
host sends about a rollout's effects, built on :mod:`certflow.core.wording` (whose
sentences they reuse) so that an e-mail says what ``certflow rollout effects`` says, in
the same numbers and the same command names.

Not imported with :mod:`certflow`: only the front ends that write letters or command
lines need it (the worker, the command line). Nothing here performs I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from certflow.core.effects import (
    Effect,
    ImportCertificate,
    Notify,
    ReenrollmentRequired,
    RolloutCancelled,
)
from certflow.core.errors import InvalidInput
from certflow.core.instants import show
from certflow.core.wording import API_NAMES, ROLLOUT, describe_effect, describe_trust

__all__ = ["CLI_COMMANDS", "CLI_NAMES", "CLI_SPELLINGS", "describe_letter"]

#: How the command line spells each command where a sentence names one (a refusal's
#: hint, an effect's line, an e-mail): its ``certflow rollout`` subcommand; DEVICE stands
#: for the device. Here, not in the command line's package, so that every front end
#: that points an administrator to a command (the worker's e-mails too) spells it alike.
CLI_SPELLINGS: Mapping[str, str] = MappingProxyType(
    {
        "DistributeRoot": "distribute",
        "ProceedToImport": "proceed",
        "ImportNow": "import-now",
        "ExtendManually": "extend",
        "Cancel": "cancel",
        "RetryAllFailed": "retry --all-failed",
        "ServerRestarted": "restarted",
        "DeviceInstalled": "report DEVICE installed",
        "DeviceFailed": "report DEVICE failed",
        "Retry": "retry DEVICE",
        "Enroll": "enroll DEVICE",
        "Unenroll": "unenroll DEVICE",
        "Reenrolled": "reenrolled DEVICE",
    }
)
#: The command line's words in a sentence: the subcommand, quoted.
CLI_NAMES: Mapping[str, str] = MappingProxyType(
    {command: f"`{spelling}`" for command, spelling in CLI_SPELLINGS.items()}
)
#: The words that tell what to run: the whole command line, the rollout's name
#: (:data:`ROLLOUT`) after the subcommand, as it is typed.
CLI_COMMANDS: Mapping[str, str] = MappingProxyType(
    {
        command: f"`certflow rollout {' '.join([subcommand, ROLLOUT, *rest])}`"
        for command, (subcommand, *rest) in ((c, s.split()) for c, s in CLI_SPELLINGS.items())
    }
)


def describe_letter(
    effect: Effect, rollout: str, checkpoints: int, *, names: Mapping[str, str] = API_NAMES
) -> tuple[str, list[str]]:
    """``effect`` as an e-mail to administrators: its subject and its first paragraphs
    (the host adds the lists and the references). ``checkpoints``: how many checkpoints
    the rollout's policy has (a notice says "checkpoint 1 of 3"); ``names`` spells the
    commands it points to, the rollout's name in place of :data:`ROLLOUT`."""
    if "ExtendManually" not in names:
        raise InvalidInput("names must spell every command; missing: ExtendManually")
    at = show(effect.due_at)
    match effect:
        case Notify():
            return _notice_letter(effect, rollout, checkpoints, names)
        case ImportCertificate(forced=True):
            return "the new certificate was imported, FORCED", [
                f"Rollout {rollout} ended at {at}: the deadline came and the new certificate "
                "is to be imported now, although some devices do not trust its root. They "
                "lose contact with the server and must re-enrol (a separate message lists "
                "them).",
                "Restart the server once the certificate is imported.",
            ]
        case ImportCertificate():
            return "the new certificate is to be imported", [
                f"Rollout {rollout} ended at {at}: every device in scope trusts the new "
                "root, and the new certificate is to be imported now.",
            ]
        case ReenrollmentRequired(device_ids=ids):
            count = _devices(len(ids))
            return f"{count} must re-enrol", [
                f"Rollout {rollout} imported the new certificate by force at {at}. {count} "
                "did not trust the root then: they can no longer reach the server and must "
                "re-enrol."
            ]
        case RolloutCancelled():
            return "the rollout was cancelled", [
                f"Rollout {rollout} was cancelled at {at}. The current certificate stays; "
                "nothing more will be pushed, and no further notices will be sent for this "
                "rollout.",
            ]
        case _:
            line = describe_effect(effect, names=names)
            return line, [f"Rollout {rollout}, {at}: {line}."]


def _notice_letter(
    notice: Notify, rollout: str, checkpoints: int, names: Mapping[str, str]
) -> tuple[str, list[str]]:
    at = show(notice.checkpoint_at)
    if notice.expiry:
        subject = f"the current certificate expires on {at}"
        what = f"The current certificate expires on {at}: the new one is imported then."
    elif notice.final:
        subject = f"the deadline is {at}"
        what = (
            f"Checkpoint {notice.checkpoint} of {checkpoints} on {at} is the deadline: the new "
            "certificate is imported then, whatever the state of the fleet."
        )
    else:
        subject = f"checkpoint {notice.checkpoint} of {checkpoints} on {at}"
        what = (
            f"Checkpoint {notice.checkpoint} of {checkpoints} is on {at}: the new certificate "
            "is imported then if the import condition holds."
        )
    lines = [f"Rollout {rollout}. {what}", ""]
    if notice.outcome:
        lines.append(
            f"Progress on {show(notice.due_at)}: "
            f"{describe_trust(notice.trusting, notice.in_scope)}; {notice.failed:,} failed; "
            f"{notice.unanswered:,} pushed and not answered yet."
        )
        lines.append("If nothing changes: " + _foreseen_letter(notice))
        extend = names["ExtendManually"].replace(ROLLOUT, rollout)
        lines.append(
            f"A manual extension is available now ({extend})."
            if notice.extension_available
            else "A manual extension is not available now."
        )
    lines.append("")
    return subject, lines


def _foreseen_letter(notice: Notify) -> str:
    if notice.outcome == "import":
        return "the new certificate is imported at the checkpoint."
    if notice.outcome == "forced import":
        return (
            f"the new certificate is imported by force; {_devices(notice.cut_off)} "
            "that do not trust the root lose contact and must re-enrol."
        )
    if notice.outcome == "postpone":
        return "the import is postponed to the next checkpoint."
    return f"{notice.outcome}."


def _devices(count: int) -> str:
    return f"{count:,} device{'' if count == 1 else 's'}"
