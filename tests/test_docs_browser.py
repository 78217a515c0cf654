"""GET /docs in a real headless browser (Debian's chromium, driven by selenium with Debian's chromedriver):
the page renders every route, "Try it out" on a predictor executes and shows a 200, and the page asks no host
but the server for anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support.prom import value
from support.servers import RunningServer, gunicorn

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.server,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium and chromedriver not installed (Debian packages 'chromium' and 'chromium-driver'; "
        "scripts/install-system-deps)",
    ),
]

TIMEOUT_S = 30


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--window-size=1280,2000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium never looks for (or downloads) a driver of its own.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with gunicorn("observed_app:app", worker_class="gthread", workers=1) as running:
        yield running


def test_docs_page_renders_and_try_it_out_calls_the_predictor(browser: Any, server: RunningServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT_S)
    browser.get(f"{server.url}/docs")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    for path in ("/echo", "/sum", "/boom", "/health/live", "/health/ready", "/metrics", "/openapi.json",
                 "/v2/models/sum/infer"):
        assert path in paths, sorted(paths)
    assert "Mest" in browser.find_element(By.CSS_SELECTOR, ".info .title").text

    operation = browser.find_element(By.ID, "operations-models-post_sum")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda _: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    body = wait.until(lambda _: operation.find_element(By.CSS_SELECTOR, "textarea.body-param__text"))
    assert '"features"' in body.get_attribute("value")  # pre-filled with the predictor's example
    operation.find_element(By.CSS_SELECTOR, "button.execute").click()
    status = wait.until(
        lambda _: operation.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")
    )
    assert status.text.strip().startswith("200"), status.text
    shown = wait.until(
        lambda _: operation.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre")
    )
    assert '"total": 4' in shown.text, shown.get_attribute("outerHTML")

    # Every resource the page loaded or fetched came from the server itself.
    origin = urlsplit(server.url).netloc
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loaded nothing?"
    assert {urlsplit(url).netloc for url in resources} == {origin}, resources
    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert problems == [], problems

    # The call really reached the predictor.
    metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
    assert value(metrics, "mest_requests_total", model="sum", route="/sum", method="POST", status="200") >= 1
