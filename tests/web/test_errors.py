"""The error page: 404, 405, 500 and refused requests on the UI's paths are pages in the UI's
look, while every path under the API keeps answering ErrorResponse."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, make_app
from tests.web.conftest import Site, text


def error_page(r: httpx.Response, status: int) -> BeautifulSoup:
    assert r.status_code == status
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    page = BeautifulSoup(r.text, "html.parser")
    assert page.select_one("header nav") is not None  # the same look as every page
    assert text(page, "h1").startswith(f"{status} · ")
    return page


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/nowhere", 404, "no such path: /nowhere"),
        ("GET", "/runs/nope", 404, "run 'nope' was not found"),
        ("GET", "/runs/nope/live", 404, "run 'nope' was not found"),
        ("GET", "/runs/nope/tasks/1", 404, "run 'nope' was not found"),
        ("GET", "/runs/nope/cancel", 405, "method GET is not allowed on /runs/nope/cancel"),
        ("DELETE", "/runs", 405, "method DELETE is not allowed on /runs"),
    ],
)
async def test_ui_errors_are_pages(
    site: Site, method: str, path: str, status: int, message: str
) -> None:
    page = error_page(await site.client.request(method, path), status)
    assert text(page, ".message") == message
    links = [a["href"] for a in page.select(".error-page a")]
    assert links == ["/", "/runs", "/submit"]


@pytest.mark.parametrize("path", ["/nowhere", "/runs/nope", "/runs/nope/events"])
async def test_api_errors_stay_error_responses(site: Site, path: str) -> None:
    r = await site.client.get(f"{WES}{path}")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["status_code"] == 404


async def test_an_unexpected_failure_is_a_500_page_that_reveals_nothing(
    settings: Settings, catalog: Catalog
) -> None:
    app = make_app(settings, catalog, worker=False)
    async with app.router.lifespan_context(app):
        # a database that lost its table: every read of runs fails inside the service
        with sqlite3.connect(settings.data_dir / "spindle.db") as conn:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("DROP TABLE runs")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://spindle.test") as c:
            page = error_page(await c.get("/"), 500)
            assert text(page, ".message") == "an unexpected error occurred; see the server log"
            assert "Traceback" not in page.get_text()
            assert "runs" not in text(page, ".message")
            api = await c.get(f"{WES}/runs")
            assert api.status_code == 500
            assert api.json() == {
                "msg": "an unexpected error occurred; see the server log",
                "status_code": 500,
            }
