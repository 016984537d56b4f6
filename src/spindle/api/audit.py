"""The audit log for admins (a documented extension, see docs/api.md and
docs/operations.md): ``GET /audit``, filtered and paged, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from spindle import audit
from spindle.api.auth import CallerDep
from spindle.api.errors import documented
from spindle.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from spindle.runs.query import parse_time

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle operations"])


class AuditEntryModel(BaseModel):
    """One security-relevant action."""

    id: int
    at: datetime
    action: str = Field(description="What happened, e.g. `signin.failure`, `run.cancel`.")
    actor_id: int | None = Field(description="The user who did it (null: the CLI, nobody).")
    actor_name: str | None = Field(description="Their name then, or `cli:<OS user>`.")
    address: str | None = Field(description="The client address the request came from.")
    target_kind: str | None = Field(description="`user`, `token`, `run`, `group`, ...")
    target_id: str | None
    detail: dict[str, object]


class AuditList(BaseModel):
    entries: list[AuditEntryModel]
    next_page_token: str


def query_of(action: str, actor: str, target: str, since: str, until: str) -> audit.AuditQuery:
    """The search the filters ask for (a bad time is a 400 naming its field)."""
    return audit.AuditQuery(
        action=action.strip(),
        actor=actor.strip(),
        target=target.strip(),
        since=parse_time("since", since),
        until=parse_time("until", until),
    )


@router.get(
    "/audit",
    summary="ListAuditEntries",
    response_model=AuditList,
    responses=documented(400, 401, 403, 500),
)
async def list_audit_entries(
    request: Request,
    caller: CallerDep,
    action: Annotated[
        str,
        Query(
            max_length=64,
            description="Only this action (`run.cancel`), or every action of a kind "
            "(`signin.`, with the dot).",
        ),
    ] = "",
    actor: Annotated[str, Query(max_length=255, description="Only what this user did.")] = "",
    target: Annotated[
        str, Query(max_length=255, description="Only what was done to this id (run, user...).")
    ] = "",
    since: Annotated[str, Query(description="At or after this ISO 8601 time.")] = "",
    until: Annotated[str, Query(description="Before this ISO 8601 time.")] = "",
    page_size: Annotated[
        int | None,
        Query(ge=1, le=MAX_PAGE_SIZE, description=f"Default {DEFAULT_PAGE_SIZE}."),
    ] = None,
    page_token: Annotated[str | None, Query()] = None,
) -> AuditList:
    """The audit log, newest first: sign-ins, tokens, users, runs and groups, with who did
    it, from where, when and to what. Admins only (403 for anyone else)."""
    page = await audit.read_page(
        request.app.state.service.db,
        query_of(action, actor, target, since, until),
        page_size=page_size,
        page_token=page_token,
        caller=caller,
    )
    return AuditList(
        entries=[AuditEntryModel(**vars(e)) for e in page.entries],
        next_page_token=page.next_page_token,
    )
