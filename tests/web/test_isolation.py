"""The isolation matrix for the web UI, on every database: alice, bob and root (an admin),
each signed in through the sign-in form, against each other's runs. Someone else's run is
not in the runs table, a search or the dashboard; its pages, fragments, logs, downloads and
event stream answer 404 like a run that does not exist; its Cancel and Submit again forms
are 404 and change nothing. The admin sees and acts on every run; a run submitted again
belongs to whoever submitted it again. (The API's own matrix is tests/api/test_isolation.py;
the all-runs event stream's scope is tested on the service, tests/runs/test_query.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from bs4 import BeautifulSoup

from spindle.config import Settings
from spindle.domain import Caller, LogSpan, Run, State, Task
from spindle.engines.registry import Catalog
from spindle.runs import store
from tests.web.conftest import (
    ADMIN,
    PASSWORDS,
    Site,
    add_run,
    basic_site,
    browser,
    csrf_token,
    sign_in,
    text,
)

WES = "/ga4gh/wes/v1"
ACTIVE = (State.INITIALIZING, State.RUNNING)


async def finished_run(site: Site, owner_id: int) -> Run:
    """A COMPLETE run with a task, logs, an output file and its attachments on disk."""
    started = datetime.now(UTC) - timedelta(minutes=1)
    run = await add_run(
        site.service.db,
        owner_id=owner_id,
        path=(*ACTIVE, State.COMPLETE),
        start_time=started,
        end_time=started + timedelta(seconds=10),
        exit_code=0,
        outputs={
            "counts": {
                "class": "File",
                "basename": "counts.txt",
                "location": "run:outputs/counts.txt",
            }
        },
    )
    rundir = site.service.rundir(run.id)
    rundir.create()
    rundir.stdout.write_bytes(b"secret stdout of " + run.id.encode())
    (rundir.root / "outputs").mkdir(exist_ok=True)
    (rundir.root / "outputs" / "counts.txt").write_text("12 words\n")
    (rundir.attachments / "Snakefile").write_text("rule all:\n    shell: 'true'\n")
    async with site.service.db.begin() as conn:
        await store.save_tasks(
            conn,
            run.id,
            [
                Task(
                    id="1",
                    name="count",
                    state=State.COMPLETE,
                    exit_code=0,
                    start_time=started,
                    end_time=started + timedelta(seconds=5),
                    stdout=LogSpan("logs/stdout", 0, 6),
                )
            ],
        )
    return run


def reads(run_id: str) -> dict[str, str]:
    """Everything a browser reads about one run: pages, fragments and the API endpoints the
    pages use (logs followed live, downloads, the run's event stream)."""
    return {
        "run page": f"/runs/{run_id}",
        "live fragment": f"/runs/{run_id}/live",
        "row fragment": f"/runs/{run_id}/row",
        "task page": f"/runs/{run_id}/tasks/1",
        "stdout": f"{WES}/runs/{run_id}/logs/stdout",
        "task log": f"{WES}/runs/{run_id}/tasks/1/logs/stdout",
        "download": f"{WES}/runs/{run_id}/files/outputs/counts.txt",
        "events": f"{WES}/runs/{run_id}/events",
    }


def listed(page: BeautifulSoup) -> set[str]:
    return {str(r["data-run-id"]) for r in page.select("#runs-table tbody tr[data-run-id]")}


async def get_page(client: httpx.AsyncClient, path: str) -> BeautifulSoup:
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    return BeautifulSoup(r.text, "html.parser")


async def test_ui_isolation_matrix(
    settings: Settings, catalog: Catalog, database_url: str, snakemake_exe: str
) -> None:
    async with basic_site(settings, catalog, database_url=database_url) as site:
        accounts = site.app.state.accounts
        ids = {name: (await accounts.user(name)).id for name in PASSWORDS}
        done = {name: await finished_run(site, ids[name]) for name in ("alice", "bob")}
        queued = {
            name: await add_run(site.service.db, owner_id=ids[name]) for name in ("alice", "bob")
        }
        owner_of = {r.id: name for name, r in [*done.items(), *queued.items()]}
        browsers = {name: browser(site.app) for name in PASSWORDS}
        try:
            for name, client in browsers.items():
                assert (await sign_in(client, name)).status_code == 303

            for viewer, client in browsers.items():
                may_see = {r for r, o in owner_of.items() if viewer in (o, "root")}

                # --- lists, searches and the dashboard ---------------------------------------
                assert listed(await get_page(client, "/runs")) == may_see, viewer
                for run_id in owner_of:
                    found = listed(await get_page(client, f"/runs?q={run_id[:13]}"))
                    assert found == ({run_id} & may_see), (viewer, run_id)
                dashboard = await get_page(client, "/")
                assert text(dashboard, "#by-state .count") == f"{len(may_see)} in all"
                for run_id in set(owner_of) - may_see:
                    assert run_id not in str(dashboard)

                # --- a finished run's pages, logs, downloads, events ------------------------
                for owner, run in done.items():
                    allowed = viewer in (owner, "root")
                    for what, url in reads(run.id).items():
                        r = await client.get(url)
                        assert r.status_code == (200 if allowed else 404), (viewer, owner, what)
                        if allowed:
                            continue
                        # the very answer a run that does not exist gets
                        nowhere = await client.get(url.replace(run.id, "no-such-run"))
                        assert nowhere.status_code == 404
                        assert r.text.replace(run.id, "X") == nowhere.text.replace(
                            "no-such-run", "X"
                        ), (viewer, what)
                        if not url.startswith(WES):
                            page = BeautifulSoup(r.text, "html.parser")
                            assert text(page, "h1") == "404 · Not Found"
                            assert text(page, ".message") == f"run {run.id!r} was not found"

            # --- someone else's Cancel and Submit again: 404, nothing changes -------------
            for viewer, owner in (("alice", "bob"), ("bob", "alice")):
                client = browsers[viewer]
                token = csrf_token(await get_page(client, "/submit"))
                for action in ("cancel", "resubmit"):
                    for run in (queued[owner], done[owner]):
                        r = await client.post(
                            f"/runs/{run.id}/{action}", data={"csrf_token": token}
                        )
                        assert r.status_code == 404, (viewer, action, owner)
                state = await site.service.state(queued[owner].id, caller=ADMIN)
                assert state is State.QUEUED
            assert sum((await site.service.counts(caller=ADMIN)).values()) == len(owner_of)

            # --- one's own, and the admin's on anyone's -----------------------------------
            async def resubmit(viewer: str, run_id: str) -> Run:
                client = browsers[viewer]
                page = await get_page(client, f"/runs/{run_id}")
                r = await client.post(
                    f"/runs/{run_id}/resubmit", data={"csrf_token": csrf_token(page)}
                )
                assert r.status_code == 303, (viewer, r.text[:500])
                new_id = r.headers["location"].removeprefix("/runs/")
                return await site.service.get(new_id, caller=ADMIN)

            again = await resubmit("alice", done["alice"].id)
            assert again.owner_id == ids["alice"]
            by_root = await resubmit("root", done["alice"].id)
            assert by_root.owner_id == ids["root"]
            assert by_root.request == done["alice"].request
            bob_sees = listed(await get_page(browsers["bob"], "/runs"))
            assert again.id not in bob_sees
            assert by_root.id not in bob_sees

            token = csrf_token(await get_page(browsers["root"], "/runs"))
            r = await browsers["root"].post(
                f"/runs/{queued['bob'].id}/cancel", data={"csrf_token": token}
            )
            assert r.status_code == 303
            bob = Caller(user_id=ids["bob"], name="bob")
            assert await site.service.state(queued["bob"].id, caller=bob) is State.CANCELED
            token = csrf_token(await get_page(browsers["alice"], "/runs"))
            r = await browsers["alice"].post(
                f"/runs/{queued['alice'].id}/cancel", data={"csrf_token": token}
            )
            assert r.status_code == 303
            # (stop what was queued, so no engine is left waiting)
            for run in (again, by_root):
                await site.service.cancel(run.id, caller=ADMIN)
        finally:
            for client in browsers.values():
                await client.aclose()
