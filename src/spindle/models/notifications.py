"""Models of the notifications extension (``/notifications``; docs/notifications.md),
shared by the server and the client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_STRICT = ConfigDict(extra="forbid", strict=True)

EventName = Literal["run.complete", "run.failed", "run.canceled", "run.started", "group.drained"]
ChannelName = Literal["webhook", "slack", "email", "inapp"]
PreferenceChannel = Literal["email", "inapp"]
DEFAULT_EVENTS: tuple[EventName, ...] = (
    "run.complete",
    "run.failed",
    "run.canceled",
    "group.drained",
)
DEFAULT_CHANNELS: tuple[PreferenceChannel, ...] = ("inapp",)


class SubscriptionRequest(BaseModel):
    """A new subscription. Without ``run_id`` or ``group_id`` it covers every run and group
    of yours."""

    model_config = _STRICT
    channel: ChannelName = Field(
        default="webhook",
        description="webhook (signed, Standard Webhooks), slack (an incoming-webhook URL), "
        "email (to your account's address) or inapp.",
    )
    url: str | None = Field(default=None, description="webhook and slack: where to POST.")
    events: list[EventName] | None = Field(
        default=None,
        description="What to be told about; default: run.complete, run.failed, "
        "run.canceled, group.drained (run.started only when named).",
    )
    secret: str | None = Field(
        default=None,
        description="webhook: the signing secret (whsec_ and base64); default: a new one.",
    )
    run_id: str | None = Field(default=None, description="Only this run (yours).")
    group_id: str | None = Field(default=None, description="Only the runs of this group (yours).")


class Subscription(BaseModel):
    id: str
    channel: ChannelName
    url: str | None
    secret: str | None = Field(
        description="webhook: the Standard Webhooks secret to verify its signatures with."
    )
    events: list[str]
    run_id: str | None
    group_id: str | None
    status: Literal["active", "failing"]
    failures: int = Field(description="Failed attempts in a row.")
    last_error: str | None
    created_at: datetime


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


class Attempt(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(BaseModel):
    id: str = Field(description="The webhook-id: the same on every attempt.")
    subscription_id: str | None
    channel: ChannelName
    target: str
    event: str
    run_id: str | None
    group_id: str | None
    state: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    payload: dict[str, Any]
    attempt_log: list[Attempt] = Field(
        default_factory=list, description="Every attempt, oldest first."
    )


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


class Notification(BaseModel):
    id: int
    created_at: datetime
    event: str
    title: str
    body: str
    run_id: str | None
    group_id: str | None
    read_at: datetime | None


class NotificationList(BaseModel):
    notifications: list[Notification]
    unread: int = Field(description="How many of yours are unread (all, not only this page).")


class Unread(BaseModel):
    unread: int


class Preferences(BaseModel):
    """What you are told about your own runs and groups, and how (subscriptions add more)."""

    model_config = _STRICT
    events: list[EventName] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    channels: list[PreferenceChannel] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))
