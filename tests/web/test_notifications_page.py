"""The bell and the notifications page, read by structure: the unread count, each
notification linking to its run or group, mark one and mark all read (with their CSRF
tokens), and only the signed-in user's notifications."""

from __future__ import annotations

from sqlalchemy import select

from spindle.db.tables import users
from spindle.db.types import utcnow
from spindle.notify.outbox import add_notification
from tests.web.conftest import Site, csrf_token, text


async def notify(site: Site, name: str, payload: dict[str, object]) -> None:
    async with site.app.state.notify.db.begin() as conn:
        user_id = (await conn.execute(select(users.c.id).where(users.c.name == name))).scalar_one()
        await add_notification(conn, user_id, payload, now=utcnow())


RUN = {
    "type": "run.failed",
    "data": {
        "run_id": "11111111-2222-3333-4444-555555555555",
        "run_name": "assembly",
        "state": "EXECUTOR_ERROR",
        "workflow_type": "CWL",
        "workflow_url": "wf.cwl",
        "failing_task": "align",
    },
}
GROUP = {
    "type": "group.drained",
    "data": {"group_id": "g-1", "group_name": "batch 7", "counts": {"COMPLETE": 2}, "total": 2},
}


async def test_the_bell_counts_unread_and_the_page_marks_them_read(site: Site) -> None:
    page = await site.page("/")
    bell = page.select_one("nav a#bell")
    assert bell is not None
    assert bell["href"] == "/notifications"
    assert bell["hx-get"] == "/notifications/bell"  # swapped in on load, then every 15 s

    await notify(site, "local", RUN)
    await notify(site, "local", GROUP)
    fragment = await site.page("/notifications/bell")
    assert text(fragment, "#bell-count") == "2"
    assert "unread" in fragment.select_one("#bell")["class"]

    page = await site.page("/notifications")
    assert text(page, "#unread-count") == "2 unread"
    items = page.select("#notifications li")
    assert [i["class"] for i in items] == [["unread"], ["unread"]]
    group_item, run_item = items  # newest first
    link = run_item.select_one(".title a")
    assert link is not None
    assert link["href"] == "/runs/11111111-2222-3333-4444-555555555555"
    assert text(run_item, ".title") == (
        "Run assembly (11111111-2222-3333-4444-555555555555) EXECUTOR_ERROR"
    )
    assert "failing task: align" in text(run_item, ".body")
    assert group_item.select_one(".title a")["href"] == "/groups/g-1"
    assert "2 runs (2 COMPLETE)" in text(group_item, ".body")

    # mark one read
    form = run_item.select_one("form")
    assert form is not None
    r = await site.client.post(str(form["action"]), data={"csrf_token": csrf_token(page)})
    assert (r.status_code, r.headers["location"]) == (303, "/notifications")
    page = await site.page("/notifications")
    assert text(page, "#unread-count") == "1 unread"
    assert text(await site.page("/notifications/bell"), "#bell-count") == "1"
    unread_only = await site.page("/notifications?unread=true")
    assert len(unread_only.select("#notifications li")) == 1
    # then all
    r = await site.client.post("/notifications/read", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 303
    page = await site.page("/notifications")
    assert text(page, "#unread-count") == "0 unread"
    assert page.select_one("#read-all") is None
    assert "unread" not in (await site.page("/notifications/bell")).select_one("#bell")["class"]
    # a forged form is refused
    r = await site.client.post("/notifications/read", data={"csrf_token": "forged"})
    assert r.status_code == 403
