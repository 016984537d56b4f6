"""The audit log (``spindle.audit``, ``GET /audit``, the ``/audit`` page): an entry for
each kind of action with its actor, address and target; for admins only; pruned by age."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bs4 import BeautifulSoup
from sqlalchemy import update

from spindle import audit
from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.db.tables import audit_log
from spindle.db.types import utcnow
from tests.api.conftest import WES, example_form
from tests.api.test_auth_basic import OTHER_PASSWORD, PASSWORD, basic, basic_app

__all__ = ["basic_app"]  # the fixture, imported so pytest finds it here

ALICE = basic("alice", PASSWORD)
BOB = basic("bob", OTHER_PASSWORD)
ROOT = basic("root", OTHER_PASSWORD)


async def _entries(env: Any, **params: str) -> list[dict[str, Any]]:
    r = await env.api.get(f"{WES}/audit", params={"page_size": "1000", **params}, headers=ROOT)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def _one(entries: list[dict[str, Any]], action: str, target: str) -> dict[str, Any]:
    found = [e for e in entries if e["action"] == action and e["target_id"] == target]
    assert len(found) == 1, (action, target, entries)
    return found[0]


async def test_each_kind_of_action_is_recorded_with_actor_address_and_target(
    basic_app: Any,
) -> None:
    async with basic_app() as env:
        api = env.api
        # sign-ins: a wrong password (HTTP Basic), the sign-in page's success
        assert (await api.get(f"{WES}/runs", headers=basic("alice", "wrong"))).status_code == 401
        await env.authenticator.sign_in("alice", PASSWORD, "10.1.2.3")
        # tokens
        made = await env.new_token(ALICE, name="laptop")
        revoked = await api.post(f"{WES}/tokens/{made['id']}/revoke", headers=ALICE)
        assert revoked.status_code == 200, revoked.text
        # runs
        data, files = example_form("cwl", "wordcount")
        r = await api.post(f"{WES}/runs", data=data, files=files, headers=ALICE)
        run_id = r.json()["run_id"]
        assert (await api.post(f"{WES}/runs/{run_id}/cancel", headers=ALICE)).status_code == 200
        # (her run's live log is hers: bob's stream of it is a 404, as everywhere)
        stream = f"{WES}/runs/{run_id}/logs/stdout/stream"
        assert (await api.get(stream, headers=BOB)).status_code == 404
        mine = await api.get(stream, headers=ALICE)
        assert mine.status_code == 200
        assert 'event: done\r\ndata: {"state": "CANCELED"' in mine.text
        # groups
        g = await api.post(f"{WES}/run-groups", json={"name": "batch"}, headers=BOB)
        group_id = g.json()["id"]
        patched = await api.patch(f"{WES}/run-groups/{group_id}", json={"max_runs": 2}, headers=BOB)
        assert patched.status_code == 200, patched.text
        assert (await api.delete(f"{WES}/run-groups/{group_id}", headers=BOB)).status_code == 200
        # users (the CLI's way: outside any request)
        await env.accounts.set_password("bob", "a brand new password")
        await env.accounts.set_disabled("bob", True)

        entries = await _entries(env)
        assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
        created = _one(entries, "user.create", "alice")
        assert created["actor_name"].startswith("cli:")
        assert created["address"] is None

        failure = _one(entries, "signin.failure", "alice")
        assert (failure["actor_id"], failure["address"]) == (None, "127.0.0.1")
        assert failure["detail"]["reason"] == "wrong user name or password"
        success = _one(entries, "signin.success", "alice")
        assert (success["actor_name"], success["address"]) == ("alice", "10.1.2.3")

        for action in ("token.create", "token.revoke"):
            e = _one(entries, action, str(made["id"]))
            assert (e["actor_name"], e["address"], e["target_kind"]) == (
                "alice",
                "127.0.0.1",
                "token",
            )
        submit = _one(entries, "run.submit", run_id)
        assert (submit["actor_name"], submit["target_kind"]) == ("alice", "run")
        assert submit["detail"]["workflow_type"] == "CWL"
        assert _one(entries, "run.cancel", run_id)["actor_name"] == "alice"
        for action in ("group.create", "group.update", "group.delete"):
            assert _one(entries, action, group_id)["actor_name"] == "bob"
        assert _one(entries, "group.update", group_id)["detail"] == {"max_runs": 2}
        for action in ("user.password", "user.disable"):
            assert _one(entries, action, "bob")["actor_name"].startswith("cli:")

        # filters, and pages that neither repeat nor skip
        signins = await _entries(env, action="signin.")
        assert {e["action"] for e in signins} == {"signin.failure", "signin.success"}
        assert {e["action"] for e in await _entries(env, target=run_id)} == {
            "run.submit",
            "run.cancel",
        }
        assert {e["actor_name"] for e in await _entries(env, actor="bob")} == {"bob"}
        assert await _entries(env, since=(utcnow() + timedelta(days=1)).isoformat()) == []
        seen: list[int] = []
        token = ""
        while True:
            params = {"page_size": "3", **({"page_token": token} if token else {})}
            page = (await api.get(f"{WES}/audit", params=params, headers=ROOT)).json()
            seen += [e["id"] for e in page["entries"]]
            token = page["next_page_token"]
            if not token:
                break
        assert seen == [e["id"] for e in entries]


async def test_only_admins_read_the_audit_log(basic_app: Any) -> None:
    async with basic_app() as env:
        api = env.api
        for who in (ALICE, BOB):
            r = await api.get(f"{WES}/audit", headers=who)
            assert r.status_code == 403, r.text
            assert r.json()["status_code"] == 403
            # not even about themselves
            r = await api.get(f"{WES}/audit", params={"actor": "alice"}, headers=who)
            assert r.status_code == 403
            assert (await api.get("/audit", headers=who)).status_code == 403
        assert (await api.get(f"{WES}/audit")).status_code == 401
        bad = await api.get(f"{WES}/audit", params={"since": "yesterday"}, headers=ROOT)
        assert bad.status_code == 400
        assert "since" in bad.json()["msg"]
        # the page, for an admin: the table and a link in the navigation
        await api.get(f"{WES}/runs", headers=basic("bob", "wrong"))
        page = await api.get("/audit", params={"action": "signin."}, headers=ROOT)
        assert page.status_code == 200
        soup = BeautifulSoup(page.text, "html.parser")
        rows = soup.select("#audit tbody tr")
        assert [r["data-action"] for r in rows] == ["signin.failure"]
        assert "bob" in rows[0].get_text()
        assert soup.select_one('nav a[href="/audit"]') is not None
        alices = BeautifulSoup((await api.get("/runs", headers=ALICE)).text, "html.parser")
        assert alices.select_one('nav a[href="/audit"]') is None


async def test_entries_past_the_retention_are_pruned(settings: Settings) -> None:
    db = create_engine(settings.effective_database_url)
    try:
        await upgrade(db)
        await audit.write(db, "run.cancel", target=("run", "old"))
        await audit.write(db, "run.cancel", target=("run", "new"))
        async with db.begin() as conn:
            await conn.execute(
                update(audit_log)
                .where(audit_log.c.target_id == "old")
                .values(at=utcnow() - timedelta(days=31))
            )
        assert await audit.prune(db, retention_days=0) == 0  # kept for ever
        assert await audit.prune(db, retention_days=30) == 1
        async with db.connect() as conn:
            left = await audit.search(conn, audit.AuditQuery(), before_id=None, limit=10)
        assert [e.target_id for e in left] == ["new"]
        assert left[0].actor_name is not None
        assert left[0].actor_name.startswith("cli:")
    finally:
        await db.dispose()
