"""Real runs over HTTP on the test SLURM cluster (tests/hpc.py): a live ``spindle serve`` with
two compute environments on it, ``hpc`` (over SSH) and ``cluster`` (the same cluster's
commands on this host). Snakemake and CWL workflows complete with their outputs listed and
downloadable, failures keep their exit code, cancelling shows in SLURM, a Spindle killed
with SIGKILL finishes its run after a restart without a second job, an SSH connection that
drops mid-run is retried (and said so in system_logs), and Snakemake spreads its jobs over
the cluster with its own SLURM executor when the run asks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import example_form
from tests.hpc import Cluster, cluster
from tests.servers import WES, Server
from tests.support import EXAMPLES

__all__ = ["cluster"]  # the session fixture, imported to be found here

pytestmark = [pytest.mark.slurm, pytest.mark.engine, pytest.mark.slow]

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"}
#: Seconds a run on the cluster may take (the machine is shared and slow).
RUN_TIMEOUT = 240.0


def server_env(cluster: Cluster) -> dict[str, str]:
    envs = {"hpc": cluster.env_config(ssh=True), "cluster": cluster.env_config(ssh=False)}
    return {
        "SPINDLE_COMPUTE_ENVS": json.dumps(envs),
        "SLURM_CONF": str(cluster.conf),  # for the "cluster" environment's local commands
        "SPINDLE_MAX_CONCURRENT_RUNS": "4",
        "SPINDLE_CONFIG": "absent.toml",
    }


def start_server(cluster: Cluster, data: Path, log: Path) -> Server:
    server = Server(data, log, env=server_env(cluster))
    server.start()
    return server


@pytest.fixture(scope="module")
def server(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, snakemake_cwltool: None
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("slurm-server")
    s = start_server(cluster, folder / "data", folder / "server.log")
    try:
        yield s
    finally:
        _cancel_all(s.url)
        s.stop()


@pytest.fixture(scope="module")
def snakemake_cwltool() -> None:
    from tests.support import REPO, missing

    for name in ("snakemake", "cwltool", "miniwdl"):
        if not (REPO / ".engines" / name / "bin" / name).exists():
            missing(f"{name} is not installed in .engines (run `make engines`)")


def _cancel_all(url: str) -> None:
    try:
        runs = httpx.get(f"{url}{WES}/runs", params={"page_size": 1000}, timeout=10).json()
    except httpx.HTTPError:
        return
    active = [r["run_id"] for r in runs["runs"] if r["state"] not in FINAL]
    for run_id in active:
        httpx.post(f"{url}{WES}/runs/{run_id}/cancel", timeout=10)
    for run_id in active:
        wait(url, run_id, FINAL, seconds=60)


def submit(url: str, language: str, name: str, env: str = "hpc", **kw: Any) -> str:
    parameters = {"compute_env": env, **kw.pop("engine_parameters", {})}
    data, files = example_form(language, name, engine_parameters=parameters, **kw)
    r = httpx.post(f"{url}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id: str = r.json()["run_id"]
    return run_id


def wait(url: str, run_id: str, states: set[str], seconds: float = RUN_TIMEOUT) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}{WES}/runs/{run_id}", timeout=10).json()
        if body["state"] in states:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{run_id} stayed {body.get('state')}, wanted {states}: {body}")


def wait_task(url: str, run_id: str, seconds: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{url}{WES}/runs/{run_id}/tasks", timeout=10).json()["task_logs"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"{run_id}: no task appeared")


def outputs_by_name(body: dict[str, Any]) -> dict[str, bytes]:
    urls: dict[str, str] = {}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if value.get("class") == "File":
                urls[str(value["basename"])] = str(value["location"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(body["outputs"])
    found = {}
    for name, url in urls.items():
        r = httpx.get(url, timeout=30)
        assert r.status_code == 200, (url, r.text)
        found[name] = r.content
    return found


def test_service_info_lists_the_environments(server: Server) -> None:
    info = httpx.get(f"{server.url}{WES}/service-info", timeout=10).json()
    envs = {e["name"]: e for e in info["compute_environments"]}
    assert envs["local"]["type"] == "local"
    assert envs["hpc"] == {
        "name": "hpc",
        "type": "slurm",
        "description": "the test cluster",
        "containers": "none",
    }
    assert envs["cluster"]["type"] == "slurm"
    assert info["tags"]["compute_environments"] == "local,hpc,cluster"


def test_snakemake_completes_over_ssh_with_outputs_fetched_on_demand(
    server: Server, cluster: Cluster
) -> None:
    run_id = submit(server.url, "snakemake", "wordcount")
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "COMPLETE", body
    assert body["run_log"]["exit_code"] == 0
    assert body["run_log"]["cmd"][0] == cluster.env_config()["engines"]["snakemake"]
    # the run ran in its folder on the cluster; the local folder only has what was fetched
    remote = cluster.work_root / run_id
    assert (remote / "work" / "results" / "summary.txt").exists()
    local = server.data_dir / "runs" / run_id
    assert not (local / "work" / "results").exists()
    stderr = httpx.get(body["run_log"]["stderr"], timeout=10).text
    assert "steps (100%) done" in stderr

    paths = [f["path"] for f in body["outputs"]["files"]]
    assert paths == [
        "results/alpha.count",
        "results/beta.count",
        "results/gamma.count",
        "results/summary.txt",
    ]
    outputs = outputs_by_name(body)
    assert outputs["alpha.count"] == b"4\n"
    assert b"results/gamma.count:3" in outputs["summary.txt"]
    assert (local / "work" / "results" / "summary.txt").exists()  # fetched when asked

    tasks = httpx.get(f"{server.url}{WES}/runs/{run_id}/tasks", timeout=10).json()["task_logs"]
    assert sorted(t["name"] for t in tasks) == [
        "all",
        "count[sample=alpha]",
        "count[sample=beta]",
        "count[sample=gamma]",
        "summary",
    ]
    assert all(t["exit_code"] == 0 for t in tasks)
    summary = next(t for t in tasks if t["name"] == "summary")
    assert "Hello from summary" in httpx.get(summary["stdout"], timeout=10).text
    assert [state for _, state in cluster.jobs_named(f"spindle-{run_id}")] == ["COMPLETED"]


@pytest.mark.parametrize("env", ["hpc", "cluster"])
def test_cwl_completes_with_its_output_object(server: Server, env: str) -> None:
    run_id = submit(server.url, "cwl", "wordcount", env=env)
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "COMPLETE", body
    assert set(body["outputs"]) == {"counts", "shouted"}
    assert body["outputs"]["shouted"]["location"].startswith(f"{server.url}{WES}/runs/{run_id}/")
    poem = (EXAMPLES / "cwl" / "wordcount" / "poem.txt").read_text()
    assert outputs_by_name(body)["shouted.txt"].decode() == poem.upper()
    tasks = httpx.get(f"{server.url}{WES}/runs/{run_id}/tasks", timeout=10).json()["task_logs"]
    assert [t["name"] for t in tasks] == ["shout", "count"]


def test_wdl_completes_over_ssh_with_its_calls_and_outputs(server: Server) -> None:
    """miniwdl in the cluster's run folder: its paths are the cluster's, yet the calls and the
    outputs (its stdout, copied back; files fetched on demand) are found."""
    run_id = submit(server.url, "wdl", "scatter")
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "COMPLETE", body
    assert body["outputs"]["words"] == 9
    assert outputs_by_name(body)["total.txt"].decode().strip() == "9"
    tasks = httpx.get(f"{server.url}{WES}/runs/{run_id}/tasks", timeout=10).json()["task_logs"]
    assert sorted(t["name"] for t in tasks) == ["count", "count", "count", "split_lines", "total"]
    assert all(t["exit_code"] == 0 for t in tasks)


@pytest.mark.parametrize(("language", "code"), [("snakemake", 1), ("cwl", 1)])
def test_a_failing_workflow_is_executor_error_with_its_exit_code(
    server: Server, cluster: Cluster, language: str, code: int
) -> None:
    run_id = submit(server.url, language, "fail")
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "EXECUTOR_ERROR", body
    assert body["run_log"]["exit_code"] == code
    assert [state for _, state in cluster.jobs_named(f"spindle-{run_id}")] == ["FAILED"]


def test_cancel_shows_cancelled_in_slurm(server: Server, cluster: Cluster) -> None:
    run_id = submit(server.url, "snakemake", "sleep", params={"seconds": 300})
    wait(server.url, run_id, {"RUNNING"})
    wait_task(server.url, run_id)
    r = httpx.post(f"{server.url}{WES}/runs/{run_id}/cancel", timeout=10)
    assert r.status_code == 200
    body = wait(server.url, run_id, FINAL, seconds=120)
    assert body["state"] == "CANCELED"
    assert [state for _, state in cluster.jobs_named(f"spindle-{run_id}")] == ["CANCELLED"]


def test_an_ssh_drop_mid_run_is_retried_and_noted(server: Server, cluster: Cluster) -> None:
    run_id = submit(server.url, "snakemake", "sleep", params={"seconds": 8})
    wait(server.url, run_id, {"RUNNING"})
    cluster.stop_sshd()
    try:
        time.sleep(3)  # several polls fail meanwhile
        state = httpx.get(f"{server.url}{WES}/runs/{run_id}/status", timeout=10).json()["state"]
        assert state == "RUNNING"  # the API answers, and the run keeps its state
    finally:
        cluster.start_sshd()
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "COMPLETE", body
    logs = body["run_log"]["system_logs"]
    assert any("cannot follow the run in hpc" in line and "retrying" in line for line in logs), logs
    assert any("reached hpc again" in line for line in logs), logs
    assert len(cluster.jobs_named(f"spindle-{run_id}")) == 1


def test_a_submission_while_ssh_is_down_is_retried_and_downloads_wait_for_it(
    server: Server, cluster: Cluster
) -> None:
    cluster.stop_sshd()
    try:
        run_id = submit(server.url, "snakemake", "wordcount")
        deadline = time.monotonic() + 60
        logs: list[str] = []
        while time.monotonic() < deadline and not logs:
            body = httpx.get(f"{server.url}{WES}/runs/{run_id}", timeout=10).json()
            logs = body["run_log"].get("system_logs") or []
            time.sleep(0.3)
        assert body["state"] == "INITIALIZING"
        assert logs[0].startswith("submitting to hpc failed: cannot connect to ssh://"), logs
        assert "retrying" in logs[0]
    finally:
        cluster.start_sshd()
    body = wait(server.url, run_id, FINAL)
    assert body["state"] == "COMPLETE", body
    assert any(
        line.startswith("submitting to hpc succeeded after")
        for line in body["run_log"]["system_logs"]
    )
    assert len(cluster.jobs_named(f"spindle-{run_id}")) == 1

    # a download needs the cluster: 503 while it cannot be reached
    [summary] = [f for f in body["outputs"]["files"] if f["basename"] == "summary.txt"]
    cluster.stop_sshd()
    try:
        r = httpx.get(summary["location"], timeout=60)
        assert r.status_code == 503
        assert r.json()["status_code"] == 503
        assert "ssh://" in r.json()["msg"]
    finally:
        cluster.start_sshd()
    r = httpx.get(summary["location"], timeout=60)
    assert r.status_code == 200
    assert b"results/gamma.count:3" in r.content


def test_snakemake_spreads_its_jobs_with_its_slurm_executor(
    server: Server, cluster: Cluster, tmp_path: Path
) -> None:
    snakefile = (
        "rule all:\n"
        '    input: "b.txt"\n'
        "rule a:\n"
        '    output: "a.txt"\n'
        '    shell: "echo $SLURM_JOB_ID > {output}"\n'
        "rule b:\n"
        '    input: "a.txt"\n'
        '    output: "b.txt"\n'
        '    shell: "cat {input} > {output}; echo $SLURM_JOB_ID >> {output}"\n'
    )
    data = {
        "workflow_type": "SMK",
        "workflow_type_version": "9",
        "workflow_url": "Snakefile",
        "workflow_engine_parameters": json.dumps(
            {"compute_env": "hpc", "executor": "slurm", "jobs": "2"}
        ),
    }
    files = [("workflow_attachment", ("Snakefile", snakefile.encode()))]
    r = httpx.post(f"{server.url}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    body = wait(server.url, run_id, FINAL, seconds=400)
    assert body["state"] == "COMPLETE", body
    assert "--executor" in body["run_log"]["cmd"]
    [(head, _)] = cluster.jobs_named(f"spindle-{run_id}")
    job_a, job_b = outputs_by_name(body)["b.txt"].decode().split()
    # each rule ran as a SLURM job of its own, not in the head job
    assert len({head, job_a, job_b}) == 3
    tasks = httpx.get(f"{server.url}{WES}/runs/{run_id}/tasks", timeout=10).json()["task_logs"]
    assert sorted(t["name"] for t in tasks) == ["a", "all", "b"]


def test_the_slurm_executor_needs_a_slurm_environment(server: Server) -> None:
    data, files = example_form("snakemake", "wordcount", engine_parameters={"executor": "slurm"})
    r = httpx.post(f"{server.url}{WES}/runs", data=data, files=files, timeout=30)
    assert r.status_code == 400
    assert r.json()["msg"].startswith("workflow_engine_parameters: executor 'slurm' needs")


def test_killed_spindle_restarts_and_the_run_completes_with_one_job(
    cluster: Cluster, tmp_path: Path, snakemake_cwltool: None
) -> None:
    data = tmp_path / "data"
    first = start_server(cluster, data, tmp_path / "server.log")
    second: Server | None = None
    try:
        run_id = submit(first.url, "snakemake", "sleep", params={"seconds": 8})
        wait(first.url, run_id, {"RUNNING"})
        wait_task(first.url, run_id)
        first.kill9()
        [(job_id, state)] = cluster.jobs_named(f"spindle-{run_id}")
        assert state == "RUNNING"  # the job outlived Spindle

        second = start_server(cluster, data, tmp_path / "server.log")
        body = wait(second.url, run_id, FINAL)
        assert body["state"] == "COMPLETE", body
        assert cluster.jobs_named(f"spindle-{run_id}") == [(job_id, "COMPLETED")]
        events = (data / "runs" / run_id / "logs" / "snakemake-events.jsonl").read_text()
        started = [
            e for e in map(json.loads, events.splitlines()) if e["event"] == "workflow_started"
        ]
        assert len(started) == 1
        tasks = httpx.get(f"{second.url}{WES}/runs/{run_id}/tasks", timeout=10).json()
        assert [t["name"] for t in tasks["task_logs"]].count("nap") == 1
    finally:
        first.stop()
        if second is not None:
            _cancel_all(second.url)
            second.stop()
