"""A rollout as JSON text, with a schema version, losslessly.

The document (``SCHEMA_VERSION`` 3)::

    {"schema": "certflow/rollout", "version": 3,
     "plan": {..., "identity": {...} or null}, "phase": {...},
     "clock": "2026-07-01T09:00:00+00:00",
     "devices": {"ids": [...], "states": [...], "attempts": [...]},
     "failure_reasons": {"device id": "reason", ...},
     "awaiting": [{"due": "2026-07-03T09:00:00+00:00", "devices": [0, 1, 5]}]}

Devices are stored as columns (one list per field) because that is several times
faster to write and read than one object per device. ``awaiting`` lists, by the instant
their push times out, the devices whose latest push still awaits an answer (only with
a policy that has an acknowledgement timeout): a canonical view, the same whichever
driver holds the rollout, so that the in-memory evaluator and a database store write
the same document for the same rollout. ``plan.identity`` is what the rollout rolls
out (:class:`~certflow.core.identity.Identity`), ``null`` for a rollout made from dates
alone. Version 2 documents (before the identity) load as rollouts without one, and
version 1 documents (which stored the in-memory timer queue) still load. Instants are
ISO 8601 with their UTC offset, durations are seconds. Plan and phase go through
``cattrs``; derived data (per-state counts, the next timer instant) is recomputed on
load, never trusted.

The parts a driver needs to store a rollout its own way are public too: the plan,
phase, commands and effects as JSON values (:func:`encode`/:func:`decode_plan`, ...),
and :func:`document`, which writes the document from columns.
"""

from __future__ import annotations

import functools
import json
import typing
from datetime import datetime, timedelta
from typing import Any

import attrs
import cattrs
import immutables

from certflow.core import commands, effects
from certflow.core._fleet import (
    DEVICE_STATES,
    Fleet,
    Timeout,
    attempts_of,
    count_codes,
    decode_all,
    empty_roster_maps,
    first_push,
    state_of,
)
from certflow.core._fleet import (
    encode as encode_code,
)
from certflow.core._vector import CodeVector
from certflow.core.commands import Command
from certflow.core.effects import Effect
from certflow.core.errors import InvalidInput, SerializationError
from certflow.core.evaluator import DEFAULT
from certflow.core.instants import require_aware
from certflow.core.plan import DeviceState, Phase, Plan, RolloutState
from certflow.core.policy import CertificateKind, ImportRule
from certflow.core.rollout import Rollout

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "decode_command",
    "decode_effect",
    "decode_phase",
    "decode_plan",
    "document",
    "dumps",
    "encode",
    "loads",
]

SCHEMA_NAME = "certflow/rollout"
SCHEMA_VERSION = 3
#: The version that added ``plan.identity``; older plans have none.
_IDENTITY_SINCE = 3

_converter = cattrs.Converter(forbid_extra_keys=True)


def _exactly(kind: type, value: object, _: object) -> object:
    # cattrs would coerce ("3" -> 3, 1.9 -> 1, "no" -> True); a saved rollout never has to.
    if type(value) is not kind:
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _origin(kind: Any) -> Any:
    return typing.get_origin(kind)


def _list(value: object, kind: Any) -> list[Any]:
    # cattrs would take a string for a list of its characters.
    if type(value) is not list:
        raise TypeError(f"expected a list, got {type(value).__name__}")
    (item,) = typing.get_args(kind)
    if item in (str, int):  # the device columns: a million values, checked in one pass
        if all(type(x) is item for x in value):
            return value
        bad = next(x for x in value if type(x) is not item)
        raise TypeError(f"expected a list of {item.__name__}, got {type(bad).__name__} {bad!r}")
    return [_converter.structure(x, item) for x in value]


def _tuple(value: object, kind: Any) -> tuple[Any, ...]:
    # A JSON list (or a tuple); cattrs would take a string for a tuple of its characters.
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    item, *rest = typing.get_args(kind)
    if rest != [Ellipsis]:
        raise TypeError(f"unsupported tuple type {kind!r}")  # pragma: no cover - ours only
    return tuple(_converter.structure(x, item) for x in value)


