"""Sending one delivery through its channel, once: a webhook signed per Standard Webhooks
(the ``standardwebhooks`` library makes the headers), a Slack incoming-webhook message, or
an email (``aiosmtplib``). Every URL is connected to through the same address checks as
workflow URL fetches (``storage.fetch.guarded_transport``, setting
notify_allowed_networks), redirects are not followed (a 3xx is a failed attempt), and
every attempt ends in an :class:`Outcome`, never an exception."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpcore
import httpx
from standardwebhooks.webhooks import Webhook

import spindle
from spindle.config import Settings
from spindle.notify import render
from spindle.storage.fetch import AddressPolicy, Refused, guarded_transport

#: most characters of a receiver's answer kept with a failed attempt
MAX_ERROR = 500


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Message:
    """What the dispatcher hands a channel: the delivery's id (webhook-id), channel,
    target (URL or address), payload, and the subscription's signing secret."""

    id: str
    channel: str
    target: str
    payload: dict[str, Any]
    secret: str | None = None


def body_of(payload: dict[str, Any]) -> str:
    """The exact JSON a webhook carries (and is signed over)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def webhook_headers(message_id: str, secret: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


class Channels:
    """The senders of one dispatcher (one HTTP connection pool for all URLs)."""

    def __init__(
        self, settings: Settings, *, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.settings = settings
        policy = AddressPolicy(settings.notify_allowed_networks)
        self._http = httpx.AsyncClient(
            transport=guarded_transport(policy, setting="notify_allowed_networks", inner=inner),
            follow_redirects=False,
            trust_env=False,
            timeout=settings.notify_timeout_seconds,
            headers={"User-Agent": f"Spindle/{spindle.__version__}"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, message: Message, *, now: datetime) -> Outcome:
        started = time.monotonic()
        try:
            if message.channel == "email":
                code, error = await self._email(message)
            elif message.channel == "slack":
                code, error = await self._post(message.target, render.slack(message.payload), {})
            elif message.channel == "webhook":
                body = body_of(message.payload)
                headers = webhook_headers(message.id, message.secret or "", body, now)
                code, error = await self._post_raw(message.target, body, headers)
            else:
                code, error = None, f"unknown channel {message.channel!r}"
        except Refused as exc:
            code, error = None, f"refused: {exc.message}"
        except httpx.TimeoutException:
            code, error = None, f"no answer in {self.settings.notify_timeout_seconds:g} s"
        except (httpx.HTTPError, aiosmtplib.SMTPException, OSError, ValueError) as exc:
            code, error = None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
        duration = int((time.monotonic() - started) * 1000)
        return Outcome(error is None, code, error, duration)

    async def _post(
        self, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        return await self._post_raw(url, json.dumps(payload), headers)

    async def _post_raw(
        self, url: str, body: str, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        response = await self._http.post(
            url, content=body.encode(), headers={**headers, "content-type": "application/json"}
        )
        if 200 <= response.status_code < 300:
            return response.status_code, None
        text = response.text[:MAX_ERROR]
        return response.status_code, f"answered {response.status_code}: {text}".strip()

    async def _email(self, message: Message) -> tuple[int | None, str | None]:
        s = self.settings
        if not s.smtp_host:
            return None, "email is not configured (setting smtp_host)"
        mail = EmailMessage()
        mail["Subject"] = render.subject(message.payload)
        mail["From"] = s.smtp_from
        mail["To"] = message.target
        mail["Message-ID"] = f"<{message.id}@spindle>"
        mail.set_content(render.plain(message.payload))
        mail.add_alternative(render.html(message.payload), subtype="html")
        password = s.smtp_password.get_secret_value()
        await aiosmtplib.send(
            mail,
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=password or None,
            use_tls=s.smtp_tls,
            start_tls=False if s.smtp_tls else s.smtp_starttls,
            cert_bundle=str(s.smtp_ca_file) if s.smtp_ca_file else None,
            timeout=s.notify_timeout_seconds,
        )
        return 250, None
