"""The UI's side of issue 11's bad input: what answered 500 is a form error next to its field
(or, where the form could not be read, a 4xx error page)."""

from __future__ import annotations

import httpx
import pytest
from bs4 import BeautifulSoup

from spindle import limits
from spindle.auth.accounts import caller_for
from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import runs_on_disk
from tests.api.test_bad_input import CONTROLS, nested, nested_json
from tests.web.conftest import ADMIN, Site, add_run, basic_site, csrf_token, sign_in, text
from tests.web.test_forms import field_errors, post_submit
from tests.web.test_group_pages import post_form

pytestmark = pytest.mark.usefixtures("snakemake_exe", "cwltool_exe")

SNAKEFILE = ("workflow_attachment", ("Snakefile", b"rule all:\n    shell: 'true'\n"))


async def assert_form_error(
    site: Site, settings: Settings, r: httpx.Response, field: str, problem: str
) -> None:
    assert r.status_code == 400, r.text[:2000]
    errors = field_errors(r)
    assert list(errors) == [field], errors
    assert problem in errors[field]
    assert (await site.service.list(page_size=10, page_token=None, caller=ADMIN)).items == []
    assert runs_on_disk(settings) == []


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (("a", "a/b"), "'a' is attached as a file and as the folder of 'a/b'"),
        (("n" * 300,), "longer than 255 bytes"),
        (("d/" * 33 + "f",), "at most 32"),
        (("x\x1by",), "must not hold control characters"),
        (("x\u202ey",), "must not hold control characters"),
    ],
)
async def test_bad_attachment_names(
    site: Site, settings: Settings, names: tuple[str, ...], problem: str
) -> None:
    files = [SNAKEFILE, *(("workflow_attachment", (n, b"x")) for n in names)]
    r = await post_submit(site, {}, files)
    await assert_form_error(site, settings, r, "workflow_attachment", problem)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        pytest.param(nested_json(5000), "levels are accepted", id="JSON 5000 deep"),
        pytest.param(nested_json(900), "at most 64 levels", id="JSON 900 deep"),
        pytest.param("[" * 5000 + "]" * 5000, "levels are accepted", id="YAML 5000 deep"),
        pytest.param("a: &x [*x]\n", "refers to itself", id="YAML alias to itself"),
    ],
)
async def test_params_nested_too_deep(
    site: Site, settings: Settings, params: str, problem: str
) -> None:
    if params.startswith("["):
        params = "a: " + params
    r = await post_submit(site, {"workflow_params": params}, [SNAKEFILE])
    await assert_form_error(site, settings, r, "workflow_params", problem)


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        *((f"k{c}=v", "must not") for c in CONTROLS.values()),
        ("k=v\x1b", "must not hold control characters"),
        ("\n".join(f"t{i}=v" for i in range(limits.MAX_TAGS + 1)), "at most 100"),
        (f"{'k' * 256}=v", "1 to 255 characters"),
    ],
)
async def test_bad_tags(site: Site, settings: Settings, tags: str, problem: str) -> None:
    r = await post_submit(site, {"tags": tags}, [SNAKEFILE])
    await assert_form_error(site, settings, r, "tags", problem)


async def test_a_text_field_over_its_size_is_413_naming_it(site: Site, settings: Settings) -> None:
    big = "x" * (limits.MAX_FIELD_BYTES + 1)
    r = await post_submit(site, {"workflow_params": big}, [SNAKEFILE])
    assert r.status_code == 413
    page = BeautifulSoup(r.text, "html.parser")
    assert "workflow_params: is larger than 1024 KiB" in page.get_text()
    assert runs_on_disk(settings) == []


async def test_a_run_stored_nested_too_deep_has_its_page(site: Site) -> None:
    run = await add_run(site.service.db, params=nested(900))
    page = await site.page(f"/runs/{run.id}")
    assert "nested deeper than 64 levels" in text(page, "#params")


@pytest.mark.parametrize("field", ["name", "description"])
async def test_group_form_with_control_characters(site: Site, field: str) -> None:
    for c in CONTROLS.values():  # (one app for all: each costs a start-up)
        values = {"name": "batch", "description": "", field: f"flow{c}cell"}
        r = await post_form(site, "/groups/new", "/groups", values)
        assert r.status_code == 400
        errors = field_errors(r)
        assert list(errors) == [field]
        assert "control characters" in errors[field]


async def test_token_forms(settings: Settings, catalog: Catalog) -> None:
    """``expires_in_days=²`` (a digit to str.isdigit, not to int) and a token id past
    BIGINT."""
    async with basic_site(settings, catalog) as site:
        assert (await sign_in(site.client, "alice")).status_code == 303
        page = BeautifulSoup((await site.client.get("/tokens")).text, "html.parser")
        token = csrf_token(page)
        for days in ("²", "٣", "9" * 5000):
            r = await site.client.post(
                "/tokens", data={"csrf_token": token, "name": "laptop", "expires_in_days": days}
            )
            assert r.status_code == 400, r.text[:2000]
            assert list(field_errors(r)) == ["expires_in_days"]
        r = await site.client.post(
            "/tokens/200162502140582985728/revoke", data={"csrf_token": token}
        )
        assert r.status_code == 400
        assert "token_id" in BeautifulSoup(r.text, "html.parser").get_text()
        assert (
            await site.app.state.accounts.list_tokens(
                caller_for(await site.app.state.accounts.user("alice"), "session")
            )
            == []
        )
