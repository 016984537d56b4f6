"""``/metrics`` (``spindle.metrics``, ``api/health.py``): Prometheus text that
prometheus-client's own parser reads, whose counters move as runs move, behind its
network and token setting."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import WES, app_client
from tests.ops.conftest import fake_app
from tests.scheduler.test_fakes import submit, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, **kw: object) -> Samples:
    r = await client.get("/metrics", **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_parse_and_move_as_runs_move(fakes: None, tmp_path: Path) -> None:
    async with app_client(await fake_app(tmp_path)) as client:
        before = await scrape(client)
        assert value(before, "spindle_database_up") == 1
        ok = await submit(client, {"sleep": 0.2, "tasks": 2})
        bad = await submit(client, {"sleep": 0, "exit": 2})
        await wait_for(client, ok, {"COMPLETE"})
        await wait_for(client, bad, {"EXECUTOR_ERROR"})
        queued = await submit(client, {"sleep": 30})
        await client.post(f"{WES}/runs/{queued}/cancel")
        await wait_for(client, queued, {"CANCELED"})
        after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # from the database: every state of the compute environment, 0 where none is
    runs = {"compute_env": "local"}
    assert value(after, "spindle_runs", state="COMPLETE", **runs) == 1
    assert value(after, "spindle_runs", state="EXECUTOR_ERROR", **runs) == 1
    assert value(after, "spindle_runs", state="CANCELED", **runs) == 1
    assert ("spindle_runs", frozenset({"state": "QUEUED", **runs}.items())) in after
    assert value(after, "spindle_runs", state="QUEUED", **runs) == 0
    # counted by this process
    assert moved("spindle_runs_submitted_total", workflow_type="FAKE", compute_env="local") == 3
    assert moved("spindle_runs_ended_total", workflow_type="FAKE", state="COMPLETE") == 1
    assert moved("spindle_runs_ended_total", workflow_type="FAKE", state="EXECUTOR_ERROR") == 1
    assert moved("spindle_run_duration_seconds_count", workflow_type="FAKE", state="COMPLETE") == 1
    assert moved("spindle_run_queue_wait_seconds_count", workflow_type="FAKE") >= 2
    assert moved("spindle_claim_seconds_count", outcome="claimed") >= 2
    post = {"method": "POST", "route": "/ga4gh/wes/v1/runs", "status": "200"}
    assert moved("spindle_http_requests_total", **post) == 3
    get_run = {"method": "GET", "route": "/ga4gh/wes/v1/runs/{run_id}", "status": "200"}
    assert moved("spindle_http_requests_total", **get_run) >= 3


async def test_metrics_need_an_allowed_network_or_the_token(fakes: None, tmp_path: Path) -> None:
    app = await fake_app(tmp_path, metrics_networks=[], metrics_token="s3cret-token")
    async with app_client(app) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["status_code"] == 401
        assert "metrics_token" in refused.json()["msg"]
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = await scrape(client, headers={"Authorization": "Bearer s3cret-token"})
        assert value(samples, "spindle_database_up") == 1
    # the default: loopback only (the in-process client is 127.0.0.1), no token
    async with app_client(await fake_app(tmp_path / "other")) as client:
        assert (await client.get("/metrics")).status_code == 200
        bearer = {"Authorization": "Bearer "}
        assert (await client.get("/metrics", headers=bearer)).status_code == 200
    away = await fake_app(tmp_path / "third", metrics_networks=["10.0.0.0/8"])
    async with app_client(away) as client:
        assert (await client.get("/metrics")).status_code == 401
