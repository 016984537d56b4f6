"""Signing in to the web UI: the sign-in page (basic), its session cookie, sign-out, CSRF on
both, the redirect to the sign-in page with a ``next`` that only ever leads back to this
site, the header that says who is signed in, and the oidc and proxy-jwt modes (no form: the
proxy or the bearer token signs people in)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle.auth.session import COOKIE as SESSION
from spindle.config import Settings
from spindle.domain import State
from spindle.engines.registry import Catalog
from spindle.web.signin import safe_next
from tests.api.test_auth_jwt import IAP_HEADER, jwt_settings
from tests.idp import IdentityProvider, idp
from tests.web.conftest import (
    Site,
    add_run,
    basic_site,
    browser,
    csrf_token,
    make_app,
    sign_in,
    text,
)

__all__ = ["idp"]


def cookie_header(response: httpx.Response, name: str) -> str:
    """The Set-Cookie header that sets ``name``."""
    found = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def html(response: httpx.Response) -> BeautifulSoup:
    assert response.headers["content-type"].startswith("text/html")
    return BeautifulSoup(response.text, "html.parser")


@pytest.fixture
async def basic(settings: Settings, catalog: Catalog) -> Any:
    async with basic_site(settings, catalog) as site:
        yield site


# --- the page -------------------------------------------------------------------------------


async def test_sign_in_page_structure(basic: Site) -> None:
    r = await basic.client.get("/login?next=/runs%3Fstate%3DCOMPLETE")
    assert r.status_code == 200
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert r.headers["cache-control"] == "no-store"
    page = html(r)
    assert text(page, "title") == "Sign in · Spindle"
    assert [h.get_text(strip=True) for h in page.select("h1")] == ["Sign in"]
    form = page.select_one("form#signin-form")
    assert form is not None
    assert (form["method"], form["action"]) == ("post", "/login")
    fields = {i["name"]: i for i in form.select("input")}
    assert set(fields) == {"csrf_token", "next", "name", "password"}
    assert fields["csrf_token"]["type"] == "hidden"
    assert fields["csrf_token"]["value"]
    assert (fields["next"]["type"], fields["next"]["value"]) == ("hidden", "/runs?state=COMPLETE")
    assert (fields["name"]["type"], fields["name"]["autocomplete"]) == ("text", "username")
    password = fields["password"]
    assert (password["type"], password["autocomplete"]) == ("password", "current-password")
    assert not password.get("value")
    for name in ("name", "password"):  # every field has its label
        assert page.select_one(f"label[for={name}]") is not None
    assert text(form, "button[type=submit]") == "Sign in"
    # nobody is signed in yet: no user in the header, no error
    assert page.select_one("header #user") is None
    assert page.select_one("#signin-error") is None
    assert page.select_one("header a[href='/tokens']") is None
    # the CSRF cookie came with the page
    assert "spindle_csrf" in basic.client.cookies


@pytest.mark.parametrize(
    "path",
    ["/", "/runs?state=COMPLETE&q=x", "/submit", "/tokens", "/runs/nope", "/runs/a/tasks/b"],
)
async def test_a_page_without_sign_in_leads_to_the_sign_in_page(basic: Site, path: str) -> None:
    r = await basic.client.get(path)
    assert r.status_code == 303
    location = urlsplit(r.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query).get("next", ["/"]) == [path]
    assert "www-authenticate" not in r.headers  # no browser dialog
    # and the sign-in page it leads to comes back there
    form = html(await basic.client.get(r.headers["location"]))
    assert form.select_one("input[name=next]")["value"] == path  # type: ignore[index]


async def test_a_fragment_without_sign_in_asks_htmx_to_go_to_the_sign_in_page(
    basic: Site,
) -> None:
    r = await basic.client.get(
        "/runs/x/live",
        headers={"HX-Request": "true", "HX-Current-URL": "http://spindle.test/runs/x"},
    )
    assert (r.status_code, r.headers["hx-redirect"]) == (200, "/login?next=%2Fruns%2Fx")
    assert r.content == b""


async def test_the_api_still_answers_401_without_sign_in(basic: Site) -> None:
    r = await basic.client.get("/ga4gh/wes/v1/runs")
    assert r.status_code == 401
    assert r.json()["status_code"] == 401
    assert any(v.startswith("Basic ") for v in r.headers.get_list("www-authenticate"))


# --- signing in and out ---------------------------------------------------------------------


async def test_sign_in_see_your_pages_and_sign_out(basic: Site) -> None:
    client = basic.client
    r = await sign_in(client, "alice", next_path="/runs?state=QUEUED")
    assert (r.status_code, r.headers["location"]) == (303, "/runs?state=QUEUED")
    cookie = cookie_header(r, SESSION).lower()
    for part in ("httponly", "samesite=lax", "path=/", "max-age=43200"):
        assert part in cookie
    assert "secure" not in cookie  # served over plain HTTP here
    page = html(await client.get("/runs?state=QUEUED"))
    assert text(page, "header #user .name") == "alice"
    assert page.select_one("header #user .badge.admin") is None
    assert page.select_one("header a[href='/tokens']") is not None
    signout = page.select_one("header form.signout")
    assert signout is not None
    assert (signout["method"], signout["action"]) == ("post", "/logout")
    r = await client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert "max-age=0" in cookie_header(r, SESSION).lower()
    assert SESSION not in client.cookies
    assert (await client.get("/runs")).status_code == 303


async def test_an_admin_has_a_badge(basic: Site) -> None:
    await sign_in(basic.client, "root")
    page = html(await basic.client.get("/"))
    assert text(page, "header #user .name") == "root"
    assert text(page, "header #user .badge.admin") == "admin"


async def test_the_cookie_is_secure_over_https(settings: Settings, catalog: Catalog) -> None:
    async with basic_site(settings, catalog, public_url="https://wes.example.org") as site:
        # (the proxy in front speaks HTTPS; a Secure cookie only comes back over HTTPS)
        public = "https://wes.example.org"
        transport = httpx.ASGITransport(app=site.app)
        async with httpx.AsyncClient(transport=transport, base_url=public) as client:
            form = await client.get("/login")
            assert "; secure" in cookie_header(form, "spindle_csrf").lower()
            r = await sign_in(client, "bob")
            assert r.status_code == 303
            assert "; secure" in cookie_header(r, SESSION).lower()


@pytest.mark.parametrize(
    ("name", "password", "status", "message"),
    [
        ("alice", "not it", 401, "The user name or password is not right."),
        ("mallory", "whatever", 401, "The user name or password is not right."),
        ("alice", "", 400, "Enter your user name and password."),
    ],
)
async def test_a_refused_sign_in_says_why_and_sets_no_cookie(
    basic: Site, name: str, password: str, status: int, message: str
) -> None:
    r = await sign_in(basic.client, name, password, next_path="/submit")
    assert r.status_code == status
    assert SESSION not in basic.client.cookies
    assert not [h for h in r.headers.get_list("set-cookie") if h.startswith(SESSION)]
    page = html(r)
    assert text(page, "#signin-error[role=alert]") == message
    assert page.select_one("input[name=name]")["value"] == name  # type: ignore[index]
    assert page.select_one("input[name=next]")["value"] == "/submit"  # type: ignore[index]
    assert password not in r.text or not password
    if status == 401:  # a scheme is named, but not Basic: no browser dialog
        assert r.headers["www-authenticate"].startswith("Bearer ")


async def test_a_disabled_user_cannot_sign_in(basic: Site) -> None:
    await basic.app.state.accounts.set_disabled("bob", True)
    r = await sign_in(basic.client, "bob")
    assert r.status_code == 403
    assert "disabled" in text(html(r), "#signin-error")
    assert SESSION not in basic.client.cookies


async def test_a_session_ends_when_the_user_is_disabled(basic: Site) -> None:
    await sign_in(basic.client, "bob")
    assert (await basic.client.get("/")).status_code == 200
    await basic.app.state.accounts.set_disabled("bob", True)
    r = await basic.client.get("/")
    assert r.status_code == 403
    assert "disabled" in text(html(r), ".error-page .message")


async def test_sign_out_ends_the_session_on_the_server(basic: Site) -> None:
    """A copy of the cookie (kept by another tab, a proxy's log, a thief) stops working at
    sign-out too: on the pages and on the API."""
    await sign_in(basic.client, "alice")
    stolen = basic.client.cookies[SESSION]
    page = html(await basic.client.get("/"))
    async with browser(basic.app) as other:  # the same session, elsewhere
        other.cookies.set(SESSION, stolen)
        assert (await other.get("/ga4gh/wes/v1/me")).status_code == 200
        r = await basic.client.post("/logout", data={"csrf_token": csrf_token(page)})
        assert r.status_code == 303
        me = await other.get("/ga4gh/wes/v1/me")
        assert me.status_code == 401
        assert me.json()["status_code"] == 401
        assert (await other.get("/ga4gh/wes/v1/runs")).status_code == 401
        assert (await other.get("/runs")).status_code == 303  # to the sign-in page
    # signing in again works, with a new session
    assert (await sign_in(basic.client, "alice")).status_code == 303
    assert (await basic.client.get("/")).status_code == 200


async def test_password_change_and_disable_end_sessions(basic: Site) -> None:
    accounts = basic.app.state.accounts
    await sign_in(basic.client, "bob")
    await accounts.set_password("bob", "a new one")
    assert (await basic.client.get("/ga4gh/wes/v1/me")).status_code == 401
    assert (await sign_in(basic.client, "bob", "a new one")).status_code == 303
    await accounts.set_disabled("bob", True)
    await accounts.set_disabled("bob", False)
    # enabled again: the sessions made before the disable stay over
    assert (await basic.client.get("/ga4gh/wes/v1/me")).status_code == 401


async def test_failed_sign_ins_are_throttled(settings: Settings, catalog: Catalog) -> None:
    async with basic_site(settings, catalog, signin_max_failures_per_account=3) as site:
        for _ in range(3):
            assert (await sign_in(site.client, "alice", "guess")).status_code == 401
        # the right password too, now: the account waits out the window
        r = await sign_in(site.client, "alice")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
        assert "too many failed sign-ins" in text(html(r), "#signin-error")
        assert SESSION not in site.client.cookies
        # another account is not held up
        assert (await sign_in(site.client, "bob")).status_code == 303


# --- next: only back to this site -----------------------------------------------------------

OFF_SITE = [
    "https://evil.example/",
    "http://spindle.test.evil.example/",
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "javascript:alert(1)",
    "http:/evil.example",
    "evil.example",
    "",
    "/login",
    "/logout",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_safe_next_refuses_anything_off_this_site(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/runs?state=COMPLETE&q=a%2Fb", "/runs/x/tasks/1#logs"])
def test_safe_next_keeps_paths_of_this_site(target: str) -> None:
    assert safe_next(target) == target


@pytest.mark.parametrize("target", OFF_SITE)
async def test_signing_in_never_redirects_off_this_site(basic: Site, target: str) -> None:
    form = html(await basic.client.get("/login", params={"next": target}))
    assert form.select_one("input[name=next]")["value"] == "/"  # type: ignore[index]
    # even when the form is sent with it by hand
    r = await sign_in(basic.client, "alice", next_path=target)
    assert (r.status_code, r.headers["location"]) == (303, "/")


# --- CSRF -----------------------------------------------------------------------------------


async def test_sign_in_needs_its_csrf_token(basic: Site) -> None:
    await basic.client.get("/login")  # the CSRF cookie, but the token is left out
    for data in (
        {"name": "alice", "password": "alice's secret"},
        {"name": "alice", "password": "alice's secret", "csrf_token": "made-up"},
    ):
        r = await basic.client.post("/login", data=data)
        assert r.status_code == 403
        assert "CSRF" in text(html(r), ".error-page .message")
        assert SESSION not in basic.client.cookies


async def test_a_token_from_another_browser_does_not_sign_in(basic: Site) -> None:
    other = browser(basic.app)
    async with other:
        token = csrf_token(html(await other.get("/login")))
    await basic.client.get("/login")
    r = await basic.client.post(
        "/login", data={"name": "alice", "password": "alice's secret", "csrf_token": token}
    )
    assert r.status_code == 403
    assert SESSION not in basic.client.cookies


async def test_sign_out_needs_its_csrf_token(basic: Site) -> None:
    await sign_in(basic.client, "alice")
    r = await basic.client.post("/logout", data={})
    assert r.status_code == 403
    assert SESSION in basic.client.cookies
    assert (await basic.client.get("/")).status_code == 200  # still signed in


# --- what a signed-in user sees -------------------------------------------------------------


async def test_pages_show_only_your_runs(basic: Site) -> None:
    accounts = basic.app.state.accounts
    ids = {name: (await accounts.user(name)).id for name in ("alice", "bob")}
    db = basic.service.db
    mine = await add_run(db, owner_id=ids["alice"], path=(State.CANCELED,))
    theirs = await add_run(db, owner_id=ids["bob"], path=(State.CANCELED,))
    await sign_in(basic.client, "alice")
    rows = html(await basic.client.get("/runs")).select("#runs-table tbody tr[data-run-id]")
    assert [r["data-run-id"] for r in rows] == [mine.id]
    dashboard = html(await basic.client.get("/"))
    assert text(dashboard, "#by-state .count") == "1 in all"
    assert theirs.id not in str(dashboard)
    assert (await basic.client.get(f"/runs/{theirs.id}")).status_code == 404


# --- none, oidc and proxy-jwt ---------------------------------------------------------------


async def test_without_sign_in_the_local_user_is_an_admin(site: Site) -> None:
    r = await site.client.get("/login?next=/runs")
    assert (r.status_code, r.headers["location"]) == (303, "/runs")
    page = await site.page("/")
    assert text(page, "header #user .name") == "local"
    assert text(page, "header #user .badge.admin") == "admin"
    assert page.select_one("header form.signout") is None  # nothing to sign out of
    assert page.select_one("header a[href='/tokens']") is None


@pytest.mark.parametrize("mode", ["oidc", "proxy-jwt"])
async def test_proxy_modes_say_how_to_sign_in(
    mode: str, settings: Settings, catalog: Catalog, idp: IdentityProvider
) -> None:
    on = jwt_settings(settings, idp, mode, auth_instructions_url="https://wiki.example.org/in")
    app = make_app(on, catalog, worker=False)
    async with app.router.lifespan_context(app), browser(app) as client:
        r = await client.get("/runs")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith('Bearer realm="Spindle"')
        page = html(r)
        assert text(page, "h1") == "Sign-in needed"
        assert ("proxy in front of it" in text(page, "main")) == (mode == "proxy-jwt")
        assert page.select_one("a[href='https://wiki.example.org/in']") is not None
        assert page.select_one("form#signin-form") is None
        # the sign-in page is the same explanation, not a form
        page = html(await client.get("/login"))
        assert text(page, "h1") == "Sign-in needed"
        assert page.select_one("input[type=password]") is None
        r = await client.post("/login", data={"name": "alice", "password": "x"})
        assert r.status_code == 403
        # with what the proxy (or the bearer) gives, pages just work
        token = idp.token()
        sent = {IAP_HEADER: token} if mode == "proxy-jwt" else {"Authorization": f"Bearer {token}"}
        page = html(await client.get("/runs", headers=sent))
        assert text(page, "header #user .name") == "Alice Example"
        assert page.select_one("header form.signout") is None  # the proxy signs out
