"""Notifications end to end, over HTTP with the real app (fake engine, real database):
a signed webhook that fails twice then is delivered, its attempts and a redeliver; email
through an aiosmtpd sink; the in-app inbox; preferences; group drained; the `notify`
submission field; and isolation between users."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from spindle.config import Settings
from spindle.metrics import REGISTRY
from spindle.notify.dispatcher import Dispatcher
from spindle.testing import plugins
from tests.api.conftest import WES, app_client, make_app
from tests.notify.conftest import Receiver, Sink
from tests.scheduler.test_fakes import fake_catalog, fake_settings, form

NOTIFY = f"{WES}/notifications"
BASE = "https://spindle.example.org"
PASSWORDS = {"alice": "alice's secret", "bob": "bob's secret"}


def as_user(name: str) -> dict[str, str]:
    raw = f"{name}:{PASSWORDS[name]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


ALICE, BOB = as_user("alice"), as_user("bob")


@pytest.fixture
def fakes() -> Iterator[None]:
    with plugins():
        yield


def notify_settings(tmp_path: Path, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": "basic",
        "public_url": BASE,
        "notify_allowed_networks": ["127.0.0.0/8"],
        "notify_retry_base_seconds": 0,  # retries due at once: no test sleeps on backoff
        "notify_poll_interval": 0.05,
        **kw,
    }
    return fake_settings(tmp_path, **values)


async def start(app: FastAPI) -> None:
    for name, password in PASSWORDS.items():
        await app.state.accounts.add_user(name, password=password, email=f"{name}@example.org")


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"msg", "status_code"}
    assert body["status_code"] == status
    for fragment in fragments:
        assert fragment in body["msg"], (fragment, body["msg"])


async def submit(
    client: httpx.AsyncClient,
    params: dict[str, Any],
    headers: dict[str, str],
    **extra: str,
) -> str:
    f = form(params)
    f["data"].update(extra)
    run_id: str = ok(await client.post(f"{WES}/runs", headers=headers, **f))["run_id"]
    return run_id


async def wait_until(check: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("not reached in time")


async def ended(client: httpx.AsyncClient, run_id: str, headers: dict[str, str]) -> str:
    async def state() -> str | None:
        s: str = ok(await client.get(f"{WES}/runs/{run_id}/status", headers=headers))["state"]
        return s if s in {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"} else None

    result: str = await wait_until(state)
    return result


@pytest.fixture
async def client(fakes: None, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The app with its worker and its embedded dispatcher."""
    app = make_app(notify_settings(tmp_path), await fake_catalog())
    async with app_client(app) as c:
        await start(app)
        yield c, app


# --- webhooks ------------------------------------------------------------------------------


async def test_a_webhook_fails_twice_then_is_delivered_signed_with_every_attempt_listed(
    client: tuple[httpx.AsyncClient, FastAPI], receiver: Receiver
) -> None:
    api, _ = client

    def counted(outcome: str) -> float:
        labels = {"channel": "webhook", "outcome": outcome}
        return REGISTRY.get_sample_value("spindle_notification_deliveries_total", labels) or 0.0

    pending, sent = counted("pending"), counted("delivered")
    receiver.script = [500, 503]  # then 200
    notify = json.dumps({"url": receiver.url, "events": ["run.complete"]})
    run_id = await submit(api, {"tasks": 1}, ALICE, notify=notify)
    assert await ended(api, run_id, ALICE) == "COMPLETE"
    subs = ok(await api.get(f"{NOTIFY}/subscriptions", params={"run_id": run_id}, headers=ALICE))
    (sub,) = subs["subscriptions"]
    assert (sub["channel"], sub["run_id"], sub["events"]) == ("webhook", run_id, ["run.complete"])

    async def delivered() -> Any:
        found = ok(await api.get(f"{NOTIFY}/deliveries", params={"run_id": run_id}, headers=ALICE))
        done = [d for d in found["deliveries"] if d["state"] == "delivered"]
        return done[0] if done else None

    delivery = await wait_until(delivered)
    # three attempts, the first two refused by the receiver, all with one webhook-id
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]
    assert delivery["attempts"] == 3
    assert "answered 500" in delivery["attempt_log"][0]["error"]
    assert delivery["attempt_log"][2]["error"] is None
    assert receiver.ids() == [delivery["id"]] * 3
    # /metrics counts the attempts by outcome
    assert (counted("pending") - pending, counted("delivered") - sent) == (2, 1)
    # each request verifies with the subscription's secret (Standard Webhooks)
    hook = Webhook(sub["secret"])
    for request in receiver.requests:
        verified = hook.verify(request.body, request.headers)
        assert verified["type"] == "run.complete"
        assert verified["data"]["run_id"] == run_id
        assert verified["data"]["state"] == "COMPLETE"
        assert verified["data"]["run_url"] == f"{BASE}/runs/{run_id}"
    # a tampered body does not verify
    with pytest.raises(Exception, match="No matching signature"):
        hook.verify(receiver.requests[0].body + b" ", receiver.requests[0].headers)

    # redeliver: once more, the same webhook-id, a fourth attempt listed
    again = ok(await api.post(f"{NOTIFY}/deliveries/{delivery['id']}/redeliver", headers=ALICE))
    assert again["state"] == "delivered"
    assert len(again["attempt_log"]) == 4
    assert receiver.ids() == [delivery["id"]] * 4


