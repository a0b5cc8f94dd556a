"""A rollout as JSON text, with a schema version, losslessly.

The document (``SCHEMA_VERSION`` 1)::

    {"schema": "certflow/rollout", "version": 1,
     "plan": {...}, "phase": {...}, "clock": "2026-07-01T09:00:00+00:00",
     "devices": {"ids": [...], "states": [...], "attempts": [...], "initial_push": [...]},
     "failure_reasons": {"device id": "reason", ...},
     "ack_timeouts": [{"due": ..., "first": 0, "last": 10, "attempt": 1, "initial": true}]}

Devices are stored as columns (one list per field) because that is several times
faster to write and read than one object per device. Instants are ISO 8601 with their
UTC offset, durations are seconds. Plan and phase go through ``cattrs``; derived data
(per-state counts, the next timer instant) is recomputed on load, never trusted.
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

from certflow.core._fleet import (
    ATTEMPT_SHIFT,
    COUNT_UNIT,
    DEVICE_STATES,
    INITIAL_PUSH,
    KEY_MASK,
    STATE_MASK,
    Fleet,
    Timeout,
    empty_roster_maps,
)
from certflow.core._vector import CodeVector
from certflow.core.errors import InvalidInput, SerializationError
from certflow.core.evaluator import DEFAULT
from certflow.core.instants import require_aware
from certflow.core.plan import Phase, Plan, RolloutState
from certflow.core.policy import CertificateKind, ImportRule
from certflow.core.rollout import Rollout

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "dumps", "loads"]

SCHEMA_NAME = "certflow/rollout"
SCHEMA_VERSION = 1

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
    states = [code & STATE_MASK for chunk in fleet.codes.chunks() for code in chunk]
    names = [state.value for state in DEVICE_STATES]
    phase = _converter.unstructure(rollout.phase)
    document = {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "plan": _converter.unstructure(rollout.plan),
        "phase": phase,
        "clock": rollout.clock.isoformat(),
        "devices": {
            "ids": list(fleet.all_ids()),
            "states": [names[s] for s in states],
            "attempts": [code >> ATTEMPT_SHIFT for code in fleet.codes],
            "initial_push": [i for i, code in enumerate(fleet.codes) if code & INITIAL_PUSH],
        },
        "failure_reasons": {
            fleet.device_id(i): reason for i, reason in fleet.roster.reasons.items()
        },
        "ack_timeouts": [
            {
                "due": t.due.isoformat(),
                "first": t.first,
                "last": t.last,
                "attempt": t.attempt,
                "initial": t.initial,
            }
            for t in fleet.pending_timeouts()
        ],
    }
    return json.dumps(document, separators=(",", ":"))


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
    try:
        parsed = _converter.structure(document, _Document)
    except cattrs.BaseValidationError as error:
        raise _malformed(_explain(error)) from None
    try:
        return _build(parsed)
    except InvalidInput as error:  # e.g. a policy that Policy itself refuses
        raise _malformed(str(error)) from None


def _malformed(detail: str) -> SerializationError:
    return SerializationError(f"malformed serialised rollout: {detail}")


@attrs.frozen
class _Devices:
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
class _Document:
    """The document's shape; :func:`_build` checks what a shape cannot say."""

    schema: str
    version: int
    plan: Plan
    phase: Phase
    clock: datetime
    devices: _Devices
    failure_reasons: dict[str, str]
    ack_timeouts: list[_Timer]


def _build(document: _Document) -> Rollout:
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
        codes.append((attempt << ATTEMPT_SHIFT) | state_index[state])
    for i in devices.initial_push:
        if not 0 <= i < len(codes):
            raise _malformed(f"devices.initial_push: {i} is not a device index")
        codes[i] |= INITIAL_PUSH
    unknown = [d for d in document.failure_reasons if d not in index]
    if unknown:
        raise _malformed(f"failure_reasons: unknown device {unknown[0]!r}")
    timeouts: list[Timeout] = []
    for i, t in enumerate(document.ack_timeouts):
        if not (0 <= t.first < t.last <= len(ids) and t.attempt >= 1):
            raise _malformed(
                f"ack_timeouts[{i}]: devices {t.first}..{t.last} of attempt {t.attempt}"
            )
        timeouts.append(Timeout(t.due, t.first, t.last, t.attempt, t.initial))
    reasons = immutables.Map({index[d]: r for d, r in document.failure_reasons.items()})
    roster = {
        **empty_roster_maps(),
        "reasons": reasons,
        "timeouts": immutables.Map(enumerate(timeouts)),
        "timeouts_tail": len(timeouts),
    }
    counts = sum(COUNT_UNIT[code & KEY_MASK] for code in codes)
    fleet = Fleet.create(
        CodeVector.from_iterable(codes), counts, ids=tuple(ids), positions=index, **roster
    )
    return DEFAULT.assemble(document.plan, document.phase, fleet, document.clock)


def _explain(error: cattrs.BaseValidationError) -> str:
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
        where = where.removeprefix("$").removeprefix(".") or "the document"
        out.append(f"{where}: {message}")
    return "; ".join(out)
