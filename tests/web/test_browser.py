"""The UI end to end in a real headless Chromium (Debian's, driven by Playwright) against a
real ``spindle serve``: what only a browser shows, such as pages that follow a run without
being reloaded.

Never ``playwright install``: the browser is the Debian package (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect, sync_playwright

from tests.api.conftest import WES, example_form
from tests.live import live_server
from tests.support import EXAMPLES, missing

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
#: ms a run of the example workflows may take to reach a state the test waits for
RUN_TIMEOUT = 120_000
RUN_URL = re.compile(r".*/runs/[0-9a-f-]{36}$")

pytestmark = [pytest.mark.engine, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A fresh browser tab on the live server. Script errors and console errors (a blocked
    script or style would be one) fail the test."""
    context = browser.new_context(
        base_url=live_server, viewport={"width": 1366, "height": 900}, accept_downloads=True
    )
    context.set_default_timeout(30_000)
    tab = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield tab
    finally:
        context.close()
    assert problems == []


def api_submit(server: str, name: str, **kw: object) -> str:
    data, files = example_form("snakemake", name, **kw)  # type: ignore[arg-type]
    r = httpx.post(f"{server}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def mark_page(page: Page) -> None:
    """Leave a mark in the page's window: a reload would wipe it."""
    page.evaluate("window.spindleTestMark = 'still here'")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.spindleTestMark") == "still here"


def test_submit_follow_open_a_task_log_and_download(page: Page, snakemake_exe: str) -> None:
    folder = EXAMPLES / "snakemake" / "wordcount"
    page.goto("/submit")
    page.set_input_files("#workflow_folder", str(folder))
    # the chosen folder's files, with their paths inside it; the main file and type follow
    expect(page.locator("#chosen-files li")).to_have_text(
        ["Snakefile", "data/header.txt", "params.json", "rules/count.smk"]
    )
    expect(page.locator("#workflow_url")).to_have_value("Snakefile")
    expect(page.locator("#workflow")).to_have_value("SMK|9")
    page.fill("#workflow_params", (folder / "params.json").read_text())
    page.fill("#tags", "project=browser")
    page.click("#submit-run")
    page.wait_for_url(RUN_URL)
    run_id = page.url.rsplit("/", 1)[1]
    mark_page(page)

    # the page follows the run to its end without being reloaded
    expect(page.locator("#run-state")).to_have_attribute(
        "data-state", "COMPLETE", timeout=RUN_TIMEOUT
    )
    assert_not_reloaded(page)
    expect(page.locator("#timeline .badge")).to_have_text(
        ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]
    )
    expect(page.locator("#progress")).to_contain_text("5 of 5 tasks done")
    expect(page.locator("#tasks tbody tr")).to_have_count(5)
    expect(page.locator("#log-stdout")).to_contain_text("counting alpha")
    expect(page.locator("#log-stdout")).to_contain_text("Hello from summary")
    expect(page.locator("#log-stderr")).to_contain_text("steps (100%) done")
    expect(page.locator("#cancel-run")).to_have_count(0)
    expect(page.locator("dl.request .tags a.tag")).to_have_attribute(
        "href", "/runs?tag=project%3Dbrowser"
    )

    # a task's log
    page.click("#tasks a:text-is('count[sample=alpha]')")
    page.wait_for_url(re.compile(rf".*/runs/{run_id}/tasks/[^/]+$"))
    expect(page.locator("h1")).to_have_text("Task count[sample=alpha]")
    expect(page.locator("#log-stdout")).to_contain_text("counting alpha")
    expect(page.locator("#log-stdout")).not_to_contain_text("counting beta")
    expect(page.locator("#log-stderr")).to_contain_text("count alpha on stderr")

    # an output, downloaded
    page.go_back()
    with page.expect_download() as download:
        page.click("#outputs a:text-is('results/summary.txt')")
    content = Path(download.value.path()).read_text()
    assert content.startswith("sample\twords\n")
    assert "results/alpha.count:4" in content
    assert download.value.suggested_filename == "summary.txt"


def test_cancel_a_long_run_from_its_page(page: Page, live_server: str, snakemake_exe: str) -> None:
    run_id = api_submit(live_server, "sleep", params={"seconds": 300}, tags={"project": "nap"})
    page.goto(f"/runs/{run_id}")
    mark_page(page)
    expect(page.locator("#run-state")).to_have_attribute(
        "data-state", "RUNNING", timeout=RUN_TIMEOUT
    )
    assert_not_reloaded(page)
    expect(page.locator("#log-stdout")).to_contain_text("sleeping 300s", timeout=RUN_TIMEOUT)
    assert_not_reloaded(page)

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    page.wait_for_url(f"**/runs/{run_id}")
    mark_page(page)  # the form reloaded the page; from here on it must not
    expect(page.locator("#run-state")).to_have_attribute(
        "data-state", "CANCELED", timeout=RUN_TIMEOUT
    )
    assert_not_reloaded(page)
    expect(page.locator("#cancel-run")).to_have_count(0)
    expect(page.locator("#timeline")).to_contain_text("cancel requested")
    status = httpx.get(f"{live_server}{WES}/runs/{run_id}/status", timeout=10).json()
    assert status["state"] == "CANCELED"


