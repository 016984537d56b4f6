"""Turning a submission into a validated request and a staged run folder.

Nothing here knows HTTP. The one place a submission's fields become a
:class:`~spindle.domain.RunRequest`: the API hands over its form's text fields
(:func:`parse_form`), the web UI the values of its own inputs (:func:`new_request`); the
service takes the request, the run group id and the uploads. Every
problem is an InvalidRequest naming the field; the run folder is staged under a temporary
name and only moved into place once everything checked out, so a refused request leaves
nothing behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from spindle import limits
from spindle.domain import RunRequest
from spindle.errors import InvalidRequest, PayloadTooLarge
from spindle.storage.rundir import safe_relative

#: form fields WES defines for RunWorkflow, besides workflow_attachment
TEXT_FIELDS = (
    "workflow_params",
    "workflow_type",
    "workflow_type_version",
    "tags",
    "workflow_engine",
    "workflow_engine_version",
    "workflow_engine_parameters",
    "workflow_url",
)
#: Spindle's documented extra RunWorkflow form fields (docs/api.md)
EXTENSION_FIELDS = ("run_group_id", "notify")
#: engine parameters Spindle itself reads, whatever the engine
SPINDLE_PARAMETERS = frozenset({"compute_env", "cpus", "priority"})
#: the tag that puts a run into a run group, as the form field of the same name does
GROUP_TAG = "run_group_id"
MAX_CPUS = 100_000
MAX_PRIORITY = 1_000_000


class Upload(Protocol):
    """One ``workflow_attachment`` part (Starlette's UploadFile fits)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def file(self) -> IO[bytes]: ...


@dataclass(frozen=True)
class StagedFile:
    name: str
    size: int


def _json_field(fields: Mapping[str, str | None], name: str) -> dict[str, Any]:
    raw = fields.get(name)
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(name, f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:
        # (the parser gives up on nesting long past the limit checked below)
        raise InvalidRequest(
            name, f"nests too deeply; at most {limits.MAX_PARAMS_DEPTH} levels are accepted"
        ) from None
    if not isinstance(value, dict):
        raise InvalidRequest(name, f"must be a JSON object, not {type(value).__name__}")
    limits.check_depth(value, field=name)
    return value


def _string_map(fields: Mapping[str, str | None], name: str) -> dict[str, str]:
    value = _json_field(fields, name)
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(
                name, f"value of {key!r} must be a string, not {type(item).__name__}"
            )
    return value


def _parameter_map(fields: Mapping[str, str | None], name: str) -> dict[str, str]:
    """Engine parameters are strings in the spec; a JSON number or boolean (``{"cores": 2}``)
    is taken in its JSON text (``"2"``, ``"true"``)."""
    value = _json_field(fields, name)
    for key, item in value.items():
        if isinstance(item, bool | int | float):
            value[key] = json.dumps(item)
        elif not isinstance(item, str):
            raise InvalidRequest(
                name,
                f"value of {key!r} must be a string, a number or a boolean, "
                f"not {type(item).__name__}",
            )
    return value


def _optional(fields: Mapping[str, str | None], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _required(fields: Mapping[str, str | None], name: str) -> str:
    value = _optional(fields, name)
    if value is None:
        raise InvalidRequest(name, "is required")
    return value


def new_request(
    *,
    workflow_type: str | None,
    workflow_type_version: str | None,
    workflow_url: str | None,
    workflow_params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    workflow_engine: str | None = None,
    workflow_engine_version: str | None = None,
    workflow_engine_parameters: Mapping[str, str] | None = None,
) -> RunRequest:
    """A validated RunRequest from decoded values (the API's JSON fields, the UI's own
    inputs): text stripped, blanks as missing, every problem an InvalidRequest naming the
    RunWorkflow field, checked in the order of the fields."""
    text = {
        "workflow_type": workflow_type,
        "workflow_type_version": workflow_type_version,
        "workflow_url": workflow_url,
        "workflow_engine": workflow_engine,
        "workflow_engine_version": workflow_engine_version,
    }
    params = dict(workflow_params or {})
    limits.check_depth(params, field="workflow_params")
    return RunRequest(
        workflow_type=_required(text, "workflow_type"),
        workflow_type_version=_required(text, "workflow_type_version"),
        workflow_url=limits.check_text(_required(text, "workflow_url"), field="workflow_url"),
        workflow_params=params,
        tags=dict(limits.check_tags(tags or {})),
        workflow_engine=_optional(text, "workflow_engine"),
        workflow_engine_version=_optional(text, "workflow_engine_version"),
        workflow_engine_parameters=dict(workflow_engine_parameters or {}),
    )


def parse_request(fields: Mapping[str, str | None]) -> RunRequest:
    """RunWorkflow's text fields (JSON objects as strings) as a validated RunRequest."""
    # each field is checked in turn (the first problem is named, the same whatever decodes
    # later), then new_request checks the decoded values again
    _required(fields, "workflow_type")
    _required(fields, "workflow_type_version")
    limits.check_text(_required(fields, "workflow_url"), field="workflow_url")
    params = _json_field(fields, "workflow_params")
    tags = limits.check_tags(_string_map(fields, "tags"))
    return new_request(
        workflow_type=fields.get("workflow_type"),
        workflow_type_version=fields.get("workflow_type_version"),
        workflow_url=fields.get("workflow_url"),
        workflow_params=params,
        tags=tags,
        workflow_engine=fields.get("workflow_engine"),
        workflow_engine_version=fields.get("workflow_engine_version"),
        workflow_engine_parameters=_parameter_map(fields, "workflow_engine_parameters"),
    )


def parse_form(fields: Mapping[str, str | None]) -> tuple[RunRequest, str | None]:
    """RunWorkflow's text fields as a validated RunRequest and the run group id its
    ``run_group_id`` field names (None for none)."""
    request = parse_request(fields)
    return request, group_field(fields.get("run_group_id"))


def group_field(value: str | None) -> str | None:
    """A ``run_group_id`` form field's value: stripped, a blank as none."""
    return _optional({"run_group_id": value}, "run_group_id")


def _int_parameter(parameters: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = parameters.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidRequest(
            "workflow_engine_parameters",
            f"{name} must be an integer from {low} to {high}, got {raw!r}",
        )
    return value


def run_cpus(parameters: Mapping[str, str]) -> int:
    """The CPUs a run counts against its group's ``max_cpus``: the ``cpus`` engine
    parameter, else Snakemake's ``cores``, else 1."""
    cpus = _int_parameter(parameters, "cpus", 1, MAX_CPUS)
    if cpus is None:
        cpus = _int_parameter(parameters, "cores", 1, MAX_CPUS)
    return cpus or 1


def run_priority(parameters: Mapping[str, str]) -> int:
    """The run's order inside its group (higher first): the ``priority`` engine parameter,
    else 0."""
    return _int_parameter(parameters, "priority", -MAX_PRIORITY, MAX_PRIORITY) or 0


def requested_group(group_id: str | None, request: RunRequest) -> str | None:
    """The run group a submission names, by its ``run_group_id`` (the form field) or its
    ``run_group_id`` tag (both may be given, if they agree)."""
    field = group_id or None
    if field is not None:
        limits.check_name(field, field="run_group_id")
    tag = request.tags.get(GROUP_TAG)
    tag = tag.strip() if tag and tag.strip() else None
    if field and tag and field != tag:
        raise InvalidRequest(
            "run_group_id",
            f"the form field says {field!r} but the {GROUP_TAG} tag says {tag!r}",
        )
    return field or tag


def is_remote_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def check_workflow_url(url: str, attachments: Sequence[StagedFile]) -> None:
    """A relative workflow_url must name an attachment; otherwise it must be http(s)."""
    if is_remote_url(url):
        return
    if "://" in url or url.startswith("/"):
        raise InvalidRequest(
            "workflow_url",
            f"{url!r} must be a path relative to the attachments or an http(s) URL",
        )
    path = url.split("#", 1)[0]
    rel = safe_relative(path, field="workflow_url").as_posix()
    names = {f.name for f in attachments}
    if rel not in names:
        listed = ", ".join(sorted(names)) or "none were attached"
        raise InvalidRequest(
            "workflow_url", f"{path!r} names no workflow_attachment (attached: {listed})"
        )


def check_attachment_names(names: Sequence[str]) -> None:
    """Each name a relative path of names within the limits (docs/security.md), and no name
    both a file and a folder of another (``a`` and ``a/b``)."""
    field = "workflow_attachment"
    files: set[str] = set()
    folders: dict[str, str] = {}
    for name in names:
        shown = repr(name[:60] + ("..." if len(name) > 60 else ""))
        if len(name.encode("utf-8", "surrogatepass")) > limits.MAX_ATTACHMENT_PATH_BYTES:
            raise InvalidRequest(
                field, f"{shown} is longer than {limits.MAX_ATTACHMENT_PATH_BYTES} bytes"
            )
        rel = safe_relative(name, field=field)
        if len(rel.parts) > limits.MAX_ATTACHMENT_DEPTH + 1:
            raise InvalidRequest(
                field,
                f"{shown} is nested in {len(rel.parts) - 1} folders; at most "
                f"{limits.MAX_ATTACHMENT_DEPTH} are accepted",
            )
        for part in rel.parts:
            if len(part.encode("utf-8", "surrogatepass")) > limits.MAX_ATTACHMENT_PART_BYTES:
                raise InvalidRequest(
                    field,
                    f"{shown}: a file or folder name is longer than "
                    f"{limits.MAX_ATTACHMENT_PART_BYTES} bytes",
                )
            if limits.has_control(part):
                raise InvalidRequest(field, f"{shown} must not hold control characters")
        path = rel.as_posix()
        files.add(path)
        for i in range(1, len(rel.parts)):
            folders.setdefault("/".join(rel.parts[:i]), path)
    for path in sorted(files):
        if path in folders:
            raise InvalidRequest(
                field, f"{path!r} is attached as a file and as the folder of {folders[path]!r}"
            )


def stage_uploads(uploads: Sequence[Upload], dest: Path, *, max_bytes: int) -> list[StagedFile]:
    """Copy uploads into ``dest`` keeping their relative paths. Blocking: run in a thread."""
    check_attachment_names([upload.filename or "" for upload in uploads])
    staged: list[StagedFile] = []
    seen: set[str] = set()
    total = 0
    for upload in uploads:
        rel = safe_relative(upload.filename or "", field="workflow_attachment")
        name = rel.as_posix()
        target = dest / rel
        if name in seen:
            # the same file twice (wes-client attaches the workflow file again) is one file
            total = _same_bytes(upload, target, name, total=total, max_bytes=max_bytes)
            continue
        seen.add(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with target.open("wb") as out:
            while chunk := upload.file.read(1 << 20):
                size += len(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise PayloadTooLarge(
                        f"workflow_attachment: the attachments exceed {max_bytes} bytes"
                    )
                out.write(chunk)
        staged.append(StagedFile(name=name, size=size))
    return staged


def _same_bytes(upload: Upload, staged: Path, name: str, *, total: int, max_bytes: int) -> int:
    """``total`` plus the size of a part that repeats the attachment staged at ``staged``;
    a 400 if its bytes differ (a 413 past ``max_bytes`` in all)."""
    with staged.open("rb") as first:
        while chunk := upload.file.read(1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(
                    f"workflow_attachment: the attachments exceed {max_bytes} bytes"
                )
            if first.read(len(chunk)) != chunk:
                break
        else:
            if not first.read(1):
                return total
    raise InvalidRequest("workflow_attachment", f"{name!r} is attached twice, with other bytes")


def copy_attachments(source: Path, dest: Path) -> list[StagedFile]:
    """Copy another run's attachments into ``dest`` (to submit it again). Blocking."""
    staged: list[StagedFile] = []
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
        for path in sorted(dest.rglob("*")):
            if path.is_file():
                staged.append(
                    StagedFile(name=path.relative_to(dest).as_posix(), size=path.stat().st_size)
                )
    return staged


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
