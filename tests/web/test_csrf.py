"""Cross-site request forgery: every state-changing form is refused (403, nothing changed)
without the token this service signed for the browser's own cookie."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from bs4 import BeautifulSoup
from itsdangerous import URLSafeSerializer

from spindle.domain import State
from spindle.web.csrf import COOKIE
from tests.support import EXAMPLES
from tests.web.conftest import ADMIN, Site, add_run, csrf_token, text

pytestmark = pytest.mark.usefixtures("snakemake_exe")

SNAKEFILE = (EXAMPLES / "snakemake" / "sleep" / "Snakefile").read_bytes()


def forged(value: str) -> str:
    """A well-formed token signed with a key that is not the service's."""
    return URLSafeSerializer("not the secret", salt="spindle.web.csrf").dumps(value)


#: what the attacker's form carries instead of the page's token
BAD_TOKENS: dict[str, Callable[[str, str], str | None]] = {
    "missing": lambda _page_token, _cookie: None,
    "empty": lambda _page_token, _cookie: "",
    "garbage": lambda _page_token, _cookie: "not-a-token",
    "tampered": lambda page_token, _cookie: (
        page_token[:-2] + ("AA" if page_token[-2:] != "AA" else "BB")
    ),
    "signed with another key": lambda _page_token, cookie: forged(cookie),
}


async def attempt(
    site: Site, path: str, token: str | None, *, with_file: bool = False
) -> httpx.Response:
    data = {"workflow": "SMK|9", "workflow_url": "Snakefile"}
    if token is not None:
        data["csrf_token"] = token
    files = [("workflow_attachment", ("Snakefile", SNAKEFILE))] if with_file else None
    return await site.client.post(path, data=data, files=files)


def refused(r: httpx.Response) -> None:
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
    page = BeautifulSoup(r.text, "html.parser")
    assert text(page, "h1") == "403 · Forbidden"
    assert "CSRF token" in text(page, ".message")


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_forms_without_the_right_token_change_nothing(site: Site, kind: str) -> None:
    run = await add_run(site.service.db)
    page_token = csrf_token(await site.page(f"/runs/{run.id}"))
    cookie = site.client.cookies[COOKIE]
    bad = BAD_TOKENS[kind](page_token, cookie)

    refused(await attempt(site, "/submit", bad, with_file=True))
    refused(await attempt(site, f"/runs/{run.id}/cancel", bad))
    refused(await attempt(site, f"/runs/{run.id}/resubmit", bad))

    assert await site.service.counts(caller=ADMIN) == {"QUEUED": 1}  # no new run
    assert await site.service.state(run.id, caller=ADMIN) is State.QUEUED  # not cancelled
    # and the same browser with the page's own token may
    r = await attempt(site, f"/runs/{run.id}/cancel", page_token)
    assert r.status_code == 303
    assert await site.service.state(run.id, caller=ADMIN) is State.CANCELED


async def test_a_token_is_only_good_with_the_cookie_it_was_made_for(site: Site) -> None:
    run = await add_run(site.service.db)
    page_token = csrf_token(await site.page(f"/runs/{run.id}"))
    # another browser (another cookie) replaying this page's token
    site.client.cookies.set(COOKIE, "x" * 43)
    refused(await attempt(site, f"/runs/{run.id}/cancel", page_token))
    # no cookie at all
    site.client.cookies.clear()
    refused(await attempt(site, f"/runs/{run.id}/cancel", page_token))
    assert await site.service.state(run.id, caller=ADMIN) is State.QUEUED


async def test_the_cookie_is_set_once_and_kept_from_scripts(site: Site) -> None:
    r = await site.client.get("/submit")
    header = r.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    lowered = header.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/" in lowered
    again = await site.client.get("/runs")
    assert "set-cookie" not in again.headers
    # the token differs from the cookie: the cookie's value is never in the page
    assert site.client.cookies[COOKIE] not in again.text
