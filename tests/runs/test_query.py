"""Finding runs (filters, orders, keyset pages both ways) and the dashboard's figures, through
the run service, on every database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.auth.accounts import AccountService, caller_for
from spindle.config import Settings
from spindle.db.tables import runs
from spindle.domain import Caller, Event, Progress, Run, RunRequest, RunSummary, State, Task
from spindle.engines.registry import Catalog
from spindle.errors import InvalidRequest, RunNotFound
from spindle.runs import store
from spindle.runs.query import RunQuery, SortKey
from spindle.runs.service import RunService
from spindle.runs.wakeup import Wakeup
from tests.runs import local_user_id

#: Sees every run: the tests of finding runs are not about who may see them (those are the
#: ``test_scoped_*`` tests at the end).
ADMIN = Caller(user_id=0, name="admin", admin=True)


@pytest.fixture
def service(db_engine: AsyncEngine, tmp_path: Path) -> RunService:
    return RunService(
        db=db_engine,
        settings=Settings(data_dir=tmp_path / "data"),
        catalog=Catalog(),
        wakeup=Wakeup(),
    )


async def add(
    engine: AsyncEngine,
    *,
    url: str = "Snakefile",
    wf_type: str = "SMK",
    tags: dict[str, str] | None = None,
    path: tuple[State, ...] = (),
    owner_id: int | None = None,
    **values: Any,
) -> Run:
    """A run moved along ``path`` (each step a compare-and-set, as the worker does), owned by
    ``owner_id`` (default: the local user)."""
    request = RunRequest(
        workflow_type=wf_type,
        workflow_type_version="9" if wf_type == "SMK" else "v1.2",
        workflow_url=url,
        tags=tags or {},
    )
    run_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        run = await store.insert_run(
            conn,
            run_id=run_id,
            request=request,
            engine="snakemake",
            compute_env="local",
            owner_id=await local_user_id(conn) if owner_id is None else owner_id,
        )
        current = State.QUEUED
        for state in path:
            assert await store.transition(conn, run_id, expected=[current], new=state)
            current = state
        if values:
            await store.update_run(conn, run_id, **values)
    return run


async def walk(
    service: RunService, query: RunQuery, size: int
) -> tuple[list[RunSummary], list[list[str]]]:
    """Every page forward from the first; returns the runs and each page's ids."""
    seen: list[RunSummary] = []
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        page = await service.search(query, page_size=size, page_token=token, caller=ADMIN)
        seen += page.items
        pages.append([r.id for r in page.items])
        if not page.next_page_token:
            return seen, pages
        token = page.next_page_token


async def test_default_order_is_newest_first_and_pages_both_ways(service: RunService) -> None:
    made = [await add(service.db) for _ in range(7)]
    newest_first = [r.id for r in reversed(made)]
    seen, pages = await walk(service, RunQuery(), 3)
    assert [r.id for r in seen] == newest_first
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]

    # from the last page back to the first through prev tokens
    last = await service.search(RunQuery(), page_size=3, caller=ADMIN)
    last = await service.search(
        RunQuery(), page_size=3, page_token=last.next_page_token, caller=ADMIN
    )
    last = await service.search(
        RunQuery(), page_size=3, page_token=last.next_page_token, caller=ADMIN
    )
    assert [r.id for r in last.items] == pages[2]
    assert last.next_page_token == ""
    back = await service.search(
        RunQuery(), page_size=3, page_token=last.prev_page_token, caller=ADMIN
    )
    assert [r.id for r in back.items] == pages[1]
    first = await service.search(
        RunQuery(), page_size=3, page_token=back.prev_page_token, caller=ADMIN
    )
    assert [r.id for r in first.items] == pages[0]
    assert first.prev_page_token == ""
    # and forward again from a page reached backwards
    again = await service.search(
        RunQuery(), page_size=3, page_token=first.next_page_token, caller=ADMIN
    )
    assert [r.id for r in again.items] == pages[1]


async def test_pages_neither_repeat_nor_skip_while_runs_are_added(service: RunService) -> None:
    made = [await add(service.db) for _ in range(5)]
    page = await service.search(RunQuery(), page_size=2, caller=ADMIN)
    await add(service.db)  # newer than everything: must not show up on later pages
    rest, _ = await walk(service, RunQuery(), 2)
    second = await service.search(
        RunQuery(), page_size=2, page_token=page.next_page_token, caller=ADMIN
    )
    assert [r.id for r in page.items + second.items] == [r.id for r in reversed(made)][:4]
    assert len(rest) == 6


