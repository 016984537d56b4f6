"""The run group pages, read by structure: the table of groups (sort, search, pages), a
group's page (limits, usage, its runs and their buttons), the create/edit form and its errors
next to the fields, delete, cancel one or all runs, the submit form's group picker, the run
page's link to its group, and someone else's group as the 404 page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle.config import Settings
from spindle.domain import Caller, RunGroup, State
from spindle.engines.registry import Catalog
from spindle.runs.groups import GroupService
from spindle.web import groups as group_pages
from tests.runs import local_user_id
from tests.web.conftest import (
    ADMIN,
    Site,
    add_run,
    basic_site,
    browser,
    csrf_token,
    sign_in,
    text,
)

ACTIVE = (State.INITIALIZING, State.RUNNING)
WORKFLOW = b"rule all:\n    shell: 'true'\n"


def groups_of(site: Site) -> GroupService:
    service: GroupService = site.app.state.groups
    return service


async def make_group(site: Site, **fields: Any) -> RunGroup:
    """A group of the local user's (the caller of every request in ``auth = "none"``)."""
    caller = await local_caller(site)
    return await groups_of(site).create({"name": "batch", **fields}, caller=caller)


async def local_caller(site: Site) -> Caller:
    async with site.service.db.connect() as conn:
        return Caller(user_id=await local_user_id(conn), name="local")


def field_errors(page: BeautifulSoup) -> dict[str, str]:
    return {
        str(p["id"]).removesuffix("-error"): p.get_text(strip=True)
        for p in page.select(".field-error[id]")
    }


def html(r: httpx.Response) -> BeautifulSoup:
    return BeautifulSoup(r.text, "html.parser")