async def test_test_send_and_slack_format(
    client: tuple[httpx.AsyncClient, FastAPI], receiver: Receiver
) -> None:
    api, _ = client
    slack = ok(
        await api.post(
            f"{NOTIFY}/subscriptions", json={"channel": "slack", "url": receiver.url}, headers=ALICE
        )
    )
    assert slack["secret"] is None
    sent = ok(await api.post(f"{NOTIFY}/subscriptions/{slack['id']}/test", headers=ALICE))
    assert sent["state"] == "delivered"
    assert sent["event"] == "test"
    body = json.loads(receiver.requests[-1].body)
    assert set(body) == {"text"}
    assert "test notification" in body["text"]

    # a failing receiver: the test-send says so, and the delivery waits for a retry
    receiver.script = [500]
    hook = ok(await api.post(f"{NOTIFY}/subscriptions", json={"url": receiver.url}, headers=ALICE))
    assert hook["secret"].startswith("whsec_")
    failed = ok(await api.post(f"{NOTIFY}/subscriptions/{hook['id']}/test", headers=ALICE))
    assert failed["attempt_log"][0]["status_code"] == 500
    assert failed["state"] in ("pending", "sending", "delivered")  # the dispatcher retries it


async def test_a_subscription_that_keeps_failing_is_marked_and_its_owner_told_in_app(
    fakes: None, tmp_path: Path, receiver: Receiver
) -> None:
    app = make_app(
        notify_settings(tmp_path, notify_dispatcher=False, notify_failing_after=2),
        await fake_catalog(),
    )
    async with app_client(app) as api:
        await start(app)
        receiver.script = [500] * 3
        sub = ok(
            await api.post(f"{NOTIFY}/subscriptions", json={"url": receiver.url}, headers=ALICE)
        )
        delivery = ok(await api.post(f"{NOTIFY}/subscriptions/{sub['id']}/test", headers=ALICE))
        dispatcher: Dispatcher = app.state.notify.dispatcher
        assert await dispatcher.drain() == 3  # two more failures, then delivered
        mine = ok(await api.get(f"{NOTIFY}/subscriptions/{sub['id']}", headers=ALICE))
        assert mine["status"] == "active"
        assert mine["failures"] == 0
        inbox = ok(await api.get(NOTIFY, headers=ALICE))["notifications"]
        failing = [n for n in inbox if n["event"] == "subscription.failing"]
        assert len(failing) == 1, inbox  # told once, when it turned failing
        assert sub["id"] in failing[0]["title"]
        assert "answered 500" in failing[0]["body"]
        final = ok(await api.get(f"{NOTIFY}/deliveries/{delivery['id']}", headers=ALICE))
        assert [a["status_code"] for a in final["attempt_log"]] == [500, 500, 500, 200]


