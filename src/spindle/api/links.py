"""URLs that responses hand out: logs, task logs and output downloads."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request

from spindle.storage.rundir import RUN_FILE_SCHEME

PREFIX = "/ga4gh/wes/v1"


class Links:
    def __init__(self, request: Request, public_url: str = "") -> None:
        base = public_url or str(request.base_url)
        self.base = base.rstrip("/") + PREFIX

    def run(self, run_id: str, *parts: str) -> str:
        tail = "/".join(quote(p, safe="") for p in parts)
        return f"{self.base}/runs/{quote(run_id, safe='')}" + (f"/{tail}" if tail else "")

    def run_log(self, run_id: str, stream: str) -> str:
        return self.run(run_id, "logs", stream)

    def task_log(self, run_id: str, task_id: str, stream: str) -> str:
        return self.run(run_id, "tasks", task_id, "logs", stream)

    def file(self, run_id: str, rel: str) -> str:
        return self.run(run_id, "files") + "/" + quote(rel)

    def outputs(self, run_id: str, value: Any) -> Any:
        """Replace each ``location: run:<path>`` in an output object by a download URL."""
        if isinstance(value, dict):
            out = {k: self.outputs(run_id, v) for k, v in value.items()}
            loc = value.get("location")
            if isinstance(loc, str) and loc.startswith(RUN_FILE_SCHEME):
                out["location"] = self.file(run_id, loc.removeprefix(RUN_FILE_SCHEME))
            return out
        if isinstance(value, list):
            return [self.outputs(run_id, v) for v in value]
        return value
