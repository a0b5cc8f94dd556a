"""The effect as JSON, and its signature (certflow/worker/_payload.py)."""

from __future__ import annotations

import hashlib
import hmac
import json

import certflow as cf
from certflow.worker import effect_body, effect_document, sign, verify
from tests.worker.timeline import T0, day, effect


def test_the_document_has_id_kind_rollout_due_at_and_the_fields() -> None:
    stored = effect(cf.Notify(2, day(14), False, day(13), in_scope=5, trusting=1), "mdm.1:7:0")
    document = effect_document(stored)
    assert document["id"] == "mdm.1:7:0"
    assert document["kind"] == "Notify"
    assert document["rollout"] == "mdm.1"
    assert document["due_at"] == "2026-07-14T09:00:00+00:00"
    assert document["checkpoint"] == 2
    assert document["checkpoint_at"] == day(14).isoformat()
    assert document["in_scope"] == 5
    assert document["trusting"] == 1
    assert "type" not in document
    assert json.loads(effect_body(stored)) == document


def test_the_body_is_the_same_bytes_every_time() -> None:
    assert effect_body(effect()) == effect_body(effect())
    assert json.loads(effect_body(effect()))["device_ids"] == ["d0", "d1"]
    assert json.loads(effect_body(effect()))["due_at"] == T0.isoformat()


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    body = effect_body(effect())
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign(b"k", body) == f"sha256={expected}"
    assert verify(b"k", body, f"sha256={expected}")
    assert not verify(b"other", body, f"sha256={expected}")
    assert not verify(b"k", body + b" ", f"sha256={expected}")
    assert not verify(b"k", body, None)