async def test_a_delivery_past_its_max_age_is_given_up(
    fakes: None, tmp_path: Path, receiver: Receiver
) -> None:
    """Retries stop notify_max_age_seconds after the delivery was made (a clock moved
    forward stands in for the day that passes)."""
    from datetime import timedelta

    from spindle.db.types import utcnow

    app = make_app(
        notify_settings(tmp_path, notify_dispatcher=False, notify_max_age_seconds=60),
        await fake_catalog(),
    )
    async with app_client(app) as api:
        await start(app)
        receiver.script = [500] * 10
        sub = ok(
            await api.post(f"{NOTIFY}/subscriptions", json={"url": receiver.url}, headers=ALICE)
        )
        first = ok(await api.post(f"{NOTIFY}/subscriptions/{sub['id']}/test", headers=ALICE))
        assert first["state"] == "pending"
        later = Dispatcher(
            app.state.settings, app.state.notify.db, clock=lambda: utcnow() + timedelta(seconds=61)
        )
        try:
            assert await later.drain() == 1
        finally:
            await later.channels.aclose()
        gone = ok(await api.get(f"{NOTIFY}/deliveries/{first['id']}", headers=ALICE))
        assert gone["state"] == "failed"
        assert len(gone["attempt_log"]) == 2


# --- email and in-app ----------------------------------------------------------------------


async def test_a_failed_run_is_emailed_with_subject_plain_and_html_bodies_and_links(
    fakes: None, tmp_path: Path, smtp_sink: tuple[Sink, int]
) -> None:
    sink, port = smtp_sink
    settings = notify_settings(
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_from="spindle@example.org",
    )
    app = make_app(settings, await fake_catalog())
    async with app_client(app) as api:
        await start(app)
        prefs = {"events": ["run.failed"], "channels": ["email", "inapp"]}
        assert ok(await api.put(f"{NOTIFY}/preferences", json=prefs, headers=ALICE)) == prefs
        assert ok(await api.get(f"{NOTIFY}/preferences", headers=ALICE)) == prefs
        run_id = await submit(
            api, {"tasks": 2, "exit": 3}, ALICE, tags=json.dumps({"name": "assembly"})
        )
        assert await ended(api, run_id, ALICE) == "EXECUTOR_ERROR"

        async def mailed() -> bool:
            return bool(sink.messages)

        await wait_until(mailed)
        (message,) = sink.messages
        assert sink.envelopes[0] == ("spindle@example.org", ["alice@example.org"])
        assert message["Subject"] == f"Run assembly ({run_id}) EXECUTOR_ERROR"
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert plain is not None
        assert html is not None
        text, markup = plain.get_content(), html.get_content()
        for body in (text, markup):
            assert f"{BASE}/runs/{run_id}" in body
            assert f"{BASE}/ga4gh/wes/v1/runs/{run_id}" in body
            assert "fake ran 2 tasks" in body  # the last lines of its log
            assert "FAKE workflow workflow.fake" in body
        assert f'<a href="{BASE}/runs/{run_id}">Run</a>' in markup

        # and the bell: one unread notification, then read
        inbox = ok(await api.get(NOTIFY, headers=ALICE))
        assert inbox["unread"] == 1
        (note,) = inbox["notifications"]
        assert (note["event"], note["run_id"]) == ("run.failed", run_id)
        assert note["title"] == f"Run assembly ({run_id}) EXECUTOR_ERROR"
        assert ok(await api.post(f"{NOTIFY}/{note['id']}/read", headers=ALICE)) == {"unread": 0}
        assert ok(await api.get(NOTIFY, params={"unread": True}, headers=ALICE)) == {
            "notifications": [],
            "unread": 0,
        }


