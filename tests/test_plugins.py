"""A third-party engine and a third-party backend, installed the way a plugin distribution
is (entry points in a ``.dist-info`` on ``sys.path``), take a run end to end through the API
with no edit to Spindle: the ``ECHO`` engine's run on the ``tick`` backend, which starts the
launch itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import REPO

PLUGIN = """
from __future__ import annotations

import asyncio
import json
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from spindle.backends.base import Backend, Handle, Status
from spindle.compute import EnvSettings
from spindle.domain import State, Task
from spindle.engines.base import Engine, EngineInfo, EngineSettings
from spindle.execution import Launch, Site


class EchoSettings(EngineSettings):
    greeting: str = "hello"


class EchoEngine(Engine):
    name = "echoer"
    workflow_type = "ECHO"
    settings_model = EchoSettings
    workflow_files = ("*.echo",)

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @classmethod
    def from_settings(cls, settings, own):
        return cls(own.greeting)

    async def detect(self):
        return EngineInfo(self.name, "0.1", "ECHO", ["1"])

    def prepare(self, run, rundir, site=None):
        site = site or Site.local(rundir)
        out = site.path(rundir, rundir.outputs.absolute() / "greeting.txt")
        return Launch(["/bin/sh", "-c", f"echo {self.greeting} > {out}"], cwd=site.root)

    def progress(self, rundir):
        done = (rundir.outputs / "greeting.txt").exists()
        return [Task("1", "greet", State.COMPLETE if done else State.RUNNING)]

    def outputs(self, rundir, files=None):
        return {"greeting": (rundir.outputs / "greeting.txt").read_text().strip()}


class TickEnv(EnvSettings):
    type: Literal["tick"]
    shell: str = "/bin/sh"


class TickBackend(Backend):
    name = "tick"
    settings_model = TickEnv

    def __init__(self, env_name: str) -> None:
        self.env_name = env_name

    @classmethod
    def from_settings(cls, env_name, env, settings):
        return cls(env_name)

    async def submit(self, job):
        proc = await asyncio.create_subprocess_exec(*job.launch.argv, cwd=str(job.launch.cwd))
        code = await proc.wait()
        return Handle(job.run_id, {"code": code})

    async def poll(self, handles):
        return {
            h.run_id: Status(State.COMPLETE if h.data["code"] == 0 else State.EXECUTOR_ERROR,
                             exit_code=h.data["code"])
            for h in handles
        }

    async def cancel(self, handle):
        return None
"""

DRIVER = """
import asyncio, json, sys, time
import httpx
from spindle.app import create_app
from spindle.config import load_settings
from spindle.engines.registry import load_catalog

WES = "/ga4gh/wes/v1"

async def main(data_dir):
    settings = load_settings(
        data_dir=data_dir,
        engines_dir=data_dir + "/no-engines",
        snakemake="/nonexistent/snakemake",
        cwltool="/nonexistent/cwltool",
        monitor_interval=0.05,
        compute_envs={"ticker": {"type": "tick", "description": "third-party"}},
        engines={"echoer": {"greeting": "bonjour"}},
    )
    app = create_app(settings, catalog=await load_catalog(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            info = (await c.get(WES + "/service-info")).json()
            r = await c.post(WES + "/runs", data={
                "workflow_type": "ECHO", "workflow_type_version": "1",
                "workflow_url": "hello.echo",
                "workflow_engine_parameters": json.dumps({"compute_env": "ticker"}),
            }, files=[("workflow_attachment", ("hello.echo", b"hi"))])
            assert r.status_code == 200, r.text
            run_id = r.json()["run_id"]
            for _ in range(400):
                body = (await c.get(WES + "/runs/" + run_id)).json()
                if body["state"] not in ("QUEUED", "INITIALIZING", "RUNNING"):
                    break
                await asyncio.sleep(0.05)
            print(json.dumps({"types": info["workflow_type_versions"], "run": body}))

asyncio.run(main(sys.argv[1]))
"""


def install_plugin(site: Path) -> None:
    """A distribution ``spindle-echo`` as an installer leaves it: the module and its
    ``.dist-info`` with the entry points."""
    (site / "spindle_echo.py").write_text(PLUGIN)
    info = site / "spindle_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spindle-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
            [spindle.engines]
            echoer = spindle_echo:EchoEngine

            [spindle.backends]
            tick = spindle_echo:TickBackend
            """)
    )


def test_a_third_party_engine_and_backend_run_a_workflow_through_the_api(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    install_plugin(site)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run(
        [sys.executable, str(driver), str(tmp_path / "data")],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "ECHO" in result["types"]
    run = result["run"]
    assert run["state"] == "COMPLETE", run
    assert run["outputs"] == {"greeting": "bonjour"}
    assert run["run_log"]["exit_code"] == 0


def test_the_cli_infers_workflow_types_from_the_installed_engines() -> None:
    from spindle.cli.submit import _infer_type
    from spindle.testing import plugins

    assert _infer_type("Snakefile") == "SMK"
    assert _infer_type("main.CWL") == "CWL"
    with plugins():
        assert _infer_type("flow.fake") == "FAKE"