async def post_form(
    site: Site, page_path: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """A form sent as a browser sends it: the page first, for its CSRF token."""
    token = csrf_token(await site.page(page_path))
    return await site.client.post(action, data={"csrf_token": token, **data})


def group_rows(page: BeautifulSoup) -> list[str]:
    return [str(tr["data-group-id"]) for tr in page.select("#groups-table tbody tr")]


def run_rows(page: BeautifulSoup) -> dict[str, str]:
    return {
        str(tr["data-run-id"]): str(tr["data-state"]) for tr in page.select("#group-runs tbody tr")
    }


# --- the table of groups --------------------------------------------------------------------


async def test_groups_table_shows_limits_counts_and_links(site: Site) -> None:
    db = site.service.db
    limited = await make_group(
        site, name="cohort A", description="first cohort", max_runs=2, max_cpus=8, max_duration=90
    )
    open_ = await make_group(site, name="open batch")
    await add_run(db, group_id=limited.id)
    await add_run(db, group_id=limited.id)
    await add_run(db, path=ACTIVE, group_id=limited.id)
    await add_run(db, path=(*ACTIVE, State.COMPLETE), group_id=limited.id)
    await add_run(db)  # in no group

    page = await site.page("/groups")
    assert text(page, "h1") == "Run groups"
    nav = page.select_one("header nav a[aria-current]")
    assert nav is not None
    assert nav.get_text(strip=True) == "Run groups"
    assert nav["href"] == "/groups"
    new = page.select_one("a#new-group")
    assert new is not None
    assert new["href"] == "/groups/new"
    # newest first
    assert group_rows(page) == [open_.id, limited.id]

    row = page.select_one(f"#group-{limited.id}")
    assert row is not None
    link = row.select_one("td.mono a")
    assert link is not None
    assert link["href"] == f"/groups/{limited.id}"
    assert link.get_text() == limited.id[:8]
    assert text(row, "td.name") == "cohort A"
    assert text(row, "td.description") == "first cohort"
    assert text(row, "td.max-runs") == "2"
    assert text(row, "td.max-cpus") == "8"
    assert text(row, "td.max-duration") == "90 min (1 h 30 m)"
    counts = {str(a["data-state"]): text(a, ".n") for a in row.select("td.counts a.badge")}
    assert counts == {"QUEUED": "2", "RUNNING": "1", "COMPLETE": "1"}
    badge = row.select_one("td.counts a.badge[data-state=QUEUED]")
    assert badge is not None
    assert badge["href"] == f"/groups/{limited.id}?state=QUEUED"
    assert row.select_one("time[datetime]") is not None

    other = page.select_one(f"#group-{open_.id}")
    assert other is not None
    assert text(other, "td.max-runs") == "—"
    assert text(other, "td.max-duration") == "—"
    assert text(other, "td.counts") == "no runs"


async def test_groups_table_sorts_searches_and_pages(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_pages, "PAGE_SIZE", 2)
    made = [await make_group(site, name=name) for name in ("delta", "alpha", "charlie", "bravo")]
    by_name = sorted(made, key=lambda g: g.name)

    page = await site.page("/groups?sort=name&order=asc")
    assert group_rows(page) == [g.id for g in by_name[:2]]
    header = page.select_one("#groups-table th[aria-sort]")
    assert header is not None
    assert header["aria-sort"] == "ascending"
    assert text(header, "a") == "Name"
    # the header turns the order around; the other sorts by it
    anchor = header.select_one("a")
    assert anchor is not None
    assert anchor["href"] == "/groups?sort=name&order=desc"
    assert page.select_one("a[rel=prev]") is None
    nxt = page.select_one("a[rel=next]")
    assert nxt is not None
    second = await site.page(str(nxt["href"]))
    assert group_rows(second) == [g.id for g in by_name[2:]]
    assert second.select_one("a[rel=next]") is None
    prev = second.select_one("a[rel=prev]")
    assert prev is not None
    assert "sort=name" in str(prev["href"])
    assert group_rows(await site.page(str(prev["href"]))) == [g.id for g in by_name[:2]]

    # created, oldest first
    page = await site.page("/groups?sort=created&order=asc")
    assert group_rows(page) == [g.id for g in made[:2]]

    # search by name, keeping the sort
    page = await site.page("/groups?q=ARL&sort=name")
    assert group_rows(page) == [made[2].id]
    search = page.select_one("#group-filters input[name=q]")
    assert search is not None
    assert search["value"] == "ARL"

    page = await site.page("/groups?q=nothing-like-it")
    assert group_rows(page) == []
    assert "No run group matches" in text(page, "#groups .empty")


async def test_groups_table_bad_parameters_are_shown(site: Site) -> None:
    page = await site.page("/groups?sort=size", status=400)
    assert "sort: 'size' is not a sort order" in text(page, "#groups .error")
    page = await site.page("/groups?page=not-a-token", status=400)
    assert "page_token" in text(page, "#groups .error")


async def test_no_groups_invites_making_one(site: Site) -> None:
    page = await site.page("/groups")
    assert page.select_one("#groups-table") is None
    assert "No run groups yet." in text(page, "#groups .empty")
    assert page.select_one("#groups .empty a[href='/groups/new']") is not None


# --- create and edit ------------------------------------------------------------------------


async def test_create_a_group_through_the_form(site: Site) -> None:
    form = await site.page("/groups/new")
    assert text(form, "h1") == "New run group"
    assert form.select_one("form#group-form[method=post][action='/groups']") is not None
    names = {str(e["name"]) for e in form.select("#group-form [name]")}
    assert names == {
        "csrf_token",
        "name",
        "description",
        "max_runs",
        "max_cpus",
        "max_duration",
        "compute_env",
    }
    envs = [str(o["value"]) for o in form.select("#compute_env option")]
    assert envs == ["", "local"]

    r = await post_form(
        site,
        "/groups/new",
        "/groups",
        {
            "name": " sequencing 42 ",
            "description": "flow cell 42",
            "max_runs": "3",
            "max_cpus": "",
            "max_duration": "1.5",
            "compute_env": "local",
        },
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/groups/")
    group = await groups_of(site).get(location.removeprefix("/groups/"), caller=ADMIN)
    assert group.name == "sequencing 42"
    assert group.description == "flow cell 42"
    assert (group.max_runs, group.max_cpus, group.max_duration) == (3, None, 1.5)
    assert group.compute_env == "local"

    page = await site.page(location)
    assert text(page, "#group-name") == "sequencing 42"


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"name": "  "}, "name", "is required"),
        ({"max_runs": "two"}, "max_runs", "must be a whole number, not 'two'"),
        ({"max_runs": "0"}, "max_runs", "must be from 1 to"),
        ({"max_cpus": "1.5"}, "max_cpus", "must be a whole number"),
        ({"max_duration": "soon"}, "max_duration", "must be a number of minutes"),
        ({"max_duration": "-5"}, "max_duration", "must be more than 0"),
        ({"compute_env": "moon"}, "compute_env", "'moon' is not configured"),
    ],
)
async def test_form_errors_are_shown_next_to_their_field(
    site: Site, fields: dict[str, str], field: str, problem: str
) -> None:
    values = {"name": "batch", "description": "kept", "max_runs": "", **fields}
    r = await post_form(site, "/groups/new", "/groups", values)
    assert r.status_code == 400
    page = html(r)
    errors = field_errors(page)
    assert list(errors) == [field]
    assert problem in errors[field]
    # the error sits in the field's own box, which the input points at
    box = page.select_one(f"#{field}-error")
    assert box is not None
    assert box.parent is not None
    assert box.parent.select_one(f"#{field}[aria-invalid=true]") is not None
    assert "see the marked fields" in text(page, "#form-error")
    # what was typed is kept
    description = page.select_one("#description")
    assert description is not None
    assert description.get_text() == "kept"
    assert (await groups_of(site).list(caller=ADMIN)).items == []


