"""Signing in to the UI in a real headless Chromium against a real ``spindle serve`` in basic
mode: a page asked for leads to the sign-in form and back, you see only your own runs (and
someone else's run page is a 404), a run page follows its run through the event stream on
the session cookie alone, and signing out ends it all."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.api.conftest import WES, example_form
from tests.cli.test_tokens_cli import ok, spindle
from tests.live import running_server
from tests.web.test_browser import RUN_TIMEOUT, browser

__all__ = ["browser"]  # the module-scoped Chromium, a fixture

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PASSWORDS = {"alice": "alice in the browser", "bob": "bob in the browser"}


def basic(name: str) -> dict[str, str]:
    raw = f"{name}:{PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A basic-mode server whose users are alice and bob (an admin)."""
    workdir = tmp_path_factory.mktemp("browser-signin")
    env = {"SPINDLE_DATA_DIR": str(workdir / "data"), "SPINDLE_CONFIG": str(workdir / "x.toml")}
    ok(spindle("db", "upgrade", env=env))
    ok(spindle("users", "add", "alice", input=PASSWORDS["alice"] + "\n", env=env))
    ok(spindle("users", "add", "bob", "--admin", input=PASSWORDS["bob"] + "\n", env=env))
    with running_server(workdir, env={"SPINDLE_AUTH": "basic"}, headers=basic("bob")) as url:
        yield url


def submit(server: str, user: str, tag: str) -> str:
    data, files = example_form("snakemake", "fail", tags={"who": tag})
    r = httpx.post(f"{server}{WES}/runs", data=data, files=files, headers=basic(user), timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def test_sign_in_see_only_your_runs_and_sign_out(
    server: str, browser: Browser, snakemake_exe: str
) -> None:
    mine = submit(server, "alice", "alice")
    theirs = submit(server, "bob", "bob")
    context = browser.new_context(base_url=server, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page: Page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        # a page asked for leads to the sign-in form, which leads back to it
        page.goto("/runs?state=QUEUED&state=INITIALIZING&state=RUNNING&state=EXECUTOR_ERROR")
        expect(page).to_have_url(re.compile(r".*/login\?next=%2Fruns%3Fstate%3DQUEUED.*"))
        expect(page.locator("h1")).to_have_text("Sign in")
        expect(page.locator("header #user")).to_have_count(0)
        page.fill("#name", "alice")
        page.fill("#password", "not the password")
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#signin-error")).to_have_text(
            "The user name or password is not right."
        )
        assert [p for p in problems if "401" not in p] == []  # (the refused POST's status)
        problems.clear()
        expect(page.locator("#name")).to_have_value("alice")
        page.fill("#password", PASSWORDS["alice"])
        page.click("#signin-form button[type=submit]")
        expect(page).to_have_url(re.compile(r".*/runs\?state=QUEUED&state=INITIALIZING.*"))
        session = [c for c in context.cookies() if c["name"] == "spindle_session"]
        assert len(session) == 1
        assert (session[0]["httpOnly"], session[0]["sameSite"]) == (True, "Lax")

        # the header says who, and only alice's run is listed
        expect(page.locator("header #user .name")).to_have_text("alice")
        expect(page.locator("header #user .badge")).to_have_count(0)
        expect(page.locator(f"#run-{mine}")).to_be_visible()
        expect(page.locator(f"#run-{theirs}")).to_have_count(0)
        page.goto("/runs")
        expect(page.locator("#runs-table tbody tr")).to_have_count(1)

        # her run's page follows the run through the event stream, with the cookie alone
        page.click(f"#run-{mine} a")
        expect(page.locator("#run-state")).to_have_attribute(
            "data-state", "EXECUTOR_ERROR", timeout=RUN_TIMEOUT
        )
        expect(page.locator("#timeline .badge").last).to_have_text("EXECUTOR_ERROR")

        # someone else's run is not there for her
        answer = page.goto(f"/runs/{theirs}")
        assert answer is not None
        assert answer.status == 404
        expect(page.locator("h1")).to_have_text("404 · Not Found")
        assert [p for p in problems if "404" not in p] == []
        problems.clear()

        # signing out ends it: the next page leads to the sign-in form again
        page.goto("/")
        page.click("header form.signout button")
        expect(page).to_have_url(re.compile(r".*/login$"))
        assert [c for c in context.cookies() if c["name"] == "spindle_session"] == []
        page.goto("/runs")
        expect(page).to_have_url(re.compile(r".*/login\?next=%2Fruns$"))
        assert problems == []
    finally:
        context.close()


def test_an_admin_reads_the_audit_log(server: str, browser: Browser) -> None:
    """The audit log page in Chromium: an admin finds it in the navigation, sees who was
    made and who signed in, and filters by a kind of action."""
    context = browser.new_context(base_url=server, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(30_000)
    page: Page = context.new_page()
    try:
        page.goto("/login")
        page.fill("#name", "bob")
        page.fill("#password", PASSWORDS["bob"])
        page.click("#signin-form button[type=submit]")
        page.click("header nav a[href='/audit']")
        expect(page).to_have_url(re.compile(r".*/audit$"))
        expect(page.locator("h1")).to_have_text("Audit log")
        made = page.locator("#audit tbody tr[data-action='user.create']")
        expect(made).to_have_count(2)  # alice and bob, by `spindle users add`
        expect(made.first).to_contain_text("cli:")
        page.fill("#audit-filters input[name=action]", "signin.")
        page.click("#audit-filters button[type=submit]")
        expect(page).to_have_url(re.compile(r".*/audit\?action=signin\..*"))
        signed_in = page.locator("#audit tbody tr[data-action='signin.success']")
        expect(signed_in.first).to_contain_text("bob")
        actions = page.locator("#audit tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.action)"
        )
        assert actions
        assert all(a.startswith("signin.") for a in actions)
    finally:
        context.close()
