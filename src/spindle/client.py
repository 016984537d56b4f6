"""A typed asyncio client for a Spindle server: the WES 1.1.0 API plus Spindle's extensions
(run progress, log streams, file downloads, run groups).

Everything is ``async`` (the project runs on asyncio throughout, so there is no blocking
twin of any call). Answers are parsed into the same pydantic models the server builds them
from (``spindle.models.wes``), so a field renamed on one side fails loudly on the other.
Every failure reaches the caller as :class:`SpindleClientError`, never as a raw ``httpx``
exception: the server's WES ``ErrorResponse`` becomes its ``status_code`` and ``msg``, and a
server that cannot be reached is named by URL.

Example::

    async with SpindleClient("http://127.0.0.1:8000") as spindle:
        run_id = await spindle.submit(
            "Snakefile",
            workflow_type="SMK",
            workflow_type_version="9",
            attachments={"Snakefile": Path("Snakefile")},
        )
        log = await spindle.wait(run_id)
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import os
import re
import secrets
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from urllib.parse import quote

import httpx
from httpx_sse import EventSource
from pydantic import BaseModel, ValidationError

import spindle
from spindle.models import notifications as notify_models
from spindle.models import wes
from spindle.models.accounts import NewToken, TokenInfo, TokenList, UserInfo
from spindle.models.extensions import RunProgress
from spindle.models.groups import (
    RunGroup,
    RunGroupCanceled,
    RunGroupDeleted,
    RunGroupList,
    RunGroupMembership,
    RunGroupRuns,
)
from spindle.models.lineage import DeletedRun, LineageResponse, RecoverRequest

#: Where the WES API lives below a server's base URL.
API_PREFIX = "/ga4gh/wes/v1"
#: Base URL when neither the caller nor ``SPINDLE_URL`` names one.
DEFAULT_URL = "http://127.0.0.1:8000"
#: Response header of the log endpoints: the offset to ask for next.
NEXT_OFFSET_HEADER = "X-Spindle-Next-Offset"
#: times in a row a broken log stream is taken up again before following it gives up
FOLLOW_RETRIES = 5
#: Bytes read from a local file per multipart chunk and written per download chunk.
CHUNK = 1 << 20

M = TypeVar("M", bound=BaseModel)

Attachments = Mapping[str, Path] | Sequence[tuple[str, Path]]
#: Query parameter values: one value, or several for a repeated parameter (``state``).
Params = Mapping[str, str | int | Sequence[str]]


class Unset(enum.Enum):
    """The type of :data:`UNSET`."""

    UNSET = "UNSET"


#: "Leave as it is" for :meth:`SpindleClient.update_group`, where ``None`` clears a limit.
UNSET = Unset.UNSET


class SpindleClientError(Exception):
    """Spindle refused a request, could not be reached, or answered something unreadable.

    ``status_code`` and ``msg`` come from the server's WES ``ErrorResponse``; ``status_code``
    is ``None`` when there was no usable HTTP answer (see :class:`SpindleConnectionError`).
    """

    def __init__(self, status_code: int | None, msg: str, *, url: str | None = None) -> None:
        self.status_code = status_code
        self.msg = msg
        self.url = url
        super().__init__(msg)


class SpindleConnectionError(SpindleClientError):
    """The server could not be reached (refused, unknown host, timed out, connection cut)."""

    def __init__(self, msg: str, *, url: str) -> None:
        super().__init__(None, msg, url=url)


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def config_path() -> Path:
    """The client's config file: ``SPINDLE_CLIENT_CONFIG``, else
    ``$XDG_CONFIG_HOME/spindle/config.toml`` (``~/.config/spindle/config.toml``)."""
    explicit = _env("SPINDLE_CLIENT_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = _env("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spindle" / "config.toml"


#: The keys the config file may hold (all strings).
CONFIG_KEYS = ("url", "token", "username", "password")


def load_config(path: Path | None = None) -> dict[str, str]:
    """The config file's settings (nothing if it does not exist). A file that is not valid
    TOML, or holds other keys or non-strings, is a ValueError naming the file and the
    problem, never its contents."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid TOML: {type(exc).__name__}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; known: {', '.join(CONFIG_KEYS)}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise ValueError(f"{path}: {key} must be a string")
    return {k: v for k, v in data.items() if v}


