"""The documentation site: its navigation, its generated rules page, its timeline table,
and the Mermaid script it serves itself.

`make site` (part of `make test`) builds it with `mkdocs build --strict`; these tests check
what a strict build cannot: that every page is in the navigation, that the rules page is
rendered from the declarations, that the concepts page's day-by-day table is the
timeline's, and that the built pages draw their diagrams with the pinned copy of Mermaid
that the site serves (tools/vendor_mermaid.py), loading nothing from elsewhere.
`tests/test_site_browser.py` opens the built pages in a browser without network.
"""

from __future__ import annotations

import functools
import hashlib
import html.parser
import importlib.util
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from mkdocs.config import load_config
from mkdocs.exceptions import PluginError

import certflow as cf
from certflow.core import timeline
from certflow.core.machines import diagrams_page
from tools import vendor_mermaid
from tools.mkdocs_hooks import on_page_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DAY = timedelta(days=1)


@functools.cache
def build_site(base: Path) -> Path:
    """The site as `make site` builds it (strictly), into ``base/built-site``: once per
    process, for this module and tests/test_site_browser.py."""
    folder = base / "built-site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{done.stderr[-4000:]}")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.getbasetemp())


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


class _Resources(html.parser.HTMLParser):
    """What a page loads: its scripts', stylesheets', images' and frames' addresses (not
    its links to follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script" and named.get("src"):
            self.scripts.append(named["src"] or "")
        if tag != "a":
            self.loaded += [v for k, v in attrs if k in ("src", "href", "srcset", "data") and v]


def _resources(page: Path) -> _Resources:
    parser = _Resources()
    parser.feed(page.read_text())
    return parser


def test_the_pages_with_diagrams_serve_the_pinned_mermaid(site: Path) -> None:
    config = load_config(str(ROOT / "mkdocs.yml"))
    assert vendor_mermaid.SITE_PATH in [str(script) for script in config.extra_javascript]
    assert "tools/vendor_mermaid.py" in config.plugins
    served = site / vendor_mermaid.SITE_PATH
    assert hashlib.sha256(served.read_bytes()).hexdigest() == vendor_mermaid.SHA256
    for name in ("machines", "concepts"):
        page = site / name / "index.html"
        assert '<pre class="mermaid">' in page.read_text(), name
        scripts = [(page.parent / s).resolve() for s in _resources(page).scripts]
        assert served.resolve() in scripts, name


def test_no_page_loads_anything_from_elsewhere(site: Path) -> None:
    # A reader without internet gets every script, stylesheet, font and picture from the
    # site itself (links to follow excepted): no CDN, no font service.
    for page in sorted(site.rglob("*.html")):
        outside = [u for u in _resources(page).loaded if re.match(r"([a-z]+:)?//", u)]
        assert outside == [], page.relative_to(site)


def test_the_pinned_mermaid_is_the_major_release_material_asks_for() -> None:
    # Material fetches `mermaid@N` from its CDN when no global `mermaid` is defined, and
    # calls that release's API (initialize, render) on whichever it finds.
    theme = importlib.util.find_spec("material")
    assert theme is not None
    assert theme.origin is not None
    scripts = Path(theme.origin).parent / "templates" / "assets" / "javascripts"
    bundle = next(scripts.glob("bundle.*.min.js"))
    asked = re.findall(r"mermaid@(\d+)/dist/mermaid\.min\.js", bundle.read_text())
    assert asked == [vendor_mermaid.VERSION.split(".")[0]]
    assert 'typeof mermaid=="undefined"' in bundle.read_text()


def test_the_build_refuses_a_missing_or_different_mermaid(tmp_path: Path) -> None:
    config = {"docs_dir": str(tmp_path)}
    with pytest.raises(PluginError, match="is missing: run `make site`"):
        vendor_mermaid.on_config(config)
    copy = tmp_path / vendor_mermaid.SITE_PATH
    copy.parent.mkdir(parents=True)
    copy.write_text("globalThis.mermaid = {}")
    with pytest.raises(PluginError, match=f"is not mermaid {vendor_mermaid.VERSION}"):
        vendor_mermaid.on_config(config)
    copy.write_bytes(vendor_mermaid.TARGET.read_bytes())
    assert vendor_mermaid.on_config(config) is config


@pytest.mark.parametrize("target", ["site", "docs", "unit", "test-latest"])
def test_the_targets_that_build_or_test_the_site_vendor_mermaid_first(target: str) -> None:
    # -W: as if the pinned release had just changed, so make would fetch it again.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "-n", "-W", "tools/vendor_mermaid.py", target],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    vendor = next(i for i, line in enumerate(lines) if "tools/vendor_mermaid.py" in line)
    uses = next(i for i, line in enumerate(lines) if re.search(r"mkdocs build|pytest", line))
    assert vendor < uses, done.stdout
