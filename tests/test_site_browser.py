"""The site's diagrams are drawn in a browser that reaches nothing outside.

The built site (``build_site`` of ``tests/test_site.py``, as ``make site`` builds it) is
served from 127.0.0.1 to headless Chromium, which resolves no host name and whose proxy
leads nowhere. Every page with a Mermaid block must come out with each block drawn as an
SVG; each machine of the declarations with every one of its states; and no request may
leave the site.

Material draws each diagram into a *closed* shadow root, which neither the page's own
scripts nor ``chromium --dump-dom`` can read. The test drives Chromium through the DevTools
protocol on a pipe (``--remote-debugging-pipe``: JSON messages, each ended by a NUL, on
descriptors 3 and 4), whose ``DOM.getDocument`` with ``pierce`` reads them: no driver and no
package beyond the browser. Each drawn diagram is also saved as a PNG in the test's
temporary folder (``diagram-*.png``), for a look.

Chromium: Debian's ``chromium`` package (``/usr/bin/chromium``), or ``CERTFLOW_CHROMIUM``
naming another Chromium or Chrome. Without one the tests are skipped, except under
``CERTFLOW_REQUIRE_BROWSER=1`` (CI: ``.ci/run`` installs the package), where they fail.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import html.parser
import http.server
import json
import os
import select
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from certflow.core.machines import RULES, MachineSpec
from tests.test_site import build_site

REQUIRE_BROWSER = "CERTFLOW_REQUIRE_BROWSER"
CHROMIUM = "CERTFLOW_CHROMIUM"
# Seconds for a page to load and draw all its diagrams (it takes about one).
PATIENCE = 60.0
MACHINES_PAGE = "machines"
CONCEPTS_PAGE = "concepts"


def browser_required() -> bool:
    """Whether this run must not skip the browser tests (CI sets the variable)."""
    return os.environ.get(REQUIRE_BROWSER) == "1"


def find_chromium() -> str:
    """The Chromium to run, or the test's skip (its failure under CERTFLOW_REQUIRE_BROWSER=1)."""
    named = os.environ.get(CHROMIUM)
    found = named or shutil.which("chromium") or shutil.which("chromium-browser")
    if found and (shutil.which(found) or Path(found).is_file()):
        return shutil.which(found) or found
    why = (
        f"{CHROMIUM}={named} is not a program"
        if named
        else "no Chromium: install Debian's `chromium` package (apt-get install chromium), "
        f"or set {CHROMIUM}"
    )
    if browser_required():
        pytest.fail(f"browser test: {why}, and {REQUIRE_BROWSER}=1")
    pytest.skip(f"browser test skipped: {why}")


class BrowserError(Exception):
    """Chromium refused a command, stopped, or did not answer in time."""


