"""A real S3 server on loopback for the tests: moto's ``moto_server`` (from the dev
dependency ``moto[server]``), started once per session by :func:`s3_server` (import it into a
test module), stopped at the end. Without it a test skips locally and fails under CI=true.

:func:`aws` points the standard AWS credential chain at made-up credentials for the test
(environment variables only: no shared config or credentials file of the machine is read),
as an operator's environment would hold real ones; Spindle's settings never carry them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.live import free_port
from tests.support import missing

#: Seconds moto_server may take to answer (it imports every service model on start).
START_TIMEOUT = 60.0
REGION = "eu-west-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )

    def bucket(self) -> str:
        """A new, empty bucket of this test's own."""
        name = f"spindle-test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        missing(f"moto_server is not installed at {exe} (uv sync: moto[server] is a dev tool)")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                missing(f"moto_server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline:
                missing(f"moto_server did not answer on {endpoint} in {START_TIMEOUT:g} s")
            time.sleep(0.2)
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Made-up credentials through the environment (the AWS chain's first link)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
