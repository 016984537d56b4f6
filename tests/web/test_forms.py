"""The forms that change things: submit (files and folders, JSON or YAML parameters, tags),
cancel and submit again; and their validation errors, shown next to the field."""

from __future__ import annotations

import json

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle.config import Settings
from spindle.domain import State
from spindle.engines.registry import Catalog
from tests.api.conftest import make_app, runs_on_disk, wait_state
from tests.support import EXAMPLES
from tests.web.conftest import ADMIN, Site, add_run, csrf_token, text

WORDCOUNT = EXAMPLES / "snakemake" / "wordcount"

pytestmark = pytest.mark.usefixtures("snakemake_exe", "cwltool_exe")


def folder_parts(folder: str = "wordcount") -> list[tuple[str, tuple[str, bytes]]]:
    """The example folder as a browser sends a chosen folder: each file under its path
    inside the folder, led by the folder's own name."""
    return [
        ("workflow_folder", (f"{folder}/{p.relative_to(WORDCOUNT).as_posix()}", p.read_bytes()))
        for p in sorted(WORDCOUNT.rglob("*"))
        if p.is_file()
    ]


async def post_submit(
    site: Site,
    fields: dict[str, str],
    files: list[tuple[str, tuple[str, bytes]]] | None = None,
) -> httpx.Response:
    token = csrf_token(await site.page("/submit"))
    data = {"csrf_token": token, "workflow": "SMK|9", "workflow_url": "Snakefile", **fields}
    return await site.client.post(
        "/submit", data=data, files=files or [("workflow_attachment", ("", b""))]
    )


def field_errors(r: httpx.Response) -> dict[str, str]:
    page = BeautifulSoup(r.text, "html.parser")
    return {
        str(p["id"]).removesuffix("-error"): p.get_text(strip=True)
        for p in page.select(".field-error[id]")
    }


async def test_submit_a_folder_with_yaml_params_and_tags(site: Site) -> None:
    params = "greeting: Hi\nsamples:\n  alpha: one two three\n  when: 2026-11-30\n"
    r = await post_submit(
        site,
        {"workflow_params": params, "tags": "project=demo\n\n owner = ann \n"},
        folder_parts(),
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/runs/")
    run = await site.service.get(location.removeprefix("/runs/"), caller=ADMIN)
    assert run.state is State.QUEUED
    assert run.request.workflow_type == "SMK"
    assert run.request.workflow_type_version == "9"
    assert run.request.workflow_url == "Snakefile"
    assert run.request.workflow_params == {
        "greeting": "Hi",
        "samples": {"alpha": "one two three", "when": "2026-11-30"},
    }
    assert run.request.tags == {"project": "demo", "owner": "ann"}
    attachments = site.service.rundir(run.id).attachments
    names = sorted(
        p.relative_to(attachments).as_posix() for p in attachments.rglob("*") if p.is_file()
    )
    assert names == ["Snakefile", "data/header.txt", "params.json", "rules/count.smk"]
    # the new run's page follows
    page = await site.page(location)
    assert text(page, "#run-state") == "QUEUED"


async def test_submit_single_files_with_json_params_and_engine_parameters(site: Site) -> None:
    cwl = EXAMPLES / "cwl" / "wordcount"
    files = [
        ("workflow_attachment", ("workflow.cwl", (cwl / "workflow.cwl").read_bytes())),
        ("workflow_attachment", ("poem.txt", (cwl / "poem.txt").read_bytes())),
    ]
    fields = {
        "workflow": "CWL|v1.2",
        "workflow_url": "workflow.cwl",
        "workflow_params": (cwl / "inputs.json").read_text(),
        "workflow_engine_parameters": "parallel=true",
    }
    r = await post_submit(site, fields, files)
    assert r.status_code == 303, r.text
    run = await site.service.get(r.headers["location"].removeprefix("/runs/"), caller=ADMIN)
    assert run.request.workflow_params == json.loads((cwl / "inputs.json").read_text())
    assert run.request.workflow_engine_parameters == {"parallel": "true"}
    assert run.engine == "cwltool"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"workflow_params": "samples: [a, b"}, "workflow_params", "is not valid JSON or YAML"),
        ({"workflow_params": '{"a": [1, 2}'}, "workflow_params", "at line 1, column 12"),
        ({"workflow_params": "- a\n- b\n"}, "workflow_params", "must be a mapping"),
        ({"tags": "project=demo\njust words"}, "tags", "line 2: 'just words' is not key=value"),
        ({"tags": "a=1\na=2"}, "tags", "line 2: 'a' is given twice"),
        (
            {"workflow_engine_parameters": "color=blue"},
            "workflow_engine_parameters",
            "'color' is not a parameter of snakemake",
        ),
        ({"workflow": "XYZ|1"}, "workflow", "'XYZ' is not supported here"),
        ({"workflow": "SMK|1"}, "workflow", "'1' is not supported for SMK"),
        ({"workflow_url": ""}, "workflow_url", "is required"),
        ({"workflow_url": "Nope.smk"}, "workflow_url", "'Nope.smk' names no workflow_attachment"),
        ({"workflow_url": "/etc/passwd"}, "workflow_url", "must be a path relative"),
    ],
)
async def test_invalid_submissions_show_the_error_next_to_the_field_and_store_nothing(
    site: Site, settings: Settings, fields: dict[str, str], field: str, message: str
) -> None:
    r = await post_submit(site, fields, folder_parts())
    assert r.status_code == 400
    errors = field_errors(r)
    assert list(errors) == [field]
    assert message in errors[field]
    page = BeautifulSoup(r.text, "html.parser")
    assert page.select_one("#form-error[role=alert]") is not None
    marked = page.select_one(f"[name={field}][aria-invalid=true]")
    assert marked is not None
    assert marked["aria-describedby"] == f"{field}-error"
    # what was typed is kept (files must be chosen again)
    for name, value in fields.items():
        if name != "workflow" and value:
            shown = page.select_one(f"[name={name}]")
            assert shown is not None
            assert (shown.get("value") or shown.get_text()) == value
    assert (await site.service.counts(caller=ADMIN)) == {}
    assert runs_on_disk(settings) == []


