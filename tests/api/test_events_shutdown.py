"""A clean stop of ``spindle serve`` ends the open event streams properly: the client reads
the body to its end, instead of "peer closed connection without sending complete message
body". A real server process (no engine needed: none is installed for it)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.live import _server_env, _wait_ready, free_port

API = "/ga4gh/wes/v1"


def test_sigterm_ends_open_event_streams_cleanly(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **_server_env(tmp_path / "data", tmp_path),
        "SPINDLE_SNAKEMAKE": str(tmp_path / "no-snakemake"),
        "SPINDLE_CWLTOOL": str(tmp_path / "no-cwltool"),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spindle", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        _wait_ready(proc, url, log)
        with httpx.Client(timeout=30) as client, client.stream("GET", f"{url}{API}/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            proc.send_signal(signal.SIGTERM)
            body = b"".join(r.iter_raw())  # RemoteProtocolError if the body is cut
        assert b"Traceback" not in body
        # (uvicorn exits by the signal once it has shut down cleanly)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(errors="replace")
