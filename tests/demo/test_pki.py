"""The demo's certificates: real material that passes the upload checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certflow import certs
from certflow.demo._pki import HOST, material

START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def test_the_new_material_passes_every_check_of_an_upload() -> None:
    new, existing = material(START, START + timedelta(days=40))
    report = certs.check(new, host=HOST, now=START)
    assert report.ok, report
    assert not report.root_publicly_trusted
    assert new.root is not None
    assert new.private_key is not None
    assert existing.not_valid_after_utc == START + timedelta(days=40)
    assert existing != new.leaf


def test_one_process_reuses_its_material_so_both_demo_hosts_see_one_certificate() -> None:
    first = material(START, START + timedelta(days=40))
    assert material(START, START + timedelta(days=40)) is first
    other, _ = material(START, START + timedelta(days=20))
    assert other.leaf != first[0].leaf
