"""Every page of the UI, read by structure: headings, rows, links, badges, forms."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from bs4 import BeautifulSoup

from spindle.domain import LogSpan, State, Task
from spindle.runs import store
from spindle.web.site import STATIC
from tests.web.conftest import ADMIN, Site, add_run, text

ACTIVE = (State.INITIALIZING, State.RUNNING)


def nav_links(page: BeautifulSoup) -> dict[str, str]:
    return {a.get_text(strip=True): str(a["href"]) for a in page.select("header nav a")}


def check_layout(page: BeautifulSoup, current: str) -> None:
    """The navigation bar every page has: the pages, the service's name and version."""
    assert nav_links(page) == {
        "Dashboard": "/",
        "Runs": "/runs",
        "Run groups": "/groups",
        "Submit": "/submit",
        "API": "/docs",
        "Notifications": "/notifications",  # the bell (its count is swapped in by htmx)
    }
    assert text(page, "header .brand") == "Spindle"
    assert text(page, "header .version") == "v0.1.0"
    current_links = [a.get_text(strip=True) for a in page.select("header nav a[aria-current]")]
    assert current_links == ([current] if current else [])
    assert page.select_one("script[src^='/static/htmx.min.js']") is not None
    assert page.select_one("link[rel=stylesheet][href^='/static/spindle.css']") is not None


def row_ids(page: BeautifulSoup) -> list[str]:
    return [str(tr["data-run-id"]) for tr in page.select("#runs-table tbody tr")]


# --- dashboard ------------------------------------------------------------------------------


async def test_dashboard_counts_recent_runs_and_failures(site: Site) -> None:
    db = site.service.db
    await add_run(db)
    await add_run(db, path=(*ACTIVE,))
    await add_run(db, path=(*ACTIVE, State.COMPLETE))
    old = await add_run(db, path=(State.CANCELED,))
    failed = await add_run(
        db,
        url="https://example.org/flows/align.cwl",
        wf_type="CWL",
        path=(*ACTIVE, State.EXECUTOR_ERROR),
        exit_code=2,
        end_time=datetime.now(UTC),
    )
    lost = await add_run(
        db,
        path=(*ACTIVE, State.SYSTEM_ERROR),
        system_logs=["the engine process vanished"],
        end_time=datetime.now(UTC) - timedelta(minutes=3),
    )
    async with db.begin() as conn:
        await store.save_tasks(
            conn, failed.id, [Task(id="7", name="align", state=State.EXECUTOR_ERROR, exit_code=2)]
        )
        await store.update_run(conn, old.id, submitted_at=datetime.now(UTC) - timedelta(days=3))

    page = await site.page("/")
    check_layout(page, "Dashboard")
    assert text(page, "h1") == "Dashboard"
    cards = {str(li["data-state"]): text(li, ".n") for li in page.select("#state-counts li")}
    assert cards == {
        "QUEUED": "1",
        "INITIALIZING": "0",
        "RUNNING": "1",
        "CANCELING": "0",
        "COMPLETE": "1",
        "EXECUTOR_ERROR": "1",
        "SYSTEM_ERROR": "1",
        "CANCELED": "1",
    }
    link = page.select_one("#state-counts li[data-state=RUNNING] a")
    assert link is not None
    assert link["href"] == "/runs?state=RUNNING"
    assert "6 in all" in text(page, "#by-state")
    # the canceled run was submitted three days ago
    assert "5 submitted" in text(page, "#last-day")
    day = {str(tr["data-state"]): text(tr, "td.num") for tr in page.select("#day-counts tbody tr")}
    assert day == {
        "QUEUED": "1",
        "RUNNING": "1",
        "COMPLETE": "1",
        "EXECUTOR_ERROR": "1",
        "SYSTEM_ERROR": "1",
    }

    rows = page.select("#failure-list tbody tr")
    assert [r["data-run-id"] for r in rows] == [failed.id, lost.id]
    assert "align.cwl" in text(rows[0], "td:nth-of-type(2)")
    assert "task align failed" in text(rows[0], ".error-text")
    assert "exit code 2" in text(rows[0], ".error-text")
    assert "the engine process vanished" in text(rows[1], ".error-text")
    anchor = rows[1].select_one("a")
    assert anchor is not None
    assert anchor["href"] == f"/runs/{lost.id}"


async def test_empty_dashboard_invites_a_submission(site: Site) -> None:
    page = await site.page("/")
    assert all(text(li, ".n") == "0" for li in page.select("#state-counts li"))
    assert page.select_one("#failure-list") is None
    assert "No run has failed" in text(page, "main")
    assert page.select_one("main a.button[href='/submit']") is not None


