"""The dispatcher against each database (SQLite, PostgreSQL, MariaDB): two dispatchers never
send one delivery at once; one killed -9 in the middle of a send is taken over after its
lease, with the same webhook-id; backoff; and sending checks every address it connects to."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from spindle.config import Settings
from spindle.db.engine import create_engine
from spindle.db.migrate import upgrade
from spindle.db.tables import LOCAL_USER, notify_deliveries, notify_subscriptions, users
from spindle.db.types import utcnow
from spindle.notify.channels import Channels, Message
from spindle.notify.dispatcher import Dispatcher, backoff
from spindle.notify.outbox import add_delivery
from spindle.notify.service import new_secret
from tests.notify.conftest import Receiver, TlsSink
from tests.support import REPO


def settings_for(database_url: str, tmp_path: Path, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "notify_allowed_networks": ["127.0.0.0/8"],
        "notify_retry_base_seconds": 0,
        "notify_poll_interval": 0.05,
        **kw,
    }
    return Settings(**values)


async def pending(db: AsyncEngine, url: str, n: int) -> list[str]:
    """``n`` webhook deliveries to ``url`` of one subscription, due now, as the outbox
    writes them."""
    async with db.begin() as conn:
        owner = (
            await conn.execute(select(users.c.id).where(users.c.name == LOCAL_USER))
        ).scalar_one()
        await conn.execute(
            insert(notify_subscriptions).values(
                id="sub-1",
                owner_id=owner,
                channel="webhook",
                url=url,
                secret=new_secret(),
                events=["run.complete"],
                status="active",
                failures=0,
                created_at=utcnow(),
            )
        )
        return [
            await add_delivery(
                conn,
                owner_id=owner,
                channel="webhook",
                target=url,
                subscription_id="sub-1",
                payload={"type": "test", "timestamp": None, "data": {"n": i}},
                run_id=None,
                group_id=None,
                now=utcnow(),
            )
            for i in range(n)
        ]


async def states(db: AsyncEngine) -> dict[str, int]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(notify_deliveries.c.state, func.count()).group_by(notify_deliveries.c.state)
        )
        return {state: int(n) for state, n in rows}


async def test_two_dispatchers_never_send_one_delivery_twice_at_once(
    db_engine: AsyncEngine, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    settings = settings_for(database_url, tmp_path, notify_concurrency=4)
    ids = await pending(db_engine, receiver.url, 40)
    receiver.delay = 0.01  # each send holds its claim a while, so the two overlap
    other_db = create_engine(database_url)
    one, two = Dispatcher(settings, db_engine), Dispatcher(settings, other_db)
    stop = asyncio.Event()
    loops = [asyncio.create_task(d.run(stop)) for d in (one, two)]
    try:
        deadline = time.monotonic() + 60
        while (await states(db_engine)).get("delivered", 0) < len(ids):
            assert time.monotonic() < deadline, await states(db_engine)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*loops)
        await other_db.dispose()
    assert sorted(receiver.ids()) == sorted(ids)  # each exactly once
    assert receiver.overlaps == 0


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """One migrated SQLite database (the claim itself is tested on every database above;
    a process start costs seconds on a loaded machine, so this test runs once)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'spindle.db'}"
    db = create_engine(url)
    await upgrade(db)
    yield db, url
    await db.dispose()


