"""The dashboard end to end in Debian's headless Chromium (Selenium, the system chromedriver —
nothing is downloaded): real runs through the worker, a real uvicorn server, an API key typed
into the page, the runs table, a run page with its steps and tool calls, and a high-risk action
approved in the browser and then shown executed. Screenshots go to test-artifacts/.

A missing browser fails the test (never skips): `make test` installs chromium and
chromium-driver (scripts/ensure-services.sh)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select

from switchboard.api.app import create_app
from switchboard.contracts import describe_action
from switchboard.db.models import AgentStep, Approval, EvalResult, EvalRun, ProactiveInsight
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import APPROVAL_KIND
from switchboard.settings import get_settings
from tests.support.api import serve
from tests.support.observability import run_demo_and_approval_scenario
from tests.support.runs import empty_tables

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS: dict[str, Path] = {}  # where this test's screenshots go: its own tmp directory


@pytest.fixture(autouse=True)
def _screenshots_in_tmp(tmp_path: Path) -> None:
    SHOTS["dir"] = tmp_path / "screenshots"


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


class RequestLog:
    """ASGI wrapper that notes each request's method, path and status (what reached the server)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noting(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting if scope["type"] == "http" else send)


@pytest.fixture()
def server(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The API with an operator key configured; yields its base URL."""
    empty_tables(database_url)
    monkeypatch.setenv("SWITCHBOARD_OPERATOR_KEYS", API_KEY)
    monkeypatch.setenv("SWITCHBOARD_DASHBOARD_REFRESH_S", "1")
    get_settings.cache_clear()
    with serve(create_app()) as url:
        yield url
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
    SHOTS["dir"].mkdir(exist_ok=True)
    path = SHOTS["dir"] / f"dashboard-{name}.png"
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
    # the charts are Chart.js canvases with their data; the queue panel says it is empty in words
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-latency canvas"))
    drawn = browser.execute_script(
        "return Object.fromEntries(['#chart-latency', '#chart-outcomes', '#chart-queues'].map((id) => {"
        " const c = Chart.getChart(document.querySelector(id + ' canvas'));"
        " return [id, c ? c.data.datasets.map((d) => [d.label, d.data]) : null]; }))"
    )
    outcome_series = dict(drawn["#chart-outcomes"])
    assert sum(outcome_series["awaiting approval"]) == 1 and sum(outcome_series["succeeded"]) == len(runs) - 1
    assert {label for label, _ in drawn["#chart-latency"]} >= {"watcher p50", "analyst p95", "advisor p50"}
    assert "0 tokens" not in browser.find_element(By.ID, "chart-usage").text
    assert "no model tokens used" in browser.find_element(By.ID, "chart-usage").text  # offline: said in words
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
    # the page leads with the answer: root cause with confidence, narrative, evidence, the plan
    with session_scope() as session:
        outputs = {s.step: s.output for s in session.scalars(select(AgentStep).where(AgentStep.run_id == payout_run))}
    analysis, plan = outputs["analyst"], outputs["advisor"]
    answer = browser.find_element(By.ID, "run-answer")
    assert answer.location["y"] < browser.find_element(By.ID, "run-steps").location["y"]
    assert browser.find_element(By.ID, "answer-root-cause").text == analysis["root_cause"].replace("_", " ")
    assert f"confidence {round(analysis['confidence'] * 100)}%" in answer.text
    assert browser.find_element(By.ID, "answer-narrative").text == analysis["narrative"].strip()
    cited = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#answer-evidence .evidence-id")]
    assert cited == analysis["evidence_ids"] and cited
    _click(browser, f"#answer-evidence a[data-evidence='{cited[0]}']")  # evidence opens the record it names
    record = _wait(browser).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#answer-record [data-record='{cited[0]}']")
    )
    assert cited[0] in record[0].text and "stripe" in record[0].text
    assert browser.find_element(By.ID, "answer-rationale").text == plan["rationale"].strip()
    planned = browser.find_elements(By.CSS_SELECTOR, "#answer-actions .planned-action")
    assert [p.get_attribute("data-planned-action") for p in planned] == [a["type"] for a in plan["actions"]]
    for element, action in zip(planned, plan["actions"], strict=True):  # each action's full content
        assert action["reason"] in element.text
    assert browser.find_elements(By.CSS_SELECTOR, ".timeline svg rect")
    assert not browser.find_elements(By.ID, "replay-button")  # not failed: nothing to replay
    steps[0].find_element(By.CSS_SELECTOR, "details summary").click()  # the watcher's input payload
    assert "alert" in steps[0].find_element(By.CSS_SELECTOR, "pre.json").text
    _shot(browser, "run")

    # approve the pending high-risk action from the overview, then see it executed on its run page
    browser.execute_script("window.scrollTo(0, 0)")  # the back link sits under the sticky header otherwise
    _click(browser, "a.back")
    _wait(browser).until(lambda d: "draft customer message" in d.find_element(By.ID, "approvals-list").text)
    assert "high" in browser.find_element(By.CSS_SELECTOR, "#approvals-list .approval").text
    # what will be done, to whom and why — in full, not cut at 200 characters
    with session_scope() as session:
        [pending] = session.scalars(select(Approval).where(Approval.status == "pending")).all()
        expected_summary = describe_action(pending.action_type, pending.action)
    shown_summary = browser.find_element(By.CSS_SELECTOR, "#approvals-list .approval .summary").text
    assert shown_summary == expected_summary and pending.action["body"] in shown_summary
    assert "hubspot contact" in shown_summary and "— why:" in shown_summary
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


def test_the_insights_page_acknowledges_snoozes_and_resolves(server: str, browser: WebDriver) -> None:
    run_demo_and_approval_scenario()
    with session_scope() as session:
        ids = {i.kind: i.id for i in session.scalars(select(ProactiveInsight))}
    browser.get(f"{server}/dashboard/insights")
    _wait(browser).until(ec.visibility_of_element_located((By.ID, "key-input"))).send_keys(API_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    rows = "#insights-table tbody tr[data-insight-id]"
    _wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == len(ids))
    _wait(browser).until(lambda d: d.find_element(By.ID, "insights-badge").text == str(len(ids)))
    _shot(browser, "insights")

    def row(kind: str) -> WebElement:
        return browser.find_element(By.CSS_SELECTOR, f"tr[data-insight-id='{ids[kind]}']")

    assert "hubspot deal without owner" in row("hubspot_deal_without_owner").text
    _click(browser, f"tr[data-insight-id='{ids['hubspot_deal_without_owner']}'] [data-triage=acknowledge]")
    _wait(browser).until(lambda d: "acknowledged by api" in row("hubspot_deal_without_owner").text)

    _click(browser, f"tr[data-insight-id='{ids['calls_connect_rate_drop']}'] [data-triage=snooze]")
    prompt = _wait(browser).until(ec.alert_is_present())
    prompt.send_keys("1d")
    prompt.accept()
    _wait(browser).until(lambda d: "snoozed until" in row("calls_connect_rate_drop").text)

    _click(browser, f"tr[data-insight-id='{ids['stripe_payout_mismatch']}'] [data-triage=resolve]")
    prompt = _wait(browser).until(ec.alert_is_present())
    prompt.send_keys("payout corrected by finance")
    prompt.accept()
    _wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == len(ids) - 1)  # open only
    _wait(browser).until(lambda d: d.find_element(By.ID, "insights-badge").text == str(len(ids) - 1))
    _click(browser, "#insight-filters select[name=status] option[value=resolved]")
    _wait(browser).until(lambda d: "payout corrected by finance" in d.find_element(By.ID, "insights-table").text)
    _shot(browser, "insights-resolved")

    with session_scope() as session:
        found = {i.kind: i for i in session.scalars(select(ProactiveInsight))}
    assert found["hubspot_deal_without_owner"].acknowledged_by == "api"
    snoozed = found["calls_connect_rate_drop"].snoozed_until
    assert snoozed is not None and snoozed > dt.datetime.now(dt.UTC) + dt.timedelta(hours=23)
    resolved = found["stripe_payout_mismatch"]
    assert resolved.cleared_by == "api" and resolved.note == "payout corrected by finance"
    # the Evals page in the same frame: an eval run and its scenarios
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        scores = {"root_cause_accuracy": 1.0, "scenarios": 1, "scenarios_passed": 1, "by_suite": {}}
        run = EvalRun(suite="calls", provider="offline", model="offline-rules-v1", status="done", trigger="manual",
                      started_at=now, finished_at=now, scores=scores)  # fmt: skip
        session.add(run)
        session.flush()
        eval_id = run.id
        session.add(EvalResult(eval_run_id=eval_id, scenario="calls_connect_drop_bad_list", category="calls",
                               passed=True, scores={}, details={"problems": []}))  # fmt: skip
    _click(browser, "nav a[href='/dashboard/evals']")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#evals-history tr[data-eval-id='{eval_id}']"))
    assert "100%" in browser.find_element(By.CSS_SELECTOR, f"tr[data-eval-id='{eval_id}']").text
    _wait(browser).until(lambda d: "calls_connect_drop_bad_list" in d.find_element(By.ID, "evals-latest").text)
    assert browser.find_element(By.ID, "insights-badge").text == str(len(ids) - 1)  # the same header
    _shot(browser, "evals")
    severe = [e["message"] for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "401 (Unauthorized)" not in e["message"]]  # fmt: skip
    assert severe == [], severe


ATTACK_PAGE = """<!doctype html><html><body>
<h1>A page on another origin</h1>
<iframe name="sink" id="sink" width="300" height="80"></iframe>
<form id="forged" method="POST" action="{api}/api/approvals/{approval}/approve" target="sink"></form>
<iframe id="framed" src="{api}/dashboard" width="1200" height="700"></iframe>
<script>
  window.done = {{ form: false, reject: false, replay: false }};
  document.getElementById("sink").addEventListener("load", () => {{ window.done.form = true; }});
  document.getElementById("forged").submit();
  const forge = (path, name) => fetch("{api}" + path, {{
    method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }}, body: "{{}}",
  }}).finally(() => {{ window.done[name] = true; }});
  forge("/api/approvals/{approval}/reject", "reject");
  forge("/api/runs/{failed_run}/replay", "replay");