# --- runs -----------------------------------------------------------------------------------


async def test_runs_table_shows_each_run(site: Site) -> None:
    db = site.service.db
    queued = await add_run(db, tags={"project": "demo"})
    running = await add_run(
        db,
        url="flows/main.cwl#wf",
        wf_type="CWL",
        path=ACTIVE,
        start_time=datetime.now(UTC) - timedelta(seconds=75),
    )
    page = await site.page("/runs")
    check_layout(page, "Runs")
    assert text(page, "h1") == "Runs"
    headers = [th.get_text(strip=True) for th in page.select("#runs-table thead th")]
    assert headers == ["Run", "Workflow", "Type", "State", "Tags", "Submitted", "Duration"]
    assert row_ids(page) == [running.id, queued.id]
    first, second = page.select("#runs-table tbody tr")
    assert first["data-state"] == "RUNNING"
    assert text(first, ".badge") == "RUNNING"
    assert "state-running" in first.select_one(".badge")["class"]  # type: ignore[index]
    assert text(first, "td.workflow") == "main.cwl"
    assert first.select_one("td.workflow")["title"] == "flows/main.cwl#wf"  # type: ignore[index]
    assert text(first, "td:nth-of-type(3)") == "CWL v1.2 cwltool"
    assert text(first, "td.num").startswith("1 m 1")  # 75 s and counting
    link = first.select_one("a")
    assert link is not None
    assert link["href"] == f"/runs/{running.id}"
    tag = second.select_one("a.tag")
    assert tag is not None
    assert tag["href"] == "/runs?tag=project%3Ddemo"
    assert text(second, "a.tag") == "project demo"
    assert text(second, "td.num") == ""  # not started
    # the page follows every run's events while some are unfinished
    runs = page.select_one("#runs")
    assert runs is not None
    last = (await site.service.events(running.id, caller=ADMIN))[-1].id
    assert runs["data-events"] == f"/ga4gh/wes/v1/events?after={last}"


async def test_runs_filters(site: Site) -> None:
    db = site.service.db
    a = await add_run(db, tags={"project": "alpha"}, path=(State.CANCELED,))
    b = await add_run(db, url="align.cwl", wf_type="CWL", tags={"project": "beta"})
    c = await add_run(db, tags={"project": "alpha"}, path=ACTIVE)

    async def shown(query: str) -> list[str]:
        return row_ids(await site.page("/runs?" + query))

    assert await shown("") == [c.id, b.id, a.id]
    assert await shown("state=CANCELED") == [a.id]
    assert await shown("state=CANCELED&state=RUNNING") == [c.id, a.id]
    assert await shown("type=CWL") == [b.id]
    assert await shown("tag=project%3Dalpha") == [c.id, a.id]
    assert await shown("q=ALIGN") == [b.id]
    assert await shown("q=alpha&state=RUNNING") == [c.id]

    page = await site.page("/runs?state=RUNNING&tag=project%3Dalpha&q=x&type=SMK")
    form = page.select_one("form#filters")
    assert form is not None
    assert form["method"] == "get"
    assert form["action"] == "/runs"
    checked = [i["value"] for i in form.select("input[name=state][checked]")]
    assert checked == ["RUNNING"]
    assert form.select_one("input[name=tag]")["value"] == "project=alpha"  # type: ignore[index]
    assert form.select_one("input[name=q]")["value"] == "x"  # type: ignore[index]
    assert form.select_one("select[name=type] option[selected]")["value"] == "SMK"  # type: ignore[index]
    assert "No runs match these filters" in text(page, "#runs")


async def test_runs_sorting_links_keep_the_filters_and_turn_around(site: Site) -> None:
    db = site.service.db
    first = await add_run(db, url="b.cwl", wf_type="CWL")
    second = await add_run(db, url="a.cwl", wf_type="CWL")
    page = await site.page("/runs?type=CWL")
    th = page.select_one("#runs-table th[aria-sort]")
    assert th is not None
    assert th["aria-sort"] == "descending"
    assert text(th, "a") == "Submitted"
    links = {a.get_text(strip=True): str(a["href"]) for a in page.select("#runs-table thead a")}
    href = links["Workflow"]
    assert parse_qs(urlsplit(href).query) == {
        "type": ["CWL"],
        "sort": ["workflow"],
        "order": ["desc"],
    }
    assert row_ids(await site.page(href)) == [first.id, second.id]  # b.cwl, a.cwl
    page = await site.page(href)
    again = {a.get_text(strip=True): str(a["href"]) for a in page.select("#runs-table thead a")}
    assert parse_qs(urlsplit(again["Workflow"]).query)["order"] == ["asc"]
    assert row_ids(await site.page(again["Workflow"])) == [second.id, first.id]
    # the hidden sort fields keep the order when the filter form is sent again
    hidden = {i["name"]: i["value"] for i in page.select("form#filters input[type=hidden]")}
    assert hidden == {"sort": "workflow", "order": "desc"}


