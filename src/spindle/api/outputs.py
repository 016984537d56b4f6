"""Outputs and sharing (documented extensions, docs/api.md): a run's files listed, signed
download links that work without credentials, the log archive and the RO-Crate.

Routes here are included before ``extensions`` so that ``/runs/{id}/logs/archive`` is not
taken for a log stream named ``archive``."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from spindle.api.auth import CallerDep
from spindle.api.deps import LinksDep
from spindle.api.errors import documented
from spindle.api.links import Links
from spindle.models.outputs import RunFile, RunFileList, SignedLinkResponse
from spindle.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from spindle.runs.outputs import Archive, OutputService
from spindle.storage.access import FileAnswer, SignedURL
from spindle.storage.listing import Group

router = APIRouter(prefix="/ga4gh/wes/v1", tags=["Spindle extensions"])


async def get_outputs(request: Request) -> OutputService:
    outputs: OutputService = request.app.state.outputs
    return outputs


Outputs = Annotated[OutputService, Depends(get_outputs)]


def signed_url(links: Links, run_id: str, path: str, expires: int, signature: str) -> str:
    query = urlencode({"expires": expires, "signature": signature})
    return f"{links.base}/shared/runs/{quote(run_id, safe='')}/files/{quote(path)}?{query}"


def _serve(found: FileAnswer) -> Response:
    if isinstance(found, SignedURL):
        return RedirectResponse(found.url, status_code=307)
    return FileResponse(found.path, filename=found.name)


def _zip(archive: Archive) -> StreamingResponse:
    return StreamingResponse(
        iter(archive.chunks),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{archive.name}"'},
    )


@router.get(
    "/runs/{run_id}/files",
    summary="ListRunFiles",
    response_model=RunFileList,
    responses=documented(400, 401, 403, 404, 500),
)
async def list_run_files(
    run_id: str,
    outputs: Outputs,
    caller: CallerDep,
    links: LinksDep,
    group: Annotated[Group | None, Query(description="Only the files of this group.")] = None,
    page_size: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PAGE_SIZE,
            description=f"Files per page (1 to {MAX_PAGE_SIZE}; default {DEFAULT_PAGE_SIZE}).",
        ),
    ] = None,
    page_token: Annotated[
        str | None, Query(description="The `next_page_token` of the previous page.")
    ] = None,
) -> RunFileList:
    """The run's files, in path order, each with its group, size, modification time and
    download URL. The RunLog's `outputs` are unchanged by this listing (as WES shapes them)."""
    page = await outputs.files(
        run_id, group=group, page_size=page_size, page_token=page_token, caller=caller
    )
    return RunFileList(
        run_id=run_id,
        files=[
            RunFile(
                path=f.path,
                group=f.group,
                size=f.size,
                modified=f.modified.astimezone(UTC).isoformat(),
                stored=f.stored,
                url=links.file(run_id, f.path),
            )
            for f in page.items
        ],
        next_page_token=page.next_page_token,
    )


@router.get(
    "/runs/{run_id}/links/{path:path}",
    summary="GetSignedLink",
    response_model=SignedLinkResponse,
    responses=documented(400, 401, 403, 404, 500, 503),
)
async def get_signed_link(
    run_id: str,
    path: str,
    outputs: Outputs,
    caller: CallerDep,
    links: LinksDep,
    expires_in: Annotated[
        int | None,
        Query(description="Seconds the link lasts (default: setting link_seconds)."),
    ] = None,
) -> SignedLinkResponse:
    """A time-limited link to one file of the run that works without credentials (curl,
    wget, a browser, an email), for that file only, until it expires."""
    link, signature = await outputs.link(run_id, path, seconds=expires_in, caller=caller)
    return SignedLinkResponse(
        url=signed_url(links, link.run_id, link.path, link.expires, signature),
        expires_at=link.expires_at.isoformat(),
    )


@router.get(
    "/shared/runs/{run_id}/files/{path:path}",
    summary="DownloadSignedFile",
    response_class=FileResponse,
    responses={
        **documented(400, 403, 404, 500, 503),
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "The file is in S3: a presigned URL."},
    },
)
async def download_signed_file(
    run_id: str,
    path: str,
    outputs: Outputs,
    expires: Annotated[str, Query(description="Expiry, seconds since the epoch.")] = "",
    signature: Annotated[str, Query(description="The link's signature.")] = "",
) -> Response:
    """Download the file a signed link names, without credentials; an expired, changed or
    revoked link is refused with 403."""
    return _serve(await outputs.signed_file(run_id, path, expires=expires, signature=signature))


@router.get(
    "/runs/{run_id}/logs/archive",
    summary="GetRunLogArchive",
    response_class=StreamingResponse,
    responses={**documented(401, 403, 404, 500), 200: {"content": {"application/zip": {}}}},
)
async def get_log_archive(run_id: str, outputs: Outputs, caller: CallerDep) -> Response:
    """A zip of the run's logs, its tasks' logs and its engine's reports, streamed as it is
    made."""
    return _zip(await outputs.log_archive(run_id, caller=caller))


@router.get(
    "/runs/{run_id}/ro-crate",
    summary="GetRunROCrate",
    response_class=StreamingResponse,
    responses={**documented(401, 403, 404, 409, 500), 200: {"content": {"application/zip": {}}}},
)
async def get_ro_crate(run_id: str, outputs: Outputs, caller: CallerDep) -> Response:
    """The finished run as a Workflow Run RO-Crate (zip): workflow, inputs, outputs, engine
    and timing; 409 while the run is active."""
    return _zip(await outputs.ro_crate(run_id, caller=caller))
