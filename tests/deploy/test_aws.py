"""The AWS CDK app's own tests (deploy/aws/tests: aws_cdk.assertions, then cfn-lint on the
synthesized template), run in that folder's own virtual environment from its pinned
requirements.txt, never Spindle's: made here once when missing or out of date (a stamp
beside it, as `make engines` does), then its pytest runs. aws-cdk-lib runs its constructs
in Node.js (jsii), so node must be on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO, missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

AWS = REPO / "deploy" / "aws"
VENV = AWS / ".venv"


def uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    import uv as uv_module  # the one pip put beside Python (Makefile's fallback)

    return str(uv_module.find_uv_bin())


def ensure_venv() -> None:
    requirements = AWS / "requirements.txt"
    stamp = VENV / ".stamp"
    if stamp.exists() and stamp.read_bytes() == requirements.read_bytes():
        return
    exe = uv()
    subprocess.run(
        [exe, "venv", "--quiet", "--allow-existing", "--python", "3.11", str(VENV)], check=True
    )
    subprocess.run(
        [
            exe,
            "pip",
            "sync",
            "--quiet",
            "--python",
            str(VENV / "bin" / "python"),
            str(requirements),
        ],
        check=True,
    )
    stamp.write_bytes(requirements.read_bytes())


def test_the_cdk_app_synthesizes_with_the_promised_properties_and_passes_cfn_lint() -> None:
    if shutil.which("node") is None:
        missing("node is not installed (aws-cdk-lib needs Node.js)")
    ensure_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST_"))}
    env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] = "1"
    result = subprocess.run(
        [str(VENV / "bin" / "pytest"), "-q", "tests"],
        cwd=AWS,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stdout.write(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