def _api_root(base_url: str) -> str:
    """The WES root below ``base_url``, accepting a URL that already ends with it."""
    base = base_url.strip().rstrip("/")
    if base.endswith(API_PREFIX):
        base = base.removesuffix(API_PREFIX)
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"Spindle URL must start with http:// or https://, not {base_url!r}")
    return base + API_PREFIX


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _seg(value: str) -> str:
    """One path segment, quoted so an id can never add a segment of its own."""
    return quote(value, safe="")


# --- multipart ---------------------------------------------------------------------------

# HTML5 form encoding of names in Content-Disposition (what browsers and httpx do).
_FORM_ESCAPES = {'"': "%22", "\\": "\\\\"} | {chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}
_FORM_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _FORM_ESCAPES))


def _form_quote(value: str) -> str:
    return _FORM_ESCAPE_RE.sub(lambda m: _FORM_ESCAPES[m.group(0)], value)


class _Multipart:
    """A ``multipart/form-data`` body streamed from local files.

    httpx's own multipart encoder reads files with blocking calls inside the event loop; this
    one reads each chunk in a thread, and knows its length up front (from ``stat``) so the
    server can refuse an oversized upload before reading it.
    """

    def __init__(self, fields: Mapping[str, str], files: Sequence[tuple[str, Path, int]]) -> None:
        self.boundary = secrets.token_hex(16)
        self._parts: list[tuple[bytes, Path | None, int]] = []
        for name, value in fields.items():
            head = self._head(f'form-data; name="{_form_quote(name)}"', None)
            self._parts.append((head + value.encode() + b"\r\n", None, 0))
        for filename, path, size in files:
            head = self._head(
                f'form-data; name="workflow_attachment"; filename="{_form_quote(filename)}"',
                "application/octet-stream",
            )
            self._parts.append((head, path, size))
        self._tail = f"--{self.boundary}--\r\n".encode()

    def _head(self, disposition: str, content_type: str | None) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Disposition: {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        files = sum(size + 2 for _, path, size in self._parts if path is not None)
        return sum(len(head) for head, _, _ in self._parts) + files + len(self._tail)

    async def stream(self) -> AsyncIterator[bytes]:
        for head, path, size in self._parts:
            yield head
            if path is None:
                continue
            fh: IO[bytes] = await asyncio.to_thread(path.open, "rb")
            try:
                left = size
                while left > 0:
                    chunk = await asyncio.to_thread(fh.read, min(CHUNK, left))
                    if not chunk:
                        raise OSError(f"{path} shrank while it was being uploaded")
                    left -= len(chunk)
                    yield chunk
            finally:
                await asyncio.to_thread(fh.close)
            yield b"\r\n"
        yield self._tail


#: Folders never attached by :func:`folder_attachments`: engine state and bytecode caches.
SKIPPED_FOLDERS = frozenset({".snakemake", "__pycache__"})


def folder_attachments(folder: str | Path) -> list[tuple[str, Path]]:
    """Every file below ``folder`` as ``(relative name, path)`` pairs for :meth:`submit`,
    keeping subfolders (``rules/count.smk``) so a workflow finds the files it includes.

    Hidden files and folders, ``.snakemake/`` and ``__pycache__/`` are left out: they are
    local state of earlier runs, not part of the workflow. Symlinked folders are not
    entered (they may loop); symlinked files are sent as the file they point to.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    found: list[tuple[str, Path]] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        for name in sorted(files):
            path = Path(here) / name
            if not name.startswith(".") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return found


def _attachment_list(attachments: Attachments) -> list[tuple[str, Path, int]]:
    """(relative name, local path, size) per attachment; missing files fail here, before
    anything is sent."""
    pairs = list(attachments.items()) if isinstance(attachments, Mapping) else list(attachments)
    out: list[tuple[str, Path, int]] = []
    for name, path in pairs:
        local = Path(path)
        if not local.is_file():
            raise FileNotFoundError(f"attachment {name!r}: {local} is not a file")
        out.append((str(name), local, local.stat().st_size))
    return out


# --- the client ----------------------------------------------------------------------------


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _authorization(
    origin: tuple[str, str, int | None],
    token: str | None,
    username: str | None,
    password: str | None,
    settings: Mapping[str, str],
) -> str | None:
    """The Authorization header value, from the first source that has credentials."""
    if token:
        return f"Bearer {token}"
    if username is not None and password is not None:
        return _basic(username, password)
    env_token = _env("SPINDLE_TOKEN")
    if env_token:
        return f"Bearer {env_token}"
    env_user, env_password = _env("SPINDLE_USERNAME"), os.environ.get("SPINDLE_PASSWORD")
    if env_user and env_password:
        return _basic(env_user, env_password)
    configured = settings.get("url")
    if configured and _origin(httpx.URL(_api_root(configured))) != origin:
        return None  # the config file's credentials are for its own server only
    if settings.get("token"):
        return f"Bearer {settings['token']}"
    if settings.get("username") and settings.get("password"):
        return _basic(settings["username"], settings["password"])
    return None


class SpindleClient:
    """A connection to one Spindle server; use as ``async with SpindleClient(...) as c``.

    ``base_url`` is the server's root (``http://host:port``; the client adds
    ``/ga4gh/wes/v1``), by default ``SPINDLE_URL``, the config file's ``url``, or
    ``http://127.0.0.1:8000``.

    Credentials, the first found: ``token`` (sent as ``Authorization: Bearer``) or
    ``username`` and ``password`` (HTTP Basic) given here; ``SPINDLE_TOKEN``;
    ``SPINDLE_USERNAME`` and ``SPINDLE_PASSWORD``; the config file's ``token``, or its
    ``username`` and ``password`` (used only for the config file's ``url`` when it names one).
    They are sent only to that server: a download link pointing elsewhere (a signed storage
    URL) is fetched without them.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
        config: Path | None = None,
    ) -> None:
        settings = load_config(config)
        self.api = _api_root(base_url or _env("SPINDLE_URL") or settings.get("url") or DEFAULT_URL)
        self.base_url = self.api.removesuffix(API_PREFIX)
        self._origin = _origin(httpx.URL(self.api))
        self._authorization = _authorization(self._origin, token, username, password, settings)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            headers={"User-Agent": f"spindle-client/{spindle.__version__}"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- plumbing ----------------------------------------------------------------------

    def _url(self, *segments: str) -> str:
        return self.api + "".join(f"/{_seg(s)}" for s in segments)

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        content: AsyncIterator[bytes] | None = None,
        json_body: Any = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send one request; every failure becomes a SpindleClientError."""
        target = httpx.URL(url)
        all_headers = dict(headers or {})
        if self._authorization and _origin(target) == self._origin:
            all_headers["Authorization"] = self._authorization
        request = self._http.build_request(
            method,
            target,
            params=dict(params) if params else None,
            headers=all_headers,
            content=content,
            json=json_body,
        )
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise SpindleConnectionError(
                f"no answer from {target} within the timeout ({type(exc).__name__})",
                url=str(target),
            ) from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise SpindleConnectionError(
                f"could not reach Spindle at {target} (is the server running?): {reason}",
                url=str(target),
            ) from exc
        if response.is_success:
            return response
        try:
            await response.aread()
        finally:
            await response.aclose()
        raise self._error(response)

    @staticmethod
    def _error(response: httpx.Response) -> SpindleClientError:
        """The WES ErrorResponse of a non-2xx answer; a body that is not one (a proxy's HTML
        page) is quoted, shortened, so the caller still learns what came back."""
        url = str(response.request.url)
        try:
            body = wes.ErrorResponse.model_validate_json(response.content)
        except ValidationError:
            text = response.text.strip()
            snippet = (text[:200] + "...") if len(text) > 200 else text
            msg = f"HTTP {response.status_code} from {url}" + (f": {snippet}" if snippet else "")
            return SpindleClientError(response.status_code, msg, url=url)
        return SpindleClientError(body.status_code, body.msg, url=url)

    @staticmethod
    def _parse(model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise SpindleClientError(
                None,
                f"{response.request.url} answered something that is not a {model.__name__}: "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
                url=str(response.request.url),
            ) from exc

    async def _get(
        self, model: type[M], *segments: str, **params: str | int | Sequence[str] | None
    ) -> M:
        query = {k: v for k, v in params.items() if v is not None}
        response = await self._send("GET", self._url(*segments), params=query)
        return self._parse(model, response)

    # --- WES ---------------------------------------------------------------------------

    async def service_info(self) -> wes.ServiceInfo:
        """``GET /service-info``: workflow types and versions, engines, state counts."""
        return await self._get(wes.ServiceInfo, "service-info")

    async def submit(
        self,
        workflow_url: str,
        *,
        workflow_type: str,
        workflow_type_version: str,
        attachments: Attachments = (),
        workflow_params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        workflow_engine: str | None = None,
        workflow_engine_version: str | None = None,
        workflow_engine_parameters: Mapping[str, str] | None = None,
        run_group_id: str | None = None,
        notify: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """``POST /runs``; returns the new run id.

        ``attachments`` maps each name the server will see (a relative path such as
        ``rules/count.smk``; folders are kept) to the local file sent under it.
        ``workflow_url`` is one of those names, or an http(s) URL. ``workflow_params``,
        ``tags`` and ``workflow_engine_parameters`` go as JSON strings, as WES asks. Files
        are streamed, not loaded into memory. ``run_group_id`` (a Spindle extension field)
        puts the run into that run group; the engine parameters ``cpus`` and ``priority``
        say what it counts against the group's ``max_cpus`` and where it stands in its queue.
        """
        fields = {
            "workflow_url": workflow_url,
            "workflow_type": workflow_type,
            "workflow_type_version": workflow_type_version,
        }
        for name, obj in (
            ("workflow_params", workflow_params),
            ("tags", tags),
            ("workflow_engine_parameters", workflow_engine_parameters),
        ):
            if obj is not None:
                fields[name] = json.dumps(dict(obj))
        if workflow_engine is not None:
            fields["workflow_engine"] = workflow_engine
        if workflow_engine_version is not None:
            fields["workflow_engine_version"] = workflow_engine_version
        if run_group_id is not None:
            fields["run_group_id"] = run_group_id
        if notify:
            fields["notify"] = json.dumps([dict(n) for n in notify])
        body = _Multipart(fields, await asyncio.to_thread(_attachment_list, attachments))
        response = await self._send(
            "POST",
            self._url("runs"),
            headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
            content=body.stream(),
        )
        return self._parse(wes.RunId, response).run_id

    async def list_runs(
        self,
        page_size: int | None = None,
        page_token: str | None = None,
        *,
        run_group_id: str | None = None,
    ) -> wes.RunListResponse:
        """``GET /runs``: one page, newest run first; ``next_page_token`` is ``""`` at the end.
        ``run_group_id`` (a Spindle extension) lists that run group's runs only."""
        return await self._get(
            wes.RunListResponse,
            "runs",
            page_size=page_size,
            page_token=page_token or None,
            run_group_id=run_group_id,
        )

    async def iter_runs(
        self, page_size: int | None = None, *, run_group_id: str | None = None
    ) -> AsyncIterator[wes.RunSummary]:
        """Every run (of ``run_group_id``, if given), newest first, fetching pages as the
        caller goes."""
        token: str | None = None
        while True:
            page = await self.list_runs(
                page_size=page_size, page_token=token, run_group_id=run_group_id
            )
            for run in page.runs:
                yield run
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def get_run(self, run_id: str) -> wes.RunLog:
        """``GET /runs/{run_id}``: request, state, engine log links, outputs (with download
        URLs in each file's ``location``)."""
        return await self._get(wes.RunLog, "runs", run_id)

    async def status(self, run_id: str) -> wes.RunStatus:
        """``GET /runs/{run_id}/status``: the cheap state check."""
        return await self._get(wes.RunStatus, "runs", run_id, "status")

    async def cancel(self, run_id: str) -> str:
        """``POST /runs/{run_id}/cancel``. A running run goes through CANCELING to CANCELED
        (``wait`` for it); a finished one is left as it is."""
        response = await self._send("POST", self._url("runs", run_id, "cancel"))
        return self._parse(wes.RunId, response).run_id

    async def list_tasks(
        self, run_id: str, page_size: int | None = None, page_token: str | None = None
    ) -> wes.TaskListResponse:
        """``GET /runs/{run_id}/tasks``: one page, in the order the engine started them."""
        return await self._get(
            wes.TaskListResponse,
            "runs",
            run_id,
            "tasks",
            page_size=page_size,
            page_token=page_token or None,
        )

    async def iter_tasks(
        self, run_id: str, page_size: int | None = None
    ) -> AsyncIterator[wes.TaskLog]:
        """Every task of a run, fetching pages as the caller goes."""
        token: str | None = None
        while True:
            page = await self.list_tasks(run_id, page_size=page_size, page_token=token)
            for task in page.task_logs:
                yield task
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def get_task(self, run_id: str, task_id: str) -> wes.TaskLog:
        """``GET /runs/{run_id}/tasks/{task_id}``."""
        return await self._get(wes.TaskLog, "runs", run_id, "tasks", task_id)

    # --- accounts ----------------------------------------------------------------------

    async def me(self) -> UserInfo:
        """``GET /me``: the user these credentials belong to, with their run stats."""
        return await self._get(UserInfo, "me")

    async def create_token(self, name: str, *, expires_in_days: int | None = None) -> NewToken:
        """``POST /tokens``: a new personal API token; its ``token`` (the secret) is in this
        answer only."""
        body: dict[str, Any] = {"name": name}
        if expires_in_days is not None:
            body["expires_in_days"] = expires_in_days
        response = await self._send("POST", self._url("tokens"), json_body=body)
        return self._parse(NewToken, response)

    async def list_tokens(self) -> list[TokenInfo]:
        """``GET /tokens``: the caller's tokens, without their secrets."""
        return (await self._get(TokenList, "tokens")).tokens

    async def revoke_token(self, token_id: int) -> TokenInfo:
        """``POST /tokens/{id}/revoke``."""
        response = await self._send("POST", self._url("tokens", str(token_id), "revoke"))
        return self._parse(TokenInfo, response)

    # --- run groups (a Spindle extension; docs/groups.md) -------------------------------

    async def create_group(
        self,
        name: str,
        *,
        description: str | None = None,
        max_runs: int | None = None,
        max_cpus: int | None = None,
        max_duration: float | None = None,
        compute_env: str | None = None,
    ) -> RunGroup:
        """``POST /run-groups``: a new run group of the caller's. A limit left None is no
        limit; ``max_duration`` is in minutes."""
        body: dict[str, Any] = {"name": name}
        for key, value in (
            ("description", description),
            ("max_runs", max_runs),
            ("max_cpus", max_cpus),
            ("max_duration", max_duration),
            ("compute_env", compute_env),
        ):
            if value is not None:
                body[key] = value
        response = await self._send("POST", self._url("run-groups"), json_body=body)
        return self._parse(RunGroup, response)

    async def list_groups(
        self,
        page_size: int | None = None,
        page_token: str | None = None,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> RunGroupList:
        """``GET /run-groups``: one page of the groups the caller may see, newest first
        (``sort``: created or name; ``order``: asc or desc); ``q`` searches name,
        description and id. ``next_page_token`` is ``""`` at the end."""
        return await self._get(
            RunGroupList,
            "run-groups",
            page_size=page_size,
            page_token=page_token or None,
            q=q or None,
            sort=sort or None,
            order=order or None,
        )

    async def iter_groups(
        self,
        page_size: int | None = None,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: str | None = None,
    ) -> AsyncIterator[RunGroup]:
        """Every group the caller may see, fetching pages as the caller goes."""
        token: str | None = None
        while True:
            page = await self.list_groups(page_size, token, q=q, sort=sort, order=order)
            for group in page.run_groups:
                yield group
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def get_group(self, group_id: str) -> RunGroup:
        """``GET /run-groups/{group_id}``: limits, runs by state, usage now."""
        return await self._get(RunGroup, "run-groups", group_id)

    async def update_group(
        self,
        group_id: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset = UNSET,
        max_runs: int | Unset | None = UNSET,
        max_cpus: int | Unset | None = UNSET,
        max_duration: float | Unset | None = UNSET,
        compute_env: str | Unset | None = UNSET,
    ) -> RunGroup:
        """``PATCH /run-groups/{group_id}``: change the fields given; ``None`` clears a limit
        or the compute environment, :data:`UNSET` (the default) leaves a field as it is."""
        fields: dict[str, object] = {
            "name": name,
            "description": description,
            "max_runs": max_runs,
            "max_cpus": max_cpus,
            "max_duration": max_duration,
            "compute_env": compute_env,
        }
        body = {k: v for k, v in fields.items() if v is not UNSET}
        response = await self._send("PATCH", self._url("run-groups", group_id), json_body=body)
        return self._parse(RunGroup, response)

    async def delete_group(self, group_id: str, *, detach_runs: bool = False) -> RunGroupDeleted:
        """``DELETE /run-groups/{group_id}``. A group with runs is a 409 unless
        ``detach_runs``: then its runs stay, in no group."""
        response = await self._send(
            "DELETE",
            self._url("run-groups", group_id),
            params={"detach_runs": "true" if detach_runs else "false"},
        )
        return self._parse(RunGroupDeleted, response)

    async def list_group_runs(
        self,
        group_id: str,
        page_size: int | None = None,
        page_token: str | None = None,
        *,
        states: Sequence[str] = (),
    ) -> RunGroupRuns:
        """``GET /run-groups/{group_id}/runs``: one page of the group's runs, newest first,
        in the given ``states`` only (all when empty)."""
        return await self._get(
            RunGroupRuns,
            "run-groups",
            group_id,
            "runs",
            page_size=page_size,
            page_token=page_token or None,
            state=list(states) or None,
        )

    async def iter_group_runs(
        self, group_id: str, page_size: int | None = None, *, states: Sequence[str] = ()
    ) -> AsyncIterator[wes.RunSummary]:
        """Every run of a group (in ``states``), fetching pages as the caller goes."""
        token: str | None = None
        while True:
            page = await self.list_group_runs(group_id, page_size, token, states=states)
            for run in page.runs:
                yield run
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def cancel_group(self, group_id: str) -> RunGroupCanceled:
        """``POST /run-groups/{group_id}/cancel``: cancel every unfinished run of the group;
        ``canceled_runs`` names them."""
        response = await self._send("POST", self._url("run-groups", group_id, "cancel"))
        return self._parse(RunGroupCanceled, response)

    async def move_run(self, run_id: str, group_id: str | None) -> RunGroupMembership:
        """``PUT /runs/{run_id}/run-group``: move a QUEUED run into ``group_id`` (None: out of
        any group). A run that has started is a 409."""
        response = await self._send(
            "PUT", self._url("runs", run_id, "run-group"), json_body={"run_group_id": group_id}
        )
        return self._parse(RunGroupMembership, response)

    # --- notifications (docs/notifications.md) ----------------------------------------

    async def notifications(
        self, *, unread: bool = False, limit: int = 50
    ) -> notify_models.NotificationList:
        """``GET /notifications``: your in-app notifications, newest first, and the unread
        count."""
        return await self._get(
            notify_models.NotificationList,
            "notifications",
            unread="true" if unread else None,
            limit=limit,
        )

    async def mark_read(self, notification_id: int | None = None) -> int:
        """Mark one notification (None: all) read; answers how many are still unread."""
        path = (
            ("notifications", str(notification_id), "read")
            if notification_id
            else (
                "notifications",
                "read",
            )
        )
        response = await self._send("POST", self._url(*path))
        return self._parse(notify_models.Unread, response).unread

    async def notification_preferences(self) -> notify_models.Preferences:
        return await self._get(notify_models.Preferences, "notifications", "preferences")

    async def set_notification_preferences(
        self, *, events: Sequence[str], channels: Sequence[str]
    ) -> notify_models.Preferences:
        response = await self._send(
            "PUT",
            self._url("notifications", "preferences"),
            json_body={"events": list(events), "channels": list(channels)},
        )
        return self._parse(notify_models.Preferences, response)

    async def subscribe(
        self,
        *,
        channel: str = "webhook",
        url: str | None = None,
        events: Sequence[str] | None = None,
        run_id: str | None = None,
        group_id: str | None = None,
        secret: str | None = None,
    ) -> notify_models.Subscription:
        """``POST /notifications/subscriptions``: a new subscription (its webhook secret is
        in the answer)."""
        body = {
            "channel": channel,
            "url": url,
            "events": list(events) if events is not None else None,
            "run_id": run_id,
            "group_id": group_id,
            "secret": secret,
        }
        response = await self._send(
            "POST",
            self._url("notifications", "subscriptions"),
            json_body={k: v for k, v in body.items() if v is not None},
        )
        return self._parse(notify_models.Subscription, response)

    async def subscriptions(
        self, *, run_id: str | None = None, group_id: str | None = None
    ) -> list[notify_models.Subscription]:
        found = await self._get(
            notify_models.SubscriptionList,
            "notifications",
            "subscriptions",
            run_id=run_id,
            group_id=group_id,
        )
        return found.subscriptions

    async def unsubscribe(self, subscription_id: str) -> None:
        await self._send("DELETE", self._url("notifications", "subscriptions", subscription_id))

    async def test_subscription(self, subscription_id: str) -> notify_models.Delivery:
        """Send a test message through a subscription now; answers the delivery."""
        response = await self._send(
            "POST", self._url("notifications", "subscriptions", subscription_id, "test")
        )
        return self._parse(notify_models.Delivery, response)

    async def deliveries(
        self,
        *,
        subscription_id: str | None = None,
        run_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[notify_models.Delivery]:
        """``GET /notifications/deliveries``: yours, newest first, each with its attempts."""
        found = await self._get(
            notify_models.DeliveryList,
            "notifications",
            "deliveries",
            subscription_id=subscription_id,
            run_id=run_id,
            state=state,
            limit=limit,
        )
        return found.deliveries

    async def redeliver(self, delivery_id: str) -> notify_models.Delivery:
        """Send a delivery again now, with the same webhook-id."""
        response = await self._send(
            "POST", self._url("notifications", "deliveries", delivery_id, "redeliver")
        )
        return self._parse(notify_models.Delivery, response)

    # --- Spindle extensions ------------------------------------------------------------

    async def progress(self, run_id: str) -> RunProgress:
        """``GET /runs/{run_id}/progress``: tasks done, planned total, tasks running now."""
        return await self._get(RunProgress, "runs", run_id, "progress")

    async def recover(
        self,
        run_id: str,
        *,
        reuse_work_dir: bool = True,
        notes: str = "",
        override_params: Mapping[str, Any] | None = None,
        override_engine_parameters: Mapping[str, str] | None = None,
    ) -> str:
        """``POST /runs/{run_id}/recover``: a new run continuing one that ended
        EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED, with the overrides merged over its params
        and engine parameters; answers its run id. With ``reuse_work_dir`` it takes over the
        parent's working folder and reuses what the parent finished (a 409 if another
        recovery took it already)."""
        body = RecoverRequest(
            reuse_work_dir=reuse_work_dir,
            notes=notes,
            override_params=dict(override_params or {}),
            override_engine_parameters=dict(override_engine_parameters or {}),
        )
        response = await self._send(
            "POST", self._url("runs", run_id, "recover"), json_body=body.model_dump()
        )
        return self._parse(wes.RunId, response).run_id

    async def resubmit(self, run_id: str) -> str:
        """``POST /runs/{run_id}/resubmit``: the same request and attachments again, as a new
        run linked to it; answers its run id."""
        response = await self._send("POST", self._url("runs", run_id, "resubmit"))
        return self._parse(wes.RunId, response).run_id

    async def lineage(self, run_id: str) -> LineageResponse:
        """``GET /runs/{run_id}/lineage``: its parent, children and what changed."""
        return await self._get(LineageResponse, "runs", run_id, "lineage")

    async def delete_run(self, run_id: str) -> DeletedRun:
        """``DELETE /runs/{run_id}``: remove a finished run's files, keeping it as a
        tombstone (a 409 while it has not ended)."""
        response = await self._send("DELETE", self._url("runs", run_id))
        return self._parse(DeletedRun, response)

    async def read_log(
        self, run_id: str, stream: str = "stdout", offset: int = 0
    ) -> tuple[bytes, int]:
        """One chunk of the engine's ``stdout`` or ``stderr`` from byte ``offset``, and the
        offset to ask for next. An empty chunk means "nothing more yet", not "finished":
        the run may still be writing (see :meth:`follow_log`)."""
        response = await self._send(
            "GET", self._url("runs", run_id, "logs", stream), params={"offset": offset}
        )
        data = response.content
        raw = response.headers.get(NEXT_OFFSET_HEADER)
        try:
            next_offset = int(raw) if raw is not None else offset + len(data)
        except ValueError:
            next_offset = offset + len(data)
        return data, next_offset

    async def follow_log(
        self,
        run_id: str,
        stream: str = "stdout",
        *,
        offset: int = 0,
        poll: float = 1.0,
        task_id: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Chunks of a log (a task's share with ``task_id``) as the run writes them, from
        the server's live log stream (``.../logs/{stream}/stream``, server-sent events),
        ending once the run has ended and everything it wrote has been read.

        A dropped connection is taken up again after ``poll`` seconds from the last byte
        offset received (``Last-Event-ID``): nothing is missed or repeated. Pieces arrive
        as text; one holding bytes that are not UTF-8 is read again as bytes, so what is
        yielded is the log byte for byte."""
        segments: tuple[str, ...] = ("runs", run_id, "logs", stream, "stream")
        if task_id is not None:
            segments = ("runs", run_id, "tasks", task_id, "logs", stream, "stream")
        url = self._url(*segments)
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(offset)}
            try:
                response = await self._send("GET", url, headers=headers, stream=True)
                try:
                    async for sse in EventSource(response).aiter_sse():
                        if sse.event == "done":
                            return
                        if sse.event != "log":
                            continue
                        piece = json.loads(sse.data)
                        data = piece["text"].encode()
                        if "\ufffd" in piece["text"] and task_id is None:
                            size = piece["next_offset"] - piece["offset"]
                            data = await self._raw(run_id, stream, piece["offset"], size)
                        offset = int(piece["next_offset"])
                        failures = 0
                        yield data
                finally:
                    await response.aclose()
            except (SpindleConnectionError, httpx.TransportError) as exc:
                failures += 1
                if failures > FOLLOW_RETRIES:
                    if isinstance(exc, SpindleConnectionError):
                        raise
                    raise SpindleConnectionError(
                        f"the log stream of run {run_id} broke off: {exc!r}", url=url
                    ) from exc
            await asyncio.sleep(poll)  # the stream ended without done: take it up again

    async def _raw(self, run_id: str, stream: str, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes of a log from ``offset``."""
        data = b""
        while len(data) < size:
            response = await self._send(
                "GET",
                self._url("runs", run_id, "logs", stream),
                params={"offset": offset + len(data), "limit": size - len(data)},
            )
            if not response.content:
                break
            data += response.content
        return data

    async def _terminal(self, run_id: str) -> bool:
        state = (await self.status(run_id)).state
        return state is not None and state.terminal

    async def wait(self, run_id: str, *, poll: float = 1.0) -> wes.RunLog:
        """Poll until the run reaches a terminal state; return its full RunLog. Bound the
        wait with ``asyncio.timeout`` if needed."""
        while True:
            if await self._terminal(run_id):
                return await self.get_run(run_id)
            await asyncio.sleep(poll)

    def file_url(self, run_id: str, path: str) -> str:
        """The download URL of a file of a run, by its path inside the run folder (the form
        output ``location`` URLs carry, e.g. ``work/results/summary.txt``)."""
        return self._url("runs", run_id, "files") + "/" + quote(path.lstrip("/"))

    async def download(self, source: str, dest: str | Path, *, path: str | None = None) -> Path:
        """Download a file to ``dest`` and return where it was written.

        ``source`` is a URL (an output's ``location``), or a run id when ``path`` names the
        file inside that run. If ``dest`` is an existing folder the file keeps its name in
        it. The file is written beside ``dest`` first and renamed at the end, so a failed
        download never leaves a truncated file under the final name.
        """
        url = self.file_url(source, path) if path is not None else source
        target = Path(dest)
        if await asyncio.to_thread(target.is_dir):
            name = httpx.URL(url).path.rstrip("/").rsplit("/", 1)[-1]
            target = target / (name or "download")
        partial = target.with_name(target.name + ".part")
        response = await self._send("GET", url, stream=True)
        try:
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            fh: IO[bytes] = await asyncio.to_thread(partial.open, "wb")
            try:
                async for chunk in response.aiter_bytes(CHUNK):
                    await asyncio.to_thread(fh.write, chunk)
            finally:
                await asyncio.to_thread(fh.close)
            await asyncio.to_thread(partial.replace, target)
        except httpx.TransportError as exc:
            raise SpindleConnectionError(
                f"the download from {url} was cut off: {exc or type(exc).__name__}", url=url
            ) from exc
        finally:
            await response.aclose()
            await asyncio.to_thread(partial.unlink, missing_ok=True)
        return target
