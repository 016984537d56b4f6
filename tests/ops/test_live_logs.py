"""Live logs and the run stream's end (``api/logstream.py``, ``runs/logfollow.py``,
``done`` in ``api/events.py``), with fake runs that write their stdout as they go."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx

from spindle.client import SpindleClient
from spindle.domain import Caller, LogSpan, State, Task
from spindle.runs import store
from spindle.runs.logfollow import CHUNK, LogEnd, LogPiece, cut
from tests.api.conftest import WES, app_client, make_app
from tests.api.test_events import parse_sse
from tests.ops.conftest import fake_app, served
from tests.scheduler.test_fakes import fake_catalog, fake_settings, submit, wait_for


def _sse(text: str) -> list[dict[str, Any]]:
    return list(parse_sse(text.splitlines()))


async def test_a_run_stream_ends_with_done_carrying_the_final_state(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"sleep": 0.2, "tasks": 2, "exit": 3})
    r = await client.get(f"{WES}/runs/{run_id}/events")  # (in process: whole, once ended)
    messages = _sse(r.text)
    assert messages[-1]["event"] == "done"
    assert messages[-1]["data"] == {"run_id": run_id, "state": "EXECUTOR_ERROR"}
    states = [m["data"]["state"] for m in messages if m["event"] == "state"]
    assert states[-1] == "EXECUTOR_ERROR"
    assert [m["event"] for m in messages].count("done") == 1

    # resumed after the final state event: nothing more to send, then done all the same
    last_id = [m["id"] for m in messages if m["event"] == "state"][-1]
    again = _sse((await client.get(f"{WES}/runs/{run_id}/events?after={last_id}")).text)
    assert [m["event"] for m in again if m["event"] != "progress"] == ["done"]
    assert again[-1]["data"]["state"] == "EXECUTOR_ERROR"


def _texts(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(m["data"]["text"].encode() for m in messages if m["event"] == "log")


async def test_a_log_stream_of_an_ended_run_gives_the_whole_log_and_done(
    client: httpx.AsyncClient,
) -> None:
    run_id = await submit(client, {"sleep": 0.3, "tasks": 5})
    r = await client.get(f"{WES}/runs/{run_id}/logs/stdout/stream")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    messages = _sse(r.text)
    whole = (await client.get(f"{WES}/runs/{run_id}/logs/stdout")).content
    assert b"task 5 of 5 started\n" in whole
    assert _texts(messages) == whole
    assert messages[-1]["event"] == "done"
    assert messages[-1]["data"] == {"state": "COMPLETE", "next_offset": len(whole)}
    offsets = [(m["data"]["offset"], m["data"]["next_offset"]) for m in messages[:-1]]
    assert all(int(m["id"]) == m["data"]["next_offset"] for m in messages)
    assert offsets[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(offsets))

    # from any byte offset, by Last-Event-ID or ?offset: exactly the rest
    middle = whole.index(b"task 3")
    for kw in ({"headers": {"Last-Event-ID": str(middle)}}, {"params": {"offset": middle}}):
        rest = _sse((await client.get(f"{WES}/runs/{run_id}/logs/stdout/stream", **kw)).text)
        assert _texts(rest) == whole[middle:]
        assert rest[-1]["data"]["next_offset"] == len(whole)

    # offset and limit on the plain read
    part = await client.get(
        f"{WES}/runs/{run_id}/logs/stdout", params={"offset": middle, "limit": 7}
    )
    assert part.content == whole[middle : middle + 7]
    assert part.headers["X-Spindle-Next-Offset"] == str(middle + 7)


#: (path, request keywords, status): refusals of the log routes, each an ErrorResponse
BAD_LOG_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("/runs/nope/logs/stdout/stream", {}, 404),
    ("/runs/{run}/logs/other/stream", {}, 404),
    ("/runs/{run}/logs/stdout/stream", {"headers": {"Last-Event-ID": "x1"}}, 400),
    ("/runs/{run}/logs/stdout/stream", {"params": {"offset": "-1"}}, 400),
    ("/runs/{run}/logs/stdout", {"params": {"limit": "0"}}, 400),
    ("/runs/{run}/tasks/nope/logs/stdout/stream", {}, 404),
]


async def test_log_stream_errors_are_error_responses(client: httpx.AsyncClient) -> None:
    run_id = await submit(client, {"sleep": 0})
    for path, kw, status in BAD_LOG_REQUESTS:
        r = await client.get(WES + path.format(run=run_id), **kw)
        assert r.status_code == status, (path, r.text)
        assert r.json()["status_code"] == status


async def test_a_live_log_stream_resumed_with_last_event_id_misses_and_repeats_nothing(
    fakes: None, tmp_path: Path
) -> None:
    """On a real server: the stream pushes lines while the run still runs; cut after the
    first piece and resumed with its id, the two parts are the log, byte for byte."""
    app = await fake_app(tmp_path)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
        run_id = await submit(c, {"sleep": 3, "tasks": 30})
        got = b""
        async with c.stream("GET", f"{WES}/runs/{run_id}/logs/stdout/stream") as first:
            lines = first.aiter_lines()
            async for message in parse_sse_async(lines):
                assert message["event"] == "log"
                got += message["data"]["text"].encode()
                resume_at = message["id"]
                break
        # the first piece came while the run was still going
        assert (await c.get(f"{WES}/runs/{run_id}/status")).json()["state"] == "RUNNING"
        assert resume_at == str(len(got))
        r = await c.get(
            f"{WES}/runs/{run_id}/logs/stdout/stream", headers={"Last-Event-ID": resume_at}
        )
        rest = _sse(r.text)
        assert rest[-1]["event"] == "done"
        await wait_for(c, run_id, {"COMPLETE"})
        whole = (await c.get(f"{WES}/runs/{run_id}/logs/stdout")).content
        assert got + _texts(rest) == whole
        assert whole.count(b"started\n") == 30


async def parse_sse_async(lines: Any) -> Any:
    message: dict[str, Any] = {}
    async for raw in lines:
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


def test_pieces_are_whole_lines_and_whole_characters() -> None:
    assert cut(b"one\ntwo", final=False) == b"one\n"
    assert cut(b"partial", final=False) == b""
    assert cut(b"partial", final=True) == b"partial"
    long = b"x" * (CHUNK - 1) + "é".encode()  # a full chunk without a newline, é cut in two
    assert cut(long[:CHUNK], final=False) == b"x" * (CHUNK - 1)
    assert cut(b"x" * (CHUNK - 2) + "é".encode(), final=False) == b"x" * (CHUNK - 2) + "é".encode()


async def test_the_client_follows_a_live_log_to_its_end(fakes: None, tmp_path: Path) -> None:
    """``SpindleClient.follow_log`` (``spindle logs --follow``) reads the SSE stream: the
    chunks it yields while the run goes on are the log, byte for byte."""
    app = await fake_app(tmp_path)
    async with served(app) as url, SpindleClient(url) as client:
        async with httpx.AsyncClient(base_url=url) as c:
            run_id = await submit(c, {"sleep": 1, "tasks": 10})
        chunks = [chunk async for chunk in client.follow_log(run_id, "stdout", poll=0.1)]
        whole, _ = await client.read_log(run_id, "stdout")
        assert b"".join(chunks) == whole
        assert whole.count(b"started\n") == 10
        assert (await client.status(run_id)).state is State.COMPLETE


async def test_a_task_log_stream_ends_when_the_task_does(fakes: None, tmp_path: Path) -> None:
    """A task's share of the log (its span of stdout) is streamed from the task's start
    while the run goes on (its end unknown yet: the log as it grows), and the stream ends
    once the span has its end, while the run has not ended. (No worker: the test writes
    the log and reports the task as an engine would.)"""
    app = make_app(fake_settings(tmp_path), await fake_catalog(), worker=False)
    async with app_client(app) as client:
        run_id = await submit(client, {"sleep": 0})
        service = app.state.service
        log = service.rundir(run_id).logs / "stdout"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"before it\n" + b"line 1\n")
        span = LogSpan("logs/stdout", start=10)
        async with service.db.begin() as conn:
            await store.save_tasks(conn, run_id, [Task("t-x", "x", State.RUNNING, stdout=span)])
        caller = Caller(user_id=0, name="test", admin=True)
        # (task_recheck=0: the task's row is read at every look, so the end is seen at the
        # first look after it is saved, before anything written later is read)
        pieces = await service.follow_log(
            run_id, "stdout", task_id="t-x", interval=0.05, task_recheck=0, caller=caller
        )
        first = await anext(pieces)
        assert isinstance(first, LogPiece)
        assert (first.text, first.offset) == ("line 1\n", 0)
        with log.open("ab") as f:  # the task writes on, then ends, then another line
            f.write(b"line 2\n")
        second = await anext(pieces)
        assert isinstance(second, LogPiece)
        assert (second.text, second.offset) == ("line 2\n", 7)
        ended = Task("t-x", "x", State.COMPLETE, stdout=LogSpan("logs/stdout", 10, 24))
        async with service.db.begin() as conn:
            await store.save_tasks(conn, run_id, [ended])
        with log.open("ab") as f:
            f.write(b"another task's line\n")
        rest = [item async for item in pieces]
        assert rest == [LogEnd(State.QUEUED, 14)]


async def test_log_streams_count_against_the_stream_caps(fakes: None, tmp_path: Path) -> None:
    app = await fake_app(tmp_path, streams_per_user=1)
    async with app_client(app) as client:
        run_id = await submit(client, {"sleep": 0})
        await wait_for(client, run_id, {"COMPLETE"})
        local = await app.state.accounts.local_user()
        caller = Caller(user_id=local.id, name=local.name, admin=True)
        held = await app.state.service.follow_log(run_id, "stdout", caller=caller)
        refused = await client.get(f"{WES}/runs/{run_id}/logs/stderr/stream")
        assert refused.status_code == 429
        assert (
            "streams_per_user" in refused.json()["msg"] or "event streams" in refused.json()["msg"]
        )
        assert int(refused.headers["Retry-After"]) > 0
        await held.aclose()  # its place is free again
        assert (await client.get(f"{WES}/runs/{run_id}/logs/stderr/stream")).status_code == 200
