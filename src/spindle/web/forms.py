"""The UI's state-changing forms: submit a run (into a run group, if one is picked), cancel
one, submit one again. Every POST checks its CSRF token before anything happens; validation
errors come back next to the field they concern."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData, UploadFile

from spindle.api.multipart import check_length, read_form
from spindle.domain import Caller, RunGroup, RunRequest
from spindle.errors import InvalidRequest, PayloadTooLarge
from spindle.limits import MAX_PARAMS_DEPTH, check_depth
from spindle.runs.groups import GroupService
from spindle.runs.service import RunService
from spindle.runs.submit import group_field, new_request
from spindle.web import views
from spindle.web.csrf import FIELD
from spindle.web.deps import Groups, PageCaller, Service
from spindle.web.render import render, web_of

router = APIRouter(include_in_schema=False)

#: where the service's field names show up on the submit form
_FORM_FIELD = {
    "workflow_type": "workflow",
    "workflow_type_version": "workflow",
    "workflow_engine": "workflow",
    "workflow_engine_version": "workflow",
    "workflow_attachment": "workflow_attachment",
    "workflow_url": "workflow_url",
    "workflow_params": "workflow_params",
    "tags": "tags",
    "workflow_engine_parameters": "workflow_engine_parameters",
    "run_group_id": "run_group_id",
}
#: engine parameters the submit form has inputs of their own for
ENGINE_INPUTS = ("cpus", "priority")
#: the most run groups the submit form's picker lists
MAX_GROUPS = 1000


@dataclass(frozen=True)
class Renamed:
    """An upload under another name (a folder's files, without the folder's own name)."""

    filename: str
    file: IO[bytes]


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _mapping_lines(field: str, text: str) -> dict[str, str]:
    """``key=value`` lines (blank lines ignored) as a dict; a bad line is an InvalidRequest."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InvalidRequest(field, f"line {number}: {line.strip()!r} is not key=value")
        if key in out:
            raise InvalidRequest(field, f"line {number}: {key!r} is given twice")
        out[key] = value.strip()
    return out


