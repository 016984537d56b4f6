"""Make the screenshots in docs/img/ with the real Chromium against a real server:

    .venv/bin/python -m tests.web.screenshots

Starts ``spindle serve`` on a fresh data folder, runs the example workflows (one is left
running and one fails, so the pages show a mix; two run groups, one of which holds a run
back), takes the pictures, cancels what still runs and stops the server. Not a test: pytest
does not collect it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.api.conftest import WES, example_form
from tests.live import _server_env, _stop, free_port
from tests.support import REPO
from tests.web.test_browser import CHROMIUM, CHROMIUM_ARGS

OUT = REPO / "docs" / "img"
FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def submit(
    client: httpx.Client, language: str, name: str, run_group_id: str = "", **kw: object
) -> str:
    data, files = example_form(language, name, **kw)  # type: ignore[arg-type]
    if run_group_id:
        data["run_group_id"] = run_group_id
    r = client.post(f"{WES}/runs", data=data, files=files)
    r.raise_for_status()
    run_id: str = r.json()["run_id"]
    return run_id


def group(client: httpx.Client, **fields: object) -> str:
    r = client.post(f"{WES}/run-groups", json=fields)
    r.raise_for_status()
    group_id: str = r.json()["id"]
    return group_id


def wait(client: httpx.Client, run_id: str, states: set[str]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if client.get(f"{WES}/runs/{run_id}/status").json()["state"] in states:
            return
        time.sleep(0.3)
    raise SystemExit(f"run {run_id} did not reach {states}")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spindle-shots-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "server.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spindle", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_server_env(workdir / "data", workdir),
            cwd=workdir,
        )
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{WES}/service-info").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
            done = [
                submit(client, "cwl", "wordcount", tags={"project": "poems"}),
                submit(client, "snakemake", "fail", tags={"project": "demo", "kind": "broken"}),
                submit(client, "snakemake", "wordcount", tags={"project": "demo", "sample": "abc"}),
            ]
            batch = group(
                client,
                name="sequencing batch 42",
                description="Flow cell 42: word counts per sample",
                max_runs=1,
                max_cpus=4,
                max_duration=120,
            )
            group(client, name="poems", description="The CWL examples", max_duration=30)
            done.append(submit(client, "snakemake", "wordcount", run_group_id=batch))
            for run_id in done:
                wait(client, run_id, FINAL)
            shown = done[-2]
            sleeping = submit(client, "snakemake", "sleep", tags={"project": "nap"})
            wait(client, sleeping, {"RUNNING"})
            # the batch holds one run at a time: one runs, the next waits
            batch_runs = [
                submit(client, "snakemake", "sleep", run_group_id=batch, params={"seconds": 300})
                for _ in range(2)
            ]
            wait(client, batch_runs[0], {"RUNNING"})
            time.sleep(2)
            OUT.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1366, "height": 760}, base_url=url)
                for path, name in (("/runs", "runs.png"), ("/", "dashboard.png")):
                    page.goto(path)
                    page.wait_for_timeout(800)
                    page.screenshot(path=str(OUT / name))
                page.set_viewport_size({"width": 1366, "height": 1180})
                page.goto(f"/runs/{shown}")
                page.wait_for_timeout(800)
                page.screenshot(path=str(OUT / "run.png"))
                page.set_viewport_size({"width": 1366, "height": 760})
                page.goto("/groups")
                page.wait_for_timeout(800)
                page.screenshot(path=str(OUT / "groups.png"))
                page.set_viewport_size({"width": 1366, "height": 900})
                page.goto(f"/groups/{batch}")
                page.wait_for_timeout(800)
                page.screenshot(path=str(OUT / "group.png"))
                browser.close()
            for run_id in (sleeping, *batch_runs):
                client.post(f"{WES}/runs/{run_id}/cancel")
            for run_id in (sleeping, *batch_runs):
                wait(client, run_id, FINAL)
    finally:
        _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT}")


if __name__ == "__main__":
    main()
