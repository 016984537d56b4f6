"""Request-scoped access to what the app built at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from spindle.api.links import Links
from spindle.runs.service import RunService


def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


def get_links(request: Request) -> Links:
    return Links(request, request.app.state.settings.public_url)


Service = Annotated[RunService, Depends(get_service)]
LinksDep = Annotated[Links, Depends(get_links)]
