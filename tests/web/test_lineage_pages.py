"""The run page's Resume and Delete (forms with their CSRF token, Delete with a
confirmation) and the lineage it shows: parent, children and the params diff."""

from __future__ import annotations

from spindle.domain import State
from spindle.runs import store
from tests.web.conftest import ADMIN, Site, csrf_token, text
from tests.web.test_forms import folder_parts, post_submit


async def failed_run(site: Site) -> str:
    r = await post_submit(site, {"workflow_params": "greeting: Hi"}, folder_parts())
    assert r.status_code == 303, r.text
    run_id = r.headers["location"].removeprefix("/runs/")
    async with site.service.db.begin() as conn:
        assert await store.transition(
            conn, run_id, expected=[State.QUEUED], new=State.EXECUTOR_ERROR
        )
    return run_id


async def test_resume_makes_a_linked_run_and_both_pages_show_the_lineage(site: Site) -> None:
    parent = await failed_run(site)
    page = await site.page(f"/runs/{parent}")
    assert page.select_one("#resume-run") is not None
    assert page.select_one("#resubmit-run") is not None
    assert page.select_one("#lineage") is None  # nothing to show yet

    r = await site.client.post(
        f"/runs/{parent}/resume",
        data={
            "csrf_token": csrf_token(page),
            "override_params": "greeting=Hello\n",
            "notes": "a friendlier greeting",
        },
    )
    assert r.status_code == 303, r.text
    child = r.headers["location"].removeprefix("/runs/")
    assert child != parent
    assert (await site.service.get(child, caller=ADMIN)).request.workflow_params == {
        "greeting": "Hello"
    }

    page = await site.page(f"/runs/{child}")
    link = page.select_one("#lineage-parent a")
    assert link is not None
    assert link["href"] == f"/runs/{parent}"
    assert "Recovery of" in text(page, "#lineage-parent")
    assert text(page, "#lineage-notes") == "a friendlier greeting"
    rows = [
        [td.get_text(strip=True) for td in tr.select("td")]
        for tr in page.select("#params-diff tbody tr")
    ]
    assert rows == [["greeting", '"Hi"', '"Hello"']]
    assert page.select_one("#resume-run") is None  # QUEUED: nothing to resume

    page = await site.page(f"/runs/{parent}")
    children = page.select("#lineage-children a")
    assert [a["href"] for a in children] == [f"/runs/{child}"]


async def test_resume_without_the_csrf_token_is_refused(site: Site) -> None:
    parent = await failed_run(site)
    r = await site.client.post(f"/runs/{parent}/resume", data={})
    assert r.status_code == 403
    page = await site.page(f"/runs/{parent}")
    assert page.select_one("#lineage") is None


async def test_delete_asks_first_then_leaves_a_tombstone(site: Site) -> None:
    run_id = await failed_run(site)
    page = await site.page(f"/runs/{run_id}")
    form = page.select_one("form:has(#delete-run)")
    assert form is not None
    assert "cannot be undone" in str(form["data-confirm"])
    r = await site.client.post(f"/runs/{run_id}/delete", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 303
    assert not site.service.rundir(run_id).root.exists()
    page = await site.page(f"/runs/{run_id}")
    assert "its files were removed" in text(page, "#run-deleted")
    assert page.select_one("#delete-run") is None
    assert page.select_one("#resume-run") is None
    listed = await site.page("/runs")
    assert run_id not in str(listed)
    with_deleted = await site.page("/runs?deleted=on")
    assert run_id in str(with_deleted)
    box = with_deleted.select_one("#show-deleted")
    assert box is not None
    assert box.has_attr("checked")


async def test_a_queued_run_cannot_be_deleted(site: Site) -> None:
    r = await post_submit(site, {}, folder_parts())
    run_id = r.headers["location"].removeprefix("/runs/")
    page = await site.page(f"/runs/{run_id}")
    assert page.select_one("#delete-run") is None
    r = await site.client.post(f"/runs/{run_id}/delete", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 409
    assert site.service.rundir(run_id).root.exists()
