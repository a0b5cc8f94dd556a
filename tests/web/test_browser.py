"""The whole procedure in a real browser: headless Chromium from Debian's packages, driven
by Selenium through Debian's chromedriver, against the console served by uvicorn on
127.0.0.1 (``certflow serve``'s application: the token sign-in).

Sign in; upload a checked certificate and a device list; see the findings and the
recommended mode; distribute; see devices report (fed through the store meanwhile);
retry one device and all failed; extend from day 6 and see the new dates; import now
with the confirmation listing the devices cut off; see the end. Once with JavaScript,
once without (the pages hold no script: both must work alike).

Screenshots go to the test's folder, or to ``$CERTFLOW_WEB_SCREENSHOTS`` (``make docs``
sets it to docs/images/web). Without Chromium the tests are skipped, except under
``CERTFLOW_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

import certflow as cf
from certflow.core.instants import show
from certflow.store import SqliteStore
from certflow.web import TokenSignIn, create_app
from tests.certs.factory import DAY
from tests.web.conftest import Clock, upload

selenium = pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

REQUIRE_BROWSER = "CERTFLOW_REQUIRE_BROWSER"
SCREENSHOTS = "CERTFLOW_WEB_SCREENSHOTS"
TOKEN = "browser-walk-token-0123456789"
DEVICES = [f"iphone-{i:02d}" for i in range(24)]


def _programs() -> tuple[str, str]:
    """Chromium and chromedriver, or the test's skip (its failure under CI's variable)."""
    chromium = os.environ.get("CERTFLOW_CHROMIUM") or shutil.which("chromium")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    if chromium and driver:
        return chromium, driver
    why = "no Chromium" if not chromium else "no chromedriver"
    why += ": install Debian's chromium and chromium-driver packages"
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"browser test: {why}, and {REQUIRE_BROWSER}=1")
    pytest.skip(f"browser test skipped: {why}")


class Served:
    """The console on uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, db: Path, clock: Clock) -> None:
        app = create_app(lambda: SqliteStore(db), sign_in=TokenSignIn(TOKEN), clock=clock)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 30 s")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _browser(folder: Path, javascript: bool) -> WebDriver:
    chromium, driver = _programs()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1280,1600",
        f"--user-data-dir={folder / 'profile'}",
        # Nothing outside: no host name resolves, 127.0.0.1 aside.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    service = Service(executable_path=driver, log_output=str(folder / "chromedriver.log"))
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_page_load_timeout(60)
    return browser


