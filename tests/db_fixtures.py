"""Database fixtures (a pytest plugin, loaded from ``tests/conftest.py``).

A test that asks for ``database_url``, ``empty_database_url`` or ``db_engine`` runs once per
configured database, with the ids ``sqlite``, ``postgresql`` and ``mariadb``, and carries the
``db`` marker. Each run gets a database of its own, created for the test and dropped after it:

* SQLite: a file under the test's ``tmp_path``, copied from a template file migrated once per
  session.
* PostgreSQL: ``CREATE DATABASE spindle_test_<random> TEMPLATE spindle_tpl_<random>``, the
  template migrated once per session and dropped when the session ends.
* MariaDB: ``CREATE DATABASE spindle_test_<random>``, then the tables of a template database
  migrated once per session are recreated in it from ``SHOW CREATE TABLE`` (MariaDB has no
  template databases; see ``MariaDBTemplate``).

Names are random per session and per test, so several test sessions can share one server.

Environment:

* ``SPINDLE_TEST_DATABASES``: which databases to run on, a comma list (default all three).
* ``SPINDLE_TEST_POSTGRES_URL``, ``SPINDLE_TEST_MARIADB_URL``: an administrative connection
  to each server (a user allowed to create and drop databases).

A server that cannot be reached skips its tests locally and fails them under ``CI=true``
(``tests.support.missing``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from tests.support import missing

DATABASES = ("sqlite", "postgresql", "mariadb")

SERVER_URLS = {
    "postgresql": (
        "SPINDLE_TEST_POSTGRES_URL",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
    ),
    "mariadb": ("SPINDLE_TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/mysql"),
}

#: Seconds to wait for a server to answer before calling it missing.
CONNECT_TIMEOUT = 10.0


def selected_databases() -> list[str]:
    """The databases named in ``SPINDLE_TEST_DATABASES`` (all of them when unset)."""
    raw = os.environ.get("SPINDLE_TEST_DATABASES", "")
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] or list(DATABASES)
    unknown = sorted(set(names) - set(DATABASES))
    if unknown:
        raise pytest.UsageError(
            f"SPINDLE_TEST_DATABASES names unknown databases {unknown}; "
            f"choose from {', '.join(DATABASES)}"
        )
    return [n for n in DATABASES if n in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_kind" in metafunc.fixturenames:
        metafunc.parametrize(
            "db_kind",
            [pytest.param(n, id=n, marks=pytest.mark.db) for n in selected_databases()],
            indirect=True,
        )


def _random_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _run_in_own_loop(make: Callable[[], Awaitable[None]]) -> None:
    """Run a coroutine on a fresh event loop in a thread of its own, out of the way of the
    loops pytest-asyncio owns (used at session teardown, when no test loop is running)."""
    errors: list[BaseException] = []

    async def main() -> None:
        await make()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported in the calling thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="db-fixtures-teardown")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


class DatabaseServers:
    """Creates and drops the per-test databases; owns the session's templates."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._unreachable: dict[str, str | None] = {}
        self._sqlite_template: Path | None = None
        self._pg_template: str | None = None
        self._maria_template: MariaDBTemplate | None = None

    # --- servers ---------------------------------------------------------------------------

    @staticmethod
    def server_url(kind: str) -> URL:
        env, default = SERVER_URLS[kind]
        return make_url(os.environ.get(env) or default)

    @asynccontextmanager
    async def admin(self, kind: str) -> AsyncIterator[AsyncConnection]:
        """An autocommit connection to the server's administrative database."""
        connect_args: dict[str, object] = (
            {"timeout": CONNECT_TIMEOUT}
            if kind == "postgresql"
            else {"connect_timeout": int(CONNECT_TIMEOUT)}
        )
        engine = create_async_engine(
            self.server_url(kind),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=connect_args,
        )
        try:
            async with engine.connect() as conn:
                yield conn
        finally:
            await engine.dispose()

    async def ensure_reachable(self, kind: str) -> None:
        if kind not in self._unreachable:
            reason: str | None = None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT + 5):
                    async with self.admin(kind) as conn:
                        await conn.execute(text("SELECT 1"))
            except (OSError, DBAPIError, TimeoutError) as exc:
                url = self.server_url(kind).render_as_string(hide_password=True)
                env = SERVER_URLS[kind][0]
                reason = (
                    f"{kind} server not reachable at {url} (set {env}): "
                    f"{type(exc).__name__}: {exc}".splitlines()[0]
                )
            self._unreachable[kind] = reason
        reason = self._unreachable[kind]
        if reason is not None:
            missing(reason)

    # --- databases -------------------------------------------------------------------------

    async def create(self, kind: str, *, migrated: bool, tmp_path: Path) -> str:
        """A new database; migrated to head when ``migrated``. Returns its async URL."""
        if kind == "sqlite":
            path = tmp_path / ("spindle.db" if migrated else "empty.db")
            if migrated:
                shutil.copyfile(await self._sqlite_template_path(), path)
            return f"sqlite+aiosqlite:///{path}"
        await self.ensure_reachable(kind)
        name = _random_name("spindle_test")
        url = self.server_url(kind).set(database=name)
        if kind == "postgresql":
            template = await self._postgres_template() if migrated else "template0"
            async with self.admin(kind) as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        else:
            copy = await self._mariadb_template() if migrated else None
            async with self.admin(kind) as conn:
                # The server's default character set and collation, as a deployment gets.
                await conn.execute(text(f"CREATE DATABASE `{name}`"))
                if copy is not None:
                    await copy.into(conn, name)
        return url.render_as_string(hide_password=False)

    async def drop(self, kind: str, url: str) -> None:
        if kind == "sqlite":
            return  # tmp_path is cleaned by pytest
        name = make_url(url).database
        async with self.admin(kind) as conn:
            if kind == "postgresql":
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))

    async def _sqlite_template_path(self) -> Path:
        if self._sqlite_template is None:
            path = self.workdir / f"{_random_name('template')}.db"
            await _migrate(f"sqlite+aiosqlite:///{path}")
            # Back to a rollback journal, so the single file is the whole database and can
            # be copied (each copy's engine switches it to WAL again on connect).
            with closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=DELETE")
            self._sqlite_template = path
        return self._sqlite_template

    async def _postgres_template(self) -> str:
        if self._pg_template is None:
            name = _random_name("spindle_tpl")
            async with self.admin("postgresql") as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "template0"'))
            await self._migrate_template("postgresql", name)
            self._pg_template = name
        return self._pg_template

    async def _mariadb_template(self) -> MariaDBTemplate:
        if self._maria_template is None:
            name = _random_name("spindle_tpl")
            async with self.admin("mariadb") as conn:
                await conn.execute(text(f"CREATE DATABASE `{name}`"))
            await self._migrate_template("mariadb", name)
            async with self.admin("mariadb") as conn:
                self._maria_template = await MariaDBTemplate.read(conn, name)
        return self._maria_template

    async def _migrate_template(self, kind: str, name: str) -> None:
        """Migrate a new template database; drop it again if that fails, so no test runs on
        a half-migrated copy (the next test tries again, and fails with the same error)."""
        url = self.server_url(kind).set(database=name).render_as_string(hide_password=False)
        try:
            await _migrate(url)
        except BaseException:
            await self.drop(kind, url)
            raise

    async def close(self) -> None:
        if self._pg_template is not None:
            async with self.admin("postgresql") as conn:
                await conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{self._pg_template}" WITH (FORCE)')
                )
            self._pg_template = None
        if self._maria_template is not None:
            async with self.admin("mariadb") as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{self._maria_template.source}`"))
            self._maria_template = None


class MariaDBTemplate:
    """A migrated MariaDB database, copied table by table (MariaDB has no CREATE DATABASE
    ... TEMPLATE). ``SHOW CREATE TABLE`` keeps what ``CREATE TABLE ... LIKE`` would lose
    (foreign keys); the rows are copied too (``alembic_version``). Measured: ~15 ms a copy
    against ~400 ms for running the migrations."""

    def __init__(self, source: str, tables: list[tuple[str, str]]) -> None:
        self.source = source
        self.tables = tables

    @classmethod
    async def read(cls, conn: AsyncConnection, source: str) -> MariaDBTemplate:
        kinds = (
            await conn.execute(
                text(
                    "SELECT table_name, table_type FROM information_schema.tables "
                    "WHERE table_schema = :s ORDER BY table_name"
                ),
                {"s": source},
            )
        ).all()
        others = [name for name, kind in kinds if kind != "BASE TABLE"]
        if others:
            raise RuntimeError(
                f"the MariaDB template holds {others}, which a table-by-table copy would "
                "lose: teach tests/db_fixtures.py MariaDBTemplate to copy them"
            )
        tables: list[tuple[str, str]] = []
        for name, _kind in kinds:
            ddl = (await conn.execute(text(f"SHOW CREATE TABLE `{source}`.`{name}`"))).one()[1]
            tables.append((name, ddl))
        return cls(source, tables)

    async def into(self, conn: AsyncConnection, target: str) -> None:
        await conn.execute(text(f"USE `{target}`"))
        await conn.execute(text("SET SESSION foreign_key_checks = 0"))
        for _name, ddl in self.tables:
            await conn.execute(text(ddl))
        for name, _ddl in self.tables:
            await conn.execute(text(f"INSERT INTO `{name}` SELECT * FROM `{self.source}`.`{name}`"))


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def db_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServers]:
    servers = DatabaseServers(tmp_path_factory.mktemp("db-templates"))
    yield servers
    _run_in_own_loop(servers.close)


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    """Which database this test runs on (parametrized by ``pytest_generate_tests``)."""
    kind: str = request.param
    return kind


@pytest.fixture
async def database_url(
    db_kind: str, db_servers: DatabaseServers, tmp_path: Path
) -> AsyncIterator[str]:
    """Async URL of a fresh database for this test, migrated to head."""
    url = await db_servers.create(db_kind, migrated=True, tmp_path=tmp_path)
    try:
        yield url
    finally:
        await db_servers.drop(db_kind, url)


@pytest.fixture
async def empty_database_url(
    db_kind: str, db_servers: DatabaseServers, tmp_path: Path
) -> AsyncIterator[str]:
    """Async URL of a fresh, empty database for this test (no migration applied)."""
    url = await db_servers.create(db_kind, migrated=False, tmp_path=tmp_path)
    try:
        yield url
    finally:
        await db_servers.drop(db_kind, url)


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Spindle's engine on this test's fresh, migrated database; disposed after the test."""
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(
    params=[
        pytest.param(k, id=k, marks=pytest.mark.db) for k in selected_databases() if k != "sqlite"
    ]
)
async def shared_database_url(
    request: pytest.FixtureRequest, db_servers: DatabaseServers, tmp_path: Path
) -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL or MariaDB database: the ones worker processes on
    several machines would share, and the ones with a server to lose (SQLite's
    multi-process case is tests/scheduler/test_workers.py's)."""
    kind: str = request.param
    url = await db_servers.create(kind, migrated=True, tmp_path=tmp_path)
    try:
        yield url
    finally:
        await db_servers.drop(kind, url)


@pytest.fixture
async def postgres_url(db_servers: DatabaseServers, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh migrated PostgreSQL database, for what only PostgreSQL has (NOTIFY,
    pg_terminate_backend)."""
    if "postgresql" not in selected_databases():
        pytest.skip("SPINDLE_TEST_DATABASES leaves out postgresql (never in CI)")
    url = await db_servers.create("postgresql", migrated=True, tmp_path=tmp_path)
    try:
        yield url
    finally:
        await db_servers.drop("postgresql", url)
