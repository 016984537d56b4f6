"""The events people subscribe to, the channels they are told through, and a user's
notification preferences (``users.preferences["notifications"]``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from spindle.domain import State
from spindle.errors import InvalidRequest

RUN_COMPLETE = "run.complete"
RUN_FAILED = "run.failed"
RUN_CANCELED = "run.canceled"
RUN_STARTED = "run.started"
GROUP_DRAINED = "group.drained"
#: what test-send sends
TEST = "test"
#: the in-app notice that a subscription keeps failing (not subscribable)
SUBSCRIPTION_FAILING = "subscription.failing"

EVENTS = (RUN_COMPLETE, RUN_FAILED, RUN_CANCELED, RUN_STARTED, GROUP_DRAINED)
#: what a subscription, or a user's preferences, get when they name no events
DEFAULT_EVENTS = (RUN_COMPLETE, RUN_FAILED, RUN_CANCELED, GROUP_DRAINED)

Channel = Literal["webhook", "slack", "email", "inapp"]
CHANNELS: tuple[Channel, ...] = ("webhook", "slack", "email", "inapp")
#: channels that post to a URL (checked against the SSRF rules)
URL_CHANNELS = ("webhook", "slack")
#: channels a user's preferences may turn on (a URL channel is a subscription)
PREFERENCE_CHANNELS = ("email", "inapp")
DEFAULT_PREFERENCE_CHANNELS: tuple[str, ...] = ("inapp",)

#: the key of ``users.preferences`` this package owns
PREFERENCES_KEY = "notifications"


def event_of(state: State) -> str | None:
    """The event a run's move to ``state`` is, or None (not one anyone subscribes to)."""
    if state is State.COMPLETE:
        return RUN_COMPLETE
    if state in (State.EXECUTOR_ERROR, State.SYSTEM_ERROR):
        return RUN_FAILED
    if state is State.CANCELED:
        return RUN_CANCELED
    if state is State.RUNNING:
        return RUN_STARTED
    return None


def check_events(value: Any, field: str) -> list[str]:
    """A list of event names (None: the defaults), or InvalidRequest naming ``field``."""
    if value is None:
        return list(DEFAULT_EVENTS)
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise InvalidRequest(field, "must be a list of event names")
    unknown = [e for e in value if e not in EVENTS]
    if unknown:
        raise InvalidRequest(
            field, f"{', '.join(map(repr, unknown))} is not an event; events: {', '.join(EVENTS)}"
        )
    if not value:
        raise InvalidRequest(field, "must name at least one event")
    return list(dict.fromkeys(value))


def preferences_of(stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A user's notification preferences, defaults filled in: ``events`` (what they are
    told about their own runs and groups) and ``channels`` (email, inapp)."""
    own = (stored or {}).get(PREFERENCES_KEY)
    own = own if isinstance(own, dict) else {}
    events = own.get("events")
    channels = own.get("channels")
    return {
        "events": [e for e in events if e in EVENTS]
        if isinstance(events, list)
        else list(DEFAULT_EVENTS),
        "channels": [c for c in channels if c in PREFERENCE_CHANNELS]
        if isinstance(channels, list)
        else list(DEFAULT_PREFERENCE_CHANNELS),
    }


def check_preferences(value: Any) -> dict[str, Any]:
    """Preferences a user sent (PUT), checked, or InvalidRequest naming the field."""
    if not isinstance(value, dict):
        raise InvalidRequest("preferences", "must be a JSON object")
    unknown = sorted(set(value) - {"events", "channels"})
    if unknown:
        raise InvalidRequest(unknown[0], "is not a preference; preferences: events, channels")
    events = value.get("events", list(DEFAULT_EVENTS))
    if events == []:
        checked_events: list[str] = []
    else:
        checked_events = check_events(events, "events")
    channels = value.get("channels", list(DEFAULT_PREFERENCE_CHANNELS))
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise InvalidRequest("channels", "must be a list of channel names")
    bad = [c for c in channels if c not in PREFERENCE_CHANNELS]
    if bad:
        raise InvalidRequest(
            "channels",
            f"{', '.join(map(repr, bad))} is not a preference channel; choose from "
            f"{', '.join(PREFERENCE_CHANNELS)} (webhooks and Slack are subscriptions)",
        )
    return {"events": checked_events, "channels": list(dict.fromkeys(channels))}


def wanted(events: Iterable[str], event: str) -> bool:
    return event in set(events)
