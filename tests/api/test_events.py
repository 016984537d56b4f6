"""The server-sent event streams (``GET /runs/{run_id}/events``, ``GET /events``): in
process for a run that has ended (the stream ends by itself), and against a real server for
streams that follow a run while it goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import WES, example_form, submit_example
from tests.api.test_auth_basic import OTHER_PASSWORD, PASSWORD, basic, basic_app, bearer
from tests.live import live_server

__all__ = ["basic_app", "live_server"]  # the fixture, imported so pytest finds it here


def parse_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """SSE messages as dicts of their fields (``data`` parsed as JSON); comments skipped."""
    message: dict[str, Any] = {}
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            if message:
                if "data" in message:
                    message["data"] = json.loads(message["data"])
                yield message
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")


async def test_run_stream_of_an_ended_run_gives_its_events_and_ends(
    api_no_worker: httpx.AsyncClient,
) -> None:
    run_id = await submit_example(api_no_worker, "cwl", "wordcount")
    await api_no_worker.post(f"{WES}/runs/{run_id}/cancel")  # QUEUED → CANCELED at once
    r = await api_no_worker.get(f"{WES}/runs/{run_id}/events")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    messages = list(parse_sse(r.text.splitlines()))
    assert [m["event"] for m in messages] == ["state", "state", "done"]
    assert messages[-1]["data"] == {"run_id": run_id, "state": "CANCELED"}
    messages = messages[:-1]
    first, last = (m["data"] for m in messages)
    assert (first["state"], last["state"]) == ("QUEUED", "CANCELED")
    assert last["reason"] == "cancelled before it started"
    assert last["run_id"] == run_id
    assert last["at"].endswith("Z")
    assert [int(m["id"]) for m in messages] == [first["id"], last["id"]]
    assert first["id"] < last["id"]

    # resuming after the first event, by query or by Last-Event-ID
    for kw in (
        {"params": {"after": first["id"]}},
        {"headers": {"Last-Event-ID": messages[0]["id"]}},
    ):
        again = await api_no_worker.get(f"{WES}/runs/{run_id}/events", **kw)
        resumed = list(parse_sse(again.text.splitlines()))
        assert [(m["event"], m["data"]["state"]) for m in resumed] == [
            ("state", "CANCELED"),
            ("done", "CANCELED"),
        ]


@pytest.mark.parametrize(
    ("path", "kw", "status"),
    [
        ("/runs/nope/events", {}, 404),
        ("/runs/nope/events", {"params": {"after": "-1"}}, 400),
        ("/events", {"params": {"after": "x"}}, 400),
        ("/events", {"headers": {"Last-Event-ID": "abc"}}, 400),
    ],
)
async def test_stream_errors_are_error_responses(
    api_no_worker: httpx.AsyncClient, path: str, kw: dict[str, Any], status: int
) -> None:
    r = await api_no_worker.get(f"{WES}{path}", **kw)
    assert r.status_code == status
    assert r.json()["status_code"] == status


@pytest.mark.engine
def test_streams_follow_a_run_to_its_end(live_server: str, snakemake_exe: str) -> None:
    timeout = httpx.Timeout(120.0)
    with (
        httpx.Client(base_url=live_server, timeout=timeout) as client,
        client.stream("GET", f"{WES}/events") as everything,
    ):
        assert everything.status_code == 200
        data, files = example_form("snakemake", "wordcount")
        submitted = client.post(f"{WES}/runs", data=data, files=files)
        run_id = submitted.json()["run_id"]

        # the run's own stream: every state to COMPLETE, progress on the way, then the end
        with client.stream("GET", f"{WES}/runs/{run_id}/events") as one:
            messages = list(parse_sse(one.iter_lines()))
        states = [m["data"]["state"] for m in messages if m["event"] == "state"]
        assert states == ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]
        assert messages[-1]["event"] == "done"
        assert messages[-1]["data"]["state"] == "COMPLETE"
        progress = [m["data"] for m in messages if m["event"] == "progress"]
        assert progress, messages
        assert progress[-1]["done"] == progress[-1]["total"] == 5
        assert all(m["data"]["run_id"] == run_id for m in messages)

        # the stream of every run saw the same state changes, in order
        seen: list[str] = []
        for message in parse_sse(everything.iter_lines()):
            if message["data"]["run_id"] == run_id and message["event"] == "state":
                seen.append(message["data"]["state"])
            if seen and seen[-1] == "COMPLETE":
                break
        assert seen == states


# --- caps and credentials (basic mode, in process) --------------------------------------------


async def test_streams_over_the_cap_are_429(basic_app: Any) -> None:
    async with basic_app(streams_per_user=1) as env:
        alice = basic("alice", PASSWORD)
        token = (await env.new_token(alice))["token"]
        first = asyncio.create_task(env.api.get(f"{WES}/events", headers=bearer(token)))
        try:
            for _ in range(200):  # until the first stream is open
                if env.app.state.service.streams.count:
                    break
                await asyncio.sleep(0.01)
            # (bounded: without a cap this second stream would stay open)
            r = await asyncio.wait_for(env.api.get(f"{WES}/events", headers=alice), 30)
            assert r.status_code == 429
            assert r.json()["status_code"] == 429
            assert "event streams open" in r.json()["msg"]
            assert int(r.headers["retry-after"]) > 0
            # another user is not held up by alice's streams
            bob = basic("bob", OTHER_PASSWORD)
            r = await env.api.get(f"{WES}/runs/nope/events", headers=bob)
            assert r.status_code == 404
        finally:
            first.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first


async def test_a_stream_ends_when_its_token_is_revoked(basic_app: Any) -> None:
    async with basic_app(stream_recheck_seconds=0.1) as env:
        made = await env.new_token(basic("alice", PASSWORD))
        stream = asyncio.create_task(env.api.get(f"{WES}/events", headers=bearer(made["token"])))
        for _ in range(200):
            if env.app.state.service.streams.count:
                break
            await asyncio.sleep(0.01)
        assert not stream.done()
        r = await env.api.post(f"{WES}/tokens/{made['id']}/revoke", headers=bearer(made["token"]))
        assert r.status_code == 200
        ended = await asyncio.wait_for(stream, 30)  # the stream ends: the response is complete
        assert ended.status_code == 200
        assert env.app.state.service.streams.count == 0