async def test_runs_pages_forward_and_back(site: Site) -> None:
    made = [await add_run(site.service.db) for _ in range(53)]
    newest = [r.id for r in reversed(made)]
    page = await site.page("/runs")
    assert row_ids(page) == newest[:50]
    assert page.select_one(".pager a[rel=prev]") is None
    assert page.select_one(".pager a[rel=first]") is None
    nxt = page.select_one(".pager a[rel=next]")
    assert nxt is not None
    page = await site.page(str(nxt["href"]))
    assert row_ids(page) == newest[50:]
    assert page.select_one(".pager a[rel=next]") is None
    assert page.select_one(".pager a[rel=first]")["href"] == "/runs"  # type: ignore[index]
    prev = page.select_one(".pager a[rel=prev]")
    assert prev is not None
    assert row_ids(await site.page(str(prev["href"]))) == newest[:50]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=DONE", "state: 'DONE' is not a state"),
        ("sort=size", "sort: 'size' is not a sort order"),
        ("page=garbage", "page_token: is not a page token"),
    ],
)
async def test_bad_filters_are_shown_on_the_page(site: Site, query: str, message: str) -> None:
    page = await site.page("/runs?" + query, status=400)
    assert message in text(page, "#runs .error[role=alert]")
    assert page.select_one("form#filters") is not None
    assert page.select_one("#runs-table") is None


async def test_row_fragment(site: Site) -> None:
    run = await add_run(site.service.db, path=(State.CANCELED,))
    r = await site.client.get(f"/runs/{run.id}/row")
    assert r.status_code == 200
    row = BeautifulSoup(r.text, "html.parser").select_one("tr")
    assert row is not None
    assert (row["id"], row["data-state"]) == (f"run-{run.id}", "CANCELED")
    assert (await site.client.get("/runs/nope/row")).status_code == 404


# --- a run ----------------------------------------------------------------------------------


async def test_run_page_of_a_queued_run(site: Site) -> None:
    run = await add_run(
        site.service.db,
        tags={"project": "demo"},
        params={"samples": {"a": "one two"}, "n": 3},
    )
    page = await site.page(f"/runs/{run.id}")
    check_layout(page, "Runs")
    assert text(page, "h1") == f"Run {run.id}"
    assert [h.get_text(" ", strip=True).split(" ")[0] for h in page.select("h2")] == [
        "Timeline",
        "Outputs",
        "Tasks",
        "Logs",
        "Request",
    ]
    live = page.select_one("#live")
    assert live is not None
    assert live["data-fragment"] == f"/runs/{run.id}/live"
    events = await site.service.events(run.id, caller=ADMIN)
    assert live["data-events"] == f"/ga4gh/wes/v1/runs/{run.id}/events?after={events[-1].id}"
    assert text(page, "#run-state") == "QUEUED"
    assert [text(li, ".badge") for li in page.select("#timeline li")] == ["QUEUED"]
    assert "No task has started yet" in text(page, "#live")
    assert "Outputs appear here when the run has ended" in text(page, "#live")
    # both buttons, each its own form with a CSRF token
    cancel = page.select_one(f"form[action='/runs/{run.id}/cancel']")
    again = page.select_one(f"form[action='/runs/{run.id}/resubmit']")
    for form in (cancel, again):
        assert form is not None
        assert form["method"] == "post"
        assert form.select_one("input[type=hidden][name=csrf_token]") is not None
    # the request, with its parameters pretty-printed
    assert '"samples": {\n    "a": "one two"\n  },' in str(page.select_one("#params").string)  # type: ignore[union-attr]
    assert text(page, "dl.request .tags a.tag") == "project demo"
    # logs are followed while the run goes on
    for stream in ("stdout", "stderr"):
        pre = page.select_one(f"#log-{stream}")
        assert pre is not None
        assert pre.has_attr("data-follow")
        assert pre["data-url"] == f"/ga4gh/wes/v1/runs/{run.id}/logs/{stream}"
        assert pre["data-offset"] == "0"
    assert page.select_one("noscript meta[http-equiv=refresh]") is not None


