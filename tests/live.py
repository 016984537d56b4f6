"""A real Spindle server for tests that talk HTTP to it (the client and the CLI).

``live_server`` starts ``python -m spindle serve`` on a free loopback port with its own data
folder and the repository's engines, waits until service-info answers, yields the base URL,
and at the end cancels whatever still runs and stops the server with SIGTERM. Import it
into a test module (``from tests.live import live_server``); it is module-scoped, so each
module shares one server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spindle.client import API_PREFIX
from tests.support import REPO, require_engines, seed_engine_versions

#: Seconds the server may take to answer service-info (engine detection starts Snakemake
#: and cwltool once each, which is slow on a cold cache).
START_TIMEOUT = 120.0
#: Seconds SIGTERM has before SIGKILL (uvicorn's graceful shutdown is 5 s).
STOP_TIMEOUT = 20.0
#: Seconds teardown waits for cancelled runs to end before stopping the server.
CANCEL_TIMEOUT = 20.0
TERMINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _server_env(data_dir: Path, workdir: Path) -> dict[str, str]:
    """The caller's environment minus any SPINDLE_* (a CI job's database URL must not leak
    in), plus quick timings for tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINDLE_")}
    env.update(
        SPINDLE_DATA_DIR=str(data_dir),
        SPINDLE_ENGINES_DIR=str(REPO / ".engines"),
        SPINDLE_SNAKEMAKE_CORES="1",
        SPINDLE_LEASE_SECONDS="5",
        SPINDLE_MONITOR_INTERVAL="0.1",
        SPINDLE_POLL_INTERVAL="0.5",
        SPINDLE_CANCEL_GRACE_SECONDS="3",
        SPINDLE_CONFIG=str(workdir / "absent.toml"),
    )
    return env


def _log_tail(path: Path, limit: int = 6000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-limit:] or "(empty)"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"spindle serve exited with code {proc.returncode} before answering; "
                f"its log:\n{_log_tail(log)}",
                pytrace=False,
            )
        with contextlib.suppress(httpx.TransportError):
            # (ready: the database answers and every engine has been checked)
            if httpx.get(f"{url}{API_PREFIX}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(
        f"spindle serve was not ready at {url}{API_PREFIX}/ready within "
        f"{START_TIMEOUT:.0f} s; its log:\n{_log_tail(log)}",
        pytrace=False,
    )


def _cancel_active(url: str, headers: dict[str, str]) -> None:
    """Cancel every run that has not ended, and give them a moment to stop, so no engine
    process (a 300 s sleep) outlives the test session."""
    with contextlib.suppress(httpx.HTTPError, KeyError), httpx.Client(headers=headers) as http:
        runs = http.get(f"{url}{API_PREFIX}/runs", params={"page_size": 1000}, timeout=10)
        active = [r["run_id"] for r in runs.json()["runs"] if r.get("state") not in TERMINAL]
        for run_id in active:
            http.post(f"{url}{API_PREFIX}/runs/{run_id}/cancel", timeout=10)
        deadline = time.monotonic() + CANCEL_TIMEOUT
        while active and time.monotonic() < deadline:
            time.sleep(0.2)
            active = [
                r
                for r in active
                if http.get(f"{url}{API_PREFIX}/runs/{r}/status", timeout=10).json()["state"]
                not in TERMINAL
            ]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_server(
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    worker: bool = True,
) -> Iterator[str]:
    """A real ``spindle serve`` with an embedded worker, SQLite and the local backend, its
    data in ``workdir/data`` and its log in ``workdir/server.log``; yields the base URL.
    ``env`` adds settings (``SPINDLE_AUTH``, ...); ``headers`` are the credentials teardown
    uses to cancel what still runs; ``worker=False`` serves the API alone (runs stay
    QUEUED)."""
    require_engines()
    data_dir = workdir / "data"
    seed_engine_versions(data_dir)
    log = workdir / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spindle", "serve", "--port", str(port)]
            + ([] if worker else ["--no-worker"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**_server_env(data_dir, workdir), **(env or {})},
            cwd=workdir,
        )
    try:
        _wait_ready(proc, url, log)
        yield url
        if proc.poll() is not None:
            pytest.fail(
                f"spindle serve died during the tests (code {proc.returncode}); its log:\n"
                f"{_log_tail(log)}",
                pytrace=False,
            )
    finally:
        if proc.poll() is None:
            _cancel_active(url, headers or {})
        _stop(proc)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:<port>``) of a real ``spindle serve`` with an embedded
    worker, SQLite and the local backend (no sign-in: ``auth = "none"``)."""
    with running_server(tmp_path_factory.mktemp("live-server")) as url:
        yield url
