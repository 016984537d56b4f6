"""What a run event's message adds to its outbox payload when it is first sent: links from
the public base URL (the run's page, its outputs), and for a failed run the failing task and
the last lines of its log (or of the run's stderr). Added once and saved with the delivery,
so every attempt sends the same body."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from spindle.config import Settings
from spindle.db.tables import tasks
from spindle.domain import State
from spindle.notify.events import RUN_FAILED
from spindle.storage.files import open_inside

#: lines of a failing log a message shows, and the most bytes read for them
TAIL_LINES = 20
TAIL_BYTES = 8192


def links(settings: Settings, data: dict[str, Any]) -> dict[str, str]:
    base = settings.public_url.rstrip("/")
    if not base:
        return {}
    out: dict[str, str] = {}
    if data.get("run_id"):
        out["run_url"] = f"{base}/runs/{data['run_id']}"
        out["outputs_url"] = f"{base}/ga4gh/wes/v1/runs/{data['run_id']}"
    elif data.get("group_id"):
        out["group_url"] = f"{base}/groups/{data['group_id']}"
    return out


async def complete(
    conn: AsyncConnection, settings: Settings, payload: dict[str, Any]
) -> dict[str, Any]:
    """``payload`` with its links and failure details (marked ``detailed``)."""
    data = dict(payload.get("data", {}))
    data.update(links(settings, data))
    if payload.get("type") == RUN_FAILED and data.get("run_id"):
        run_id = data["run_id"]
        row = (
            (
                await conn.execute(
                    select(tasks.c.name, tasks.c.stderr)
                    .where(
                        tasks.c.run_id == run_id,
                        tasks.c.state.in_([State.EXECUTOR_ERROR.value, State.SYSTEM_ERROR.value]),
                    )
                    .order_by(tasks.c.ordinal)
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        root = settings.data_dir / "runs" / run_id
        log = root / "logs" / "stderr"
        span: dict[str, Any] | None = None
        if row is not None:
            data["failing_task"] = row["name"]
            if row["stderr"]:
                span = row["stderr"]
                log = root / span["path"]
        lines = await asyncio.to_thread(tail, root, log, span)
        if not lines and span is None:  # nothing on stderr: the end of what it printed
            lines = await asyncio.to_thread(tail, root, root / "logs" / "stdout", None)
        data["log_tail"] = lines
    return {**payload, "data": data, "detailed": True}


def tail(root: Path, path: Path, span: dict[str, Any] | None) -> list[str]:
    """The last lines of a log inside the run folder (a link out of it reads as empty)."""
    fh = open_inside(root, path)
    if fh is None:
        return []
    with fh:
        size = os.fstat(fh.fileno()).st_size
        start = int((span or {}).get("start") or 0)
        end = (span or {}).get("end")
        stop = size if end is None else min(int(end), size)
        fh.seek(max(start, stop - TAIL_BYTES))
        data = fh.read(max(0, stop - max(start, stop - TAIL_BYTES)))
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-TAIL_LINES:]
