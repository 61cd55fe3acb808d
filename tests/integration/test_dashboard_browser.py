"""The dashboard end to end in Debian's headless Chromium (Selenium, the system chromedriver —
nothing is downloaded): real runs through the worker, a real uvicorn server, an API key typed
into the page, the runs table, a run page with its steps and tool calls, and a high-risk action
approved in the browser and then shown executed. Screenshots go to test-artifacts/.

A missing browser fails the test (never skips): `make test` installs chromium and
chromium-driver (scripts/ensure-services.sh)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from switchboard.api.app import create_app
from switchboard.settings import get_settings
from tests.support.observability import APPROVAL_KIND, run_demo_and_approval_scenario
from tests.support.runs import truncate_run_tables

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
API_KEY = "sbk_" + uuid.uuid4().hex


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        ci = " (CI=true)" if os.environ.get("CI") == "true" else ""
        pytest.fail(
            f"headless Chromium is missing{ci}: {', '.join(missing)}; run `make test` "
            "(scripts/ensure-services.sh installs chromium and chromium-driver with apt-get as root)",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture()
def server(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real uvicorn server (in a thread of this process, so it shares the test database,
    broker and in-process worker) with an API key configured; yields its base URL."""
    truncate_run_tables(database_url)
    monkeypatch.setenv("SWITCHBOARD_API_KEYS", API_KEY)
    monkeypatch.setenv("SWITCHBOARD_DASHBOARD_REFRESH_S", "1")
    get_settings.cache_clear()
    port = _free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(timeout=20)
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture()
def browser() -> Iterator[WebDriver]:
    _require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1440,1100", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit chromedriver path: Selenium Manager is never asked to find or download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, timeout_s: float = 20.0) -> WebDriverWait[WebDriver]:
    # the page re-renders itself every second (auto-refresh): an element found a moment ago
    # may be replaced, so a stale reference means "look again"
    return WebDriverWait(driver, timeout_s, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))


def _click(driver: WebDriver, css: str) -> None:
    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    _wait(driver).until(clicked)


def _shot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(1100, min(int(height) + 40, 6000)))
    assert driver.save_screenshot(str(path)), f"screenshot {path} was not written"
    driver.set_window_size(1440, 1100)
    return path


def _rows(driver: WebDriver) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr[data-run-id]")


def test_dashboard_runs_run_page_and_approval_in_chromium(server: str, browser: WebDriver) -> None:
    runs = run_demo_and_approval_scenario()
    by_kind = {str(run["insight_kind"]): str(run["run_id"]) for run in runs}
    approval_run = by_kind[APPROVAL_KIND]

    browser.get(f"{server}/dashboard")
    # an API key is configured: the page asks for it once and keeps it
    dialog_input = _wait(browser).until(ec.visibility_of_element_located((By.ID, "key-input")))
    dialog_input.send_keys(API_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    _wait(browser).until(lambda d: len(_rows(d)) == len(runs))
    _wait(browser).until(lambda d: {row.get_attribute("data-run-id") for row in _rows(d)} == set(by_kind.values()))
    _wait(browser).until(lambda d: "awaiting approval" in d.find_element(By.ID, "runs-table").text)
    assert "payout mismatch" in browser.find_element(By.ID, "runs-table").text
    _wait(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-latency svg polyline, #chart-latency svg circle")
    )
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#approvals-list .approval"))
    assert browser.execute_script("return localStorage.getItem('switchboard.apiKey')") == API_KEY
    _shot(browser, "overview")

    # filters: only the run that waits for a decision
    _click(browser, "#run-filters select[name=status] option[value=awaiting_approval]")
    _wait(browser).until(lambda d: [r.get_attribute("data-run-id") for r in _rows(d)] == [approval_run])
    _click(browser, "#run-filters select[name=status] option[value='']")
    _wait(browser).until(lambda d: len(_rows(d)) == len(runs))

    # a run page: steps, timeline, tool calls
    payout_run = by_kind["stripe_payout_mismatch"]
    _click(browser, f"tr[data-run-id='{payout_run}'] a[data-run-link]")
    _wait(browser).until(lambda d: d.current_url.endswith(f"/dashboard/runs/{payout_run}"))
    steps = _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#run-steps .step") or None)
    assert [s.get_attribute("data-step") for s in steps] == ["watcher", "analyst", "advisor"]
    assert all("done" in s.find_element(By.CSS_SELECTOR, ".pill").text for s in steps)
    tool_rows = browser.find_elements(By.CSS_SELECTOR, "#tool-calls tbody tr")
    assert len(tool_rows) == 1 and "llm:get_record" in tool_rows[0].text and "done" in tool_rows[0].text
    assert browser.find_element(By.ID, "run-id").text == payout_run
    assert browser.find_elements(By.CSS_SELECTOR, ".timeline svg rect")
    assert browser.find_element(By.ID, "replay-button").get_attribute("disabled") is not None  # not failed
    steps[0].find_element(By.CSS_SELECTOR, "details summary").click()  # the watcher's input payload
    assert "alert" in steps[0].find_element(By.CSS_SELECTOR, "pre.json").text
    _shot(browser, "run")

    # approve the pending high-risk action from the overview, then see it executed on its run page
    _click(browser, "a.back")
    _wait(browser).until(lambda d: "draft customer message" in d.find_element(By.ID, "approvals-list").text)
    assert "high" in browser.find_element(By.CSS_SELECTOR, "#approvals-list .approval").text
    _click(browser, "#approvals-list button.approve")
    _wait(browser).until(lambda d: "approved" in d.find_element(By.ID, "flash").text)
    _wait(browser, 30).until(lambda d: "Nothing is waiting" in d.find_element(By.ID, "approvals-list").text)
    browser.get(f"{server}/dashboard/runs/{approval_run}")
    _wait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#run-actions tr[data-action='draft_customer_message']")
    )
    _wait(browser, 30).until(lambda d: "executed" in d.find_element(By.CSS_SELECTOR, "#run-approvals tbody").text)
    _wait(browser, 30).until(lambda d: "done" in d.find_element(By.CSS_SELECTOR, ".run-meta").text)
    assert "api" in browser.find_element(By.CSS_SELECTOR, "#run-approvals tbody").text  # decided by the API
    _shot(browser, "approved")

    severe = [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and "401 (Unauthorized)" not in entry["message"]
    ]
    assert severe == [], severe
