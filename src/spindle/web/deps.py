"""Request-scoped access to what the app built at start-up, and the caller, for the UI's
routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from spindle.api.auth import require_caller
from spindle.auth.accounts import AccountService
from spindle.auth.authenticator import Authenticator
from spindle.domain import Caller
from spindle.runs.groups import GroupService
from spindle.runs.service import RunService


async def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


async def get_groups(request: Request) -> GroupService:
    groups: GroupService = request.app.state.groups
    return groups


async def get_accounts(request: Request) -> AccountService:
    accounts: AccountService = request.app.state.accounts
    return accounts


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def page_caller(request: Request) -> Caller:
    """Who is asking, as the API establishes it (the session cookie, a proxy's assertion, a
    bearer token), remembered for the page's header. Without credentials this raises
    Unauthenticated, which the error page turns into the way to sign in."""
    caller = await require_caller(request)
    request.state.caller = caller
    return caller


Service = Annotated[RunService, Depends(get_service)]
Groups = Annotated[GroupService, Depends(get_groups)]
Accounts = Annotated[AccountService, Depends(get_accounts)]
Auth = Annotated[Authenticator, Depends(get_authenticator)]
PageCaller = Annotated[Caller, Depends(page_caller)]
