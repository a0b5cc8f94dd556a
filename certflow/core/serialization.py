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

import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

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
from certflow.core.errors import CertflowError, SerializationError
from certflow.core.evaluator import DEFAULT
from certflow.core.instants import require_aware
from certflow.core.plan import Phase, Plan
from certflow.core.rollout import Rollout

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "dumps", "loads"]

SCHEMA_NAME = "certflow/rollout"
SCHEMA_VERSION = 1

_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_unstructure_hook(datetime, datetime.isoformat)
_converter.register_structure_hook(
    datetime, lambda value, _: require_aware("instant", datetime.fromisoformat(value))
)
_converter.register_unstructure_hook(timedelta, timedelta.total_seconds)
_converter.register_structure_hook(timedelta, lambda value, _: timedelta(seconds=value))


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
    """The rollout that :func:`dumps` wrote; :class:`SerializationError` for anything else."""
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
        return _build(document)
    except SerializationError:
        raise
    except cattrs.BaseValidationError as error:
        raise SerializationError(f"malformed serialised rollout: {_explain(error)}") from None
    except (CertflowError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise SerializationError(f"malformed serialised rollout: {error!r}") from None


def _build(document: dict[str, Any]) -> Rollout:
    expected = {
        "schema", "version", "plan", "phase", "clock", "devices", "failure_reasons", "ack_timeouts"
    }  # fmt: skip
    if set(document) != expected:
        raise SerializationError(
            f"malformed serialised rollout: keys {sorted(set(document) ^ expected)} "
            "are missing or unexpected"
        )
    plan = _structure(document["plan"], Plan, "plan")
    phase = _structure(document["phase"], Phase, "phase")
    devices = document["devices"]
    ids = devices["ids"]
    states = devices["states"]
    attempts = devices["attempts"]
    if not (isinstance(ids, list) and isinstance(states, list) and isinstance(attempts, list)):
        raise SerializationError("malformed serialised rollout: device columns must be lists")
    if not len(ids) == len(states) == len(attempts):
        raise SerializationError(
            f"malformed serialised rollout: {len(ids)} ids, {len(states)} states and "
            f"{len(attempts)} attempts"
        )
    if not all(type(d) is str and d for d in ids):
        raise SerializationError("malformed serialised rollout: device ids must be strings")
    index = dict(zip(ids, range(len(ids)), strict=True))
    if len(index) != len(ids):
        raise SerializationError("malformed serialised rollout: duplicate device ids")
    state_index = {state.value: i for i, state in enumerate(DEVICE_STATES)}
    try:
        codes = [
            (n << ATTEMPT_SHIFT) | state_index[s] if type(n) is int and n >= 0 else -1
            for s, n in zip(states, attempts, strict=True)
        ]
    except KeyError as error:
        raise SerializationError(
            f"malformed serialised rollout: unknown device state {error}"
        ) from None
    if -1 in codes:
        raise SerializationError("malformed serialised rollout: attempts must be whole numbers")
    for i in devices["initial_push"]:
        codes[i] |= INITIAL_PUSH
    counts = sum(COUNT_UNIT[code & KEY_MASK] for code in codes)
    reasons = immutables.Map(
        {index[device_id]: str(reason) for device_id, reason in document["failure_reasons"].items()}
    )
    timeouts = [
        Timeout(
            _converter.structure(t["due"], datetime),
            int(t["first"]),
            int(t["last"]),
            int(t["attempt"]),
            bool(t["initial"]),
        )
        for t in document["ack_timeouts"]
    ]
    roster = {
        **empty_roster_maps(),
        "reasons": reasons,
        "timeouts": immutables.Map(enumerate(timeouts)),
        "timeouts_tail": len(timeouts),
    }
    fleet = Fleet.create(
        CodeVector.from_iterable(codes), counts, ids=tuple(ids), positions=index, **roster
    )
    clock = _converter.structure(document["clock"], datetime)
    return DEFAULT.assemble(plan, phase, fleet, clock)


_T = TypeVar("_T")


def _structure(value: object, kind: type[_T], section: str) -> _T:
    try:
        return _converter.structure(value, kind)
    except cattrs.BaseValidationError as error:
        raise SerializationError(
            f"malformed serialised rollout: {_explain(error, section)}"
        ) from None


def _explain(error: cattrs.BaseValidationError, section: str = "the document") -> str:
    """cattrs' error tree as sentences: ``phase: unexpected field 'bogus'``."""

    def describe(exc: BaseException, _: type | None) -> str:
        if isinstance(exc, cattrs.ForbiddenExtraKeysError):
            fields = ", ".join(repr(f) for f in sorted(exc.extra_fields))
            return f"unexpected field{'s' * (len(exc.extra_fields) != 1)} {fields}"
        if isinstance(exc, KeyError):
            return "missing field"
        return str(exc) or type(exc).__name__

    lines = cattrs.transform_error(error, path=section, format_exception=describe)
    out = []
    for line in lines:
        message, _, where = line.rpartition(" @ ")
        out.append(f"{where.replace('$', section)}: {message}" if message else line)
    return "; ".join(out)
