"""A run's attachments as a HealthOmics workflow definition: a zip whose bytes depend only
on the files' names and contents (sorted, fixed timestamps), so identical definitions have
the same digest and are registered once."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spindle.errors import InvalidRequest

#: HealthOmics' CreateWorkflow accepts definition zips up to this size inline.
MAX_ZIP_BYTES = 4 * 1024 * 1024
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Definition:
    zip: bytes
    main: str
    engine: str
    parameter_template: dict[str, dict[str, Any]]
    digest: str

    @property
    def name(self) -> str:
        """The workflow's name in HealthOmics, by which Spindle finds it again."""
        return f"spindle-{self.digest[:32]}"


def definition(attachments: Path, main: str, engine: str, params: dict[str, Any]) -> Definition:
    """The zipped ``attachments`` folder, ``main`` its main file (``workflow_url``)."""
    files = sorted(p for p in attachments.rglob("*") if p.is_file()) if attachments.is_dir() else []
    names = {p.relative_to(attachments).as_posix() for p in files}
    if main not in names:
        raise InvalidRequest("workflow_url", f"{main!r} is not one of the workflow attachments")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(attachments).as_posix(), _EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, p.read_bytes(), zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    if len(data) > MAX_ZIP_BYTES:
        raise InvalidRequest(
            "workflow_attachment", f"the zipped workflow is over {MAX_ZIP_BYTES} bytes"
        )
    # HealthOmics wants every run parameter declared: one entry per workflow_params key
    template = {k: {"description": k, "optional": False} for k in sorted(params)}
    h = hashlib.sha256(data)
    h.update(json.dumps([engine, main, template], sort_keys=True).encode())
    return Definition(data, main, engine, template, h.hexdigest())
