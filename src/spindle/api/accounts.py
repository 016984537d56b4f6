"""Spindle's account extensions: who am I (``/me``) and personal API tokens (``/tokens``).
See docs/api.md and docs/auth.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from spindle.api.auth import CallerDep
from spindle.api.errors import documented
from spindle.auth.accounts import AccountService
from spindle.domain import ApiToken
from spindle.domain import UserStats as DomainStats
from spindle.errors import Forbidden
from spindle.limits import MAX_ID
from spindle.models.accounts import (
    NewToken,
    NewTokenRequest,
    TokenInfo,
    TokenList,
    UserInfo,
    UserStats,
)

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle accounts"])


def get_accounts(request: Request) -> AccountService:
    accounts: AccountService = request.app.state.accounts
    return accounts


Accounts = Annotated[AccountService, Depends(get_accounts)]


def _token(token: ApiToken) -> TokenInfo:
    return TokenInfo(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
    )


@router.get(
    "/me", summary="GetCurrentUser", response_model=UserInfo, responses=documented(401, 403, 500)
)
async def get_me(caller: CallerDep, accounts: Accounts) -> UserInfo:
    """The user the request's credentials belong to, with their run stats."""
    user = await accounts.user_by_id(caller.user_id, with_stats=True)
    stats = user.stats or DomainStats()
    return UserInfo(
        name=user.name,
        email=user.email,
        display_name=user.display_name,
        admin=caller.admin,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
        preferences=user.preferences,
        stats=UserStats(
            submitted=stats.submitted,
            succeeded=stats.succeeded,
            failed=stats.failed,
            canceled=stats.canceled,
            active=stats.active,
        ),
        auth_method=caller.method,
    )


@router.get(
    "/tokens", summary="ListTokens", response_model=TokenList, responses=documented(401, 403, 500)
)
async def list_tokens(caller: CallerDep, accounts: Accounts) -> TokenList:
    """The caller's personal API tokens (never their secrets), revoked ones included."""
    return TokenList(tokens=[_token(t) for t in await accounts.list_tokens(caller)])


@router.post(
    "/tokens",
    summary="CreateToken",
    response_model=NewToken,
    responses=documented(400, 401, 403, 500),
)
async def create_token(
    request: Request, body: NewTokenRequest, caller: CallerDep, accounts: Accounts
) -> NewToken:
    """A new personal API token for the caller. The answer is the only place its secret is
    ever shown: Spindle keeps only a digest of it. With `auth = "none"` there are no tokens
    (403): every request is the local user already."""
    if request.app.state.settings.auth == "none":
        raise Forbidden(
            "tokens: this service signs nobody in (SPINDLE_AUTH=none: every request is the "
            "local user), so it has no personal API tokens; they exist with auth basic, oidc "
            "or proxy-jwt (docs/auth.md)"
        )
    days = body.expires_in_days
    token, secret = await accounts.create_token(
        caller, body.name, expires_in=timedelta(days=days) if days else None
    )
    return NewToken(**_token(token).model_dump(), token=secret)


@router.post(
    "/tokens/{token_id}/revoke",
    summary="RevokeToken",
    response_model=TokenInfo,
    responses=documented(401, 403, 404, 500),
)
async def revoke_token(
    token_id: Annotated[int, Path(ge=0, le=MAX_ID)], caller: CallerDep, accounts: Accounts
) -> TokenInfo:
    """Revoke one of the caller's tokens (admins: anyone's). It stops working at once;
    revoking it again changes nothing."""
    return _token(await accounts.revoke_token(caller, token_id))