async def test_attachment_errors_show_next_to_the_files(site: Site, settings: Settings) -> None:
    r = await post_submit(site, {}, [("workflow_attachment", ("../escape.smk", b"x"))])
    assert r.status_code == 400
    assert "contains '..'" in field_errors(r)["workflow_attachment"]
    assert runs_on_disk(settings) == []


async def test_uploads_over_the_limit_are_refused(settings: Settings, catalog: Catalog) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    app = make_app(small, catalog, worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as c:
            site = Site(c, app)
            r = await post_submit(site, {}, [("workflow_attachment", ("Snakefile", b"x" * 5000))])
            assert r.status_code == 413
            assert "exceed 1000 bytes" in field_errors(r)["workflow_attachment"]
            assert await site.service.counts(caller=ADMIN) == {}
    assert runs_on_disk(small) == []


async def test_cancel_from_the_run_page(site: Site) -> None:
    run = await add_run(site.service.db)
    page = await site.page(f"/runs/{run.id}")
    r = await site.client.post(f"/runs/{run.id}/cancel", data={"csrf_token": csrf_token(page)})
    assert (r.status_code, r.headers["location"]) == (303, f"/runs/{run.id}")
    assert await site.service.state(run.id, caller=ADMIN) is State.CANCELED
    page = await site.page(f"/runs/{run.id}")
    assert text(page, "#run-state") == "CANCELED"
    # cancelling again changes nothing and is no error
    r = await site.client.post(f"/runs/{run.id}/cancel", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 303
    r = await site.client.post("/runs/nope/cancel", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 404
    assert "run 'nope' was not found" in text(BeautifulSoup(r.text, "html.parser"), "main")


async def test_submit_again_makes_a_new_run_with_the_same_request_and_files(site: Site) -> None:
    r = await post_submit(
        site, {"tags": "project=demo", "workflow_params": "greeting: Hey"}, folder_parts()
    )
    first = r.headers["location"].removeprefix("/runs/")
    page = await site.page(f"/runs/{first}")
    r = await site.client.post(f"/runs/{first}/resubmit", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 303
    second = r.headers["location"].removeprefix("/runs/")
    assert second != first
    old, new = (
        await site.service.get(first, caller=ADMIN),
        await site.service.get(second, caller=ADMIN),
    )
    assert new.request == old.request
    assert new.state is State.QUEUED

    def files(run_id: str) -> dict[str, bytes]:
        root = site.service.rundir(run_id).attachments
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert files(second) == files(first)
    assert "rules/count.smk" in files(second)


@pytest.mark.engine
async def test_a_run_submitted_through_the_form_completes(site_with_worker: Site) -> None:
    site = site_with_worker
    params = (WORDCOUNT / "params.json").read_text()
    r = await post_submit(site, {"workflow_params": params}, folder_parts())
    assert r.status_code == 303, r.text
    run_id = r.headers["location"].removeprefix("/runs/")
    assert (
        await wait_state(site.client, run_id, ["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"])
        == "COMPLETE"
    )
    page = await site.page(f"/runs/{run_id}")
    names = [a.get_text(strip=True) for a in page.select("#tasks tbody td:first-child a")]
    assert sorted(names) == [
        "all",
        "count[sample=alpha]",
        "count[sample=beta]",
        "count[sample=gamma]",
        "summary",
    ]
    downloads = {
        a.get_text(strip=True): str(a["href"]) for a in page.select("#outputs a[download]")
    }
    summary = await site.client.get(downloads["results/summary.txt"])
    assert summary.status_code == 200
    assert summary.text.startswith("sample\twords\n")
