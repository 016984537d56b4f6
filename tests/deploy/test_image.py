"""The container image, built for real with podman on a base made from Debian's packages
(deploy/build-base.sh), started as the API (`serve --no-worker`) and a separate worker
container sharing one data folder, with a first user made the way docs/deploy.md says; a CWL,
a Snakemake and a WDL example run to COMPLETE through the API, then both containers stop.

Slow (a base image the first time, then the image's layers; see docs/deploy.md for the
minutes): marked ``container``. The build reuses the machine's uv cache (which `make venv
engines` filled with the same wheels), so it downloads little. Needs root, podman, runc and
debootstrap; without them it skips locally and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spindle.client import API_PREFIX
from tests.api.conftest import example_form
from tests.live import free_port
from tests.support import REPO, missing

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

CONF = REPO / "deploy" / "podman" / "containers.conf"
#: The image's unprivileged user (Dockerfile), who must own the data folder.
UID = 10001
PASSWORD = "smoke-test-password"
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


def podman(*args: str, stdin: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def image() -> str:
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (apt-get install podman runc debootstrap)")
    if os.geteuid() != 0:
        missing("building the base image needs root (debootstrap)")
    base = subprocess.run(
        [str(REPO / "deploy" / "build-base.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        check=False,
    )
    assert base.returncode == 0, base.stderr[-4000:]
    # One fixed tag, kept after the test: removing it would drop the final stage's layers,
    # and the next build would copy the environments again (most of a cached build's time).
    tag = "localhost/spindle:smoke-test"
    podman(
        "build",
        "--format",
        "docker",  # keeps HEALTHCHECK (the OCI format has none)
        "--build-arg",
        f"BASE_IMAGE={base.stdout.strip()}",
        *uv_cache(),
        "--tag",
        tag,
        str(REPO),
        timeout=1500,
    )
    return tag


def uv_cache() -> list[str]:
    """The build options that mount the machine's uv cache into the build (docs/deploy.md),
    or none when there is no uv here (the build then downloads every wheel)."""
    uv = shutil.which("uv")
    # .ci/run may have installed uv with pip, where only `python3 -m uv` finds it.
    command = [uv] if uv else ["python3", "-m", "uv"]
    found = subprocess.run([*command, "cache", "dir"], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        return []
    folder = Path(found.stdout.strip())
    folder.mkdir(parents=True, exist_ok=True)
    return ["--volume", f"{folder}:/root/.cache/uv", "--build-arg", "UV_NO_CACHE=0"]


@contextlib.contextmanager
def container(image: str, name: str, data: Path, *args: str, port: int) -> Iterator[None]:
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--volume",
        f"{data}:/data",
        "--env",
        "SPINDLE_AUTH=basic",
        "--env",
        "SPINDLE_HOST=127.0.0.1",
        "--env",
        f"SPINDLE_PORT={port}",
        "--env",
        "SPINDLE_POLL_INTERVAL=0.5",
        "--env",
        "SPINDLE_SNAKEMAKE_CORES=1",
        image,
        *args,
    )
    try:
        yield
    finally:
        logs = podman("logs", name)
        # SIGTERM first: both processes stop on it within the grace period.
        podman("stop", "--time", "30", name, timeout=90)
        state = podman("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        podman("rm", name)
        print(f"--- {name} (exit {state})\n{logs[-3000:]}")


def wait_healthy(name: str, seconds: float = 300) -> None:
    """The image's own HEALTHCHECK (the readiness endpoint) passes."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["podman", "healthcheck", "run", name],
            capture_output=True,
            text=True,
            env={**os.environ, "CONTAINERS_CONF": str(CONF)},
            check=False,
        )
        if result.returncode == 0:
            return
        time.sleep(2)
    raise AssertionError(f"{name} not healthy after {seconds}s: {podman('logs', name)[-3000:]}")


def run_to_end(client: httpx.Client, language: str, name: str) -> str:
    data, files = example_form(language, name)
    r = client.post(f"{API_PREFIX}/runs", data=data, files=files)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = str(client.get(f"{API_PREFIX}/runs/{run_id}/status").json()["state"])
        if state in TERMINAL:
            return state
        time.sleep(1)
    raise AssertionError(f"{language}/{name} did not end")


def test_the_image_runs_cwl_snakemake_and_wdl_examples_to_complete(
    image: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, UID, UID)
    suffix = uuid.uuid4().hex[:8]
    port = free_port()

    # The first start: migrate, then the first user, from stdin as docs/deploy.md says.
    podman("run", "--rm", "--volume", f"{data}:/data", image, "db", "upgrade")
    podman(
        "run", "--rm", "--interactive", "--volume", f"{data}:/data", image,
        "users", "add", "admin", "--admin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip

    api, worker = f"spindle-api-{suffix}", f"spindle-worker-{suffix}"
    with (
        container(image, api, data, "serve", "--no-worker", port=port),
        container(image, worker, data, "worker", port=port),
    ):
        wait_healthy(api)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", auth=("admin", PASSWORD), timeout=30
        ) as client:
            info = client.get(f"{API_PREFIX}/service-info")
            assert info.status_code == 200
            assert {"CWL", "SMK", "WDL"} <= set(info.json()["workflow_type_versions"])
            assert run_to_end(client, "cwl", "wordcount") == "COMPLETE"
            assert run_to_end(client, "snakemake", "wordcount") == "COMPLETE"
            assert run_to_end(client, "wdl", "scatter") == "COMPLETE"
            # Without credentials the API refuses (auth is on, not `none`).
            assert httpx.get(f"http://127.0.0.1:{port}{API_PREFIX}/runs").status_code == 401
    # Runs were written by the unprivileged user, not root. lstat: miniwdl links its inputs
    # by their path inside the container, which is not there on this side.
    owners = {p.lstat().st_uid for p in (data / "runs").rglob("*")}
    assert owners == {UID}
