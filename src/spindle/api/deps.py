"""Request-scoped access to what the app built at start-up.

The dependencies are ``async def`` although they do not await: FastAPI runs a plain ``def``
dependency in a thread pool, a hop that cost ~8 % of a status request (py-spy).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from spindle.api.links import Links
from spindle.runs.groups import GroupService
from spindle.runs.service import RunService


async def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


async def get_groups(request: Request) -> GroupService:
    groups: GroupService = request.app.state.groups
    return groups


async def get_links(request: Request) -> Links:
    return Links(request, request.app.state.settings.public_url)


Service = Annotated[RunService, Depends(get_service)]
Groups = Annotated[GroupService, Depends(get_groups)]
LinksDep = Annotated[Links, Depends(get_links)]
