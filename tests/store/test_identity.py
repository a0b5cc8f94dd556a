"""A stored rollout knows what it rolls out, as the rollout value does: its plan keeps the
identity, and the effects it places in the outbox name the root and the certificate as
the evaluator's do. Every test runs on SQLite and on PostgreSQL (``tests/backends.py``).
"""

from __future__ import annotations

import json
from datetime import datetime

import certflow as cf
from tests.backends import Backend
from tests.core.strategies import DAY, HOUR, T0, build, day


def test_the_store_names_what_the_evaluator_names(backend: Backend) -> None:
    rollout = build(["a", "b", "c"], identified=True, policy=cf.Policy(ack_timeout=DAY))
    known = rollout.plan.identity
    assert known is not None
    history: list[tuple[cf.Command | None, datetime]] = [
        (cf.DistributeRoot(), T0),
        (cf.DeviceFailed("a", "no"), T0 + HOUR),
        (cf.Retry("a"), T0 + 2 * HOUR),
        (cf.Enroll("e"), T0 + 3 * HOUR),
        (None, day(2)),
        (cf.RetryAllFailed(), day(2) + HOUR),
        (cf.ImportNow(), day(3)),
    ]
    with backend.open() as store:
        store.create("r", rollout)
        assert store.plan("r").identity == known
        value = rollout
        for command, at in history:
            if command is None:
                stored = store.advance("r", at)
                step = cf.advance(value, at)
            else:
                stored = store.apply("r", command, at)
                step = cf.apply(value, command, at)
            assert [s.effect for s in stored] == list(step.effects)
            value = step.rollout
        assert store.dumps("r") == cf.dumps(value)
        everything = store.effects("r", include_acknowledged=True)
    pushes = [s.effect for s in everything if isinstance(s.effect, cf.PushRoot)]
    imports = [s.effect for s in everything if isinstance(s.effect, cf.ImportCertificate)]
    assert len(pushes) >= 5
    assert {p.root_fingerprint for p in pushes} == {known.root.fingerprint}
    assert [i.certificate_fingerprint for i in imports] == [known.certificate.fingerprint]


def test_a_handler_gets_the_pem_of_what_an_effect_names_from_the_store(backend: Backend) -> None:
    known = build(2, identified=True).plan.identity
    assert known is not None
    with backend.open() as store:
        store.create("mdm-2026", build(2, identified=True))
        store.apply("mdm-2026", cf.DistributeRoot(), T0)
        (stored,) = store.effects("mdm-2026")
        push = stored.effect
        assert isinstance(push, cf.PushRoot)
        # What a drain handler does with the effect's id: its rollout's plan, then the PEM.
        assert push.root_pem(store.plan(stored.id.rsplit(":", 2)[0])) == known.root.pem
    (body,) = backend.query("SELECT body FROM outbox WHERE kind = 'PushRoot'")
    assert json.loads(body[0])["root_fingerprint"] == known.root.fingerprint


def test_a_rollout_without_identity_names_nothing_in_the_outbox(backend: Backend) -> None:
    with backend.open() as store:
        store.create("dates", build(2))
        (stored,) = store.apply("dates", cf.DistributeRoot(), T0)
    assert isinstance(stored.effect, cf.PushRoot)
    assert stored.effect.root_fingerprint is None
