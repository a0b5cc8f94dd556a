"""Effects and refusals in words: the one place where certflow's sentences about them live.

Every front end reads from here: the command line (its outbox listings and its
refusals), the simulator's day-by-day story, the example host, the notebooks, and the
e-mails a host sends. Each function takes data and returns one line of text; nothing
here performs I/O or reads a clock.

Front ends name the commands differently: the Python API names them by their class
(``ImportNow``), the command line by its subcommand (``import-now``). The rules'
refusal hints are written with the API names (they are declared in
:mod:`certflow.core.machines`); a front end passes ``names``, a mapping from every
command's class name to its own spelling, and gets the same sentence with its own
words. The default, :data:`API_NAMES`, is the identity. A spelling for a command of one
device may hold the placeholder :data:`DEVICE` (``retry DEVICE``): the device's id
replaces it where the device is known; :data:`ROLLOUT` (``NAME``) likewise stands for
the rollout's name. A spelling without it reads as a Python name,
and a command applied to a device reads as a call (``Retry('laptop-1')``).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from certflow.core.commands import Command
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
from certflow.core.errors import CommandRefused, InvalidInput, UnknownDevice
from certflow.core.identity import short
from certflow.core.instants import show

__all__ = [
    "API_NAMES",
    "COMMAND_NAMES",
    "DEVICE",
    "ROLLOUT",
    "describe_effect",
    "describe_hint",
    "describe_refusal",
    "describe_trust",
    "narrate",
]

COMMAND_NAMES: tuple[str, ...] = tuple(kind.__name__ for kind in typing.get_args(Command))
"""The class name of every command, in the order of :data:`certflow.Command`."""

API_NAMES: Mapping[str, str] = MappingProxyType({name: name for name in COMMAND_NAMES})
"""The Python API's names: every command by its class name."""

DEVICE = "DEVICE"
"""The placeholder for the device's id in a front end's spelling of a device command."""

ROLLOUT = "NAME"
"""The placeholder for the rollout's name in a front end's spelling of a command."""

#: Devices named by default in a line about several of them; the rest are counted.
SHOWN = 3

_ALTERNATIVES = "|".join(sorted(COMMAND_NAMES, key=len, reverse=True))
_NAMED = re.compile(rf"\b({_ALTERNATIVES})\b")
#: A command called on a device, up to the device's id: ``Retry(`` before ``'a')``.
_CALL = re.compile(rf"\b({_ALTERNATIVES})\($")


# --- effects -------------------------------------------------------------------------------


def describe_effect(
    effect: Effect, *, names: Mapping[str, str] = API_NAMES, shown: int = SHOWN
) -> str:
    """``effect`` as one line an administrator reads: what the host is to do.

    The instant is not part of the line (``effect.due_at`` is there for a column or a
    prefix). A line about several devices names the first ``shown`` of them and counts
    the rest (``shown=0``: only the count). ``names`` spells the commands a line
    mentions (see the module's documentation).
    """
    _check(names)
    match effect:
        case PushRoot(device_ids=ids, attempt=attempt, root_fingerprint=root):
            target = ids[0] if len(ids) == 1 else _count(len(ids), "device")
            return f"push root to {target} (attempt {attempt}){_named('root', root)}"
        case Notify(checkpoint=checkpoint, checkpoint_at=at, final=final, expiry=expiry):
            if expiry:
                what = f"the current certificate expires on {show(at)}: import then"
            else:
                when = (
                    "the deadline: import then, whatever the fleet's state"
                    if final
                    else "import then if the import condition holds"
                )
                what = f"checkpoint {checkpoint} on {show(at)} ({when})"
            return f"e-mail administrators: {what}{_foreseen(effect)}"
        case ImportPostponed(checkpoint=checkpoint, next_checkpoint_at=at):
            return (
                f"checkpoint {checkpoint}: the import condition does not hold; "
                f"import postponed to {show(at)}"
            )
        case ImportCertificate(forced=forced, certificate_fingerprint=fingerprint):
            named = _named("certificate", fingerprint)
            if forced:
                return (
                    "import the new certificate "
                    f"(FORCED: devices not trusting the root lose contact){named}"
                )
            return f"import the new certificate{named}"
        case RestartRequired():
            return (
                "restart the server so that it loads the new certificate, "
                f"then send {names['ServerRestarted']}"
            )
        case ReenrollmentRequired(device_ids=ids):
            count = _count(len(ids), "device")
            return f"{count} must re-enrol{_listed(ids, shown)}"
        case AcknowledgementTimedOut(device_ids=ids):
            return f"{_count(len(ids), 'push')} timed out, now failed{_listed(ids, shown)}"
        case RolloutCancelled():
            return "the rollout was cancelled: the current certificate stays"
        case _:
            typing.assert_never(effect)


def _foreseen(notice: Notify) -> str:
    """What a notice says about the fleet and the announced decision, if it says it."""
    if not notice.outcome:
        return ""  # stored before notices carried it
    outcome = {
        "import": "the import",
        "forced import": f"a FORCED import cutting off {_count(notice.cut_off, 'device')}",
        "postpone": "the import postponed",
    }.get(notice.outcome, notice.outcome)
    extension = "; a manual extension is available" if notice.extension_available else ""
    return (
        f"; {notice.trusting:,} of {_count(notice.in_scope, 'device')} in scope trust the "
        f"root; if nothing changes: {outcome}{extension}"
    )