async def test_in_app_by_default_started_only_when_asked_and_group_drained_counts(
    client: tuple[httpx.AsyncClient, FastAPI], receiver: Receiver
) -> None:
    api, _ = client
    group = ok(await api.post(f"{WES}/run-groups", json={"name": "batch"}, headers=ALICE))
    # a webhook for the group: its runs starting, and its draining
    body = {
        "url": receiver.url,
        "group_id": group["id"],
        "events": ["run.started", "group.drained"],
    }
    hook = ok(await api.post(f"{NOTIFY}/subscriptions", json=body, headers=ALICE))
    runs = [
        await submit(api, {"tasks": 1}, ALICE, run_group_id=group["id"]),
        await submit(api, {"tasks": 1, "exit": 1}, ALICE, run_group_id=group["id"]),
    ]
    assert {await ended(api, r, ALICE) for r in runs} == {"COMPLETE", "EXECUTOR_ERROR"}

    async def drained() -> Any:
        items = ok(await api.get(NOTIFY, headers=ALICE))["notifications"]
        return items if any(n["event"] == "group.drained" for n in items) else None

    items = await wait_until(drained)
    events = sorted(n["event"] for n in items)
    # the defaults: ended runs and the drained group, never run.started
    assert events == ["group.drained", "run.complete", "run.failed"]
    (note,) = [n for n in items if n["event"] == "group.drained"]
    assert note["group_id"] == group["id"]
    assert "2 runs (1 COMPLETE, 1 EXECUTOR_ERROR)" in note["body"]
    assert ok(await api.post(f"{NOTIFY}/read", headers=ALICE)) == {"unread": 0}

    async def sent() -> Any:
        found = ok(await api.get(f"{NOTIFY}/deliveries", headers=ALICE))["deliveries"]
        done = len(found) == 3 and all(d["state"] == "delivered" for d in found)
        return found if done else None

    deliveries = await wait_until(sent)
    assert {d["subscription_id"] for d in deliveries} == {hook["id"]}
    assert sorted(d["event"] for d in deliveries) == ["group.drained", "run.started", "run.started"]
    (drained,) = [d for d in deliveries if d["event"] == "group.drained"]
    assert drained["payload"]["data"]["counts"] == {"COMPLETE": 1, "EXECUTOR_ERROR": 1}
    assert drained["payload"]["data"]["group_url"] == f"{BASE}/groups/{group['id']}"
    # bob was told nothing
    assert ok(await api.get(NOTIFY, headers=BOB)) == {"notifications": [], "unread": 0}


# --- bad input and isolation ---------------------------------------------------------------


async def test_bad_subscriptions_are_refused_naming_the_field(fakes: None, tmp_path: Path) -> None:
    app = make_app(notify_settings(tmp_path, notify_allowed_networks=[]), await fake_catalog())
    async with app_client(app) as api:
        await start(app)
        post = f"{NOTIFY}/subscriptions"
        # the SSRF rules of workflow URLs: loopback, private, link-local refused
        for url, kind in [
            ("http://127.0.0.1:9/hook", "loopback"),
            ("http://10.1.2.3/hook", "private"),
            ("http://169.254.169.254/latest", "link-local"),
            ("http://[::1]/hook", "loopback"),
        ]:
            refused(await api.post(post, json={"url": url}, headers=ALICE), 400, "url", kind)
        refused(
            await api.post(post, json={"url": "ftp://example.org/x"}, headers=ALICE), 400, "url"
        )
        refused(await api.post(post, json={"channel": "webhook"}, headers=ALICE), 400, "url")
        refused(
            await api.post(
                post, json={"url": "https://example.org", "events": ["run.done"]}, headers=ALICE
            ),
            400,
            "events",
        )
        refused(
            await api.post(
                post, json={"url": "https://example.org", "secret": "nope"}, headers=ALICE
            ),
            400,
            "secret",
        )
        refused(await api.post(post, json={"channel": "pager"}, headers=ALICE), 400, "channel")
        refused(await api.post(post, json={"colour": "red"}, headers=ALICE), 400, "colour")
        refused(
            await api.put(f"{NOTIFY}/preferences", json={"channels": ["webhook"]}, headers=ALICE),
            400,
            "channels",
        )
        # the submission field: bad JSON, a refused URL
        f = form({"tasks": 1})
        f["data"]["notify"] = "{not json"
        refused(await api.post(f"{WES}/runs", headers=ALICE, **f), 400, "notify")
        f["data"]["notify"] = json.dumps({"url": "http://127.0.0.1/x"})
        refused(await api.post(f"{WES}/runs", headers=ALICE, **f), 400, "notify.url", "loopback")
        refused(
            await api.get(f"{NOTIFY}/deliveries/msg_nothing", headers=ALICE), 404, "msg_nothing"
        )
        refused(await api.post(f"{NOTIFY}/12345/read", headers=ALICE), 404, "12345")
        # an id past any integer column is a 400 naming it, not a 500 (found by schemathesis)
        huge = "562616692369199743369216"
        refused(await api.post(f"{NOTIFY}/{huge}/read", headers=ALICE), 400, "notification_id")
        refused(await api.get(NOTIFY, params={"before": huge}, headers=ALICE), 400, "before")


