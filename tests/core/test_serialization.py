"""JSON with a schema version: lossless round trips and clear errors for anything else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import certflow as cf
from certflow.core.serialization import decode_effect, encode
from tests.core.strategies import (
    ADMIN_COMMANDS,
    DAY,
    HOUR,
    T0,
    build,
    day,
    distributing,
    identities,
    policies,
)
from tools.old_fixtures import HISTORIES


@given(policy=policies(), n=st.integers(0, 20), data=st.data())
def test_a_rollout_round_trips_losslessly_through_json(
    policy: cf.Policy, n: int, data: st.DataObject
) -> None:
    rollout = distributing(n, policy=policy)
    ids = [f"d{i}" for i in range(n)]
    for device_id in data.draw(st.lists(st.sampled_from(ids), max_size=5)) if ids else []:
        rollout = cf.apply(
            rollout, cf.DeviceFailed(device_id, 'é ✓ "quoted"'), rollout.clock
        ).rollout
    rollout = cf.apply(rollout, cf.Enroll("late"), rollout.clock + HOUR).rollout
    rollout = cf.advance(rollout, rollout.clock + data.draw(st.integers(0, 40)) * HOUR * 24).rollout
    text = cf.dumps(rollout)
    again = cf.loads(text)
    assert again == rollout
    assert cf.dumps(again) == text
    # and it behaves the same afterwards
    assert cf.advance(again, day(60)) == cf.advance(rollout, day(60))


def test_the_document_carries_its_schema_and_version() -> None:
    document = json.loads(cf.dumps(build(1)))
    assert (document["schema"], document["version"]) == ("certflow/rollout", cf.SCHEMA_VERSION)


def _document() -> dict:  # type: ignore[type-arg]
    rollout = distributing(2, policy=cf.Policy(ack_timeout=timedelta(days=2)))
    return json.loads(cf.dumps(rollout))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid JSON"),
        ("{not json", "invalid JSON"),
        ("[]", "expected a JSON object with schema"),
        (json.dumps({**_document(), "schema": "other"}), "expected a JSON object with schema"),
        (
            json.dumps({**_document(), "version": cf.SCHEMA_VERSION + 1}),
            f"version {cf.SCHEMA_VERSION + 1} is newer than this certflow understands",
        ),
        (json.dumps({**_document(), "version": "1"}), "is not a valid version"),
        (json.dumps({**_document(), "extra": 1}), "the document: unexpected field 'extra'"),
        (json.dumps({**_document(), "clock": "yesterday"}), "malformed"),
        (json.dumps({**_document(), "clock": "2026-07-01T09:00:00"}), "naive datetime"),
        (
            json.dumps(
                {**_document(), "devices": {**_document()["devices"], "states": ["pushed", "lost"]}}
            ),
            "unknown device state 'lost'",
        ),
        (
            json.dumps({**_document(), "devices": {**_document()["devices"], "ids": ["a", "a"]}}),
            "devices.ids\\[1\\]: duplicate device id 'a'",
        ),
        (
            json.dumps({**_document(), "devices": {**_document()["devices"], "attempts": [1]}}),
            "2 ids, 2 states and 1 attempts",
        ),
        (
            json.dumps({**_document(), "plan": {**_document()["plan"], "kind": "toaster"}}),
            "malformed",
        ),
    ],
)
def test_anything_but_a_serialised_rollout_is_a_clear_serialization_error(
    text: str, message: str
) -> None:
    with pytest.raises(cf.SerializationError, match=message):
        cf.loads(text)


def _with(path: str, value: object) -> str:
    """The serialised `distributing(2)` (2-day acknowledgement timeout) with one field at ``path`` (dotted) replaced."""
    document = _document()
    *parents, last = path.split(".")
    target = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return json.dumps(document)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_with("plan.bogus", 1), "plan: unexpected field 'bogus'"),
        (
            _with("phase.state", "flying"),
            "phase.state: 'flying' is not a valid RolloutState",
        ),
        (
            _with("plan.root_publicly_trusted", "no"),
            "plan.root_publicly_trusted: expected bool, got str 'no'",
        ),
        (
            _with("phase.checkpoints_done", 1.5),
            "phase.checkpoints_done: expected int, got float 1.5",
        ),
        (_with("devices.ids", "d0"), "devices.ids: expected a list, got str"),
        (_with("devices.ids.1", 3), "devices.ids: expected a list of str, got int 3"),
        (
            _with("devices.attempts.0", 1.0),
            "devices.attempts: expected a list of int, got float 1.0",
        ),
        (_with("failure_reasons", ["d0"]), "failure_reasons: expected an object, got list"),
        (_with("devices.ids.0", ""), "devices.ids\\[0\\]: a device id must not be empty"),
        (_with("devices.attempts.1", -1), "devices.attempts\\[1\\]: -1 is negative"),
        (_with("failure_reasons", {"ghost": "x"}), "failure_reasons: unknown device 'ghost'"),
        (
            _with("plan.policy.ack_timeout", None),
            "awaiting: the policy has no acknowledgement timeout",
        ),
        (
            _with("awaiting", [{"due": "2026-07-01T10:00:00+00:00", "devices": [5]}]),
            "awaiting\\[0\\]: 5 is not the index of a device awaiting an answer \\(pushed\\)",
        ),
        (
            _with(
                "awaiting",
                [
                    {"due": "2026-07-01T10:00:00+00:00", "devices": [0]},
                    {"due": "2026-07-01T09:00:00+00:00", "devices": [1]},
                ],
            ),
            "awaiting\\[1\\]: due instants must be ascending",
        ),
        (
            _with(
                "awaiting",
                [
                    {"due": "2026-07-01T10:00:00+00:00", "devices": [0]},
                    {"due": "2026-07-01T11:00:00+00:00", "devices": [0]},
                ],
            ),
            "awaiting\\[1\\]: 0 is not the index of a device awaiting an answer \\(pushed\\)",
        ),
        (
            _with("plan.policy.notice_before", -5.0),
            "invalid Policy: notice_before must be positive",
        ),
        (_with("devices.bogus", []), "devices: unexpected field 'bogus'"),
    ],
    ids=lambda x: x[:40] if isinstance(x, str) and x.startswith("{") is False else None,
)
def test_each_malformed_document_names_the_field_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(cf.SerializationError, match="^malformed serialised rollout: .*" + message):
        cf.loads(text)


def test_a_bad_saved_rollout_never_reads_like_cattrs_internals() -> None:
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(_with("phase.bogus", 1))
    assert str(refused.value) == "malformed serialised rollout: phase: unexpected field 'bogus'"
    assert "@ $" not in str(refused.value)


def test_several_unexpected_fields_are_all_named() -> None:
    document = json.loads(_with("plan.zeta", 1))
    document["plan"]["alpha"] = 2
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(json.dumps(document))
    assert str(refused.value) == (
        "malformed serialised rollout: plan: unexpected fields 'alpha', 'zeta'"
    )


@pytest.mark.parametrize(
    ("path", "value", "detail"),
    [
        ("phase.manual_extensions", "2", "expected int, got str '2'"),
        ("plan.created_at", 5, "expected an ISO 8601 instant, got int 5"),
        ("plan.policy.notice_before", "1 day", "expected seconds, got str '1 day'"),
        ("plan.root_publicly_trusted", 1, "expected bool, got int 1"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(
    path: str, value: object, detail: str
) -> None:
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(_with(path, value))
    assert str(refused.value) == f"malformed serialised rollout: {path}: {detail}"


def test_every_problem_of_a_document_is_named_and_a_missing_field_reads_so() -> None:
    document = json.loads(_with("plan.kind", "toaster"))
    del document["phase"]["state"]
    with pytest.raises(cf.SerializationError) as refused:
        cf.loads(json.dumps(document))
    assert str(refused.value) == (
        "malformed serialised rollout: plan.kind: 'toaster' is not a valid CertificateKind; "
        "phase.state: missing field"
    )


def test_the_document_is_compact_json() -> None:
    text = cf.dumps(distributing(2))
    assert ", " not in text
    assert ": " not in text


# A version 1 document, as certflow 0.1 (before the canonical `awaiting`) wrote it: four
# devices pushed at distribution start with a 2-day acknowledgement timeout, one answered,
# one failed and retried, and one enrolled later.
_VERSION_1 = (
    '{"schema":"certflow/rollout","version":1,"plan":{"kind":"mdm_server","policy":'
    '{"checkpoints":[604800.0,1209600.0,1814400.0],"notice_before":86400.0,'
    '"manual_extension":604800.0,"manual_extension_opens":518400.0,'
    '"import_rule":"distributed_or_expired","ack_timeout":172800.0},'
    '"existing_not_after":"2026-08-30T09:00:00+00:00","new_not_before":"2026-06-30T09:00:00+00:00",'
    '"new_not_after":"2027-04-27T09:00:00+00:00","root_publicly_trusted":false,'
    '"created_at":"2026-07-01T09:00:00+00:00"},"phase":{"state":"distributing",'
    '"started_at":"2026-07-01T09:00:00+00:00","checkpoints_done":0,"extension":0.0,'
    '"manual_extensions":0,"notified_for":null,"ended_at":null,"restart_required":false},'
    '"clock":"2026-07-01T13:00:00+00:00","devices":{"ids":["a","b","c","d","e"],'
    '"states":["installed","pushed","pushed","pushed","pushed"],"attempts":[1,2,1,1,1],'
    '"initial_push":[0,2,3]},"failure_reasons":{"b":"disk full"},"ack_timeouts":['
    '{"due":"2026-07-03T09:00:00+00:00","first":0,"last":4,"attempt":1,"initial":true},'
    '{"due":"2026-07-03T12:00:00+00:00","first":1,"last":2,"attempt":2,"initial":false},'
    '{"due":"2026-07-03T13:00:00+00:00","first":4,"last":5,"attempt":1,"initial":false}]}'
)


def _version_1_history() -> cf.Rollout:
    t0 = datetime(2026, 7, 1, 9, tzinfo=UTC)
    rollout = cf.new_rollout(
        ["a", "b", "c", "d"],
        existing_not_after=t0 + timedelta(days=60),
        new_not_before=t0 - timedelta(days=1),
        new_not_after=t0 + timedelta(days=300),
        root_publicly_trusted=False,
        created_at=t0,
        policy=cf.Policy(ack_timeout=timedelta(days=2)),
    )
    history: list[cf.Command] = [
        cf.DistributeRoot(),
        cf.DeviceInstalled("a"),
        cf.DeviceFailed("b", "disk full"),
        cf.Retry("b"),
        cf.Enroll("e"),
    ]
    for hours, command in enumerate(history):
        rollout = cf.apply(rollout, command, t0 + hours * HOUR).rollout
    return rollout


def test_a_version_1_document_still_loads_as_the_same_rollout() -> None:
    rollout = _version_1_history()
    loaded = cf.loads(_VERSION_1)
    assert loaded == rollout
    # and the timers it carried still fire: c and d on day 2, b three hours later
    later = [
        e for e in cf.advance(loaded, day(3)).effects if isinstance(e, cf.AcknowledgementTimedOut)
    ]
    assert [(e.device_ids, e.due_at) for e in later] == [
        (("c", "d"), day(2)),
        (("b",), day(2) + 3 * HOUR),
        (("e",), day(2) + 4 * HOUR),
    ]


def test_awaiting_pushes_are_listed_by_due_instant_whatever_the_timer_queue_holds() -> None:
    document = json.loads(cf.dumps(_version_1_history()))
    assert document["awaiting"] == [
        {"due": "2026-07-03T09:00:00+00:00", "devices": [2, 3]},
        {"due": "2026-07-03T12:00:00+00:00", "devices": [1]},
        {"due": "2026-07-03T13:00:00+00:00", "devices": [4]},
    ]
    assert cf.dumps(cf.loads(_VERSION_1)) == cf.dumps(_version_1_history())


def test_a_version_1_document_with_a_bad_timer_names_it() -> None:
    document = json.loads(_VERSION_1)
    document["devices"]["initial_push"] = [0, 9]
    with pytest.raises(cf.SerializationError, match=r"devices\.initial_push: 9 is not a device"):
        cf.loads(json.dumps(document))
    document = json.loads(_VERSION_1)
    document["ack_timeouts"][0]["last"] = 9
    with pytest.raises(
        cf.SerializationError, match=r"ack_timeouts\[0\]: devices 0\.\.9 of attempt 1"
    ):
        cf.loads(json.dumps(document))


_T = datetime(2026, 7, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        *ADMIN_COMMANDS,
        cf.DeviceInstalled("a"),
        cf.DeviceFailed("a", "no space ✓"),
        cf.Retry("a"),
        cf.Enroll("a"),
        cf.Unenroll("a"),
        cf.Reenrolled("a"),
        cf.PushRoot(("a", "b"), 2, _T),
        cf.PushRoot(("a", "b"), 2, _T, "ab" * 32),
        cf.Notify(1, _T + 7 * 24 * HOUR, False, _T),
        cf.ImportPostponed(1, _T, _T),
        cf.ImportCertificate(forced=True, due_at=_T),
        cf.ImportCertificate(forced=True, due_at=_T, certificate_fingerprint="cd" * 32),
        cf.RestartRequired(_T),
        cf.ReenrollmentRequired(("c",), _T),
        cf.AcknowledgementTimedOut(("d",), _T),
    ],
    ids=lambda value: type(value).__name__,
)
def test_commands_and_effects_round_trip_through_json_values(value: object) -> None:
    from certflow.core.serialization import decode_command, decode_effect, encode

    data = encode(value)  # type: ignore[arg-type]
    assert data["type"] == type(value).__name__
    decode = decode_effect if hasattr(value, "due_at") else decode_command
    assert decode(json.loads(json.dumps(data))) == value


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "Teleport"}, "malformed command: unknown type 'Teleport'"),
        ([], "malformed command: unknown type 'list'"),
        ({"type": "DeviceInstalled"}, "malformed command: device_id: missing field"),
        (
            {"type": "DeviceInstalled", "device_id": ""},
            "^malformed command: device ids must be non-empty strings, got ''$",
        ),
    ],
)
def test_a_bad_command_value_is_a_serialization_error(data: object, message: str) -> None:
    from certflow.core.serialization import decode_command

    with pytest.raises(cf.SerializationError, match=message):
        decode_command(data)


def test_plan_and_phase_round_trip_and_refuse_what_they_do_not_know() -> None:
    from certflow.core.serialization import decode_phase, decode_plan, encode

    rollout = distributing(2)
    assert decode_plan(encode(rollout.plan)) == rollout.plan
    assert decode_phase(encode(rollout.phase)) == rollout.phase
    with pytest.raises(cf.SerializationError, match=r"^malformed phase: unexpected field 'bogus'$"):
        decode_phase({**encode(rollout.phase), "bogus": 1})


@given(n=st.integers(2, 12), data=st.data())
def test_a_loaded_rollout_times_out_the_same_pushes_after_more_reports(
    n: int, data: st.DataObject
) -> None:
    # loads rebuilds the timer queue from `awaiting`; answers after the load must drop
    # exactly the answered pushes' timers, as they do in the rollout that was saved.
    policy = cf.Policy(ack_timeout=data.draw(st.integers(1, 48)) * HOUR)
    rollout = distributing(n, policy=policy)
    late = cf.apply(rollout, cf.Enroll("late"), HOUR + rollout.clock).rollout
    for saved in (rollout, late):
        loaded = cf.loads(cf.dumps(saved))
        ids = list(saved.device_ids())
        answers = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=n, unique=True))
        at = saved.clock + timedelta(minutes=30)
        for device_id in answers:
            saved = cf.apply(saved, cf.DeviceInstalled(device_id), at).rollout
            loaded = cf.apply(loaded, cf.DeviceInstalled(device_id), at).rollout
            assert cf.dumps(loaded) == cf.dumps(saved)
            assert cf.next_due(loaded) == cf.next_due(saved)
        assert cf.advance(loaded, day(3)) == cf.advance(saved, day(3))


# --- documents an earlier certflow wrote -------------------------------------------------------

#: Documents of schema version 2, written by certflow at commit 348c23d with
#: tools/old_fixtures.py (see its docstring) from the histories it names.
DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_a_version_2_document_still_loads_as_the_same_rollout(name: str) -> None:
    text = (DATA / f"rollout-v2-{name}.json").read_text(encoding="utf-8")
    loaded = cf.loads(text)
    assert loaded == HISTORIES[name]()
    assert loaded.plan.identity is None  # made before rollouts knew what they roll out
    # Written again, it is today's document of the same facts, with no identity.
    old, new = json.loads(text), json.loads(cf.dumps(loaded))
    assert new == {**old, "version": cf.SCHEMA_VERSION, "plan": {**old["plan"], "identity": None}}
    # and it goes on as the same history does today
    later = loaded.clock + timedelta(days=30)
    assert cf.advance(loaded, later) == cf.advance(HISTORIES[name](), later)


# --- the identity (version 3) --------------------------------------------------------------------


@given(known=identities(public=False), n=st.integers(0, 5), data=st.data())
def test_a_rollout_with_an_identity_round_trips(
    known: cf.Identity, n: int, data: st.DataObject
) -> None:
    rollout = cf.new_rollout(
        [f"d{i}" for i in range(n)],
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 299 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
        identity=known,
    )
    rollout = cf.advance(cf.apply(rollout, cf.DistributeRoot(), T0).rollout, day(3)).rollout
    text = cf.dumps(rollout)
    again = cf.loads(text)
    assert again == rollout
    assert again.plan.identity == known
    assert cf.dumps(again) == text
    plan = json.loads(text)["plan"]
    assert cf.core.serialization.decode_plan(plan) == rollout.plan


def test_the_identity_is_part_of_the_plan_in_the_document() -> None:
    rollout = build(1, identified=True)
    identity = json.loads(cf.dumps(rollout))["plan"]["identity"]
    known = rollout.plan.identity
    assert known is not None
    assert identity == {
        "certificate": {
            "fingerprint": known.certificate.fingerprint,
            "subject": "CN=mdm.example.com,O=Example",
            "names": ["mdm.example.com", "203.0.113.10"],
            "issuer": "CN=Intermediate mdm.example.com",
            "not_before": "2026-06-30T09:00:00+00:00",
            "not_after": "2027-04-26T09:00:00+00:00",
            "pem": known.certificate.pem,
        },
        "root": {
            "fingerprint": known.root.fingerprint,
            "subject": "CN=Root mdm.example.com",
            "publicly_trusted": False,
            "pem": known.root.pem,
        },
        "hosts": ["mdm.example.com", "203.0.113.10"],
        "intermediates": list(known.intermediates),
    }
    assert json.loads(cf.dumps(build(1)))["plan"]["identity"] is None


def _identified() -> dict:  # type: ignore[type-arg]
    return json.loads(cf.dumps(build(1, identified=True)))  # type: ignore[no-any-return]


def _identified_with(change: Any) -> str:
    document = _identified()
    change(document)
    return json.dumps(document)


_KEY = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _identified_with(lambda d: d["plan"].pop("identity")),
            r"plan\.identity: missing field \(null for a rollout without identity\)",
        ),
        (
            _identified_with(lambda d: d.update(version=2)),
            r"plan: unexpected field 'identity' \(version 2 has none\)",
        ),
        (
            _identified_with(
                lambda d: d["plan"]["identity"]["certificate"].update(fingerprint="AB")
            ),
            r"plan\.identity\.certificate: certificate\.fingerprint: expected a SHA-256",
        ),
        (
            _identified_with(
                lambda d: d["plan"]["identity"]["certificate"].update(names="a.example")
            ),
            r"plan\.identity\.certificate\.names: expected a list, got str",
        ),
        (
            _identified_with(lambda d: d["plan"]["identity"]["root"].update(key=_KEY)),
            r"plan\.identity\.root: unexpected field 'key'",
        ),
        (
            _identified_with(lambda d: d["plan"]["identity"]["root"].update(pem=_KEY)),
            r"plan\.identity\.root: root\.pem: holds a private key",
        ),
        (
            _identified_with(lambda d: d["plan"]["identity"]["root"].update(publicly_trusted=True)),
            r"plan: identity\.root\.publicly_trusted \(True\) contradicts",
        ),
        (
            _identified_with(lambda d: d["plan"]["identity"].update(hosts=[])),
            r"plan\.identity: hosts: at least one is required",
        ),
        (
            _identified_with(
                lambda d: d["plan"]["identity"]["certificate"].update(not_after="2027-04-26")
            ),
            r"plan\.identity\.certificate\.not_after: instant is a naive datetime",
        ),
    ],
)
def test_a_bad_identity_in_a_document_is_named(text: str, message: str) -> None:
    with pytest.raises(cf.SerializationError, match=message):
        cf.loads(text)


def test_an_effect_stored_before_effects_named_their_certificate_loads_naming_none() -> None:
    # As an earlier certflow stored them in its outbox (tests/store/data has such rows).
    push = {"type": "PushRoot", "device_ids": ["a"], "attempt": 1, "due_at": _T.isoformat()}
    imported = {"type": "ImportCertificate", "forced": False, "due_at": _T.isoformat()}
    assert decode_effect(push) == cf.PushRoot(("a",), 1, _T)
    assert decode_effect(imported) == cf.ImportCertificate(False, _T)
    assert encode(cf.PushRoot(("a",), 1, _T, "ab" * 32))["root_fingerprint"] == "ab" * 32
    with pytest.raises(cf.SerializationError, match=r"malformed effect: .*root_fingerprint"):
        decode_effect({**push, "root_fingerprint": "AB"})
    with pytest.raises(cf.SerializationError, match=r"malformed effect: .*device_ids"):
        decode_effect({**push, "device_ids": "a"})


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_bad_plan_or_effect_value_says_which_it_is() -> None:
    from certflow.core.serialization import decode_effect, decode_phase, decode_plan

    with pytest.raises(cf.SerializationError, match=r"^malformed plan: kind: missing field; "):
        decode_plan({})
    with pytest.raises(cf.SerializationError, match=r"^malformed phase: \S"):
        decode_phase(None)  # not even an object
    with pytest.raises(cf.SerializationError, match=r"^malformed effect: unknown type 'Teleport'$"):
        decode_effect({"type": "Teleport"})
    with pytest.raises(
        cf.SerializationError, match=r"^malformed effect: checkpoint: missing field; "
    ):
        decode_effect({"type": "Notify"})


def test_a_list_column_given_as_text_is_refused_rather_than_read_letter_by_letter() -> None:
    document = json.loads(cf.dumps(build(2)))
    document["devices"]["ids"] = "ab"
    with pytest.raises(
        cf.SerializationError,
        match=r"^malformed serialised rollout: devices\.ids: expected a list, got str$",
    ):
        cf.loads(json.dumps(document))


def test_a_message_that_holds_the_separator_of_cattrs_paths_names_the_right_field() -> None:
    document = json.loads(cf.dumps(build(2)))
    document["clock"] = "noon @ home"
    with pytest.raises(cf.SerializationError) as caught:
        cf.loads(json.dumps(document))
    assert str(caught.value).startswith("malformed serialised rollout: clock: ")
    assert "'noon @ home'" in str(caught.value)


def test_a_version_1_timer_names_no_device_past_the_last() -> None:
    devices = len(json.loads(_VERSION_1)["devices"]["ids"])
    document = json.loads(_VERSION_1)
    document["devices"]["initial_push"] = [0, devices]
    with pytest.raises(
        cf.SerializationError, match=rf"devices\.initial_push: {devices} is not a device index"
    ):
        cf.loads(json.dumps(document))
    document = json.loads(_VERSION_1)
    document["ack_timeouts"][1]["last"] = document["ack_timeouts"][1]["first"]
    with pytest.raises(
        cf.SerializationError, match=r"ack_timeouts\[1\]: devices 1\.\.1 of attempt 2"
    ):
        cf.loads(json.dumps(document))


@pytest.mark.parametrize("value", [[], "plan", 3, None])
def test_a_plan_or_phase_that_is_no_object_is_a_serialisation_error(value: object) -> None:
    # Found by the mutation run: a list or a string raised AttributeError from cattrs.
    from certflow.core.serialization import decode_phase, decode_plan

    for decode in (decode_plan, decode_phase):
        with pytest.raises(cf.SerializationError, match="expected an object"):
            decode(value)


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


@pytest.mark.parametrize(("value", "kind"), [([], "list"), ("plan", "str"), (3, "int")])
def test_a_plan_that_is_no_object_names_what_it_is(value: object, kind: str) -> None:
    from certflow.core.serialization import decode_plan

    with pytest.raises(
        cf.SerializationError, match=f"^malformed plan: expected an object, got {kind}$"
    ):
        decode_plan(value)


def test_a_missing_identity_is_worded_in_full() -> None:
    with pytest.raises(
        cf.SerializationError,
        match=r"^malformed serialised rollout: plan\.identity: missing field \(null for a "
        r"rollout without identity\)$",
    ):
        cf.loads(_identified_with(lambda d: d["plan"].pop("identity")))