@pytest.mark.parametrize("sort", list(SortKey))
@pytest.mark.parametrize("descending", [True, False])
async def test_every_order_walks_every_match_once(
    service: RunService, sort: SortKey, descending: bool
) -> None:
    db = service.db
    await add(db, url="b.cwl", wf_type="CWL", path=(State.CANCELED,))
    await add(db, url="a/Snakefile", path=(State.INITIALIZING, State.RUNNING))
    await add(db, url="c.cwl", wf_type="CWL")
    await add(db, url="a/Snakefile", path=(State.CANCELED,))
    await add(db, url="z.cwl", wf_type="CWL", path=(State.INITIALIZING, State.RUNNING))
    await add(db, url="b.cwl", wf_type="CWL")
    query = RunQuery(sort=sort, descending=descending)
    everything, _ = await walk(service, RunQuery(), 100)
    column = {
        SortKey.SUBMITTED: lambda r: (0,),
        SortKey.STATE: lambda r: (r.state.value,),
        SortKey.TYPE: lambda r: (r.workflow_type,),
        SortKey.WORKFLOW: lambda r: (r.workflow_url,),
    }[sort]
    expected = sorted(everything, key=lambda r: (*column(r), r.seq), reverse=descending)
    for size in (1, 2, 4):
        seen, _ = await walk(service, query, size)
        assert [r.id for r in seen] == [r.id for r in expected], size


async def test_filters(service: RunService) -> None:
    db = service.db
    a = await add(db, tags={"project": "alpha", "owner": "ann"}, path=(State.CANCELED,))
    b = await add(db, url="pipelines/Align.cwl", wf_type="CWL", tags={"project": "beta"})
    c = await add(db, tags={"project": "alpha"}, path=(State.INITIALIZING, State.RUNNING))
    d = await add(db, url="100%_done.cwl", wf_type="CWL", tags={"note": ""})
    e = await add(db, tags={"Case": "Mixed", "odd": "50%_off", "note2": "x"})

    async def ids(**parse: Any) -> set[str]:
        seen, _ = await walk(service, RunQuery.parse(**parse), 2)
        return {r.id for r in seen}

    assert await ids() == {a.id, b.id, c.id, d.id, e.id}
    assert await ids(states=["CANCELED"]) == {a.id}
    assert await ids(states=["running", "queued"]) == {b.id, c.id, d.id, e.id}
    assert await ids(workflow_type="CWL") == {b.id, d.id}
    assert await ids(tag="project") == {a.id, b.id, c.id}
    assert await ids(tag="project=alpha") == {a.id, c.id}
    assert await ids(tag="project=alp") == set()
    assert await ids(tag="note=") == {d.id}
    assert await ids(tag="note") == {d.id}
    # tags match exactly: case counts, wildcards are plain characters
    assert await ids(tag="Case=Mixed") == {e.id}
    assert await ids(tag="case=mixed") == set()
    assert await ids(tag="Case=Mix") == set()
    assert await ids(tag="odd=50%_off") == {e.id}
    assert await ids(tag="odd=50%") == set()
    assert await ids(tag="odd=5__0%_off") == set()
    assert await ids(tag="owner=ann", states=["CANCELED"]) == {a.id}
    assert await ids(tag="owner=ann", states=["QUEUED"]) == set()
    # free text: the id, the workflow URL, tag keys and values; case does not matter
    assert await ids(text=b.id[:8]) == {b.id}
    assert await ids(text="ALIGN") == {b.id}
    assert await ids(text="alpha") == {a.id, c.id}
    assert await ids(text="owner") == {a.id}
    assert await ids(text="CASE=mixed") == {e.id}
    # LIKE wildcards are taken literally
    assert await ids(text="100%") == {d.id}
    assert await ids(text="%") == {d.id, e.id}
    assert await ids(text="_") == {d.id, e.id}
    assert await ids(text="nothing like it") == set()
    # filters combine with every order and with paging
    seen, _ = await walk(service, RunQuery.parse(workflow_type="CWL", sort="workflow"), 1)
    assert [r.id for r in seen] == [b.id, d.id]


