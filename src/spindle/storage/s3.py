"""S3 (and S3-compatible) storage of finished runs' outputs and logs, and ``s3://`` inputs.

The library is boto3, called through ``asyncio.to_thread`` (the project's rule for a library
without an async API). It was chosen over obstore because it does every part of the job
itself: multipart uploads with a chosen part size (``s3transfer``), per-part SHA-256
checksums the server checks and returns, presigned GET URLs, and the standard AWS
credential chain; it is the reference SDK that S3-compatible services test against, and
moto (the S3 server the tests run against) models it exactly.

When ``s3_bucket`` is set, a run that ended has its outputs (``outputs/`` and every file its
outputs name) and its logs (``logs/``) uploaded to ``s3://<bucket>/<prefix>/<run_id>/<path>``;
each upload is verified (size and the SHA-256 checksum S3 computed, against the local file's)
before anything local is removed. What was uploaded is recorded in the run folder
(``s3.json``, the manifest), which downloads and the file listing read: a file in it is
served by a presigned URL (a 307 to S3), valid ``s3_presign_seconds``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster

from spindle.config import Settings
from spindle.domain import Run
from spindle.errors import InvalidRequest, SpindleError, Unreachable
from spindle.storage.access import FileAnswer, FolderStorage, RunStorage, SignedURL
from spindle.storage.files import FileSource, open_inside
from spindle.storage.listing import output_paths, walk
from spindle.storage.rundir import RunDir

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

log = logging.getLogger(__name__)

#: The manifest of a run's uploaded files, in its run folder.
MANIFEST = "s3.json"
_COMPOSITE = re.compile(r"-\d+$")


class S3Error(SpindleError):
    """The S3 storage failed."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str, *, field: str = "workflow_params") -> S3Location:
        parts = urlsplit(url)
        key = parts.path.lstrip("/")
        if parts.scheme != "s3" or not parts.netloc or not key or key.endswith("/"):
            raise InvalidRequest(field, f"{url!r} is not an s3://bucket/key URL of one object")
        if parts.query or parts.fragment:
            raise InvalidRequest(field, f"{url!r}: an s3:// URL has no query or fragment")
        return cls(parts.netloc, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def sha256_of(f: IO[bytes], part_size: int | None = None) -> str:
    """The SHA-256 S3 reports for the file ``f`` (read from where it is) uploaded whole
    (``part_size`` None) or in parts of ``part_size``: base64 of the digest, or of the
    digest of the parts' digests."""
    if part_size is None:
        whole = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            whole.update(chunk)
        return base64.b64encode(whole.digest()).decode()
    parts = [hashlib.sha256(chunk).digest() for chunk in iter(lambda: f.read(part_size), b"")]
    return base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()


class S3Store:
    """One bucket and prefix, with one boto3 client (thread-safe, made on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix.strip("/")
        self.endpoint_url = settings.s3_endpoint_url or None
        self.region = settings.s3_region or None
        self.part_size = settings.s3_part_size_bytes
        self.presign_seconds = settings.s3_presign_seconds
        self.remove_local = settings.s3_remove_local
        self.input_max_bytes = settings.s3_input_max_bytes
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> S3Client:
        with self._lock:
            if self._client is None:
                # an S3-compatible endpoint (MinIO, moto) serves buckets by path
                style: Literal["path", "auto"] = "path" if self.endpoint_url else "auto"
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self.region,
                    config=Config(
                        signature_version="s3v4",
                        s3={"addressing_style": style},
                        retries={"mode": "standard", "max_attempts": 5},
                    ),
                )
            return self._client

    def key(self, run_id: str, path: str) -> str:
        return "/".join(p for p in (self.prefix, run_id, path) if p)

    # --- uploads ---------------------------------------------------------------------------

    def _transfer(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.part_size, multipart_chunksize=self.part_size
        )

    def upload_file(self, local: Path, key: str, *, root: Path | None = None) -> dict[str, Any]:
        """Upload ``local`` to ``key`` (in parts when larger than the part size) and verify
        the object: its size and S3's SHA-256 against the local file's. With ``root``, the
        file is opened only if it is a regular file inside it (a link a workflow swapped in
        meanwhile cannot send a file from elsewhere), and the bytes checked and sent are
        read from that one open file. Blocking."""
        f = open_inside(root, local) if root is not None else local.open("rb")
        if f is None:
            raise S3Error(f"{local.name} is no longer a file inside the run folder")
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            part = None
            if size >= self.part_size:
                part = ChunksizeAdjuster().adjust_chunksize(self.part_size, size)
            expected = sha256_of(f, part)
            f.seek(0)
            self.client.upload_fileobj(
                f,
                self.bucket,
                key,
                Config=self._transfer(),
                ExtraArgs={"ChecksumAlgorithm": "SHA256"},
            )
        head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        got = _COMPOSITE.sub("", head.get("ChecksumSHA256", ""))
        if head["ContentLength"] != size or got != expected:
            raise S3Error(
                f"s3://{self.bucket}/{key} does not match {local.name} after its upload "
                f"(size {head['ContentLength']} vs {size}, sha256 {got!r} vs {expected!r})"
            )
        return {
            "size": size,
            "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(),
            "sha256": expected,
            "parts": 1 if part is None else -(-size // part),
        }

    def upload_run(self, run: Run, rundir: RunDir) -> dict[str, Any]:
        """Upload a finished run's outputs and logs and write the manifest (blocking)."""
        found = walk(rundir.root) if rundir.root.is_dir() else {}
        wanted = output_paths(run.outputs)
        paths = sorted(p for p in found if p.startswith(("outputs/", "logs/")) or p in wanted)
        manifest = read_manifest(rundir) or {"files": {}}
        manifest.update(bucket=self.bucket, prefix=self.prefix, run_id=run.id)
        files: dict[str, Any] = manifest["files"]
        real = rundir.root.resolve()
        for path in paths:
            files[path] = self.upload_file(real / path, self.key(run.id, path), root=real)
        manifest["uploaded_at"] = datetime.now(UTC).isoformat()
        write_manifest(rundir, manifest)
        return manifest

    def remove_uploaded(self, rundir: RunDir) -> int:
        """Remove the local copies of the outputs the manifest lists (setting
        ``s3_remove_local``; blocking); how many. Logs stay: they are small, and the log
        endpoints, task logs and the web UI read them here (they are whole in S3 as well)."""
        manifest = read_manifest(rundir)
        if not self.remove_local or manifest is None:
            return 0
        real = rundir.root.resolve()
        removed = 0
        for path in manifest.get("files", {}):
            if not path.startswith("logs/"):
                with contextlib.suppress(FileNotFoundError):
                    (real / path).unlink()
                    removed += 1
        return removed

    # --- downloads -------------------------------------------------------------------------

    def presign(self, bucket: str, key: str, name: str) -> SignedURL:
        """A presigned GET of ``key`` that saves as ``name``. Blocking (no network)."""
        return presigned_get(self.client, bucket, key, name, self.presign_seconds)

    # --- inputs ----------------------------------------------------------------------------

    def fetch(self, where: S3Location, dest: Path) -> None:
        """Download the object ``where`` to ``dest`` (blocking); refused past
        ``s3_input_max_bytes``."""
        head = self.client.head_object(Bucket=where.bucket, Key=where.key)
        if head["ContentLength"] > self.input_max_bytes:
            raise InvalidRequest(
                "workflow_params",
                f"{where} is larger than {self.input_max_bytes} bytes (setting s3_input_max_bytes)",
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".part")
        self.client.download_file(where.bucket, where.key, str(partial), Config=self._transfer())
        os.replace(partial, dest)


def read_manifest(rundir: RunDir) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((rundir.root / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data


def write_manifest(rundir: RunDir, manifest: Mapping[str, Any]) -> None:
    tmp = rundir.root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, rundir.root / MANIFEST)


def manifest_key(manifest: Mapping[str, Any], path: str) -> str:
    """The key ``path`` of the run was uploaded to (as the manifest recorded it)."""
    parts = (str(manifest.get("prefix", "")), str(manifest["run_id"]), path)
    return "/".join(p for p in parts if p)


def describe_s3_error(exc: BaseException) -> str:
    """``Code: message`` of an S3 error (also one boto3 wrapped in an upload failure)."""
    cause = exc if isinstance(exc, ClientError) else exc.__context__
    if isinstance(cause, ClientError):
        err = cause.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__


class S3Storage(RunStorage):
    """Run folders, with the files a run uploaded to S3 served by presigned URLs."""

    def __init__(self, store: S3Store, folders: FolderStorage) -> None:
        self.store = store
        self.folders = folders

    async def open(self, run: Run, path: str) -> FileAnswer:
        rundir = RunDir.for_run(self.folders.data_dir, run.id)
        rel = rundir.resolve(path).relative_to(rundir.root.resolve()).as_posix()
        manifest = await asyncio.to_thread(read_manifest, rundir)
        if manifest is not None and rel in manifest.get("files", {}):
            try:
                return await asyncio.to_thread(
                    self.store.presign,
                    str(manifest["bucket"]),
                    manifest_key(manifest, rel),
                    rel.rsplit("/", 1)[-1],
                )
            except (BotoCoreError, ClientError) as exc:
                raise Unreachable(
                    f"S3 cannot sign a download now: {describe_s3_error(exc)}"
                ) from None
        return await self.folders.open(run, path)


def run_storage(settings: Settings, sources: Mapping[str, FileSource]) -> RunStorage:
    """The run folders, behind S3 when ``s3_bucket`` is set."""
    folders = FolderStorage(settings.data_dir, sources)
    return S3Storage(S3Store(settings), folders) if settings.s3_bucket else folders


def presigned_get(client: Any, bucket: str, key: str, name: str, seconds: int) -> SignedURL:
    """A GET of ``key`` presigned by ``client`` (a boto3 S3 client) for ``seconds``, that a
    browser saves as ``name``. Blocking, but no network: signing is local."""
    url = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(name)}",
        },
        ExpiresIn=seconds,
    )
    return SignedURL(url, datetime.now(UTC) + timedelta(seconds=seconds), name)
