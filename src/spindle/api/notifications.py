"""Notifications: Spindle's documented extension beside the WES paths
(docs/notifications.md): preferences, subscriptions, deliveries and the in-app inbox.

HTTP only: every rule is the :class:`~spindle.notify.service.NotifyService`'s, and its
errors leave as the WES ``ErrorResponse`` through the one handler in ``errors.py``. Everything
here is the caller's own; another user's subscription, delivery or notification is a 404,
as a missing one is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from spindle.api.auth import CallerDep
from spindle.api.errors import documented
from spindle.limits import MAX_ID
from spindle.models import notifications as m
from spindle.notify.claim import Delivery
from spindle.notify.service import Attempt, NotifyService, Subscription

router = APIRouter(prefix="/ga4gh/wes/v1/notifications", tags=["Spindle notifications"])


async def get_notify(request: Request) -> NotifyService:
    service: NotifyService = request.app.state.notify
    return service


Notify = Annotated[NotifyService, Depends(get_notify)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=``: the usual ErrorResponses, with this extension's 404 and 409 texts."""
    out = documented(*codes)
    if 404 in codes:
        out[404] = {
            **out[404],
            "description": "Not found (a subscription, delivery or notification of another "
            "user's is not found either).",
        }
    if 409 in codes:
        out[409] = {**out[409], "description": "The delivery is being sent now."}
    return out


def subscription_model(s: Subscription) -> m.Subscription:
    return m.Subscription(**{k: getattr(s, k) for k in m.Subscription.model_fields})


def delivery_model(d: Delivery, attempts: list[Attempt] | None = None) -> m.Delivery:
    fields = {k: getattr(d, k) for k in m.Delivery.model_fields if k != "attempt_log"}
    fields["payload"] = {k: v for k, v in d.payload.items() if k != "detailed"}
    log = [m.Attempt(**vars(a)) for a in attempts or []]
    return m.Delivery(**fields, attempt_log=log)


# --- in-app --------------------------------------------------------------------------------


@router.get("", response_model=m.NotificationList, responses=_errors(400, 401, 403, 500))
async def list_notifications(
    notify: Notify,
    caller: CallerDep,
    unread: Annotated[bool, Query(description="Only the unread ones.")] = False,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="Only those older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first.")] = 50,
) -> m.NotificationList:
    """Your in-app notifications, newest first, and your unread count."""
    items, count = await notify.inbox(caller, unread=unread, before=before, limit=limit)
    return m.NotificationList(
        notifications=[m.Notification(**vars(n)) for n in items], unread=count
    )


@router.post("/read", response_model=m.Unread, responses=_errors(401, 403, 500))
async def mark_all_read(notify: Notify, caller: CallerDep) -> m.Unread:
    """Mark all your notifications read."""
    return m.Unread(unread=await notify.mark_read(caller))


@router.post(
    "/{notification_id}/read", response_model=m.Unread, responses=_errors(401, 403, 404, 500)
)
async def mark_read(
    notification_id: Annotated[int, Path(ge=0, le=MAX_ID)], notify: Notify, caller: CallerDep
) -> m.Unread:
    """Mark one of your notifications read; answers how many are still unread."""
    return m.Unread(unread=await notify.mark_read(caller, notification_id))


# --- preferences ---------------------------------------------------------------------------


@router.get("/preferences", response_model=m.Preferences, responses=_errors(401, 403, 500))
async def get_preferences(notify: Notify, caller: CallerDep) -> m.Preferences:
    """What you are told about your own runs and groups, and through which channels."""
    return m.Preferences(**await notify.preferences(caller))


@router.put("/preferences", response_model=m.Preferences, responses=_errors(400, 401, 403, 500))
async def put_preferences(body: m.Preferences, notify: Notify, caller: CallerDep) -> m.Preferences:
    """Replace your notification preferences (kept in your user's preferences)."""
    return m.Preferences(**await notify.set_preferences(caller, body.model_dump()))


# --- subscriptions -------------------------------------------------------------------------


@router.post("/subscriptions", response_model=m.Subscription, responses=_errors(400, 401, 403, 500))
async def create_subscription(
    body: m.SubscriptionRequest, notify: Notify, caller: CallerDep
) -> m.Subscription:
    """Subscribe a channel to events of your runs (all, one run, or one run group). A
    webhook or Slack URL must reach a public address unless the setting
    notify_allowed_networks allows it."""
    raw: dict[str, Any] = body.model_dump(exclude_unset=True)
    return subscription_model(await notify.subscribe(caller, raw))


@router.get("/subscriptions", response_model=m.SubscriptionList, responses=_errors(401, 403, 500))
async def list_subscriptions(
    notify: Notify,
    caller: CallerDep,
    run_id: Annotated[str | None, Query(description="Only those of this run.")] = None,
    group_id: Annotated[str | None, Query(description="Only those of this run group.")] = None,
) -> m.SubscriptionList:
    """Your subscriptions, oldest first."""
    subs = await notify.subscriptions(caller, run_id=run_id, group_id=group_id)
    return m.SubscriptionList(subscriptions=[subscription_model(s) for s in subs])


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=m.Subscription,
    responses=_errors(401, 403, 404, 500),
)
async def get_subscription(
    subscription_id: str, notify: Notify, caller: CallerDep
) -> m.Subscription:
    return subscription_model(await notify.subscription(caller, subscription_id))


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=_errors(401, 403, 404, 500),
)
async def delete_subscription(subscription_id: str, notify: Notify, caller: CallerDep) -> None:
    """Unsubscribe (its pending deliveries are dropped with it)."""
    await notify.unsubscribe(caller, subscription_id)


@router.post(
    "/subscriptions/{subscription_id}/test",
    response_model=m.Delivery,
    responses=_errors(400, 401, 403, 404, 500),
)
async def test_subscription(subscription_id: str, notify: Notify, caller: CallerDep) -> m.Delivery:
    """Send a `test` message through the subscription now; answers its delivery with the
    attempt (a failed one is retried like any other)."""
    delivery = await notify.test(caller, subscription_id)
    return delivery_model(*await notify.delivery_with_attempts(caller, delivery.id))


# --- deliveries ----------------------------------------------------------------------------


@router.get("/deliveries", response_model=m.DeliveryList, responses=_errors(401, 403, 500))
async def list_deliveries(
    notify: Notify,
    caller: CallerDep,
    subscription_id: Annotated[str | None, Query(description="Only this subscription's.")] = None,
    run_id: Annotated[str | None, Query(description="Only this run's.")] = None,
    state: Annotated[
        str | None, Query(description="pending, sending, delivered or failed.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first.")] = 100,
) -> m.DeliveryList:
    """Your deliveries, newest first, each with every attempt."""
    found = await notify.deliveries(
        caller, subscription_id=subscription_id, run_id=run_id, state=state, limit=limit
    )
    return m.DeliveryList(deliveries=[delivery_model(d, a) for d, a in found])


@router.get(
    "/deliveries/{delivery_id}",
    response_model=m.Delivery,
    responses=_errors(401, 403, 404, 500),
)
async def get_delivery(delivery_id: str, notify: Notify, caller: CallerDep) -> m.Delivery:
    return delivery_model(*await notify.delivery_with_attempts(caller, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=m.Delivery,
    responses=_errors(401, 403, 404, 409, 500),
)
async def redeliver(delivery_id: str, notify: Notify, caller: CallerDep) -> m.Delivery:
    """Send it again now, with the same id (webhook-id), and retry it for another
    notify_max_age_seconds if it fails."""
    await notify.redeliver(caller, delivery_id)
    return delivery_model(*await notify.delivery_with_attempts(caller, delivery_id))