class Chromium:
    """Headless Chromium, offline but for 127.0.0.1, driven by the DevTools protocol on a
    pipe."""

    def __init__(self, program: str, folder: Path) -> None:
        self.log = folder / "chromium.log"
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        # Chromium reads on descriptor 3 and writes on 4: the child's copies are made by
        # posix_spawn's dup2, from copies above both numbers (so neither overwrites the other).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        os.close(to_browser)
        os.close(from_browser)
        arguments = [
            program,
            "--headless=new",
            "--no-sandbox",  # as root, in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={folder / 'profile'}",
            "--remote-debugging-pipe",
            # No network: no host name resolves, 127.0.0.1 (where the site is served) aside,
            # and any proxied request goes to a port where nothing listens.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--proxy-server=127.0.0.1:9",
            "about:blank",
        ]
        self.pid = os.posix_spawn(
            program,
            arguments,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, ends[0], 3),
                (os.POSIX_SPAWN_DUP2, ends[1], 4),
                (os.POSIX_SPAWN_OPEN, 1, str(self.log), os.O_WRONLY | os.O_CREAT, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,  # its own process group, all of which close() ends
        )
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise BrowserError(f"Chromium did not answer in time; its log: {self.log}")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium stopped; its log: {self.log}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command (to a page's session, if given) and return its result; the
        events that arrive meanwhile are kept in :attr:`events`."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data) :]
        deadline = time.monotonic() + PATIENCE
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != self._last_id:
                self.events.append(reply)
            elif "error" in reply:
                raise BrowserError(f"{method}: {reply['error']}")
            else:
                result: dict[str, Any] = reply["result"]
                return result

    def wait_for(self, method: str, session: str) -> None:
        """Until the page's event ``method`` has arrived."""
        deadline = time.monotonic() + PATIENCE
        while not any(
            e.get("method") == method and e.get("sessionId") == session for e in self.events
        ):
            self.events.append(self._receive(deadline))

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # what is left of it: helpers, a stuck one
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        os.close(self._in)
        os.close(self._out)


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """The folder over HTTP on a free port of 127.0.0.1: its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Diagram:
    """One drawn diagram: its title (Mermaid's front matter), its states' labels, its size
    on the page and the PNG of it."""

    title: str | None
    states: frozenset[str]
    width: float
    height: float
    picture: Path


@dataclass
class Page:
    """A page as the offline browser drew it."""

    blocks: int  # the Mermaid blocks of the built HTML
    diagrams: list[Diagram] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for key in ("children", "shadowRoots", "templateContent", "contentDocument"):
        value = node.get(key)
        for child in value if isinstance(value, list) else [value] if value else []:
            yield from _walk(child)


def _attributes(node: dict[str, Any]) -> dict[str, str]:
    pairs = node.get("attributes", [])
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def _text(node: dict[str, Any]) -> str:
    return "".join(n["nodeValue"] for n in _walk(node) if n.get("nodeType") == 3).strip()


def _drawings(document: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each Mermaid host Material made (``div.mermaid`` with a shadow root) and its SVG."""
    found = []
    for node in _walk(document):
        if node.get("localName") == "div" and "mermaid" in _attributes(node).get("class", ""):
            for root in node.get("shadowRoots", []):
                svg = next((n for n in _walk(root) if n.get("localName") == "svg"), None)
                if svg is not None:
                    found.append((node, svg))
    return found


def _diagram(browser: Chromium, session: str, host: dict[str, Any], svg: dict[str, Any], picture: Path) -> Diagram:  # fmt: skip
    titles = [
        _text(n)
        for n in _walk(svg)
        if n.get("localName") == "text" and "TitleText" in _attributes(n).get("class", "")
    ]
    states = frozenset(
        _text(n)
        for n in _walk(svg)
        if n.get("localName") == "g"
        and {"node", "statediagram-state"} <= set(_attributes(n).get("class", "").split())
    )
    quad = browser.call("DOM.getBoxModel", session, backendNodeId=host["backendNodeId"])
    box = quad["model"]
    x, y = box["border"][0], box["border"][1]
    shot = browser.call(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={"x": x, "y": y, "width": box["width"], "height": box["height"], "scale": 1},
    )
    picture.write_bytes(base64.b64decode(shot["data"]))
    return Diagram(titles[0] if titles else None, states, box["width"], box["height"], picture)


class _MermaidBlocks(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre" and "mermaid" in (dict(attrs).get("class") or "").split():
            self.count += 1


def mermaid_blocks(page: Path) -> int:
    """How many Mermaid blocks a built page has, for Material to draw."""
    parser = _MermaidBlocks()
    parser.feed(page.read_text())
    return parser.count


def draw(browser: Chromium, url: str, blocks: int, folder: Path, name: str) -> Page:
    """Open ``url`` in a new tab and wait until its ``blocks`` diagrams are drawn (or give
    up after PATIENCE seconds)."""
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Network", "Runtime"):
        browser.call(f"{domain}.enable", session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=1280,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    browser.call("Page.navigate", session, url=url)
    browser.wait_for("Page.loadEventFired", session)
    page = Page(blocks)
    # Until every block is drawn; or, once the page threw (Mermaid refuses a diagram with an
    # uncaught error, and Material leaves its block as it was), until nothing more is drawn
    # for two seconds.
    deadline = time.monotonic() + PATIENCE
    drawn: list[tuple[dict[str, Any], dict[str, Any]]] = []
    changed = time.monotonic()
    while True:
        before = len(drawn)
        drawn = _drawings(browser.call("DOM.getDocument", session, depth=-1, pierce=True)["root"])
        now = time.monotonic()
        changed = now if len(drawn) != before else changed
        threw = any(
            e.get("method") == "Runtime.exceptionThrown" and e.get("sessionId") == session
            for e in browser.events
        )
        if len(drawn) >= blocks or now > deadline or (threw and now - changed > 2):
            break
        time.sleep(0.2)
    for number, (host, svg) in enumerate(drawn, 1):
        picture = folder / f"diagram-{name}-{number}.png"
        page.diagrams.append(_diagram(browser, session, host, svg, picture))
    for event in browser.events:
        if event.get("sessionId") != session:
            continue
        params = event.get("params", {})
        if event.get("method") == "Network.requestWillBeSent":
            page.requests.append(params["request"]["url"])
        elif event.get("method") == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            page.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
            page.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
    browser.call("Target.closeTarget", targetId=target)
    return page


@dataclass(frozen=True)
class Drawn:
    """The site's pages with diagrams, as the offline browser drew them."""

    origin: str
    pages: dict[str, Page]
    folder: Path


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Drawn:
    """Every built page with a Mermaid block, opened offline and drawn."""
    program = find_chromium()
    site = build_site(tmp_path_factory.getbasetemp())
    folder = tmp_path_factory.mktemp("browser")
    wanted = {
        str(path.parent.relative_to(site)): blocks
        for path in sorted(site.rglob("index.html"))
        if (blocks := mermaid_blocks(path))
    }
    browser = Chromium(program, folder)
    try:
        with serve(site) as origin:
            pages = {
                name: draw(browser, f"{origin}{name}/", blocks, folder, name.replace("/", "-"))
                for name, blocks in wanted.items()
            }
    finally:
        browser.close()
    return Drawn(origin, pages, folder)


def _explain(drawn: Drawn, name: str) -> str:
    page = drawn.pages[name]
    return (
        f"page {name}/: {len(page.diagrams)} of {page.blocks} diagrams drawn; "
        f"errors: {page.errors}; pictures and Chromium's log in {drawn.folder}"
    )


def test_every_diagram_of_the_site_is_drawn_offline(drawn: Drawn) -> None:
    assert {MACHINES_PAGE, CONCEPTS_PAGE} <= set(drawn.pages)
    for name, page in drawn.pages.items():
        assert len(page.diagrams) == page.blocks, _explain(drawn, name)
        for diagram in page.diagrams:
            assert diagram.states, _explain(drawn, name)
            assert diagram.width > 100, _explain(drawn, name)
            assert diagram.height > 100, _explain(drawn, name)
            assert diagram.picture.stat().st_size > 1000, _explain(drawn, name)


@pytest.mark.parametrize("machine", RULES.machines, ids=lambda m: m.name)
def test_each_machine_is_drawn_with_every_state_of_its_declaration(drawn: Drawn, machine: MachineSpec) -> None:  # fmt: skip
    page = drawn.pages[MACHINES_PAGE]
    by_title = {d.title: d for d in page.diagrams}
    assert machine.name in by_title, _explain(drawn, MACHINES_PAGE)
    assert by_title[machine.name].states == {s.name for s in machine.states}


def test_the_concepts_page_draws_the_rollout_machine(drawn: Drawn) -> None:
    page = drawn.pages[CONCEPTS_PAGE]
    assert len(page.diagrams) == 1, _explain(drawn, CONCEPTS_PAGE)
    assert page.diagrams[0].states == {s.name for s in RULES.rollout.states}


def test_the_pages_ask_for_nothing_outside_the_site(drawn: Drawn) -> None:
    # The vendored mermaid.min.js among them: Material took it, and went to no CDN.
    for name, page in drawn.pages.items():
        outside = [u for u in page.requests if not u.startswith((drawn.origin, "data:", "blob:"))]
        assert outside == [], name
        assert f"{drawn.origin}javascripts/vendor/mermaid.min.js" in page.requests, name
