"""Run groups in a real headless Chromium against a real ``spindle serve``: make a group with
the form, submit the example workflow into it with the submit form's picker and watch the
group page follow the run to COMPLETE without a reload; hold a second run back with
``max_runs = 1`` and cancel both from the group page."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import WES, example_form
from tests.live import live_server
from tests.support import EXAMPLES
from tests.web.test_browser import (
    RUN_TIMEOUT,
    RUN_URL,
    assert_not_reloaded,
    browser,
    mark_page,
    page,
)

__all__ = ["browser", "live_server", "page"]  # fixtures, imported so pytest finds them here

pytestmark = [pytest.mark.engine, pytest.mark.slow]

GROUP_URL = re.compile(r".*/groups/[0-9a-f-]{36}$")


def make_group(page: Page, name: str, **limits: str) -> str:
    """A group made through the form from the groups table; its id."""
    page.goto("/groups")
    page.click("#new-group")
    page.wait_for_url("**/groups/new")
    page.fill("#name", name)
    for field, value in limits.items():
        page.fill(f"#{field}", value)
    page.click("#save-group")
    page.wait_for_url(GROUP_URL)
    expect(page.locator("#group-name")).to_have_text(name)
    return page.url.rsplit("/", 1)[1]


def submit_into(server: str, group_id: str, name: str, **kw: object) -> str:
    data, files = example_form("snakemake", name, **kw)  # type: ignore[arg-type]
    data["run_group_id"] = group_id
    r = httpx.post(f"{server}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def test_make_a_group_submit_into_it_and_follow_the_run(page: Page, snakemake_exe: str) -> None:
    group_id = make_group(page, "browser batch", max_runs="2", max_duration="30")
    expect(page.locator("#limit-runs")).to_have_text("2")
    expect(page.locator("#limit-duration")).to_have_text("30 min")
    expect(page.locator("#usage-runs")).to_have_text("0 / 2")
    expect(page.locator("#runs .empty")).to_contain_text("No runs in this group yet.")
    # the new group is a row of the table
    page.goto("/groups")
    expect(page.locator(f"#group-{group_id} td.name")).to_have_text("browser batch")

    # the submit form's picker
    folder = EXAMPLES / "snakemake" / "wordcount"
    page.goto("/submit")
    expect(page.locator("#run_group_id")).to_have_value("")
    page.select_option("#run_group_id", label=f"browser batch ({group_id[:8]})")
    page.set_input_files("#workflow_folder", str(folder))
    expect(page.locator("#workflow_url")).to_have_value("Snakefile")
    page.fill("#workflow_params", (folder / "params.json").read_text())
    page.click("#submit-run")
    page.wait_for_url(RUN_URL)
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-group-link")).to_have_text("browser batch")

    # the group page follows the run to its end without being reloaded
    page.click("#run-group-link")
    page.wait_for_url(f"**/groups/{group_id}")
    mark_page(page)
    row = page.locator(f"#run-{run_id}")
    expect(row).to_be_visible()
    expect(row).to_have_attribute("data-state", "COMPLETE", timeout=RUN_TIMEOUT)
    assert_not_reloaded(page)
    expect(row.locator(".badge")).to_have_text("COMPLETE")
    expect(row.locator("td.started time")).to_have_count(1)
    expect(row.locator("td.ended time")).to_have_count(1)
    expect(row.locator("button")).to_have_count(0)  # no Cancel for a finished run
    expect(page.locator("#group-counts a[data-state=COMPLETE] .n")).to_have_text("1")
    expect(page.locator("#usage-runs")).to_have_text("0 / 2")
    assert_not_reloaded(page)

    # the row links to the run
    row.locator("td.mono a").click()
    page.wait_for_url(f"**/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "COMPLETE")

    # the pages fit a laptop screen
    page.set_viewport_size({"width": 1280, "height": 800})
    for path in ("/groups", f"/groups/{group_id}", f"/groups/{group_id}/edit", "/submit"):
        page.goto(path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, (path, width)


def test_a_full_group_holds_a_run_back_and_cancel_all_stops_both(
    page: Page, live_server: str, snakemake_exe: str
) -> None:
    group_id = make_group(page, "one at a time", max_runs="1")
    first = submit_into(live_server, group_id, "sleep", params={"seconds": 300})
    second = submit_into(live_server, group_id, "sleep", params={"seconds": 300})
    page.goto(f"/groups/{group_id}")
    mark_page(page)
    rows = page.locator("#group-runs tbody tr")
    expect(rows).to_have_count(2)

    # one runs, the other waits in QUEUED while the group is full
    running = page.locator("#group-runs tbody tr[data-state=RUNNING]")
    expect(running).to_have_count(1, timeout=RUN_TIMEOUT)
    assert_not_reloaded(page)
    expect(page.locator("#usage-runs")).to_have_text("1 / 1")
    expect(page.locator("#group-runs tbody tr[data-state=QUEUED]")).to_have_count(1)
    page.wait_for_timeout(2000)
    expect(page.locator("#group-runs tbody tr[data-state=QUEUED]")).to_have_count(1)
    states = {
        run_id: httpx.get(f"{live_server}{WES}/runs/{run_id}/status", timeout=10).json()["state"]
        for run_id in (first, second)
    }
    assert sorted(states.values()) == ["QUEUED", "RUNNING"]

    # cancel every unfinished run at once
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-all")
    page.wait_for_url(f"**/groups/{group_id}?canceled=2")
    expect(page.locator("#canceled-notice")).to_contain_text("2 unfinished runs")
    mark_page(page)  # the form reloaded the page; from here on it must not
    for run_id in (first, second):
        expect(page.locator(f"#run-{run_id}")).to_have_attribute(
            "data-state", "CANCELED", timeout=RUN_TIMEOUT
        )
    assert_not_reloaded(page)
    expect(page.locator("#group-runs button")).to_have_count(0)
    expect(page.locator("#usage-runs")).to_have_text("0 / 1")
    for run_id in (first, second):
        status = httpx.get(f"{live_server}{WES}/runs/{run_id}/status", timeout=10).json()
        assert status["state"] == "CANCELED"
