"""While an installed engine is still being checked, Spindle says so (service-info's
``tags.engines_checking``, ``GET /ready`` 503) and refuses its workflow type with a 503
giving the reason, never with "not supported"."""

from __future__ import annotations

from spindle.config import Settings
from spindle.engines.registry import Catalog
from spindle.engines.snakemake import SnakemakeEngine
from tests.api.conftest import WES, example_form, make_app, open_client


async def test_an_engine_being_checked_is_said_and_answers_503(settings: Settings) -> None:
    catalog = Catalog(checking={"snakemake": SnakemakeEngine("snakemake", 1)})
    async for client in open_client(make_app(settings, catalog, worker=False)):
        ready = await client.get(f"{WES}/ready")
        assert ready.status_code == 503
        assert "snakemake" in ready.json()["msg"]
        assert int(ready.headers["Retry-After"]) > 0
        info = (await client.get(f"{WES}/service-info")).json()
        assert info["tags"]["engines_checking"] == "snakemake"

        data, files = example_form("snakemake", "wordcount")
        r = await client.post(f"{WES}/runs", data=data, files=files)
        assert r.status_code == 503, r.text
        assert "snakemake" in r.json()["msg"]
        assert "still being checked" in r.json()["msg"]
        assert "not supported" not in r.json()["msg"]

        data, files = example_form("cwl", "wordcount")
        r = await client.post(f"{WES}/runs", data=data, files=files)
        assert r.status_code == 400, r.text
        assert "no engine is installed for any workflow type" in r.json()["msg"]

        catalog.checking.clear()
        ready = await client.get(f"{WES}/ready")
        assert ready.status_code == 200
        assert ready.json() == {"ready": True}
        info = (await client.get(f"{WES}/service-info")).json()
        assert "engines_checking" not in info["tags"]