def _params(text: str) -> dict[str, Any]:
    """Workflow parameters written as JSON or YAML (JSON is YAML too): a mapping."""
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be read"
        raise InvalidRequest(
            "workflow_params", f"is not valid JSON or YAML: {problem}{where}"
        ) from None
    except RecursionError:
        raise InvalidRequest(
            "workflow_params", f"nests too deeply; at most {MAX_PARAMS_DEPTH} levels are accepted"
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(
            "workflow_params", f"must be a mapping of names to values, not {type(value).__name__}"
        )
    # YAML dates and the like become the text they were written as
    try:
        loaded: dict[str, Any] = json.loads(json.dumps(value, default=str))
    except (ValueError, RecursionError):  # (YAML aliases can make a value contain itself)
        raise InvalidRequest(
            "workflow_params", "refers to itself or nests too deeply (through YAML aliases)"
        ) from None
    check_depth(loaded, field="workflow_params")
    return loaded


def _uploads(form: FormData) -> list[Renamed | UploadFile]:
    """Files chosen one by one keep their names; a chosen folder's files keep their paths
    inside it (the browser sends ``folder/sub/file``; the folder's own name is dropped)."""
    uploads: list[Renamed | UploadFile] = []
    for key, value in form.multi_items():
        if not isinstance(value, UploadFile) or not value.filename:
            continue  # an empty file input
        if key == "workflow_attachment":
            uploads.append(value)
        elif key == "workflow_folder":
            _top, sep, inner = value.filename.replace("\\", "/").partition("/")
            uploads.append(Renamed(inner if sep else value.filename, value.file))
    return uploads


def _engine_parameters(form: FormData) -> dict[str, str]:
    """The engine parameters' lines, with the CPUs and priority inputs (which must not say
    otherwise than a line of the same name)."""
    parameters = _mapping_lines(
        "workflow_engine_parameters", _text(form, "workflow_engine_parameters")
    )
    for name in ENGINE_INPUTS:
        value = _text(form, name).strip()
        if not value:
            continue
        if name in parameters and parameters[name] != value:
            raise InvalidRequest(
                name, f"is {value!r} here but {parameters[name]!r} in the engine parameters"
            )
        parameters[name] = value
    return parameters


def _run_request(form: FormData) -> tuple[RunRequest, str | None]:
    """The form's run request and the run group picked (None for none)."""
    workflow_type, _sep, version = _text(form, "workflow").partition("|")
    # (the UI's own inputs first, then what the request checks of them, as ever)
    params = _params(_text(form, "workflow_params"))
    tags = _mapping_lines("tags", _text(form, "tags"))
    engine_parameters = _engine_parameters(form)
    run_request = new_request(
        workflow_type=workflow_type,
        workflow_type_version=version,
        workflow_url=_text(form, "workflow_url"),
        workflow_params=params,
        tags=tags,
        workflow_engine_parameters=engine_parameters,
    )
    return run_request, group_field(_text(form, "run_group_id"))


def _error_field(exc: InvalidRequest, values: Mapping[str, str]) -> str:
    """The form field an error of the service belongs next to ("" for none)."""
    if exc.field == "workflow_engine_parameters":
        # the CPUs and priority inputs' own values, when the service refused them
        for name in ENGINE_INPUTS:
            if values.get(name, "").strip() and exc.problem.startswith(f"{name} must"):
                return name
        if values.get("cpus", "").strip() and exc.problem.startswith("the run asks for"):
            return "cpus"
    if exc.field in ENGINE_INPUTS:
        return exc.field
    return _FORM_FIELD.get(exc.field, "")


async def _group_choices(groups: GroupService, caller: Caller) -> list[RunGroup]:
    """The run groups the caller may submit into, by name (the first page of them)."""
    page = await groups.list(sort="name", order="asc", page_size=MAX_GROUPS, caller=caller)
    return page.items


def _choices(service: RunService) -> list[tuple[str, str]]:
    """(value, label) of every workflow type and version an installed engine runs: for each
    engine its generic version first (Snakemake's major), then the newest first."""
    out = []
    for name, info in sorted(service.catalog.infos.items()):
        for version in sorted(info.workflow_type_versions, key=_version_order):
            value = f"{info.workflow_type}|{version}"
            out.append((value, f"{info.workflow_type} {version} ({name} {info.version})"))
    return out


def _version_order(version: str) -> tuple[int, list[int]]:
    return version.count("."), [-int(n) for n in re.findall(r"\d+", version)]


async def _submit_page(
    request: Request,
    service: RunService,
    groups: GroupService,
    caller: Caller,
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "submit.html",
        {
            "choices": _choices(service),
            "groups": await _group_choices(groups, caller),
            "values": values,
            "errors": errors,
        },
        status=status,
        nav="submit",
    )


@router.get("/submit", response_class=HTMLResponse)
async def submit_form(
    request: Request, service: Service, groups: Groups, caller: PageCaller, group: str = ""
) -> HTMLResponse:
    """The submit form; ``?group=ID`` picks that run group."""
    # no type is chosen for the user: the main file picks it (spindle.js), or they do
    values = {"workflow": "", "run_group_id": group[:200]}
    return await _submit_page(request, service, groups, caller, values, {})


@router.post("/submit", response_class=HTMLResponse)
async def submit(
    request: Request, service: Service, groups: Groups, caller: PageCaller
) -> Response:
    check_length(request, service.settings.max_upload_bytes)
    async with read_form(request) as form:
        web_of(request).csrf.check(request, form.get(FIELD))
        values = {
            name: _text(form, name)
            for name in (
                "workflow",
                "workflow_url",
                "workflow_params",
                "tags",
                "workflow_engine_parameters",
                "run_group_id",
                *ENGINE_INPUTS,
            )
        }
        try:
            run_request, group_id = _run_request(form)
            run = await service.submit(
                run_request, _uploads(form), group_id=group_id, caller=caller
            )
        except InvalidRequest as exc:
            field = _error_field(exc, values)
            message = exc.problem if field else exc.message
            return await _submit_page(
                request, service, groups, caller, values, {field: message}, status=400
            )
        except PayloadTooLarge as exc:
            errors = {"workflow_attachment": exc.message}
            return await _submit_page(request, service, groups, caller, values, errors, status=413)
    return RedirectResponse(views.run_url(run.id), status_code=303)


async def _checked(request: Request) -> None:
    async with request.form(max_files=0, max_fields=10) as form:
        web_of(request).csrf.check(request, form.get(FIELD))


@router.post("/runs/{run_id}/cancel")
async def cancel(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> RedirectResponse:
    await _checked(request)
    await service.cancel(run_id, caller=caller)
    return RedirectResponse(views.run_url(run_id), status_code=303)


@router.post("/runs/{run_id}/resubmit")
async def resubmit(
    request: Request, run_id: str, service: Service, caller: PageCaller
) -> RedirectResponse:
    await _checked(request)
    run = await service.resubmit(run_id, caller=caller)
    return RedirectResponse(views.run_url(run.id), status_code=303)
