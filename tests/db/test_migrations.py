"""Migrations must build exactly the schema ``spindle.db.tables`` declares, on every database,
and every revision must go down and up again."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.db.engine import create_engine
from spindle.db.migrate import alembic_config, is_current, migrate, upgrade
from spindle.db.tables import LOCAL_USER, events, metadata, runs, tasks, users
from spindle.db.types import utcnow


async def schema_diff(engine: AsyncEngine) -> list[Any]:
    """What autogenerate would write to bring the database to the models (nothing, we hope)."""

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(diff)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        names: list[str] = await conn.run_sync(lambda c: inspect(c).get_table_names())
    return set(names) - {"alembic_version"}


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def test_upgrade_builds_the_declared_schema(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        assert not await is_current(engine)
        await upgrade(engine)
        assert await is_current(engine)
        assert await table_names(engine) == set(metadata.tables)
        assert await schema_diff(engine) == []
    finally:
        await engine.dispose()


async def test_fixture_database_is_current(db_engine: AsyncEngine) -> None:
    assert await is_current(db_engine)
    assert await schema_diff(db_engine) == []


async def test_each_revision_goes_down_and_up_again(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    try:
        steps = revisions()
        assert steps, "no migrations found"
        for revision in steps:
            await migrate(engine, "upgrade", revision)
        assert await is_current(engine)
        for _ in steps:
            await migrate(engine, "downgrade", "-1")
        assert await table_names(engine) == set()
        assert not await is_current(engine)

        await upgrade(engine)
        assert await is_current(engine)
        assert await schema_diff(engine) == []
    finally:
        await engine.dispose()


async def test_users_migration_keeps_runs_and_gives_them_the_local_user(
    empty_database_url: str,
) -> None:
    """Runs, tasks and events written before 0002 survive it (SQLite rebuilds ``runs``,
    whose children cascade on delete) and belong to the local user; and back down again."""
    engine = create_engine(empty_database_url)
    now = utcnow()
    run: dict[str, Any] = {
        "id": "r1",
        "state": "COMPLETE",
        "workflow_type": "CWL",
        "workflow_type_version": "v1.2",
        "workflow_url": "wf.cwl",
        "workflow_params": {},
        "workflow_engine_parameters": {},
        "tags": {},
        "engine": "cwltool",
        "compute_env": "local",
        "submitted_at": now,
        "updated_at": now,
        "cmd": [],
        "system_logs": [],
        "outputs": {},
    }
    task = {"run_id": "r1", "id": "t1", "ordinal": 0, "name": "step", "state": "COMPLETE"}
    try:
        await migrate(engine, "upgrade", "0001")
        async with engine.begin() as conn:
            await conn.execute(insert(runs).values(run))
            await conn.execute(insert(tasks).values(**task, cmd=[], system_logs=[]))
            await conn.execute(
                insert(events).values(run_id="r1", at=now, kind="state", data={"to": "QUEUED"})
            )
        await migrate(engine, "upgrade", "0002")
        async with engine.connect() as conn:
            owner = (await conn.execute(select(runs.c.owner_id))).scalar_one()
            local = (
                await conn.execute(select(users.c.id).where(users.c.name == LOCAL_USER))
            ).scalar_one()
            assert owner == local
            assert (await conn.execute(select(func.count()).select_from(tasks))).scalar() == 1
            assert (await conn.execute(select(func.count()).select_from(events))).scalar() == 1
        await migrate(engine, "downgrade", "0001")
        async with engine.connect() as conn:
            ids = (await conn.execute(text("SELECT id FROM runs"))).scalars().all()
            assert list(ids) == ["r1"]
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar() == 1
            assert (await conn.execute(text("SELECT count(*) FROM events"))).scalar() == 1
    finally:
        await engine.dispose()