@pytest.fixture(params=[True, False], ids=["javascript", "no-javascript"])
def walk(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> Iterator[tuple[WebDriver, Served, SqliteStore, bool]]:
    _programs()
    db = tmp_path / "console.db"
    SqliteStore(db).close()
    served = Served(db, clock)
    browser = _browser(tmp_path, request.param)
    try:
        with SqliteStore(db) as store:
            yield browser, served, store, request.param
    finally:
        browser.quit()
        served.stop()


def _go(browser: WebDriver, element: WebElement) -> None:
    """Click what leads to another page, and wait until that page is there (a click
    returns as soon as it is sent; without JavaScript no script can say when it loaded)."""
    old = browser.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(browser, 60)
    wait.until(lambda _: _gone(old))
    wait.until(expected_conditions.presence_of_element_located((By.ID, "main")))


def _gone(old: WebElement) -> bool:
    """Whether the page that held `old` has been replaced. Selenium's `staleness_of`
    knows only its own exception; chromedriver answers a node caught between two
    documents with an "unknown error" saying so (seen once in CI, Chromium 156), which
    means the same thing."""
    try:
        old.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def _text(browser: WebDriver, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def _files(folder: Path, devices: list[str]) -> dict[str, list[Path]]:
    made = upload(devices)
    written: dict[str, list[Path]] = {"material": [], "existing": [], "devices": []}
    for field, items in (
        ("material", made.material),
        ("existing", [made.existing]),
        ("devices", [made.devices]),
    ):
        for name, data in items:
            path = folder / name
            path.write_bytes(data)
            written[field].append(path)
    return written


def _fill_new(browser: WebDriver, files: dict[str, list[Path]]) -> None:
    browser.find_element(By.ID, "name").clear()
    browser.find_element(By.ID, "name").send_keys("mdm-2026")
    browser.find_element(By.ID, "material").send_keys("\n".join(map(str, files["material"])))
    browser.find_element(By.ID, "existing").send_keys(str(files["existing"][0]))
    browser.find_element(By.ID, "devices").send_keys(str(files["devices"][0]))
    hosts = browser.find_element(By.ID, "hosts")
    hosts.clear()
    hosts.send_keys("mdm.example.com")


def test_the_whole_procedure_in_a_browser(
    walk: tuple[WebDriver, Served, SqliteStore, bool], tmp_path: Path, clock: Clock
) -> None:
    browser, served, store, javascript = walk
    wanted = os.environ.get(SCREENSHOTS)
    shots = Path(wanted) if wanted and javascript else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> None:
        height = browser.execute_script("return document.body.scrollHeight") if javascript else 1600
        browser.set_window_size(1280, max(800, min(int(height or 1600) + 40, 4000)))
        browser.save_screenshot(str(shots / f"{name}.png"))

    # Sign in: the console sends an unsigned-in browser to its form.
    browser.get(served.url + "/")
    assert "/sign-in" in browser.current_url
    browser.find_element(By.ID, "token").send_keys("not the token")
    _go(browser, browser.find_element(By.CSS_SELECTOR, "button.primary"))
    assert "not the console's token" in browser.page_source
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    shoot("01-sign-in")
    _go(browser, browser.find_element(By.CSS_SELECTOR, "button.primary"))
    assert "Signed in as" in browser.page_source

    # New rollout: check first, see the findings and the recommended mode; then create.
    files = _files(tmp_path, DEVICES)
    browser.get(served.url + "/new")
    _fill_new(browser, files)
    _go(browser, browser.find_element(By.CSS_SELECTOR, "button[value=check]"))
    assert _text(browser, "#verdict").startswith("Result: ok (0 errors, 0 warnings)")
    assert _text(browser, "#recommended-mode") == "Distribute Root Certificate first"
    assert "trust_private" in browser.page_source
    shoot("02-checks")
    _fill_new(browser, files)
    _go(browser, browser.find_element(By.CSS_SELECTOR, "button[value=create]"))
    assert "Created rollout mdm-2026 (pending) for 24 devices" in browser.page_source.replace(
        "<strong>", ""
    ).replace("</strong>", "")
    shoot("03-created")

    # Distribute.
    _go(browser, browser.find_element(By.XPATH, "//button[text()='Distribute Root Certificate']"))
    assert _text(browser, "#rollout-state") == "distributing"

    # Devices report meanwhile (a worker, through the store): 18 install, 6 fail.
    store.apply_all(
        "mdm-2026",
        [cf.DeviceInstalled(d) for d in DEVICES[:18]]
        + [cf.DeviceFailed(d, "profile declined by user") for d in DEVICES[18:]],
        clock.move(DAY),
    )
    browser.refresh()
    assert _text(browser, "#count-installed") == "18"
    assert _text(browser, "#count-failed") == "6"
    shoot("04-view-details")

    # Retry one device from the failed devices' page, then all failed.
    browser.get(served.url + "/rollouts/mdm-2026")
    Select(browser.find_element(By.ID, "state")).select_by_value("failed")
    _go(browser, browser.find_element(By.XPATH, "//button[text()='Filter']"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#devices tbody th.device")) == 6
    _go(browser, browser.find_element(By.CSS_SELECTOR, "button[aria-label='Retry iphone-18']"))
    assert _text(browser, "#done") == "The device is pushed again."
    assert store.device("mdm-2026", "iphone-18").state is cf.DeviceState.PUSHED
    _go(browser, browser.find_element(By.ID, "action-retry-all"))
    assert store.info("mdm-2026").counts[cf.DeviceState.FAILED] == 0
    store.apply_all(
        "mdm-2026",
        [cf.DeviceInstalled("iphone-18"), cf.DeviceInstalled("iphone-19")]
        + [cf.DeviceFailed(d, "no answer") for d in DEVICES[20:]],
        clock.move(DAY),
    )

    # Day 6: the extension shows the dates the engine's preview sets, then sets them.
    at = clock.move(4 * DAY)
    seen = store.preview("mdm-2026", cf.ExtendManually(), at)
    assert seen.overview is not None
    assert seen.overview.next_checkpoint is not None
    assert seen.overview.deadline is not None
    # The forecast, from View Details: as it is and extended, and the recommendation.
    # The 4 failed devices get no retry (none assumed), so both choices cut off 4.
    browser.get(served.url + "/rollouts/mdm-2026")
    # The page answers at once, saying the forecast is being computed, and reloads
    # itself (a meta refresh: no script runs) until the forecast is there.
    _go(browser, browser.find_element(By.ID, "forecast-link"))
    assert _text(browser, "#forecast-computing").startswith("The forecast is being computed")
    shoot("10-forecast-computing")
    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.ID, "branch-as-is"))
    )
    assert not browser.find_elements(By.ID, "forecast-computing")
    assert _text(browser, "#branch-as-is td") == "4.0 (4 to 4)"
    assert _text(browser, "#branch-extended td") == "4.0 (4 to 4)"
    assert _text(browser, "#recommendation").startswith("Do not extend: ")
    shoot("10-forecast")
    browser.get(served.url + "/rollouts/mdm-2026")
    _go(browser, browser.find_element(By.ID, "action-extend"))
    assert _text(browser, "#new-checkpoint") == show(seen.overview.next_checkpoint)
    assert _text(browser, "#new-deadline") == show(seen.overview.deadline)
    shoot("05-extend")
    _go(browser, browser.find_element(By.ID, "confirm"))
    assert _text(browser, "#next-checkpoint").startswith(show(seen.overview.next_checkpoint))
    assert _text(browser, "#deadline") == show(seen.overview.deadline)

    # Import now: the confirmation lists the devices the preview cuts off.
    cut_off = store.preview("mdm-2026", cf.ImportNow(), clock.now).cut_off
    assert set(cut_off) == set(DEVICES[20:])
    _go(browser, browser.find_element(By.ID, "action-import-now"))
    listed = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#cut-off td.device")]
    assert listed == list(cut_off)
    assert _text(browser, "#cut-off-summary").startswith("4 devices do not trust the new root")
    shoot("06-import-confirmation")
    _go(browser, browser.find_element(By.ID, "confirm"))

    # The end.
    assert _text(browser, "#rollout-state") == "forced"
    assert _text(browser, "#count-reenroll_required") == "4"
    assert store.info("mdm-2026").state is cf.RolloutState.FORCED
    shoot("07-the-end")
    browser.get(served.url + "/rollouts/mdm-2026/history")
    assert "Import now" in browser.page_source
    shoot("08-history")
    browser.get(served.url + "/rollouts/mdm-2026/effects?show=all")
    assert "must re-enrol" in browser.page_source
    shoot("09-effects")
    # The chart is an image the browser drew (the SVG loaded under the page's policy).
    browser.get(served.url + "/rollouts/mdm-2026")
    if javascript:
        width = browser.execute_script("return document.querySelector('.chart img').naturalWidth")
        assert width > 100