</script></body></html>"""


def test_a_page_on_another_origin_cannot_approve_reject_replay_or_frame_the_dashboard(
    database_url: str, celery_worker: object, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's default mode (no keys: loopback clients only), where the operator's own
    browser is a loopback client: only the same-origin rule stands between a web page and the
    approvals."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from switchboard.approvals import list_approvals
    from switchboard.db.queries import recent_runs
    from tests.support.runs import failed_run

    empty_tables(database_url)
    monkeypatch.setenv("SWITCHBOARD_DASHBOARD_REFRESH_S", "1")
    get_settings.cache_clear()
    run_demo_and_approval_scenario()
    [pending] = list_approvals("pending")
    broken = failed_run()
    runs_before = {str(run["run_id"]): run["status"] for run in recent_runs()}

    api = RequestLog(create_app())
    with serve(api) as api_url:
        page = ATTACK_PAGE.format(api=api_url, approval=pending.id, failed_run=broken)
        attacker = Starlette(routes=[Route("/", lambda request: HTMLResponse(page))])
        with serve(attacker) as attacker_url:
            attacker_origin = attacker_url.replace("127.0.0.1", "localhost")  # another site: localhost vs 127.0.0.1
            browser.get(attacker_origin + "/")
            _wait(browser).until(lambda d: d.execute_script("return Object.values(window.done).every(Boolean)"))
            refused = {(method, path, status) for method, path, status in api.seen if method == "POST"}
            assert refused == {
                ("POST", f"/api/approvals/{pending.id}/approve", 403),
                ("POST", f"/api/approvals/{pending.id}/reject", 403),
                ("POST", f"/api/runs/{broken}/replay", 403),
            }
            # framing: the dashboard does not render inside another site's page
            browser.switch_to.frame(browser.find_element(By.ID, "framed"))
            assert browser.find_elements(By.CSS_SELECTOR, "button, #approvals-list, #runs-table") == []
            browser.switch_to.default_content()
            _shot(browser, "attack-page")

        # nothing changed: the approval still waits, the failed run was not replayed
        assert [(a.id, a.status) for a in list_approvals("pending")] == [(pending.id, "pending")]
        time.sleep(1.0)  # a replay, had one been queued, would have started by now
        assert {str(run["run_id"]): run["status"] for run in recent_runs()} == runs_before

        # a DNS-rebinding name reaching this server is refused
        rebound = httpx.get(f"{api_url}/api/runs", headers={"Host": "attacker.example"})
        assert rebound.status_code == 400

        # the operator's own dashboard, same origin, still decides
        browser.get(f"{api_url}/dashboard")
        _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#approvals-list button.approve"))
        _click(browser, "#approvals-list button.approve")
        _wait(browser).until(lambda d: "approved" in d.find_element(By.ID, "flash").text)
        assert ("POST", f"/api/approvals/{pending.id}/approve", 202) in api.seen
    get_settings.cache_clear()


def test_the_printed_link_hands_the_local_key_to_the_dashboard_and_leaves_the_address(
    database_url: str, celery_worker: object, browser: WebDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from switchboard.processes import api_command

    empty_tables(database_url)
    _argv, env, link = api_command(get_settings())  # what `switchboard standalone` prints and sets
    key = env["SWITCHBOARD_LOCAL_OPERATOR_KEY"]
    monkeypatch.setenv("SWITCHBOARD_LOCAL_OPERATOR_KEY", key)
    get_settings.cache_clear()
    with serve(create_app()) as url:
        assert httpx.get(f"{url}/api/runs").status_code == 401  # loopback alone no longer suffices
        browser.get(url + link[link.index("/dashboard") :])
        _wait(browser).until(lambda d: "No runs" in d.find_element(By.ID, "runs-table").text)
        assert browser.execute_script("return localStorage.getItem('switchboard.apiKey')") == key
        assert browser.current_url == f"{url}/dashboard"  # the key left the address bar and history
        assert not browser.find_element(By.ID, "key-dialog").get_attribute("open")
    monkeypatch.undo()
    get_settings.cache_clear()
