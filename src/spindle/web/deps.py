"""Request-scoped access to what the app built at start-up, for the UI's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from spindle.runs.service import RunService


async def get_service(request: Request) -> RunService:
    service: RunService = request.app.state.service
    return service


Service = Annotated[RunService, Depends(get_service)]
