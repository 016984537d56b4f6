"""Spindle processes for tests that need real, killable servers and workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support import REPO, require_engines, seed_engine_versions

WES = "/ga4gh/wes/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """``spindle serve`` (or, with ``command=["worker"]``, a worker alone) as a process."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        fakes: bool = False,
    ) -> None:
        self.data_dir = data_dir
        #: with the fake engine and backend of ``spindle.testing`` (``tests.fake_spindle``)
        self.module = "tests.fake_spindle" if fakes else "spindle"
        self.log = log
        self.command = command or ["serve"]
        self.extra_env = env or {}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        require_engines()
        seed_engine_versions(self.data_dir)
        env = {
            **os.environ,
            "SPINDLE_DATA_DIR": str(self.data_dir),
            "SPINDLE_PORT": str(self.port),
            "SPINDLE_ENGINES_DIR": str(REPO / ".engines"),
            "SPINDLE_LEASE_SECONDS": "2",
            "SPINDLE_MONITOR_INTERVAL": "0.1",
            "SPINDLE_SNAKEMAKE_CORES": "1",
            **self.extra_env,
        }
        if self.module != "spindle":  # ``tests`` importable from the data folder's parent
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.command],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir.parent,
            )
        if self.command[0] != "serve":
            return
        # importing the server takes a minute on a 2-core machine other suites load (see
        # docs/benchmarks.md, start-up); a server that fails exits and is seen at once
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}{WES}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"spindle serve did not start:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def fleet(
    folder: Path, env: dict[str, str], workers: int = 2, *, fakes: bool = False
) -> Iterator[tuple[Server, list[Server]]]:
    """``spindle serve --no-worker`` and ``workers`` ``spindle worker`` processes sharing one
    data folder (under ``folder``) and the database ``env`` names; all stopped at the end."""
    data = folder / "data"
    api = Server(data, folder / "api.log", command=["serve", "--no-worker"], env=env, fakes=fakes)
    started = [
        Server(data, folder / f"worker{i}.log", command=["worker"], env=env, fakes=fakes)
        for i in range(workers)
    ]
    try:
        api.start()
        for w in started:
            w.start()
        yield api, started
    finally:
        for s in (api, *started):
            s.stop()