async def test_edit_a_group(site: Site) -> None:
    group = await make_group(site, name="cohort", max_runs=2, max_duration=30.5)
    form = await site.page(f"/groups/{group.id}/edit")
    assert text(form, "h1") == "Edit run group"
    assert form.select_one(f"form#group-form[action='/groups/{group.id}/edit']") is not None

    def value(name: str) -> str:
        field = form.select_one(f"#group-form input[name={name}]")
        assert field is not None
        return str(field.get("value", ""))

    assert (value("name"), value("max_runs"), value("max_cpus"), value("max_duration")) == (
        "cohort",
        "2",
        "",
        "30.5",
    )

    path = f"/groups/{group.id}/edit"
    r = await post_form(site, path, path, {"name": "cohort", "max_runs": "x", "max_cpus": "4"})
    assert r.status_code == 400
    assert "must be a whole number" in field_errors(html(r))["max_runs"]
    assert (await groups_of(site).get(group.id, caller=ADMIN)).max_runs == 2

    r = await post_form(
        site, path, path, {"name": "cohort B", "max_runs": "", "max_cpus": "4", "max_duration": ""}
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"/groups/{group.id}"
    changed = await groups_of(site).get(group.id, caller=ADMIN)
    assert (changed.name, changed.max_runs, changed.max_cpus, changed.max_duration) == (
        "cohort B",
        None,
        4,
        None,
    )


# --- a group's page -------------------------------------------------------------------------


async def test_group_page_shows_limits_usage_and_runs(site: Site) -> None:
    db = site.service.db
    group = await make_group(
        site, name="cohort", description="the cohort", max_runs=2, max_cpus=6, max_duration=120
    )
    queued = await add_run(db, group_id=group.id)
    running = await add_run(db, path=ACTIVE, group_id=group.id, cpus=4)
    done = await add_run(db, path=(*ACTIVE, State.COMPLETE), group_id=group.id)
    await add_run(db, path=ACTIVE)  # not in the group

    page = await site.page(f"/groups/{group.id}")
    assert text(page, "h1") == "Run group cohort"
    assert text(page, "#group-id") == group.id
    assert text(page, "#group-description") == "the cohort"
    crumbs = page.select_one(".crumbs a")
    assert crumbs is not None
    assert crumbs["href"] == "/groups"
    assert text(page, "#limit-runs") == "2"
    assert text(page, "#limit-cpus") == "6"
    assert text(page, "#limit-duration") == "120 min (2 h 00 m)"
    assert text(page, "#compute-env") == "default"
    assert text(page, "#usage-runs") == "1 / 2"
    assert text(page, "#usage-cpus") == "4 / 6"
    counts = {str(a["data-state"]): text(a, ".n") for a in page.select("#group-counts a")}
    assert counts == {"QUEUED": "1", "RUNNING": "1", "COMPLETE": "1"}

    assert run_rows(page) == {
        done.id: "COMPLETE",
        running.id: "RUNNING",
        queued.id: "QUEUED",
    }
    for run_id in (queued.id, running.id, done.id):
        row = page.select_one(f"#run-{run_id}")
        assert row is not None
        anchor = row.select_one("a")
        assert anchor is not None
        assert anchor["href"] == f"/runs/{run_id}"
    # start and end times, state badges
    done_row = page.select_one(f"#run-{done.id}")
    assert done_row is not None
    assert text(done_row, ".badge") == "COMPLETE"
    # Cancel buttons for unfinished runs only
    cancels = {
        str(form["action"]) for form in page.select("#group-runs form") if form.select("button")
    }
    assert cancels == {
        f"/groups/{group.id}/runs/{queued.id}/cancel",
        f"/groups/{group.id}/runs/{running.id}/cancel",
    }
    assert page.select_one(f"form#cancel-all-form[action='/groups/{group.id}/cancel']")
    # the table follows the runs' events, rows and usage from the group's own fragments
    live = page.select_one("#runs[data-events]")
    assert live is not None
    assert live["data-row-url"] == f"/groups/{group.id}/runs/{{id}}/row"
    assert live["data-refresh"] == "#group-usage"
    usage = page.select_one("#group-usage")
    assert usage is not None
    assert usage["data-fragment"] == f"/groups/{group.id}/usage"
    # buttons
    edit = page.select_one("a#edit-group")
    assert edit is not None
    assert edit["href"] == f"/groups/{group.id}/edit"
    into = page.select_one("a#submit-into")
    assert into is not None
    assert into["href"] == f"/submit?group={group.id}"


async def test_group_page_without_limits_or_runs(site: Site) -> None:
    group = await make_group(site, name="open")
    page = await site.page(f"/groups/{group.id}")
    assert text(page, "#limit-runs") == "no limit"
    assert text(page, "#limit-duration") == "no limit"
    assert text(page, "#usage-runs") == "0 (no limit)"
    assert text(page, "#usage-cpus") == "0 (no limit)"
    assert page.select_one("#group-runs") is None
    assert "No runs in this group yet." in text(page, "#runs .empty")
    assert page.select_one("#cancel-all") is None
    # an empty group is deleted without detaching anything
    assert page.select_one("#delete-form input[name=detach_runs]") is None


async def test_group_runs_filter_by_state_and_page(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(group_pages, "RUNS_PAGE_SIZE", 2)
    db = site.service.db
    group = await make_group(site)
    queued = [await add_run(db, group_id=group.id) for _ in range(3)]
    done = await add_run(db, path=(*ACTIVE, State.COMPLETE), group_id=group.id)

    page = await site.page(f"/groups/{group.id}?state=QUEUED")
    box = page.select_one("input[name=state][value=QUEUED]")
    assert box is not None
    assert box.has_attr("checked")
    first = run_rows(page)
    assert set(first.values()) == {"QUEUED"}
    assert len(first) == 2
    nxt = page.select_one("a[rel=next]")
    assert nxt is not None
    assert "state=QUEUED" in str(nxt["href"])
    second = run_rows(await site.page(str(nxt["href"])))
    assert set(first) | set(second) == {r.id for r in queued}

    page = await site.page(f"/groups/{group.id}?state=COMPLETE")
    assert run_rows(page) == {done.id: "COMPLETE"}
    page = await site.page(f"/groups/{group.id}?state=CANCELED")
    assert run_rows(page) == {}
    assert "No run of this group is in these states." in text(page, "#runs .empty")

    page = await site.page(f"/groups/{group.id}?state=DONE", status=400)
    assert "state: 'DONE' is not a state" in text(page, "#runs .error")


async def test_unknown_group_is_the_404_page(site: Site) -> None:
    for path in ("/groups/nope", "/groups/nope/edit", "/groups/nope/usage"):
        page = await site.page(path, status=404)
        assert text(page, "h1") == "404 · Not Found"
        assert "run group 'nope' was not found" in text(page, ".message")


async def test_live_fragments(site: Site) -> None:
    db = site.service.db
    group = await make_group(site, max_runs=1)
    run = await add_run(db, path=ACTIVE, group_id=group.id)
    outside = await add_run(db)

    usage = await site.page(f"/groups/{group.id}/usage")
    assert text(usage, "#usage-runs") == "1 / 1"
    assert usage.select_one("html") is None  # a fragment, not a page

    row = await site.page(f"/groups/{group.id}/runs/{run.id}/row")
    tr = row.select_one("tr")
    assert tr is not None
    assert tr["data-state"] == "RUNNING"
    assert tr.select_one(f"form[action='/groups/{group.id}/runs/{run.id}/cancel']") is not None
    # a run of no group (or of another) is not a row of this group
    page = await site.page(f"/groups/{group.id}/runs/{outside.id}/row", status=404)
    assert f"run {outside.id!r} was not found" in text(page, ".message")


# --- cancel and delete ----------------------------------------------------------------------


async def test_cancel_all_unfinished_runs(site: Site) -> None:
    db = site.service.db
    group = await make_group(site)
    queued = await add_run(db, group_id=group.id)
    running = await add_run(db, path=ACTIVE, group_id=group.id)
    done = await add_run(db, path=(*ACTIVE, State.COMPLETE), group_id=group.id)
    outside = await add_run(db)
    path = f"/groups/{group.id}"

    r = await post_form(site, path, f"{path}/cancel", {})
    assert r.status_code == 303
    assert r.headers["location"] == f"{path}?canceled=2"
    state = site.service.state
    assert await state(queued.id, caller=ADMIN) is State.CANCELED
    assert await state(running.id, caller=ADMIN) is State.CANCELING
    assert await state(done.id, caller=ADMIN) is State.COMPLETE
    assert await state(outside.id, caller=ADMIN) is State.QUEUED

    page = await site.page(r.headers["location"])
    assert "2 unfinished runs of the group were canceled." in text(page, "#canceled-notice")
    assert run_rows(page)[queued.id] == "CANCELED"
    # a CANCELING run has no Cancel button any more
    assert page.select_one(f"#run-{running.id} form") is None


async def test_cancel_one_run_from_the_group_page(site: Site) -> None:
    db = site.service.db
    group = await make_group(site)
    other = await make_group(site, name="other")
    run = await add_run(db, group_id=group.id)
    stranger = await add_run(db, group_id=other.id)
    path = f"/groups/{group.id}"

    r = await post_form(site, path, f"{path}/runs/{run.id}/cancel", {})
    assert r.status_code == 303
    assert r.headers["location"] == path
    assert await site.service.state(run.id, caller=ADMIN) is State.CANCELED
    # a run of another group is not cancelled through this one
    r = await post_form(site, path, f"{path}/runs/{stranger.id}/cancel", {})
    assert r.status_code == 404
    assert await site.service.state(stranger.id, caller=ADMIN) is State.QUEUED


async def test_delete_a_group(site: Site) -> None:
    db = site.service.db
    empty = await make_group(site, name="empty")
    full = await make_group(site, name="full")
    run = await add_run(db, group_id=full.id)

    path = f"/groups/{empty.id}"
    r = await post_form(site, path, f"{path}/delete", {})
    assert r.status_code == 303
    assert r.headers["location"] == "/groups"
    await site.page(path, status=404)

    # a group with runs: without detach_runs, the 409 page and nothing changes
    path = f"/groups/{full.id}"
    r = await post_form(site, path, f"{path}/delete", {})
    assert r.status_code == 409
    assert "has 1 run" in text(html(r), ".message")
    assert (await groups_of(site).get(full.id, caller=ADMIN)).name == "full"
    # the page's button detaches them (and says so when it asks)
    page = await site.page(path)
    form = page.select_one("#delete-form")
    assert form is not None
    assert "Its 1 run stay" in str(form["data-confirm"])
    detach = form.select_one("input[name=detach_runs]")
    assert detach is not None
    r = await post_form(site, path, f"{path}/delete", {"detach_runs": str(detach["value"])})
    assert r.status_code == 303
    await site.page(path, status=404)
    kept = await site.service.get(run.id, caller=ADMIN)
    assert kept.group_id is None
    assert kept.state is State.QUEUED


async def test_group_forms_need_the_csrf_token(site: Site) -> None:
    group = await make_group(site, name="kept")
    run = await add_run(site.service.db, group_id=group.id)
    await site.page("/groups")  # the CSRF cookie
    path = f"/groups/{group.id}"
    for action, data in (
        ("/groups", {"name": "forged"}),
        (f"{path}/edit", {"name": "forged"}),
        (f"{path}/delete", {"detach_runs": "true"}),
        (f"{path}/cancel", {}),
        (f"{path}/runs/{run.id}/cancel", {}),
    ):
        r = await site.client.post(action, data={"csrf_token": "not-a-token", **data})
        assert r.status_code == 403, action
        assert "CSRF token" in text(html(r), ".message")
    assert [g.name for g in (await groups_of(site).list(caller=ADMIN)).items] == ["kept"]
    assert await site.service.state(run.id, caller=ADMIN) is State.QUEUED


# --- the submit form and the run page -------------------------------------------------------


@pytest.mark.usefixtures("snakemake_exe")
async def test_submit_into_a_group_with_cpus_and_priority(site: Site) -> None:
    group = await make_group(site, name="cohort", max_cpus=4)
    await make_group(site, name="another")

    form = await site.page("/submit")
    options = [
        (str(o["value"]), o.get_text(strip=True)) for o in form.select("#run_group_id option")
    ]
    assert options[0] == ("", "none")
    assert [label.split(" (")[0] for _value, label in options[1:]] == ["another", "cohort"]
    selected = form.select_one("#run_group_id option[selected]")
    assert selected is None
    # ?group= picks it (the group page's "Submit a run into it")
    form = await site.page(f"/submit?group={group.id}")
    selected = form.select_one("#run_group_id option[selected]")
    assert selected is not None
    assert selected["value"] == group.id

    async def submit(**fields: str) -> httpx.Response:
        token = csrf_token(await site.page("/submit"))
        data = {"csrf_token": token, "workflow": "SMK|9", "workflow_url": "Snakefile", **fields}
        return await site.client.post(
            "/submit", data=data, files=[("workflow_attachment", ("Snakefile", WORKFLOW))]
        )

    r = await submit(run_group_id=group.id, cpus="3", priority="7")
    assert r.status_code == 303, r.text
    run = await site.service.get(r.headers["location"].removeprefix("/runs/"), caller=ADMIN)
    assert (run.group_id, run.cpus, run.priority) == (group.id, 3, 7)
    assert run.request.workflow_engine_parameters == {"cpus": "3", "priority": "7"}

    # the run page links to its group
    page = await site.page(f"/runs/{run.id}")
    link = page.select_one("#run-group a")
    assert link is not None
    assert link["href"] == f"/groups/{group.id}"
    assert link.get_text() == "cohort"
    assert page.select_one("#run-group-link") is not None
    # and the group page lists it
    assert run.id in run_rows(await site.page(f"/groups/{group.id}"))

    # errors next to their fields; what was picked stays picked
    r = await submit(run_group_id="nope")
    assert r.status_code == 400
    assert "run group 'nope' was not found" in field_errors(html(r))["run_group_id"]
    r = await submit(run_group_id=group.id, cpus="many")
    assert r.status_code == 400
    assert field_errors(html(r)) == {"cpus": "cpus must be an integer from 1 to 100000, got 'many'"}
    chosen = html(r).select_one("#run_group_id option[selected]")
    assert chosen is not None
    assert chosen["value"] == group.id
    r = await submit(run_group_id=group.id, cpus="5")
    assert r.status_code == 400
    assert "more than the max_cpus 4" in field_errors(html(r))["cpus"]
    r = await submit(cpus="2", workflow_engine_parameters="cpus=3")
    assert r.status_code == 400
    assert "is '2' here but '3' in the engine parameters" in field_errors(html(r))["cpus"]
    r = await submit(priority="first")
    assert r.status_code == 400
    assert "priority must be an integer" in field_errors(html(r))["priority"]


async def test_run_page_without_a_group_has_no_group_line(site: Site) -> None:
    run = await add_run(site.service.db)
    page = await site.page(f"/runs/{run.id}")
    assert page.select_one("#run-group") is None


# --- someone else's group -------------------------------------------------------------------


async def test_someone_elses_group_is_the_404_page(settings: Settings, catalog: Catalog) -> None:
    async with basic_site(settings, catalog) as site:
        assert (await sign_in(site.client, "alice")).status_code == 303
        r = await post_form(site, "/groups/new", "/groups", {"name": "alice's batch"})
        assert r.status_code == 303, r.text
        path = r.headers["location"]
        group_id = path.removeprefix("/groups/")
        run = await add_run(site.service.db, group_id=group_id)

        async with browser(site.app) as other:
            bob = Site(other, site.app)
            assert (await sign_in(other, "bob")).status_code == 303
            assert group_rows(await bob.page("/groups")) == []
            for page_path in (path, f"{path}/edit", f"{path}/usage", f"{path}/runs/{run.id}/row"):
                page = await bob.page(page_path, status=404)
                assert text(page, "h1") == "404 · Not Found"
            submit = await bob.page("/submit")
            assert [o["value"] for o in submit.select("#run_group_id option")] == [""]
            token = csrf_token(await bob.page("/groups"))
            for action in (f"{path}/edit", f"{path}/delete", f"{path}/cancel"):
                r = await other.post(action, data={"csrf_token": token, "name": "taken"})
                assert r.status_code == 404, action
            assert (await groups_of(site).get(group_id, caller=ADMIN)).name == "alice's batch"

        async with browser(site.app) as admin:
            root = Site(admin, site.app)
            assert (await sign_in(admin, "root")).status_code == 303
            assert group_rows(await root.page("/groups")) == [group_id]
            assert text(await root.page(path), "#group-name") == "alice's batch"