def _dict(value: object, kind: Any) -> dict[Any, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected an object, got {type(value).__name__}")
    key, item = typing.get_args(kind)
    return {_converter.structure(k, key): _converter.structure(v, item) for k, v in value.items()}


for _kind in (int, str, bool):
    _converter.register_structure_hook(_kind, functools.partial(_exactly, _kind))
for _enum in (RolloutState, CertificateKind, ImportRule):
    # Enums by their own hook: the str hook above would otherwise take str-based enums.
    _converter.register_structure_hook(_enum, lambda value, kind: kind(value))
_converter.register_structure_hook_func(lambda t: _origin(t) is list, _list)
_converter.register_structure_hook_func(lambda t: _origin(t) is dict, _dict)
_converter.register_structure_hook_func(lambda t: _origin(t) is tuple, _tuple)
_converter.register_unstructure_hook(datetime, datetime.isoformat)
_converter.register_structure_hook(datetime, lambda value, _: _instant(value))
_converter.register_unstructure_hook(timedelta, timedelta.total_seconds)
_converter.register_structure_hook(timedelta, lambda value, _: _span(value))


def _instant(value: object) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 instant, got {type(value).__name__} {value!r}")
    return require_aware("instant", datetime.fromisoformat(value))


def _span(value: object) -> timedelta:
    if type(value) not in (int, float):
        raise TypeError(f"expected seconds, got {type(value).__name__} {value!r}")
    return timedelta(seconds=value)  # type: ignore[arg-type]


def dumps(rollout: Rollout) -> str:
    """``rollout`` as JSON text; :func:`loads` gives back an equal rollout."""
    fleet = rollout._fleet
    states, attempts = decode_all(list(fleet.codes))
    by_due: dict[datetime, list[int]] = {}
    for index, due in sorted(fleet.awaiting().items()):
        by_due.setdefault(due, []).append(index)
    return document(
        rollout.plan,
        rollout.phase,
        rollout.clock,
        ids=list(fleet.all_ids()),
        states=states,
        attempts=attempts,
        reasons={fleet.device_id(i): reason for i, reason in sorted(fleet.roster.reasons.items())},
        awaiting=sorted(by_due.items()),
    )


def document(
    plan: Plan,
    phase: Phase,
    clock: datetime,
    *,
    ids: list[str],
    states: list[str],
    attempts: list[int],
    reasons: dict[str, str],
    awaiting: list[tuple[datetime, list[int]]],
) -> str:
    """The document of a rollout given as columns, in device index order.

    ``reasons`` in device index order; ``awaiting`` in due order, each with its device
    indices ascending. :func:`dumps` and every store write their documents here, so
    that equal rollouts give equal text.
    """
    return json.dumps(
        {
            "schema": SCHEMA_NAME,
            "version": SCHEMA_VERSION,
            "plan": encode(plan),
            "phase": encode(phase),
            "clock": clock.isoformat(),
            "devices": {"ids": ids, "states": states, "attempts": attempts},
            "failure_reasons": reasons,
            "awaiting": [{"due": due.isoformat(), "devices": devices} for due, devices in awaiting],
        },
        separators=(",", ":"),
    )


def encode(value: Plan | Phase | Command | Effect) -> dict[str, Any]:
    """A plan, phase, command or effect as a JSON value; commands and effects carry
    their class name as ``"type"``."""
    data: dict[str, Any] = _converter.unstructure(value)
    if isinstance(value, Plan | Phase):
        return data
    return {"type": type(value).__name__, **data}


def decode_plan(data: object) -> Plan:
    """The :class:`Plan` that :func:`encode` wrote; :class:`SerializationError` otherwise."""
    plan: Plan = _structure(data, Plan, "plan")
    return plan


def decode_phase(data: object) -> Phase:
    """The :class:`Phase` that :func:`encode` wrote; :class:`SerializationError` otherwise."""
    phase: Phase = _structure(data, Phase, "phase")
    return phase


def decode_command(data: object) -> Command:
    """The command that :func:`encode` wrote; :class:`SerializationError` otherwise."""
    return _tagged(data, _COMMAND_TYPES, "command")  # type: ignore[no-any-return]


def decode_effect(data: object) -> Effect:
    """The effect that :func:`encode` wrote; :class:`SerializationError` otherwise."""
    return _tagged(data, _EFFECT_TYPES, "effect")  # type: ignore[no-any-return]


_COMMAND_TYPES: dict[str, type] = {
    name: getattr(commands, name)
    for name in commands.__all__
    if isinstance(getattr(commands, name), type) and attrs.has(getattr(commands, name))
}
_EFFECT_TYPES: dict[str, type] = {
    name: getattr(effects, name)
    for name in effects.__all__
    if isinstance(getattr(effects, name), type) and attrs.has(getattr(effects, name))
}


def _tagged(data: object, types: dict[str, type], what: str) -> Any:
    if not isinstance(data, dict) or data.get("type") not in types:
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise SerializationError(f"malformed {what}: unknown type {kind!r}")
    fields = {k: v for k, v in data.items() if k != "type"}
    return _structure(fields, types[data["type"]], what)


def _structure(data: object, kind: type[Any], what: str) -> Any:
    if not isinstance(data, dict):  # cattrs reads .keys() of what it is given
        raise SerializationError(f"malformed {what}: expected an object, got {type(data).__name__}")
    try:
        return _converter.structure(data, kind)
    except cattrs.BaseValidationError as error:
        raise SerializationError(f"malformed {what}: {_explain(error, '')}") from None
    except (TypeError, ValueError, InvalidInput) as error:
        raise SerializationError(f"malformed {what}: {error}") from None


def loads(text: str | bytes) -> Rollout:
    """The rollout that :func:`dumps` wrote; :class:`SerializationError` for anything else.

    The message says what is wrong and where, e.g. ``malformed serialised rollout:
    plan: unexpected field 'bogus'`` or ``... devices.states[3]: unknown device state
    'lost'``; nothing is ever half-loaded.
    """
    try:
        document = json.loads(text)
    except (ValueError, TypeError) as error:
        raise SerializationError(f"not a serialised rollout: invalid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_NAME:
        raise SerializationError(
            f"not a serialised rollout: expected a JSON object with schema {SCHEMA_NAME!r}"
        )
    version = document.get("version")
    if type(version) is not int or version < 1:
        raise SerializationError(f"rollout schema version {version!r} is not a valid version")
    if version > SCHEMA_VERSION:
        raise SerializationError(
            f"rollout schema version {version} is newer than this certflow understands "
            f"({SCHEMA_VERSION}); upgrade certflow to read it"
        )
    _identity_as_of(document, version)
    shape: type[_Document | _DocumentV1] = _DocumentV1 if version == 1 else _Document
    try:
        parsed: _Document | _DocumentV1 = _converter.structure(document, shape)
    except cattrs.BaseValidationError as error:
        raise _malformed(_explain(error)) from None
    try:
        return _build(parsed)
    except InvalidInput as error:  # e.g. a policy that Policy itself refuses
        raise _malformed(str(error)) from None


def _identity_as_of(document: dict[str, Any], version: int) -> None:
    """``plan.identity`` is in every plan of a version that has it, and in none before."""
    plan = document.get("plan")
    if not isinstance(plan, dict):
        return  # the shape says what is wrong with it
    if version >= _IDENTITY_SINCE and "identity" not in plan:
        raise _malformed("plan.identity: missing field (null for a rollout without identity)")
    if version < _IDENTITY_SINCE and "identity" in plan:
        raise _malformed(f"plan: unexpected field 'identity' (version {version} has none)")


def _malformed(detail: str) -> SerializationError:
    return SerializationError(f"malformed serialised rollout: {detail}")


@attrs.frozen
class _Devices:
    ids: list[str]
    states: list[str]
    attempts: list[int]


@attrs.frozen
class _Awaiting:
    due: datetime
    devices: list[int]


@attrs.frozen
class _Document:
    """The document's shape; :func:`_build` checks what a shape cannot say."""

    schema: str
    version: int
    plan: Plan
    phase: Phase
    clock: datetime
    devices: _Devices
    failure_reasons: dict[str, str]
    awaiting: list[_Awaiting]


@attrs.frozen
class _DevicesV1:
    ids: list[str]
    states: list[str]
    attempts: list[int]
    initial_push: list[int]


@attrs.frozen
class _Timer:
    due: datetime
    first: int
    last: int
    attempt: int
    initial: bool


@attrs.frozen
class _DocumentV1:
    """Version 1: the in-memory timer queue as it was, and the initial-push marks."""

    schema: str
    version: int
    plan: Plan
    phase: Phase
    clock: datetime
    devices: _DevicesV1
    failure_reasons: dict[str, str]
    ack_timeouts: list[_Timer]


def _build(document: _Document | _DocumentV1) -> Rollout:
    devices = document.devices
    ids, states, attempts = devices.ids, devices.states, devices.attempts
    if not len(ids) == len(states) == len(attempts):
        raise _malformed(
            f"devices: {len(ids)} ids, {len(states)} states and {len(attempts)} attempts"
        )
    index: dict[str, int] = {}
    for i, device_id in enumerate(ids):
        if not device_id:
            raise _malformed(f"devices.ids[{i}]: a device id must not be empty")
        if index.setdefault(device_id, i) != i:
            raise _malformed(f"devices.ids[{i}]: duplicate device id {device_id!r}")
    state_index = {state.value: i for i, state in enumerate(DEVICE_STATES)}
    codes: list[int] = []
    for i, (state, attempt) in enumerate(zip(states, attempts, strict=True)):
        if state not in state_index:
            raise _malformed(f"devices.states[{i}]: unknown device state {state!r}")
        if attempt < 0:
            raise _malformed(f"devices.attempts[{i}]: {attempt} is negative")
        codes.append(encode_code(state_index[state], attempt))
    unknown = [d for d in document.failure_reasons if d not in index]
    if unknown:
        raise _malformed(f"failure_reasons: unknown device {unknown[0]!r}")
    if isinstance(document, _DocumentV1):
        timeouts = _timers_v1(document, codes)
    else:
        if document.awaiting and DEFAULT.compiled.wait_span(document.plan.policy) is None:
            raise _malformed("awaiting: the policy has no acknowledgement timeout")
        timeouts = _timers(document.awaiting, codes, document.plan, document.phase)
    reasons = immutables.Map({index[d]: r for d, r in document.failure_reasons.items()})
    roster = {
        **empty_roster_maps(),
        "reasons": reasons,
        "timeouts": immutables.Map(enumerate(timeouts)),
        "timeouts_tail": len(timeouts),
    }
    counts = count_codes(codes)
    fleet = Fleet.create(
        CodeVector.from_iterable(codes), counts, ids=tuple(ids), positions=index, **roster
    )
    return DEFAULT.assemble(document.plan, document.phase, fleet, document.clock)


def _timers(awaiting: list[_Awaiting], codes: list[int], plan: Plan, phase: Phase) -> list[Timeout]:
    """The evaluator's timer queue for ``awaiting``, laid out as the evaluator lays it out.

    The pushes of the distribution start (attempt 1, due at t0 plus the timeout) get the
    initial-push mark and share one timer, as they did when they were made; every other
    push gets a timer of its own (the kernel reads one device per such timer).
    """
    # The states whose devices await an answer: the device machine's declared waits.
    awaiting_states = {DeviceState(s) for s in DEFAULT.rules.device.awaiting}
    named = "/".join(sorted(DEFAULT.rules.device.awaiting))
    ack = DEFAULT.compiled.wait_span(plan.policy)
    first_due = None if phase.started_at is None or ack is None else phase.started_at + ack
    timeouts: list[Timeout] = []
    initial: list[int] = []
    seen: set[int] = set()
    previous: datetime | None = None
    for n, group in enumerate(awaiting):
        if previous is not None and group.due <= previous:
            raise _malformed(f"awaiting[{n}]: due instants must be ascending")
        previous = group.due
        for i in group.devices:
            if not 0 <= i < len(codes) or state_of(codes[i]) not in awaiting_states or i in seen:
                raise _malformed(
                    f"awaiting[{n}]: {i} is not the index of a device awaiting an answer ({named})"
                )
            seen.add(i)
            attempt = attempts_of(codes[i])
            if attempt == 1 and group.due == first_due:
                codes[i] = first_push(codes[i])
                initial.append(i)
            else:
                timeouts.append(Timeout(group.due, i, i + 1, attempt, False))
    if initial and first_due is not None:
        timeouts.append(Timeout(first_due, initial[0], initial[-1] + 1, 1, True))
        timeouts.sort(key=lambda t: (t.due, not t.initial, t.first))
    return timeouts


def _timers_v1(document: _DocumentV1, codes: list[int]) -> list[Timeout]:
    for i in document.devices.initial_push:
        if not 0 <= i < len(codes):
            raise _malformed(f"devices.initial_push: {i} is not a device index")
        codes[i] = first_push(codes[i])
    timeouts: list[Timeout] = []
    for i, t in enumerate(document.ack_timeouts):
        if not (0 <= t.first < t.last <= len(codes) and t.attempt >= 1):
            raise _malformed(
                f"ack_timeouts[{i}]: devices {t.first}..{t.last} of attempt {t.attempt}"
            )
        timeouts.append(Timeout(t.due, t.first, t.last, t.attempt, t.initial))
    return timeouts


def _explain(error: cattrs.BaseValidationError, whole: str = "the document") -> str:
    """cattrs' error tree as sentences: ``plan: unexpected field 'bogus'``."""

    def describe(exc: BaseException, _: type | None) -> str:
        if isinstance(exc, cattrs.ForbiddenExtraKeysError):
            fields = ", ".join(repr(f) for f in sorted(exc.extra_fields))
            return f"unexpected field{'s' * (len(exc.extra_fields) != 1)} {fields}"
        if isinstance(exc, KeyError):
            return "missing field"
        return str(exc) or type(exc).__name__

    out = []
    for line in cattrs.transform_error(error, path="$", format_exception=describe):
        message, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").removeprefix(".") or whole
        out.append(f"{where}: {message}" if where else message)
    return "; ".join(out)
