"""The shared poll behind every event stream (``spindle.runs.feed``): one task however many
streams follow, the caps on open streams, a stream that falls behind catching up, and a
stream that ends once its credentials no longer hold."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.domain import Caller, Event, State
from spindle.engines.registry import Catalog
from spindle.errors import TooManyRequests
from spindle.runs import feed, store
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from tests.runs.test_query import ADMIN, add

ALICE = Caller(user_id=101, name="alice")
BOB = Caller(user_id=102, name="bob")


#: the services a test made, whose shared polls end before the test's database does
_services: list[RunService] = []


def make_service(db: AsyncEngine, tmp_path: Path, **settings: Any) -> RunService:
    service = RunService(
        db=db,
        settings=Settings(data_dir=tmp_path / "data", **settings),
        catalog=Catalog(),
        wakeup=Wakeup(),
    )
    _services.append(service)
    return service


@pytest.fixture(autouse=True)
async def _close_feeds(db_engine: AsyncEngine) -> AsyncIterator[None]:
    """Stop each service's shared poll before its database goes, as the app's shutdown
    does: a poll cut off mid-query by the database's disposal would leave its connection
    to the garbage collector (an unclosed socket warning in whichever test runs next)."""
    yield
    while _services:
        await _services.pop().feed.aclose()


def poll_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "event-feed" and not t.done()]


async def next_of(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), 30)


async def test_every_stream_is_served_by_one_poll(db_engine: AsyncEngine, tmp_path: Path) -> None:
    service = make_service(db_engine, tmp_path, streams_per_user=100)
    run = await add(db_engine)
    everything = [await service.follow_all(interval=0.02, caller=ADMIN) for _ in range(30)]
    one_run = [await service.follow(run.id, interval=0.02, caller=ADMIN) for _ in range(10)]
    firsts = await asyncio.gather(*(next_of(s) for s in one_run))  # its QUEUED, caught up
    assert {e.data["to"] for e in firsts} == {"QUEUED"}
    await add(db_engine)
    got = await asyncio.gather(*(next_of(s) for s in everything))
    assert {(e.data["to"], e.run_id != run.id) for e in got} == {("QUEUED", True)}
    assert len(poll_tasks()) == 1  # forty streams, one poll
    async with db_engine.begin() as conn:
        assert await store.transition(conn, run.id, expected=[State.QUEUED], new=State.CANCELED)
    ends = await asyncio.gather(*(next_of(s) for s in one_run))
    assert {e.data["to"] for e in ends} == {"CANCELED"}
    for stream in one_run:  # the run ended: so did its streams
        with pytest.raises(StopAsyncIteration):
            await next_of(stream)
    for stream in everything:
        await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(100):  # the last stream gone, the poll stops at its next look
        if not poll_tasks():
            break
        await asyncio.sleep(0.02)
    assert poll_tasks() == []
    assert service.streams.count == 0


async def test_streams_are_capped_per_user_and_in_all(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    service = make_service(db_engine, tmp_path, streams_per_user=2, streams_total=3)
    first = await service.follow_all(caller=ALICE)
    second = await service.follow_all(caller=ALICE)
    with pytest.raises(TooManyRequests, match="you have 2 event streams open"):
        await service.follow_all(caller=ALICE)
    bobs = await service.follow_all(caller=BOB)
    with pytest.raises(TooManyRequests, match="the server has 3 event streams open"):
        await service.follow_all(caller=BOB)
    await first.aclose()  # type: ignore[attr-defined]
    third = await service.follow_all(caller=ALICE)  # one of hers ended: room again
    del third  # dropped unread: its place is given back all the same
    gc.collect()
    assert service.streams.count == 2
    for stream in (second, bobs):
        await stream.aclose()  # type: ignore[attr-defined]
    assert service.streams.count == 0


async def test_a_stream_ends_when_its_credentials_no_longer_hold(
    db_engine: AsyncEngine, tmp_path: Path
) -> None:
    service = make_service(db_engine, tmp_path, stream_recheck_seconds=0.05)
    valid = True
    checks = 0

    async def check() -> bool:
        nonlocal checks
        checks += 1
        return valid

    stream = await service.follow_all(interval=0.02, caller=ADMIN, check=check)
    await add(db_engine)
    event = await next_of(stream)
    assert isinstance(event, Event)
    assert checks >= 1  # checked before the batch was given
    # idle: checked again while waiting; revoked, the stream ends without another event
    valid = False
    with pytest.raises(StopAsyncIteration):
        await next_of(stream)

    # a revocation found before a batch: the batch is not given
    valid = True
    stream = await service.follow_all(interval=0.02, caller=ADMIN, check=check)
    waiting = asyncio.create_task(next_of(stream))
    await asyncio.sleep(0)
    valid = False
    await add(db_engine)
    with pytest.raises(StopAsyncIteration):
        await waiting


async def looked_past_the_newest_event(shared: feed.Feed, db_engine: AsyncEngine) -> None:
    """Wait until the shared poll has read every event written so far (so each run added
    in between reaches the streams in a look of its own, however slow the machine)."""
    async with db_engine.connect() as conn:
        newest = await store.last_event_id(conn)
    # the feed offers nothing to wait on for this; its position is read until it moves
    while shared._position < newest:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_a_stream_that_falls_behind_catches_up(
    db_engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed, "MAX_PENDING", 2)
    service = make_service(db_engine, tmp_path)
    stream = await service.follow_all(interval=0.01, caller=ADMIN)
    made = [await add(db_engine, path=(State.CANCELED,))]
    got = [await next_of(stream)]  # following: the stream is in the poll
    joins = 0
    join = service.feed._join

    async def counting_join(sub: Any) -> None:
        nonlocal joins
        joins += 1
        await join(sub)

    monkeypatch.setattr(service.feed, "_join", counting_join)
    for _ in range(6):  # more looks than the stream may have waiting: it is dropped
        made.append(await add(db_engine, path=(State.CANCELED,)))
        await looked_past_the_newest_event(service.feed, db_engine)  # one look per run
    got += [await next_of(stream) for _ in range(13)]
    assert [(e.run_id, e.data["to"]) for e in got] == [
        (r.id, to) for r in made for to in ("QUEUED", "CANCELED")
    ]
    assert joins == 1  # dropped once, caught up from the table, and joined again
    await stream.aclose()  # type: ignore[attr-defined]