async def test_bob_cannot_subscribe_to_see_or_be_told_about_alices_runs_or_groups(
    client: tuple[httpx.AsyncClient, FastAPI], receiver: Receiver
) -> None:
    api, _ = client
    # bob listens to everything of his own, by webhook and in-app
    ok(
        await api.post(
            f"{NOTIFY}/subscriptions",
            json={"url": receiver.url, "events": ["run.complete", "run.started", "group.drained"]},
            headers=BOB,
        )
    )
    group = ok(await api.post(f"{WES}/run-groups", json={"name": "alice's"}, headers=ALICE))
    run_id = await submit(api, {"tasks": 1}, ALICE, run_group_id=group["id"])
    alices = ok(
        await api.post(
            f"{NOTIFY}/subscriptions", json={"url": receiver.url, "run_id": run_id}, headers=ALICE
        )
    )
    post = f"{NOTIFY}/subscriptions"
    # bob cannot subscribe to alice's run or group: "not found", as a missing one
    for key, value in (("run_id", run_id), ("group_id", group["id"])):
        body = {"url": receiver.url, key: value}
        refused(await api.post(post, json=body, headers=BOB), 400, key, "was not found")
    refused(
        await api.post(post, json={"url": receiver.url, "run_id": "nope"}, headers=BOB),
        400,
        "run_id",
        "was not found",
    )
    assert await ended(api, run_id, ALICE) == "COMPLETE"

    async def delivered() -> Any:
        found = ok(await api.get(f"{NOTIFY}/deliveries", headers=ALICE))["deliveries"]
        return found if found and all(d["state"] == "delivered" for d in found) else None

    mine = await wait_until(delivered)
    assert {d["subscription_id"] for d in mine} == {alices["id"]}
    # bob sees none of it, and his subscription was never used
    assert ok(await api.get(f"{NOTIFY}/deliveries", headers=BOB)) == {"deliveries": []}
    assert ok(await api.get(NOTIFY, headers=BOB))["notifications"] == []
    assert ok(await api.get(post, headers=BOB))["subscriptions"][0]["failures"] == 0
    assert receiver.ids() == [mine[0]["id"]]
    for path in (
        f"{post}/{alices['id']}",
        f"{NOTIFY}/deliveries/{mine[0]['id']}",
    ):
        refused(await api.get(path, headers=BOB), 404)
    refused(await api.delete(f"{post}/{alices['id']}", headers=BOB), 404)
    refused(await api.post(f"{post}/{alices['id']}/test", headers=BOB), 404)
    refused(await api.post(f"{NOTIFY}/deliveries/{mine[0]['id']}/redeliver", headers=BOB), 404)
    alice_note = ok(await api.get(NOTIFY, headers=ALICE))["notifications"][0]
    refused(await api.post(f"{NOTIFY}/{alice_note['id']}/read", headers=BOB), 404)
    # alice's subscription is still there; she deletes it
    ok(await api.delete(f"{post}/{alices['id']}", headers=ALICE), 204)
    refused(await api.get(f"{post}/{alices['id']}", headers=ALICE), 404)


async def test_a_notification_made_while_no_dispatcher_runs_is_sent_after_a_restart(
    fakes: None, tmp_path: Path, receiver: Receiver
) -> None:
    """The outbox row is written with the state change; the process stops before any
    dispatcher sends it; the next start sends it, with the id it was given then."""
    notify = json.dumps({"url": receiver.url})
    app = make_app(notify_settings(tmp_path, notify_dispatcher=False), await fake_catalog())
    async with app_client(app) as api:
        await start(app)
        run_id = await submit(api, {"tasks": 1}, ALICE, notify=notify)
        assert await ended(api, run_id, ALICE) == "COMPLETE"
        (waiting,) = ok(await api.get(f"{NOTIFY}/deliveries", headers=ALICE))["deliveries"]
        assert (waiting["state"], waiting["attempts"]) == ("pending", 0)
    assert receiver.requests == []
    again = make_app(notify_settings(tmp_path), await fake_catalog())
    async with app_client(again) as api:

        async def delivered() -> Any:
            found = ok(await api.get(f"{NOTIFY}/deliveries/{waiting['id']}", headers=ALICE))
            return found if found["state"] == "delivered" else None

        await wait_until(delivered)
    assert receiver.ids() == [waiting["id"]]
