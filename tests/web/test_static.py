"""The vendored static files are the pinned ones, and are served."""

from __future__ import annotations

import hashlib
import re

from spindle.web.site import STATIC
from tests.web.conftest import Site


def test_htmx_is_the_pinned_file() -> None:
    readme = (STATIC / "README.md").read_text()
    found = re.search(r"htmx\.org@(\d+\.\d+\.\d+).*?sha256 `([0-9a-f]{64})`", readme, re.S)
    assert found is not None, "static/README.md must record the htmx version and sha256"
    version, digest = found.groups()
    data = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest
    assert f'version:"{version}"' in data.decode()


async def test_static_files_are_served(site: Site) -> None:
    for name, kind in (
        ("htmx.min.js", "javascript"),
        ("spindle.js", "javascript"),
        ("spindle.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        r = await site.client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert kind in r.headers["content-type"], name
        assert r.content == (STATIC / name).read_bytes()
    assert (await site.client.get("/static/nope.js")).status_code == 404


async def test_pages_carry_the_security_headers(site: Site) -> None:
    r = await site.client.get("/runs")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # so the pages may not carry inline scripts or styles
    assert "<script>" not in r.text
    assert " style=" not in r.text
    assert " onclick=" not in r.text
