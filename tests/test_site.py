"""The documentation site: its navigation, its generated rules page, its timeline table.

`make site` (part of `make test`) builds it with `mkdocs build --strict`; these tests check
what a strict build cannot: that every page is in the navigation, that the rules page is
rendered from the declarations, and that the concepts page's day-by-day table is the
timeline's.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import certflow as cf
from certflow.core import timeline
from certflow.core.machines import diagrams_page
from tools.mkdocs_hooks import on_page_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DAY = timedelta(days=1)


def test_every_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s+([\w/-]+\.md)\s*$", config, flags=re.MULTILINE))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert listed == pages


def test_the_rules_page_is_rendered_from_the_declarations_at_build_time() -> None:
    page = SimpleNamespace(file=SimpleNamespace(src_uri="machines.md"))
    assert on_page_markdown("stale text", page) == diagrams_page()
    other = SimpleNamespace(file=SimpleNamespace(src_uri="concepts.md"))
    assert on_page_markdown("as written", other) == "as written"


def _days(rows: list[list[str]], column: int, starts: tuple[str, ...]) -> list[int]:
    return [int(row[0]) for row in rows if row[column].startswith(starts)]


def test_the_concepts_timeline_table_is_the_timeline() -> None:
    text = (DOCS / "concepts.md").read_text()
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if re.match(r"\| \d+ \|", line)
    ]
    t0 = datetime(2026, 7, 1, 9, tzinfo=UTC)
    rollout = cf.new_rollout(
        ["a"],
        existing_not_after=t0 + 40 * DAY,
        new_not_before=t0 - DAY,
        new_not_after=t0 + 300 * DAY,
        root_publicly_trusted=False,
        created_at=t0,
    )
    rollout = cf.apply(rollout, cf.DistributeRoot(), t0).rollout
    opens = timeline.extension_opens(rollout.plan, rollout.phase)
    assert opens is not None
    assert [int(row[0]) for row in rows if "manual extension opens" in row[1]] == [
        (opens - t0) // DAY
    ]
    for column, extend in ((1, False), (2, True)):
        effects: list[cf.Effect] = []
        current = rollout
        if extend:
            current, done = cf.apply(current, cf.ExtendManually(), opens)
            effects += done
        effects += cf.advance(current, t0 + 40 * DAY).effects
        notices = [(e.due_at - t0) // DAY for e in effects if isinstance(e, cf.Notify)]
        checkpoints = [
            (e.due_at - t0) // DAY
            for e in effects
            if isinstance(e, cf.ImportPostponed | cf.ImportCertificate)
        ]
        assert _days(rows, column, ("notice",)) == notices
        assert _days(rows, column, ("checkpoint", "the deadline")) == checkpoints


def test_the_strict_build_is_not_quietened() -> None:
    # `mkdocs build --strict --quiet` passes with warnings: --quiet silences the log
    # handler that --strict counts them with (a broken link went through that way).
    site = next(
        line
        for line in (ROOT / "Makefile").read_text().splitlines()
        if "mkdocs build" in line and "--strict" in line
    )
    assert "--quiet" not in site
    assert "-q" not in site.split()
