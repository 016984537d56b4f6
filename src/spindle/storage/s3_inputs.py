"""``s3://`` inputs in ``workflow_params``: Spindle downloads each object into the run's
attachments (``attachments/s3/<bucket>/<key>``) before the engine is prepared, and the
engine gets the params with each URL replaced by its local copy:

- a CWL ``File`` whose ``location`` is an ``s3://`` URL gets the relative name
  ``s3/<bucket>/<key>``, which the CWL engine resolves inside the attachments as it does
  for any attached input;
- any other string that is an ``s3://`` URL (a Snakemake config value, say) gets the copy's
  absolute path as the engine's host sees it.

The engine therefore never needs S3 credentials: they stay in Spindle's process (the AWS
chain), never in a workflow's environment (the workflow is untrusted code, docs/security.md).
The same path serves Snakemake and cwltool (see docs/storage.md for why Snakemake's own S3
storage plugin is not used).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from spindle.errors import InvalidPath, InvalidRequest
from spindle.storage.rundir import RunDir, safe_relative
from spindle.storage.s3 import S3Location

SCHEME = "s3://"
#: Where staged objects go, inside the attachments.
FOLDER = "s3"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def urls(value: Any) -> Iterator[str]:
    """Every ``s3://`` string in ``value`` (any depth)."""
    if isinstance(value, str):
        if value.startswith(SCHEME):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from urls(item)


def check(params: dict[str, Any], buckets: Sequence[str] = ()) -> list[S3Location]:
    """The objects ``params`` name, each checked (InvalidRequest naming workflow_params):
    well formed, and in one of ``buckets`` when any are given (``s3_input_buckets``)."""
    found = list(dict.fromkeys(S3Location.parse(url) for url in urls(params)))
    for where in found:
        local_name(where)
        if buckets and where.bucket not in buckets:
            raise InvalidRequest(
                "workflow_params",
                f"{where}: inputs may come from the buckets {', '.join(buckets)} only "
                "(setting s3_input_buckets)",
            )
    return found


def local_name(where: S3Location) -> str:
    """The copy's path inside the attachments; a bucket or key that could not be a folder
    and a path inside it (``..``, ``.``, a backslash) is refused."""
    if not _BUCKET.fullmatch(where.bucket):
        raise InvalidRequest("workflow_params", f"{where}: {where.bucket!r} is not a bucket name")
    key = safe_relative(where.key, field="workflow_params")
    if key.as_posix() != where.key:
        raise InvalidPath(
            field="workflow_params", name=str(where), problem="has empty or '.' segments"
        )
    return f"{FOLDER}/{where.bucket}/{key.as_posix()}"


def rewrite(value: Any, there: Callable[[S3Location], str]) -> Any:
    """``value`` with each ``s3://`` URL replaced: a File's ``location`` by the copy's
    relative name, any other string by ``there(location)``."""
    if isinstance(value, str):
        return there(S3Location.parse(value)) if value.startswith(SCHEME) else value
    if isinstance(value, list):
        return [rewrite(item, there) for item in value]
    if not isinstance(value, dict):
        return value
    out = {k: rewrite(v, there) for k, v in value.items()}
    loc = value.get("location")
    if value.get("class") == "File" and isinstance(loc, str) and loc.startswith(SCHEME):
        out["location"] = local_name(S3Location.parse(loc))
    return out


def stage(
    params: dict[str, Any],
    rundir: RunDir,
    fetch: Callable[[S3Location, Path], None],
    site_path: Callable[[Path], str],
) -> dict[str, Any]:
    """Download every object ``params`` names into the attachments (blocking; ``fetch``
    copies one object to a path) and return the params the engine gets (``site_path``:
    a local path as the engine's host sees it)."""
    for where in check(params):
        # (fetched even if an attachment has that name: the object is what was asked for)
        fetch(where, rundir.attachments / local_name(where))
    result: dict[str, Any] = rewrite(
        params, lambda where: site_path((rundir.attachments / local_name(where)).absolute())
    )
    return result
