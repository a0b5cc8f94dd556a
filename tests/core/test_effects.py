"""Effects read as one line each (``str``), for logs and notebooks; ``repr`` stays exact.
PushRoot and ImportCertificate name the certificate they are about, its PEM one call away."""

from __future__ import annotations

from typing import Any

import pytest

import certflow as cf
from tests.core.strategies import DAY, T0, build, day, identity


def test_each_effect_reads_as_one_line_with_its_instant() -> None:
    lines = [
        str(cf.PushRoot(("a", "b", "c", "d"), 2, T0)),
        str(cf.PushRoot(("a",), 1, T0)),
        str(cf.Notify(1, day(7), False, day(6))),
        str(cf.Notify(3, day(21), True, day(20))),
        str(cf.ImportPostponed(1, day(14), day(7))),
        str(cf.ImportCertificate(False, day(7))),
        str(cf.ImportCertificate(True, day(21))),
        str(cf.RestartRequired(day(21))),
        str(cf.ReenrollmentRequired(("x", "y"), day(21))),
        str(cf.AcknowledgementTimedOut(("p", "q", "r"), day(2))),
    ]
    assert lines == [
        "2026-07-01 09:00 UTC  push the root (attempt 2) to 4 devices: a, b, c, ...",
        "2026-07-01 09:00 UTC  push the root (attempt 1) to 1 device: a",
        "2026-07-07 09:00 UTC  notice: checkpoint 1 on 2026-07-08 09:00 UTC (import if ready)",
        "2026-07-21 09:00 UTC  notice: checkpoint 3 on 2026-07-22 09:00 UTC "
        "(the deadline: import whatever the fleet's state)",
        "2026-07-08 09:00 UTC  checkpoint 1: import postponed to 2026-07-15 09:00 UTC",
        "2026-07-08 09:00 UTC  import of the new certificate",
        "2026-07-22 09:00 UTC  FORCED import (some devices are cut off) of the new certificate",
        "2026-07-22 09:00 UTC  restart required: the server must load the new certificate",
        "2026-07-22 09:00 UTC  re-enrolment required for 2 devices: x, y",
        "2026-07-03 09:00 UTC  no answer in time, now failed: 3 devices: p, q, r",
    ]
    assert repr(cf.RestartRequired(T0)).startswith("RestartRequired(due_at=datetime.datetime(")


# --- what PushRoot and ImportCertificate name ----------------------------------------------------


def test_push_root_and_import_certificate_name_their_certificate_or_nothing() -> None:
    assert cf.PushRoot(("a",), 1, T0).root_fingerprint is None
    assert cf.ImportCertificate(False, T0).certificate_fingerprint is None
    root, leaf = "ab" * 32, "cd" * 32
    assert str(cf.PushRoot(("a", "b"), 1, T0, root)) == (
        f"2026-07-01 09:00 UTC  push the root SHA-256 {root[:16]}… (attempt 1) to 2 devices: a, b"
    )
    assert str(cf.ImportCertificate(True, day(21), leaf)) == (
        "2026-07-22 09:00 UTC  FORCED import (some devices are cut off) of the new certificate "
        f"SHA-256 {leaf[:16]}…"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: cf.PushRoot(("a",), 1, T0, "AB" * 32), r"root_fingerprint: expected a SHA-256"),
        (
            lambda: cf.PushRoot(("a",), 1, T0, b"ab"),  # type: ignore[arg-type]
            r"root_fingerprint: expected a str",
        ),
        (
            lambda: cf.ImportCertificate(False, T0, "ab:cd"),
            r"certificate_fingerprint: expected a SHA-256 fingerprint as 64 lowercase",
        ),
    ],
)
def test_a_bad_fingerprint_is_refused_naming_the_field(make: Any, message: str) -> None:
    with pytest.raises(cf.InvalidInput, match=message):
        make()


def test_the_pem_of_what_an_effect_names_is_one_call_away() -> None:
    rollout = build(3, identified=True)
    known = rollout.plan.identity
    assert known is not None
    started = cf.apply(rollout, cf.DistributeRoot(), T0)
    (push,) = started.effects
    assert isinstance(push, cf.PushRoot)
    assert push.root_pem(started.rollout) == push.root_pem(rollout.plan) == known.root.pem
    imported = cf.apply(started.rollout, cf.ImportNow(), day(1))
    (certificate,) = [e for e in imported.effects if isinstance(e, cf.ImportCertificate)]
    assert certificate.certificate_pem(imported.rollout) == known.certificate.pem


def test_the_pem_call_says_why_it_has_nothing_to_give() -> None:
    dated = cf.apply(build(2), cf.DistributeRoot(), T0)
    (nameless,) = dated.effects
    assert isinstance(nameless, cf.PushRoot)
    with pytest.raises(cf.InvalidInput, match="this PushRoot names no certificate: its rollout"):
        nameless.root_pem(dated.rollout)
    named = cf.apply(build(2, identified=True), cf.DistributeRoot(), T0).effects[0]
    assert isinstance(named, cf.PushRoot)
    with pytest.raises(cf.InvalidInput, match="the rollout given has no identity"):
        named.root_pem(dated.rollout)
    other = cf.new_rollout(
        ["a"],
        existing_not_after=T0 + 60 * DAY,
        new_not_before=T0 - DAY,
        new_not_after=T0 + 299 * DAY,
        root_publicly_trusted=False,
        created_at=T0,
        identity=identity("other.example.com"),
    )
    with pytest.raises(cf.InvalidInput, match="no certificate of this rollout has the fingerprint"):
        named.root_pem(other)
    with pytest.raises(
        cf.InvalidInput, match=r"of must be a certflow\.Rollout or its Plan, got str"
    ):
        named.root_pem("mdm-2026")  # type: ignore[arg-type]
    nothing = cf.ImportCertificate(False, T0)
    with pytest.raises(cf.InvalidInput, match="this ImportCertificate names no certificate"):
        nothing.certificate_pem(other)


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_notice_reads_with_what_it_foresees() -> None:
    expiry = cf.Notify(1, day(30), False, day(29), expiry=True)
    assert str(expiry) == (
        "2026-07-30 09:00 UTC  notice: checkpoint 1 on 2026-07-31 09:00 UTC "
        "(the current certificate expires: import then)"
    )
    forced = cf.Notify(
        2, day(14), False, day(13), in_scope=5, trusting=3, outcome="forced import", cut_off=2
    )
    assert str(forced) == (
        "2026-07-14 09:00 UTC  notice: checkpoint 2 on 2026-07-15 09:00 UTC (import if ready); "
        "3 of 5 trust the root; if nothing changes: forced import, cutting off 2 device(s)"
    )
    ready = cf.Notify(2, day(14), False, day(13), in_scope=5, trusting=5, outcome="import")
    assert str(ready) == (
        "2026-07-14 09:00 UTC  notice: checkpoint 2 on 2026-07-15 09:00 UTC (import if ready); "
        "5 of 5 trust the root; if nothing changes: import"
    )


def test_a_cancellation_reads_as_one_line_with_its_instant() -> None:
    assert str(cf.RolloutCancelled(day(3))) == (
        "2026-07-04 09:00 UTC  rollout cancelled: the current certificate stays"
    )