@pytest.mark.parametrize(
    ("parse", "field"),
    [
        ({"states": ["DONE"]}, "state"),
        ({"sort": "size"}, "sort"),
        ({"order": "up"}, "order"),
        ({"text": "x" * 201}, "q"),
        ({"tag": "=value"}, "tag"),
    ],
)
def test_bad_query_values_name_their_field(parse: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        RunQuery.parse(**parse)
    assert caught.value.field == field


async def test_tokens_only_work_for_their_order(service: RunService) -> None:
    for _ in range(3):
        await add(service.db)
    page = await service.search(RunQuery(), page_size=1, caller=ADMIN)
    with pytest.raises(InvalidRequest) as caught:
        await service.search(
            RunQuery(sort=SortKey.STATE), page_size=1, page_token=page.next_page_token, caller=ADMIN
        )
    assert caught.value.field == "page_token"
    with pytest.raises(InvalidRequest):
        await service.search(
            RunQuery(descending=False), page_token=page.next_page_token, caller=ADMIN
        )
    with pytest.raises(InvalidRequest):
        await service.search(RunQuery(), page_token="garbage", caller=ADMIN)
    # the API's own list tokens are not search tokens either
    listed = await service.list(page_size=1, page_token=None, caller=ADMIN)
    with pytest.raises(InvalidRequest):
        await service.search(RunQuery(), page_token=listed.next_page_token, caller=ADMIN)


async def test_summary(service: RunService) -> None:
    run = await add(service.db, tags={"k": "v"}, path=(State.INITIALIZING,))
    summary = await service.summary(run.id, caller=ADMIN)
    assert (summary.id, summary.state, summary.tags) == (run.id, State.INITIALIZING, {"k": "v"})
    assert summary.submitted_at == run.submitted_at
    with pytest.raises(RunNotFound):
        await service.summary("nope", caller=ADMIN)


async def test_counts_and_counts_since(service: RunService) -> None:
    db = service.db
    old = await add(db, path=(State.CANCELED,))
    await add(db, path=(State.CANCELED,))
    await add(db)
    async with db.begin() as conn:
        await conn.execute(
            update(runs)
            .where(runs.c.id == old.id)
            .values(submitted_at=datetime.now(UTC) - timedelta(days=2))
        )
    assert await service.counts(caller=ADMIN) == {"CANCELED": 2, "QUEUED": 1}
    since = datetime.now(UTC) - timedelta(hours=24)
    assert await service.counts_since(since, caller=ADMIN) == {"CANCELED": 1, "QUEUED": 1}


async def test_recent_failures_newest_end_first_with_their_reason_and_task(
    service: RunService,
) -> None:
    db = service.db
    now = datetime.now(UTC)
    active = (State.INITIALIZING, State.RUNNING)
    first = await add(
        db,
        path=(*active, State.EXECUTOR_ERROR),
        end_time=now - timedelta(minutes=5),
        exit_code=1,
        system_logs=[],
    )
    lost = await add(
        db,
        path=(*active, State.SYSTEM_ERROR),
        end_time=now - timedelta(minutes=1),
        system_logs=["the worker died", "the engine process vanished"],
    )
    await add(db, path=(*active, State.COMPLETE), end_time=now)
    async with db.begin() as conn:
        await store.save_tasks(
            conn,
            first.id,
            [
                Task(id="1", name="ok", state=State.COMPLETE, exit_code=0),
                Task(id="2", name="second", state=State.EXECUTOR_ERROR, exit_code=3),
                Task(id="3", name="third", state=State.EXECUTOR_ERROR, exit_code=1),
            ],
        )
    failures = await service.recent_failures(5, caller=ADMIN)
    assert [f.run.id for f in failures] == [lost.id, first.id]
    assert (failures[0].reason, failures[0].task, failures[0].exit_code) == (
        "the engine process vanished",
        None,
        None,
    )
    assert (failures[1].reason, failures[1].task, failures[1].exit_code) == (None, "second", 1)
    assert [f.run.id for f in await service.recent_failures(1, caller=ADMIN)] == [lost.id]


async def test_follow_gives_events_and_progress_until_the_run_ends(service: RunService) -> None:
    db = service.db
    run = await add(db, path=(State.INITIALIZING,))
    items: list[Event | Progress] = []

    async def advance() -> None:
        async with db.begin() as conn:
            await store.update_run(conn, run.id, progress={"done": 1, "total": 2, "current": ["b"]})
            assert await store.transition(
                conn, run.id, expected=[State.INITIALIZING], new=State.RUNNING
            )
        async with db.begin() as conn:
            assert await store.transition(
                conn, run.id, expected=[State.RUNNING], new=State.COMPLETE, reason="done"
            )

    stream = await service.follow(run.id, interval=0.05, caller=ADMIN)
    async for item in stream:
        items.append(item)
        if len(items) == 2:  # QUEUED and INITIALIZING, already written
            await advance()
    states = [i.data["to"] for i in items if isinstance(i, Event)]
    assert states == ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"]
    assert [i for i in items if isinstance(i, Progress)] == [Progress(1, 2, ["b"])]
    complete = [i for i in items if isinstance(i, Event)][-1]
    assert complete.data["reason"] == "done"

    # after a given event only the later ones, and it still ends
    later = [i async for i in await service.follow(run.id, after_id=complete.id - 1, caller=ADMIN)]
    assert [i.data["to"] for i in later if isinstance(i, Event)] == ["COMPLETE"]
    with pytest.raises(RunNotFound):
        await service.follow("nope", caller=ADMIN)


async def test_follow_all_gives_every_runs_events_from_now(service: RunService) -> None:
    db = service.db
    await add(db, path=(State.CANCELED,))  # before: not given
    stream = await service.follow_all(interval=0.05, caller=ADMIN)
    first = await add(db)
    got: list[Event] = []
    async for event in stream:
        got.append(event)
        if len(got) == 1:
            second = await add(db, path=(State.CANCELED,))
        if len(got) == 3:
            break
    assert [(e.run_id, e.data["to"]) for e in got] == [
        (first.id, "QUEUED"),
        (second.id, "QUEUED"),
        (second.id, "CANCELED"),
    ]
    assert await service.last_event_id() == got[-1].id


# --- who sees what ---------------------------------------------------------------------------


async def two_users(db: AsyncEngine) -> tuple[Caller, Caller]:
    accounts = AccountService(db)
    return (
        caller_for(await accounts.add_user("alice"), "basic"),
        caller_for(await accounts.add_user("bob"), "basic"),
    )


async def test_scoped_search_summary_and_dashboard_figures(service: RunService) -> None:
    db = service.db
    alice, bob = await two_users(db)
    now = datetime.now(UTC)
    ended = (State.INITIALIZING, State.RUNNING, State.EXECUTOR_ERROR)
    mine = [
        await add(db, owner_id=alice.user_id, tags={"p": "x"}),
        await add(db, owner_id=alice.user_id, path=ended, end_time=now - timedelta(minutes=9)),
    ]
    theirs = [
        await add(db, owner_id=bob.user_id, tags={"p": "x"}, url="workflow.cwl", wf_type="CWL"),
        await add(db, owner_id=bob.user_id, path=ended, end_time=now - timedelta(minutes=1)),
    ]
    everyone = {r.id for r in mine + theirs}
    queries = [
        RunQuery(),
        RunQuery(states=frozenset({State.EXECUTOR_ERROR})),
        RunQuery(tag_key="p", tag_value="x"),
        RunQuery(sort=SortKey.STATE),
        RunQuery(sort=SortKey.WORKFLOW, descending=False),
        RunQuery(workflow_type="CWL"),
    ]
    for caller, own in ((alice, mine), (bob, theirs), (ADMIN, mine + theirs)):
        ids = {r.id for r in own}
        for q in queries:
            seen = {r.id for r in (await service.search(q, caller=caller)).items}
            assert seen <= ids, (caller.name, q)
            everyone_seen = {r.id for r in (await service.search(q, caller=ADMIN)).items}
            assert seen == everyone_seen & ids, (caller.name, q)
        # a search by someone else's run id finds nothing
        for run in mine + theirs:
            found = await service.search(RunQuery(text=run.id), caller=caller)
            assert [r.id for r in found.items] == ([run.id] if run.id in ids else [])
        for run_id in everyone:
            if run_id in ids:
                assert (await service.summary(run_id, caller=caller)).id == run_id
            else:
                with pytest.raises(RunNotFound):
                    await service.summary(run_id, caller=caller)
        counts = await service.counts(caller=caller)
        assert sum(counts.values()) == len(ids)
        day = await service.counts_since(now - timedelta(hours=1), caller=caller)
        assert day == counts
        failures = await service.recent_failures(5, caller=caller)
        assert [f.run.id for f in failures] == [
            r.id
            for r in sorted(own, key=lambda r: r.seq, reverse=True)
            if r.id in {mine[1].id, theirs[1].id}
        ]


async def test_scoped_events_and_follows(service: RunService) -> None:
    db = service.db
    alice, bob = await two_users(db)
    own = await add(db, owner_id=alice.user_id, path=(State.CANCELED,))
    other = await add(db, owner_id=bob.user_id, path=(State.CANCELED,))
    assert [e.data["to"] for e in await service.events(own.id, caller=alice)] == [
        "QUEUED",
        "CANCELED",
    ]
    for call in (
        service.events(other.id, caller=alice),
        service.follow(other.id, caller=alice),
    ):
        with pytest.raises(RunNotFound):
            await call
    assert len([i async for i in await service.follow(other.id, caller=ADMIN)]) == 2

    # the all-runs stream gives alice her own runs' events only, though bob's come between
    stream = await service.follow_all(interval=0.05, caller=alice)
    got: list[Event] = []
    theirs = await add(db, owner_id=bob.user_id, path=(State.CANCELED,))
    mine = await add(db, owner_id=alice.user_id)
    async for event in stream:
        got.append(event)
        if len(got) == 1:
            for _ in range(3):
                await add(db, owner_id=bob.user_id, path=(State.CANCELED,))
            later = await add(db, owner_id=alice.user_id, path=(State.CANCELED,))
        if len(got) == 3:
            break
    assert [(e.run_id, e.data["to"]) for e in got] == [
        (mine.id, "QUEUED"),
        (later.id, "QUEUED"),
        (later.id, "CANCELED"),
    ]
    assert theirs.id not in {e.run_id for e in got}
