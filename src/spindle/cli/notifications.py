"""``spindle notifications``: your in-app notifications, preferences, subscriptions and
deliveries, through the API (docs/notifications.md)."""

from __future__ import annotations

import json
from datetime import datetime

import click

from spindle.cli.common import make_client, print_table, run_async, url_option
from spindle.models import notifications as m

EVENTS = ("run.complete", "run.failed", "run.canceled", "run.started", "group.drained")


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


@click.group()
def notifications() -> None:
    """Notifications: the inbox, preferences, subscriptions and deliveries."""


@notifications.command("list")
@click.option("--unread", is_flag=True, help="Only unread notifications.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@url_option
def list_notifications(unread: bool, limit: int, url: str | None) -> None:
    """Your in-app notifications, newest first."""

    async def go() -> m.NotificationList:
        async with make_client(url) as client:
            return await client.notifications(unread=unread, limit=limit)

    found = run_async(go())
    print_table(
        ["ID", "TIME", "READ", "EVENT", "TITLE"],
        [
            (str(n.id), _time(n.created_at), "yes" if n.read_at else "no", n.event, n.title)
            for n in found.notifications
        ],
    )
    click.echo(f"{found.unread} unread", err=True)


@notifications.command("read")
@click.argument("notification_id", type=int, required=False)
@url_option
def read(notification_id: int | None, url: str | None) -> None:
    """Mark a notification read (without an id: all of them)."""

    async def go() -> int:
        async with make_client(url) as client:
            return await client.mark_read(notification_id)

    click.echo(f"{run_async(go())} unread")


@notifications.command("preferences")
@click.option(
    "--events",
    default=None,
    metavar="LIST",
    help=f"Comma list of events to be told about ({', '.join(EVENTS)}); '' for none.",
)
@click.option(
    "--channels", default=None, metavar="LIST", help="Comma list of email, inapp; '' for none."
)
@url_option
def preferences(events: str | None, channels: str | None, url: str | None) -> None:
    """Show your preferences, or change them with --events and --channels."""

    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    async def go() -> m.Preferences:
        async with make_client(url) as client:
            current = await client.notification_preferences()
            if events is None and channels is None:
                return current
            return await client.set_notification_preferences(
                events=split(events) if events is not None else list(current.events),
                channels=split(channels) if channels is not None else list(current.channels),
            )

    prefs = run_async(go())
    click.echo(f"events: {', '.join(prefs.events) or '-'}")
    click.echo(f"channels: {', '.join(prefs.channels) or '-'}")


@notifications.command("subscribe")
@click.option(
    "--channel",
    type=click.Choice(["webhook", "slack", "email", "inapp"]),
    default="webhook",
    show_default=True,
)
@click.option("--to", "target", default=None, metavar="URL", help="webhook or slack URL.")
@click.option("--events", default=None, metavar="LIST", help="Comma list of events.")
@click.option("--run", "run_id", default=None, help="Only this run.")
@click.option("--group", "group_id", default=None, help="Only this run group's runs.")
@url_option
def subscribe(
    channel: str,
    target: str | None,
    events: str | None,
    run_id: str | None,
    group_id: str | None,
    url: str | None,
) -> None:
    """Subscribe; prints the subscription (and a webhook's signing secret)."""

    async def go() -> m.Subscription:
        async with make_client(url) as client:
            return await client.subscribe(
                channel=channel,
                url=target,
                events=[e.strip() for e in events.split(",")] if events else None,
                run_id=run_id,
                group_id=group_id,
            )

    sub = run_async(go())
    click.echo(sub.id)
    if sub.secret:
        click.echo(f"signing secret: {sub.secret}", err=True)


@notifications.command("subscriptions")
@url_option
def subscriptions(url: str | None) -> None:
    """Your subscriptions."""

    async def go() -> list[m.Subscription]:
        async with make_client(url) as client:
            return await client.subscriptions()

    print_table(
        ["ID", "CHANNEL", "TO", "SCOPE", "EVENTS", "STATUS"],
        [
            (
                s.id,
                s.channel,
                s.url or "-",
                f"run {s.run_id}" if s.run_id else f"group {s.group_id}" if s.group_id else "all",
                ",".join(s.events),
                s.status if not s.failures else f"{s.status} ({s.failures} failures)",
            )
            for s in run_async(go())
        ],
    )


@notifications.command("unsubscribe")
@click.argument("subscription_id")
@url_option
def unsubscribe(subscription_id: str, url: str | None) -> None:
    """Delete a subscription."""

    async def go() -> None:
        async with make_client(url) as client:
            await client.unsubscribe(subscription_id)

    run_async(go())
    click.echo(f"unsubscribed {subscription_id}")


def _show(d: m.Delivery) -> None:
    click.echo(f"{d.id} {d.state} {d.channel} {d.target} ({d.event}, {d.attempts} attempts)")
    for a in d.attempt_log:
        click.echo(f"  {_time(a.at)} {a.status_code or '-'} {a.duration_ms} ms {a.error or ''}")


@notifications.command("test")
@click.argument("subscription_id")
@url_option
def test(subscription_id: str, url: str | None) -> None:
    """Send a test message through a subscription now."""

    async def go() -> m.Delivery:
        async with make_client(url) as client:
            return await client.test_subscription(subscription_id)

    _show(run_async(go()))


@notifications.command("deliveries")
@click.option("--subscription", "subscription_id", default=None)
@click.option("--run", "run_id", default=None)
@click.option(
    "--state", type=click.Choice(["pending", "sending", "delivered", "failed"]), default=None
)
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@url_option
def deliveries(
    subscription_id: str | None,
    run_id: str | None,
    state: str | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Your deliveries, newest first, with every attempt."""

    async def go() -> list[m.Delivery]:
        async with make_client(url) as client:
            return await client.deliveries(
                subscription_id=subscription_id, run_id=run_id, state=state
            )

    found = run_async(go())
    if as_json:
        click.echo(json.dumps([d.model_dump(mode="json") for d in found], indent=2))
        return
    for d in found:
        _show(d)


@notifications.command("redeliver")
@click.argument("delivery_id")
@url_option
def redeliver(delivery_id: str, url: str | None) -> None:
    """Send a delivery again now (same webhook-id)."""

    async def go() -> m.Delivery:
        async with make_client(url) as client:
            return await client.redeliver(delivery_id)

    _show(run_async(go()))


def register(main: click.Group) -> None:
    main.add_command(notifications)