def narrate(
    effect: Effect,
    *,
    trusted: int,
    in_scope: int,
    names: Mapping[str, str] = API_NAMES,
    shown: int = SHOWN,
) -> str:
    """``effect`` as a line of a rollout's story, told while it happens.

    :func:`describe_effect`'s line; where the fleet's trust decided the effect (a
    postponed checkpoint, the import), followed by how many of the ``in_scope`` devices
    trust the root (``trusted``) at that instant.
    """
    line = describe_effect(effect, names=names, shown=shown)
    if isinstance(effect, ImportPostponed | ImportCertificate):
        line += f"; {describe_trust(trusted, in_scope)}"
    return line


def describe_trust(trusted: int, in_scope: int) -> str:
    """``1,879 of 2,000 in-scope devices trust the root (94.0%)``; an empty scope is 100%."""
    percent = 100.0 if in_scope == 0 else 100.0 * trusted / in_scope
    verb = "trusts" if trusted == 1 else "trust"
    return f"{trusted:,} of {_count(in_scope, 'in-scope device')} {verb} the root ({percent:.1f}%)"


def _named(what: str, fingerprint: str | None) -> str:
    """``, root SHA-256 1fa62e8fddc92f43…``: the certificate an effect names, if any."""
    return "" if fingerprint is None else f", {what} {short(fingerprint)}"


def _count(count: int, noun: str) -> str:
    """``1 device``, ``2 devices``, ``1,000 pushes``."""
    plural = noun + ("es" if noun.endswith("sh") else "s")
    return f"{count:,} {noun if count == 1 else plural}"


def _listed(ids: Sequence[str], shown: int) -> str:
    """``: a, b, c, ... (2 more)``, or nothing when no device is to be named."""
    if shown <= 0 or not ids:
        return ""
    rest = len(ids) - shown
    return ": " + ", ".join(ids[:shown]) + (f", ... ({rest:,} more)" if rest > 0 else "")


# --- refusals ------------------------------------------------------------------------------


def describe_refusal(
    error: CommandRefused | UnknownDevice,
    *,
    names: Mapping[str, str] = API_NAMES,
    device_id: str | None = None,
    hint_names: Mapping[str, str] | None = None,
    rollout: str | None = None,
) -> str:
    """Why a command was refused and what would allow it, with ``names``' words.

    The message of ``error`` (its text names the API's commands) with every command it
    names spelled as ``names`` spells it, and those of its hint (``error.hint``, the
    message's last part) as ``hint_names`` does (by default ``names``: a front end may send
    the reader to a full command line there); with :data:`API_NAMES` it is
    ``str(error)`` unchanged. Where the device is known (``error.device_id``, else
    ``device_id``), a device command's spelling names it, and the device's id itself is
    never read as a command's name; ``rollout`` fills :data:`ROLLOUT` likewise.

    The text is cut at the device's id, never searched with a pattern made of it, so
    wording many refusals costs little per refusal.
    """
    _check(names)
    text, hint = str(error), error.hint
    device = error.device_id or device_id
    at = text.rfind(hint) if hint else -1
    if not hint or at < 0:
        return _spell(text, names, device, rollout)
    head, tail = text[:at], text[at + len(hint) :]  # the tail: a closing parenthesis
    spelled = _spell(hint, hint_names or names, device, rollout)
    return _spell(head, names, device, rollout) + spelled + _spell(tail, names, device, rollout)


def describe_hint(
    error: CommandRefused | UnknownDevice,
    *,
    names: Mapping[str, str] = API_NAMES,
    device_id: str | None = None,
    rollout: str | None = None,
) -> str | None:
    """What would allow the command (``error.hint``) in ``names``' words, as
    :func:`describe_refusal` words it; ``None`` when the rules give no hint."""
    _check(names)
    if not error.hint:
        return None
    return _spell(error.hint, names, error.device_id or device_id, rollout)


def _spell(text: str, names: Mapping[str, str], device: str | None, rollout: str | None) -> str:
    """``text`` with every command it names in ``names``' words; a command applied to
    ``device`` (``Retry('a')``) as the spelling of that call, the id quoted elsewhere
    left as it is (it is data, whatever it holds)."""

    def spell(found: re.Match[str]) -> str:
        return _spelled(names, found[1], device, rollout)

    if device is None:
        return _NAMED.sub(spell, text)
    quoted = repr(device)
    pieces = text.split(quoted)
    out: list[str] = []
    after_call = False
    for index, piece in enumerate(pieces):
        if after_call:
            piece = piece[1:]  # the call's closing parenthesis, spelled with the call
        last = index == len(pieces) - 1
        call = None if last or not pieces[index + 1].startswith(")") else _CALL.search(piece)
        if call is not None:
            out.append(_NAMED.sub(spell, piece[: call.start()]))
            out.append(_applied(_fill(names[call[1]], rollout), device))
        else:
            out.append(_NAMED.sub(spell, piece))
            if not last:
                out.append(quoted)
        after_call = call is not None
    return "".join(out)


def _fill(spelling: str, rollout: str | None) -> str:
    return spelling if rollout is None else spelling.replace(ROLLOUT, rollout)


def _spelled(
    names: Mapping[str, str], command: str, device: str | None, rollout: str | None
) -> str:
    """A command named in a sentence; a device command names ``device`` if it is known."""
    spelling = _fill(names[command], rollout)
    return spelling if device is None else spelling.replace(DEVICE, device)


def _applied(spelling: str, device: str) -> str:
    """A command applied to ``device``: ``retry laptop-1``, or ``Retry('laptop-1')``."""
    return spelling.replace(DEVICE, device) if DEVICE in spelling else f"{spelling}({device!r})"


def _check(names: Mapping[str, str]) -> None:
    missing = [name for name in COMMAND_NAMES if name not in names]
    if missing:
        raise InvalidInput(f"names must spell every command; missing: {', '.join(missing)}")
