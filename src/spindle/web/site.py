"""``install(app, settings)``: the web UI's pages, forms and static files on the app."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from spindle.config import Settings
from spindle.web import audit, forms, groups, lineage, notifications, pages, signin, tokens
from spindle.web.csrf import Csrf
from spindle.web.render import Web, environment

STATIC = Path(__file__).resolve().parent / "static"


def install(app: FastAPI, settings: Settings) -> None:
    # Without a configured secret, tokens are good until this process stops (one server).
    secret = settings.secret_key.get_secret_value() or secrets.token_urlsafe(32)
    app.state.web = Web(
        templates=Jinja2Templates(env=environment()),
        csrf=Csrf(secret),
        service_name=settings.service_name,
        auth_mode=settings.auth,
        instructions_url=settings.auth_instructions_url,
    )
    app.include_router(pages.router)
    app.include_router(forms.router)
    app.include_router(groups.router)
    app.include_router(signin.router)
    app.include_router(tokens.router)
    app.include_router(lineage.router)
    app.include_router(audit.router)
    app.include_router(notifications.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
