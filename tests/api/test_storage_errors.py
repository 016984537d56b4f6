"""Disk trouble is named: a full disk answers 507 with the reason, a folder that cannot be
written names its path (at submission and when the run starts). Real file systems: a tiny
tmpfs and immutable folders (``chattr +i``), both need root."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import (
    WES,
    example_form,
    make_app,
    open_client,
    runs_on_disk,
    submit_example,
    wait_state,
)
from tests.support import missing


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        missing("immutable folders need root and chattr")
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        missing(f"chattr +i does not work here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        missing(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


async def test_full_disk_answers_507_with_the_reason(
    catalog: Catalog, settings: Settings, tiny_disk: Path, tmp_path: Path
) -> None:
    on_tiny = settings.model_copy(
        update={
            "data_dir": tiny_disk / "data",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'spindle.db'}",
        }
    )
    data, files = example_form("cwl", "wordcount")
    files.append(("workflow_attachment", ("big.bin", b"x" * 200_000)))
    async for client in open_client(make_app(on_tiny, catalog, worker=False)):
        r = await client.post(f"{WES}/runs", data=data, files=files)
        assert r.status_code == 507, r.text
        assert r.json()["status_code"] == 507
        assert "No space left on device" in r.json()["msg"]
        assert str(tiny_disk / "data" / "staging") in r.json()["msg"]
        assert runs_on_disk(on_tiny) == []
        assert (await client.get(f"{WES}/runs")).json()["runs"] == []


async def test_unwritable_data_folder_names_its_path(
    api_no_worker: httpx.AsyncClient, settings: Settings
) -> None:
    staging = settings.data_dir / "staging"
    staging.mkdir(parents=True)
    data, files = example_form("cwl", "wordcount")
    with immutable(staging):
        r = await api_no_worker.post(f"{WES}/runs", data=data, files=files)
    assert r.status_code == 500, r.text
    assert "Operation not permitted" in r.json()["msg"]
    assert str(staging) in r.json()["msg"]
    assert (await api_no_worker.get(f"{WES}/runs")).json()["runs"] == []


async def test_unwritable_run_folder_fails_the_run_naming_its_path(
    api_no_worker: httpx.AsyncClient, catalog: Catalog, settings: Settings
) -> None:
    run_id = await submit_example(api_no_worker, "cwl", "wordcount")
    folder = settings.data_dir / "runs" / run_id
    with immutable(folder):
        async for worker in open_client(make_app(settings, catalog, migrate=False)):
            assert await wait_state(worker, run_id, ["SYSTEM_ERROR", "COMPLETE"]) == (
                "SYSTEM_ERROR"
            )
            logs = (await worker.get(f"{WES}/runs/{run_id}")).json()["run_log"]["system_logs"]
    text = "\n".join(logs)
    assert "Operation not permitted" in text
    assert str(folder) in text