async def test_a_dispatcher_killed_mid_send_is_taken_over_with_the_same_webhook_id(
    sqlite_db: tuple[AsyncEngine, str], tmp_path: Path, receiver: Receiver
) -> None:
    db_engine, database_url = sqlite_db
    settings = settings_for(database_url, tmp_path, notify_lease_seconds=30)
    (delivery_id,) = await pending(db_engine, receiver.url, 1)
    receiver.delay = 30  # the first send never gets its answer: it is killed before
    env = {
        **os.environ,
        "SPINDLE_DATABASE_URL": database_url,
        "SPINDLE_DATA_DIR": str(tmp_path / "data"),
        "SPINDLE_NOTIFY_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "SPINDLE_NOTIFY_POLL_INTERVAL": "0.05",
        "SPINDLE_NOTIFY_LEASE_SECONDS": "30",
        "SPINDLE_CONFIG": str(tmp_path / "none.toml"),
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (killed below, never awaited)
        [sys.executable, "-m", "tests.notify.dispatch_forever"], cwd=REPO, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not receiver.requests:
            assert process.poll() is None, "the dispatcher process ended by itself"
            assert time.monotonic() < deadline, "the dispatcher process sent nothing"
            await asyncio.sleep(0.05)
    finally:
        process.kill()
        process.wait(10)
    receiver.delay = 0
    assert await states(db_engine) == {"sending": 1}
    # a restarted dispatcher leaves it while the dead one's lease holds, then sends it
    now = Dispatcher(settings, db_engine)
    after = Dispatcher(settings, db_engine, clock=lambda: utcnow() + timedelta(seconds=31))
    try:
        assert await now.drain() == 0
        assert await after.drain() == 1
    finally:
        await now.channels.aclose()
        await after.channels.aclose()
    assert receiver.ids() == [delivery_id, delivery_id]
    assert await states(db_engine) == {"delivered": 1}


def test_backoff_doubles_with_jitter_up_to_its_cap(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, notify_retry_base_seconds=5, notify_retry_max_seconds=60)
    assert [backoff(s, n, lambda: 1.0) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    assert [backoff(s, n, lambda: 0.0) for n in (1, 2, 3)] == [2.5, 5, 10]


async def test_sending_checks_the_address_it_connects_to(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A name that resolves to loopback is refused when it is connected to (the subscription
    may have been made while it resolved elsewhere), unless notify_allowed_networks says."""
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://localhost:{port}/hook"
    message = Message("msg_1", "slack", url, {"type": "test", "data": {}})
    refusing = Channels(Settings(data_dir=tmp_path))
    allowing = Channels(
        Settings(data_dir=tmp_path, notify_allowed_networks=["127.0.0.0/8", "::1/128"])
    )
    try:
        outcome = await refusing.send(message, now=utcnow())
        assert not outcome.ok
        assert outcome.error is not None
        assert "loopback" in outcome.error
        assert "notify_allowed_networks" in outcome.error
        assert receiver.requests == []
        assert (await allowing.send(message, now=utcnow())).ok
        assert len(receiver.requests) == 1
    finally:
        await refusing.aclose()
        await allowing.aclose()


@pytest.mark.parametrize("status", [301, 404])
async def test_a_redirect_or_an_error_is_a_failed_attempt(
    tmp_path: Path, receiver: Receiver, status: int
) -> None:
    receiver.script = [status]
    channels = Channels(Settings(data_dir=tmp_path, notify_allowed_networks=["127.0.0.0/8"]))
    try:
        outcome = await channels.send(
            Message("msg_1", "slack", receiver.url, {"type": "test", "data": {}}), now=utcnow()
        )
    finally:
        await channels.aclose()
    assert (outcome.ok, outcome.status_code) == (False, status)


async def test_email_over_starttls_with_a_login(
    tmp_path: Path, smtp_starttls_sink: TlsSink
) -> None:
    """STARTTLS (the server's certificate checked against smtp_ca_file), then a login: the
    server takes neither mail nor a login before STARTTLS."""
    box = smtp_starttls_sink
    payload = {
        "type": "run.complete",
        "data": {"run_id": "r-1", "run_name": "r-1", "state": "COMPLETE", "workflow_type": "CWL",
                 "workflow_url": "wf.cwl", "run_url": "https://spindle.example.org/runs/r-1"},
    }  # fmt: skip
    message = Message("msg_mail", "email", "alice@example.org", payload)

    def channels(password: str) -> Channels:
        return Channels(
            Settings(
                data_dir=tmp_path,
                smtp_host="127.0.0.1",
                smtp_port=box.port,
                smtp_username="spindle",
                smtp_password=password,
                smtp_ca_file=box.ca_file,
                smtp_from="spindle@example.org",
            )
        )

    right = channels("mail secret")
    unchecked = Channels(
        right.settings.model_copy(update={"smtp_ca_file": None})
    )  # the system's CAs do not know the server's certificate
    try:
        distrusted = await unchecked.send(message, now=utcnow())
        assert not distrusted.ok
        assert distrusted.error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in distrusted.error
        sent = await right.send(message, now=utcnow())
        assert sent.ok, sent.error
    finally:
        await right.aclose()
        await unchecked.aclose()
    assert box.logins == [("spindle", "mail secret")]
    (mail,) = box.sink.messages
    assert mail["Subject"] == "Run r-1 COMPLETE"
    assert mail["Message-ID"] == "<msg_mail@spindle>"