async def test_run_page_of_a_finished_run(site: Site) -> None:
    db = site.service.db
    started = datetime.now(UTC) - timedelta(seconds=30)
    run = await add_run(
        db,
        path=(*ACTIVE, State.COMPLETE),
        start_time=started,
        end_time=started + timedelta(seconds=12),
        exit_code=0,
        progress={"done": 2, "total": 2, "current": []},
        outputs={
            "files": [
                {
                    "class": "File",
                    "path": "results/a.txt",
                    "basename": "a.txt",
                    "size": 2048,
                    "location": "run:work/results/a.txt",
                },
                {
                    "class": "File",
                    "path": "/srv/abs/b.txt",
                    "basename": "b.txt",
                    "size": 5,
                    "location": "run:work/b b.txt",
                },
            ]
        },
    )
    rundir = site.service.rundir(run.id)
    rundir.create()
    rundir.stdout.write_bytes(b"first line\nhello from a\nhello from b\n")
    async with db.begin() as conn:
        await store.save_tasks(
            conn,
            run.id,
            [
                Task(
                    id="1",
                    name="make_a",
                    state=State.COMPLETE,
                    exit_code=0,
                    start_time=started,
                    end_time=started + timedelta(seconds=5),
                    stdout=LogSpan("logs/stdout", 11, 24),
                ),
                Task(
                    id="2",
                    name="make_b",
                    state=State.COMPLETE,
                    exit_code=0,
                    start_time=started + timedelta(seconds=5),
                    end_time=started + timedelta(seconds=12),
                ),
            ],
        )
    page = await site.page(f"/runs/{run.id}")
    live = page.select_one("#live")
    assert live is not None
    assert not live.has_attr("data-events")
    assert text(page, "#run-state") == "COMPLETE"
    assert [text(li, ".badge") for li in page.select("#timeline li")] == [
        "QUEUED",
        "INITIALIZING",
        "RUNNING",
        "COMPLETE",
    ]
    assert "2 of 2 tasks done" in text(page, "#progress")
    assert page.select_one("#progress progress")["value"] == "2"  # type: ignore[index]
    facts = {text(d, "dt"): text(d, "dd") for d in page.select("#live dl.facts > div")}
    assert facts["Duration"] == "12 s"
    assert facts["Exit code"] == "0"
    assert page.select_one(f"form[action='/runs/{run.id}/cancel']") is None
    assert page.select_one(f"form[action='/runs/{run.id}/resubmit']") is not None
    # tasks, each linking to its own page
    rows = page.select("#tasks tbody tr")
    assert [text(r, "td:nth-of-type(1)") for r in rows] == ["make_a", "make_b"]
    assert [text(r, "td:nth-of-type(5)") for r in rows] == ["5 s", "7 s"]
    assert rows[0].select_one("a")["href"] == f"/runs/{run.id}/tasks/1"  # type: ignore[index]
    # outputs with download links into the API, never a server-side absolute path
    files = [(a.get_text(strip=True), a["href"]) for a in page.select("#outputs a[download]")]
    assert files == [
        ("results/a.txt", f"/ga4gh/wes/v1/runs/{run.id}/files/work/results/a.txt"),
        ("work/b b.txt", f"/ga4gh/wes/v1/runs/{run.id}/files/work/b%20b.txt"),
    ]
    assert [text(r, "td.num") for r in page.select("#outputs tbody tr")] == ["2.0 KiB", "5 B"]
    # logs: what is there, and no following once the run has ended
    stdout = page.select_one("#log-stdout")
    assert stdout is not None
    assert not stdout.has_attr("data-follow")
    assert stdout.get_text() == "first line\nhello from a\nhello from b\n"
    assert stdout["data-offset"] == "37"
    assert page.select_one("noscript meta[http-equiv=refresh]") is None
    # the live fragment is the same part of the page
    r = await site.client.get(f"/runs/{run.id}/live")
    fragment = BeautifulSoup(r.text, "html.parser")
    assert text(fragment, "#run-state") == "COMPLETE"
    assert len(fragment.select("#tasks tbody tr")) == 2
    assert fragment.select_one("header") is None


