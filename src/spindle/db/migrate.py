"""Apply Alembic migrations from inside Spindle (``spindle db upgrade``, tests, start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str = "") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await migrate(engine, "upgrade", revision)


async def migrate(engine: AsyncEngine, direction: str, revision: str) -> None:
    """``alembic upgrade|downgrade revision`` on ``engine``, in one transaction.

    On SQLite, foreign keys are off while it runs: a batch operation rebuilds a table (copy,
    drop, rename), and dropping a table that others reference with ON DELETE CASCADE would
    delete their rows. The pragma only takes effect outside a transaction, so it is set
    before the migration begins, checked (``foreign_key_check``) and restored after it."""

    def run(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        getattr(command, direction)(cfg, revision)

    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(run)
            if sqlite:
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left rows that break foreign keys: {broken}")
        finally:
            if sqlite:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()


async def is_current(engine: AsyncEngine) -> bool:
    """Whether the database is at the newest migration."""

    def check(conn: Connection) -> bool:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        return set(MigrationContext.configure(conn).get_current_heads()) == heads

    async with engine.connect() as conn:
        return await conn.run_sync(check)