def test_a_cancel_that_is_not_confirmed_does_nothing(
    page: Page, live_server: str, snakemake_exe: str
) -> None:
    run_id = api_submit(live_server, "sleep", params={"seconds": 300})
    page.goto(f"/runs/{run_id}")
    mark_page(page)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("#cancel-run")
    page.wait_for_timeout(500)
    assert dialogs == ["Cancel this run?"]
    assert_not_reloaded(page)  # the form was not sent
    status = httpx.get(f"{live_server}{WES}/runs/{run_id}/status", timeout=10).json()
    assert status["state"] in {"QUEUED", "INITIALIZING", "RUNNING"}
    httpx.post(f"{live_server}{WES}/runs/{run_id}/cancel", timeout=10)


def test_runs_table_filters_and_follows_runs(
    page: Page, live_server: str, snakemake_exe: str
) -> None:
    failing = api_submit(live_server, "fail", tags={"suite": "filter-a"})
    sleeping = api_submit(live_server, "sleep", params={"seconds": 300}, tags={"suite": "filter-b"})
    page.goto("/runs")
    mark_page(page)
    rows = page.locator("#runs-table tbody tr")
    expect(page.locator(f"#run-{failing}")).to_be_visible()
    expect(page.locator(f"#run-{sleeping}")).to_be_visible()

    # rows follow their runs while the page stays
    expect(page.locator(f"#run-{failing}")).to_have_attribute(
        "data-state", "EXECUTOR_ERROR", timeout=RUN_TIMEOUT
    )
    expect(page.locator(f"#run-{sleeping}")).to_have_attribute(
        "data-state", "RUNNING", timeout=RUN_TIMEOUT
    )
    httpx.post(f"{live_server}{WES}/runs/{sleeping}/cancel", timeout=10)
    expect(page.locator(f"#run-{sleeping} .badge")).to_have_text("CANCELED", timeout=RUN_TIMEOUT)
    assert_not_reloaded(page)

    # a run submitted elsewhere is announced on the first page
    notice = page.locator("[data-new-runs]")
    expect(notice).to_be_hidden()
    data, files = example_form("snakemake", "fail", tags={"suite": "filter-c"})
    httpx.post(f"{live_server}{WES}/runs", data=data, files=files, timeout=30)
    expect(notice).to_be_visible(timeout=RUN_TIMEOUT)

    # the filters narrow the table in place, and the address follows them
    page.fill("input[name=tag]", "suite=filter-a")
    expect(rows).to_have_count(1)
    expect(page.locator(f"#run-{failing}")).to_be_visible()
    expect(page).to_have_url(re.compile(r".*/runs\?.*tag=suite%3Dfilter-a"))
    page.fill("input[name=tag]", "")
    page.check("input[name=state][value=CANCELED]")
    expect(page.locator(f"#run-{sleeping}")).to_be_visible()
    expect(page.locator(f"#run-{failing}")).to_have_count(0)
    assert all(
        state == "CANCELED"
        for state in page.locator("#runs-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.state)"
        )
    )
    page.fill("input[name=q]", sleeping[:8])
    # (one row shows before the search is sent too: wait for the address it leads to)
    expect(page).to_have_url(re.compile(rf".*/runs\?.*q={sleeping[:8]}"))
    expect(rows).to_have_count(1)
    assert_not_reloaded(page)
    # the filtered address is a page of its own
    page.reload()
    expect(rows).to_have_count(1)
    expect(page.locator("input[name=q]")).to_have_value(sleeping[:8])
    expect(page.locator("input[name=state][value=CANCELED]")).to_be_checked()


def test_pages_fit_a_laptop_screen(page: Page, live_server: str, snakemake_exe: str) -> None:
    """At 1280 px nothing but the tables' own boxes scrolls sideways."""
    run_id = api_submit(live_server, "fail", tags={"a-rather-long-tag-key": "and a long value"})
    page.set_viewport_size({"width": 1280, "height": 800})
    for path in ("/", "/runs", "/submit", f"/runs/{run_id}"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, (path, width)
