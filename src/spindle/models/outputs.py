"""Models of the outputs-and-sharing extensions (docs/api.md): the file listing and signed
download links."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RunFile(BaseModel):
    """One file of a run."""

    path: str = Field(description="Path inside the run folder, e.g. `outputs/result.txt`.")
    group: Literal["inputs", "outputs", "logs", "work", "other"] = Field(
        description="`inputs` (attachments and staged inputs), `outputs` (`outputs/` and the "
        "files the run's outputs name), `logs`, `work` (the engine's working folder), "
        "`other` (Spindle's own files)."
    )
    size: int = Field(description="Size in bytes.")
    modified: str = Field(description="Last modification, ISO 8601 in UTC.")
    stored: Literal["local", "s3"] = Field(
        description="`s3` when the only copy is in S3 (downloads redirect there)."
    )
    url: str = Field(description="Download URL (needs the caller's credentials).")


class RunFileList(BaseModel):
    """``GET /runs/{run_id}/files``: one page of the run's files, in path order."""

    run_id: str
    files: list[RunFile]
    next_page_token: str = Field(description="Token of the next page; empty on the last.")


class SignedLinkResponse(BaseModel):
    """``GET /runs/{run_id}/links/{path}``: a download link that needs no credentials."""

    url: str = Field(description="The link; anyone holding it can download the file.")
    expires_at: str = Field(description="When it stops working, ISO 8601 in UTC.")
