"""The storage seam: the download route serves whatever the run's storage answers, a file
on this host or a redirect to a time-limited URL, and never assumes a local path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from spindle.domain import Run
from spindle.storage.access import FileAnswer, RunStorage, SignedURL
from tests.api.conftest import WES
from tests.scheduler.test_fakes import ENDED, client, fakes, submit, wait_for

__all__ = ["client", "fakes"]  # the fixtures, imported so pytest finds them here


class Bucket(RunStorage):
    """Storage that serves every file by a signed URL (as S3 would)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def open(self, run: Run, path: str) -> FileAnswer:
        self.asked.append((run.id, path))
        expires = datetime.now(UTC) + timedelta(minutes=5)
        return SignedURL(
            f"https://bucket.example/{run.id}/{quote(path)}?X-Expires=300", expires, "x"
        )


async def test_downloads_go_through_the_runs_storage(client: httpx.AsyncClient) -> None:
    run_id = await submit(client, {"sleep": 0, "tasks": 1})
    assert (await wait_for(client, run_id, ENDED))["state"] == "COMPLETE"

    here = await client.get(f"{WES}/runs/{run_id}/files/work/result.txt")
    assert here.status_code == 200
    assert here.text == "done\n"
    missing = await client.get(f"{WES}/runs/{run_id}/files/work/nothing.txt")
    assert missing.status_code == 404

    service = client._transport.app.state.service  # type: ignore[attr-defined]
    bucket = Bucket()
    service.storage = bucket
    there = await client.get(f"{WES}/runs/{run_id}/files/work/result.txt")
    assert there.status_code == 307
    assert there.headers["location"] == (
        f"https://bucket.example/{run_id}/work/result.txt?X-Expires=300"
    )
    assert bucket.asked == [(run_id, "work/result.txt")]
