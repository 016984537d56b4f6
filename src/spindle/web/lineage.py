"""The web UI's forms for runs made from runs and for removing a run's files: Resume (a
recovery, with optional parameter changes and notes) and Delete, each checking its CSRF
token first. The run page shows the lineage (``pages.run_page``)."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from spindle.errors import InvalidRequest
from spindle.runs import lineage, removal
from spindle.web import views
from spindle.web.csrf import FIELD
from spindle.web.deps import PageCaller, Service
from spindle.web.render import web_of

router = APIRouter(include_in_schema=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _yaml(raw: str) -> Any:
    """A value typed in the form, read as YAML (``3`` a number, ``true`` a boolean)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def parse_overrides(text: str) -> dict[str, Any]:
    """``key=value`` lines (blank lines ignored), values read as YAML."""
    out: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise InvalidRequest(
                "override_params", f"line {number}: {line.strip()!r} is not key=value"
            )
        out[key.strip()] = _yaml(value.strip())
    return out


@router.post("/runs/{run_id}/resume")
async def resume(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> RedirectResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        notes = _text(form.get("notes"))
        overrides = parse_overrides(_text(form.get("override_params")))
        fresh = _text(form.get("fresh")) == "on"
    options = lineage.RecoverOptions(
        reuse_work_dir=not fresh, notes=notes, override_params=overrides
    )
    run = await lineage.recover(service, run_id, options, caller=caller)
    return RedirectResponse(views.run_url(run.id), status_code=303)


@router.post("/runs/{run_id}/delete")
async def delete(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> RedirectResponse:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
    await removal.delete(service, run_id, caller=caller)
    return RedirectResponse(views.run_url(run_id), status_code=303)
