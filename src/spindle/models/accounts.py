"""Models of the account extensions (``/me``, ``/tokens``; docs/api.md), shared by the
server and the client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class UserStats(BaseModel):
    submitted: int = Field(description="Runs the user submitted.")
    succeeded: int = Field(description="Of them, runs that ended COMPLETE.")
    failed: int = Field(description="Runs that ended EXECUTOR_ERROR, SYSTEM_ERROR or PREEMPTED.")
    canceled: int = Field(description="Runs that ended CANCELED.")
    active: int = Field(description="Runs not ended yet.")


class UserInfo(BaseModel):
    """``GET /me``: who the credentials belong to."""

    name: str
    email: str | None = None
    display_name: str | None = None
    admin: bool = Field(description="Sees and acts on every user's runs.")
    created_at: datetime
    last_login_at: datetime | None = None
    preferences: dict[str, Any] = Field(default_factory=dict)
    stats: UserStats
    auth_method: str = Field(description="How this request was authenticated.")


class TokenInfo(BaseModel):
    """A personal API token, without its secret."""

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenList(BaseModel):
    tokens: list[TokenInfo]


class NewTokenRequest(BaseModel):
    """``POST /tokens``."""

    name: str = Field(
        min_length=1,
        max_length=255,
        # as auth.accounts.check_name: no spaces at either end, no control characters
        pattern=r"^[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$",
        description="What the token is for: no spaces at either end, no control characters.",
    )
    expires_in_days: int | None = Field(
        default=None, gt=0, le=3650, description="Days until it stops working; none: never."
    )


class NewToken(TokenInfo):
    """``POST /tokens``: the new token, whose secret is shown here once and never again."""

    token: str = Field(description="The secret: send it as `Authorization: Bearer <token>`.")