async def test_run_page_shows_the_end_of_a_long_log(site: Site) -> None:
    run = await add_run(site.service.db, path=(*ACTIVE,))
    rundir = site.service.rundir(run.id)
    rundir.create()
    rundir.stderr.write_bytes(b"x" * 100_000 + b"\nthe end\n")
    page = await site.page(f"/runs/{run.id}")
    stderr = page.select_one("#log-stderr")
    assert stderr is not None
    assert stderr.get_text().endswith("\nthe end\n")
    assert len(stderr.get_text()) == 64 * 1024
    assert stderr["data-offset"] == str(100_009)
    assert "Showing the last 65536 bytes" in text(page, "#logs-h + .logs")


async def test_task_page(site: Site) -> None:
    db = site.service.db
    run = await add_run(db, path=(*ACTIVE, State.EXECUTOR_ERROR))
    rundir = site.service.rundir(run.id)
    rundir.create()
    rundir.stdout.write_bytes(b"before\ncounting a\nafter\n")
    async with db.begin() as conn:
        await store.save_tasks(
            conn,
            run.id,
            [
                Task(
                    id="3",
                    name="count[sample=a]",
                    state=State.EXECUTOR_ERROR,
                    exit_code=3,
                    cmd=["wc", "-w"],
                    stdout=LogSpan("logs/stdout", 7, 18),
                )
            ],
        )
    page = await site.page(f"/runs/{run.id}/tasks/3")
    check_layout(page, "Runs")
    assert text(page, "h1") == "Task count[sample=a]"
    crumbs = [a["href"] for a in page.select(".crumbs a")]
    assert crumbs == ["/runs", f"/runs/{run.id}"]
    facts = {text(d, "dt"): text(d, "dd") for d in page.select("dl.facts > div")}
    assert (facts["Status"], facts["Exit code"], facts["Task id"]) == ("EXECUTOR_ERROR", "3", "3")
    assert text(page, "pre.cmd") == "wc -w"
    assert page.select_one("#log-stdout").get_text() == "counting a\n"  # type: ignore[union-attr]
    assert page.select_one("#log-stderr") is None
    assert "reported no stderr" in text(page, "#task-logs-h + .logs")
    whole = page.select_one("a[href$='/tasks/3/logs/stdout']")
    assert whole is not None
    await site.page(f"/runs/{run.id}/tasks/nope", status=404)


# --- submit ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("snakemake_exe", "cwltool_exe")
async def test_the_submit_form_chooses_no_type_for_the_user(site: Site) -> None:
    """No workflow type is preselected (it follows the main file, or the user picks it); the
    types offered are those installed, CWL's newest version first."""
    page = await site.page("/submit")
    select = page.select_one("select#workflow[required]")
    assert select is not None
    selected = select.select("option[selected]")
    assert [o["value"] for o in selected] == [""]
    values = [str(o["value"]) for o in select.select("option")]
    cwl = [v for v in values if v.startswith("CWL|")]
    assert cwl[0] == "CWL|v1.2"
    assert cwl.index("CWL|v1.2") < cwl.index("CWL|v1.0")
    assert next(v for v in values if v.startswith("SMK|")) == "SMK|9"
    assert {v.split("|")[0] for v in values if v} == {"CWL", "SMK", "WDL"}
    # the file-type guessing claims only the types Spindle runs
    script = (STATIC / "spindle.js").read_text()
    assert not re.search(r"\b(NFL|\.nf)\b", script)


@pytest.mark.usefixtures("snakemake_exe", "cwltool_exe")
async def test_submit_page(site: Site) -> None:
    page = await site.page("/submit")
    check_layout(page, "Submit")
    assert text(page, "h1") == "Submit a run"
    form = page.select_one("form#submit-form")
    assert form is not None
    assert (form["method"], form["action"], form["enctype"]) == (
        "post",
        "/submit",
        "multipart/form-data",
    )
    names = {str(e["name"]) for e in form.select("[name]")}
    assert names == {
        "csrf_token",
        "workflow",
        "workflow_attachment",
        "workflow_folder",
        "workflow_url",
        "workflow_params",
        "tags",
        "workflow_engine_parameters",
        "run_group_id",
        "cpus",
        "priority",
    }
    values = [o["value"] for o in form.select("select[name=workflow] option")]
    assert "SMK|9" in values
    assert "CWL|v1.2" in values
    assert form.select_one("input[name=workflow_folder][webkitdirectory]") is not None
    assert form.select_one("input[name=workflow_attachment][multiple]") is not None
    for name in (
        "workflow",
        "workflow_url",
        "workflow_params",
        "tags",
        "workflow_engine_parameters",
        "run_group_id",
        "cpus",
        "priority",
    ):
        field = form.select_one(f"[name={name}]")
        assert field is not None
        assert field.get("id") == name
        assert form.select_one(f"label[for={name}]") is not None, name
