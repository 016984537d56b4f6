"""``spindle notifications`` against a real running Spindle (tests.live), through click's
CliRunner: preferences, subscriptions (and their refusals), the inbox."""

from __future__ import annotations

from tests.cli.test_runs_cli import assert_error, ok, spindle
from tests.live import live_server

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here


def test_preferences_subscriptions_and_the_inbox(live_server: str) -> None:
    url = live_server
    shown = ok(spindle("notifications", "preferences", "--url", url)).stdout
    assert "events: run.complete, run.failed, run.canceled, group.drained" in shown
    assert "channels: inapp" in shown
    changed = ok(
        spindle("notifications", "preferences", "--events", "run.failed", "--url", url)
    ).stdout
    assert "events: run.failed\nchannels: inapp" in changed

    sub_id = ok(
        spindle(
            "notifications", "subscribe", "--channel", "inapp", "--events",
            "run.started,run.complete", "--url", url,
        )
    ).stdout.strip()  # fmt: skip
    listed = ok(spindle("notifications", "subscriptions", "--url", url)).stdout
    assert sub_id in listed
    assert "run.started,run.complete" in listed
    # a webhook to loopback: refused by the SSRF rules, the field named
    assert_error(
        spindle("notifications", "subscribe", "--to", "http://127.0.0.1:9/x", "--url", url),
        "loopback",
    )
    assert_error(spindle("notifications", "test", sub_id, "--url", url), "not sent")
    ok(spindle("notifications", "unsubscribe", sub_id, "--url", url))
    assert sub_id not in ok(spindle("notifications", "subscriptions", "--url", url)).stdout
    assert_error(spindle("notifications", "unsubscribe", sub_id, "--url", url), "not found")

    inbox = ok(spindle("notifications", "list", "--url", url))
    assert inbox.stdout.startswith("ID")
    assert "unread" in inbox.stderr
    assert ok(spindle("notifications", "read", "--url", url)).stdout.strip() == "0 unread"
    assert ok(spindle("notifications", "deliveries", "--json", "--url", url)).stdout.strip() == "[]"
