"""What the worker asks of S3 around a run: its ``s3://`` inputs staged before the engine is
prepared, and its outputs and logs uploaded once it has ended (docs/storage.md). Both are
async (boto3 in a thread) and say what failed in words a run's system log can carry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from spindle.config import Settings
from spindle.domain import Run
from spindle.storage import s3_inputs
from spindle.storage.rundir import RunDir
from spindle.storage.s3 import S3Error, S3Location, S3Store, describe_s3_error

log = logging.getLogger(__name__)


async def stage_inputs(
    settings: Settings, run: Run, rundir: RunDir, site_path: Callable[[Path], str]
) -> Run:
    """``run`` as its engine should see it: every ``s3://`` URL of its params downloaded
    into its attachments and replaced by the copy (the stored request is unchanged)."""
    params = run.request.workflow_params
    if next(s3_inputs.urls(params), None) is None:
        return run
    store = S3Store(settings)

    def fetch(where: S3Location, dest: Path) -> None:
        try:
            store.fetch(where, dest)
        except (BotoCoreError, ClientError) as exc:
            raise S3Error(
                f"the input {where} could not be read: {describe_s3_error(exc)}"
            ) from None

    staged: dict[str, Any] = await asyncio.to_thread(
        s3_inputs.stage, params, rundir, fetch, site_path
    )
    return replace(run, request=replace(run.request, workflow_params=staged))


async def upload(settings: Settings, run: Run, rundir: RunDir) -> str | None:
    """Upload an ended run's outputs and logs when ``s3_bucket`` is set; a line for the
    run's system log saying what happened (None when S3 is not configured). A failed
    upload is said there and does not change how the run ended."""
    if not settings.s3_bucket:
        return None
    store = S3Store(settings)
    try:
        manifest = await asyncio.to_thread(store.upload_run, run, rundir)
    except Exception as exc:  # whatever it was, the run's end is written all the same
        log.exception("uploading the files of %s to S3 failed", run.id)
        return f"uploading outputs and logs to S3 failed: {describe_s3_error(exc)}"
    where = f"s3://{store.bucket}/{store.key(run.id, '')}/"
    kept = "" if not store.remove_local else "; the local copies of outputs removed"
    return f"outputs and logs uploaded to {where} ({len(manifest['files'])} files{kept})"


async def remove_uploaded(settings: Settings, rundir: RunDir) -> None:
    """Remove the local copies of a run's uploaded outputs (setting ``s3_remove_local``),
    once its end is stored."""
    if not (settings.s3_bucket and settings.s3_remove_local):
        return
    try:
        await asyncio.to_thread(S3Store(settings).remove_uploaded, rundir)
    except OSError:
        log.exception("removing the uploaded outputs of %s failed", rundir.root.name)
