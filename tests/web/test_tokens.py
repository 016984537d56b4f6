"""The API tokens page: make a token (its secret shown once), see it listed, use it on the
API, revoke it; someone else's token cannot be revoked; every form checks its CSRF token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle.auth.accounts import caller_for
from spindle.config import Settings
from spindle.domain import Caller
from spindle.engines.registry import Catalog
from tests.web.conftest import Site, basic_site, browser, csrf_token, sign_in, text

WES = "/ga4gh/wes/v1"


@pytest.fixture
async def alice(settings: Settings, catalog: Catalog) -> Any:
    """The site in basic mode with alice signed in."""
    async with basic_site(settings, catalog) as site:
        assert (await sign_in(site.client, "alice")).status_code == 303
        yield site


async def page(client: httpx.AsyncClient, status: int = 200) -> BeautifulSoup:
    r = await client.get("/tokens")
    assert r.status_code == status
    return BeautifulSoup(r.text, "html.parser")


async def make(client: httpx.AsyncClient, **data: str) -> httpx.Response:
    token = csrf_token(await page(client))
    return await client.post("/tokens", data={"csrf_token": token, **data})


async def test_the_page_without_tokens(alice: Site) -> None:
    tokens = await page(alice.client)
    assert text(tokens, "h1") == "API tokens"
    assert text(tokens, "header nav a[aria-current=page]") == "API tokens"
    form = tokens.select_one("form#token-form")
    assert form is not None
    assert (form["method"], form["action"]) == ("post", "/tokens")
    assert {i["name"] for i in form.select("input")} == {"csrf_token", "name", "expires_in_days"}
    assert text(tokens, ".empty") == "No tokens yet."
    assert tokens.select_one("#new-token") is None


async def test_make_use_and_revoke_a_token(alice: Site) -> None:
    client = alice.client
    r = await make(client, name="laptop", expires_in_days="30")
    assert r.status_code == 201
    made = BeautifulSoup(r.text, "html.parser")
    secret = text(made, "#token-secret")
    assert secret.startswith("spindle_")
    assert "laptop" in text(made, "#new-token h2")
    rows = made.select("#tokens tbody tr")
    assert len(rows) == 1
    cells = [c.get_text(" ", strip=True) for c in rows[0].select("td")]
    assert (cells[0], cells[2], cells[4]) == ("laptop", "never", "active")
    assert cells[3]  # expires in 30 days

    # the secret works on the API, and is never shown again
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=alice.app), base_url="http://spindle.test"
    ) as script:
        me = await script.get(f"{WES}/me", headers={"Authorization": f"Bearer {secret}"})
        assert (me.status_code, me.json()["name"]) == (200, "alice")
        again = await page(client)
        assert secret not in str(again)
        assert again.select_one("#new-token") is None

        # revoke it
        row = again.select_one("#tokens tbody tr")
        assert row is not None
        revoke = row.select_one("form")
        assert revoke is not None
        assert revoke["data-confirm"].startswith("Revoke the token")  # type: ignore[union-attr]
        r = await client.post(str(revoke["action"]), data={"csrf_token": csrf_token(again)})
        assert (r.status_code, r.headers["location"]) == (303, "/tokens")
        after = await page(client)
        assert text(after, "#tokens tbody tr td:nth-of-type(5)").startswith("revoked")
        assert after.select_one("#tokens tbody tr form") is None
        me = await script.get(f"{WES}/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 401


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "must"),
        ({"name": "x", "expires_in_days": "soon"}, "expires_in_days", "whole number of days"),
        ({"name": "x", "expires_in_days": "0"}, "expires_in_days", "whole number of days"),
    ],
)
async def test_bad_values_are_shown_next_to_their_field(
    alice: Site, data: dict[str, str], field: str, message: str
) -> None:
    r = await make(alice.client, **data)
    assert r.status_code == 400
    form = BeautifulSoup(r.text, "html.parser")
    assert message in text(form, f"#{field}-error")
    assert form.select_one("#new-token") is None
    assert await alice.app.state.accounts.list_tokens(await caller_of(alice, "alice")) == []


async def caller_of(site: Site, name: str) -> Caller:
    return caller_for(await site.app.state.accounts.user(name), "session")


async def test_someone_elses_token_cannot_be_revoked(alice: Site) -> None:
    async with browser(alice.app) as bob:
        await sign_in(bob, "bob")
        r = await make(bob, name="bob's")
        assert r.status_code == 201
        token_id = str(BeautifulSoup(r.text, "html.parser").select("#tokens tbody tr")[0]["id"])
        token_id = token_id.removeprefix("token-")
    # alice sees none of bob's tokens, and revoking one is a 404
    assert (await page(alice.client)).select("#tokens tbody tr") == []
    token = csrf_token(await page(alice.client))
    r = await alice.client.post(f"/tokens/{token_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 404
    bobs = await alice.app.state.accounts.list_tokens(await caller_of(alice, "bob"))
    assert [t.revoked_at for t in bobs] == [None]


async def test_token_forms_check_their_csrf_token(alice: Site) -> None:
    r = await alice.client.post("/tokens", data={"name": "sneaky"})
    assert r.status_code == 403
    assert (await page(alice.client)).select("#tokens tbody tr") == []
    await make(alice.client, name="kept")
    r = await alice.client.post("/tokens/1/revoke", data={})
    assert r.status_code == 403
