"""spindle.client against a real running Spindle (tests.live): real Snakemake and cwltool
runs, real HTTP, nothing mocked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from spindle.client import (
    SpindleClient,
    SpindleClientError,
    SpindleConnectionError,
    folder_attachments,
)
from spindle.domain import State
from spindle.models import wes
from tests.live import free_port, live_server
from tests.support import EXAMPLES

__all__ = ["live_server"]  # the fixture, imported so pytest finds it here

#: Seconds a small example may take from submit to its end.
RUN_TIMEOUT = 180


async def _submit_example(
    client: SpindleClient,
    folder: Path,
    workflow: str,
    workflow_type: str,
    version: str,
    params: dict[str, Any] | None = None,
    **kwargs: Any,
) -> str:
    return await client.submit(
        workflow,
        workflow_type=workflow_type,
        workflow_type_version=version,
        attachments=folder_attachments(folder),
        workflow_params=params,
        **kwargs,
    )


async def _wait(client: SpindleClient, run_id: str) -> wes.RunLog:
    async with asyncio.timeout(RUN_TIMEOUT):
        return await client.wait(run_id, poll=0.2)


async def _wait_for_state(client: SpindleClient, run_id: str, state: State) -> None:
    async with asyncio.timeout(RUN_TIMEOUT):
        while True:
            if (await client.status(run_id)).state is state:
                return
            await asyncio.sleep(0.1)


async def _wait_for_log(client: SpindleClient, run_id: str, text: bytes) -> None:
    seen, offset = b"", 0
    async with asyncio.timeout(RUN_TIMEOUT):
        while True:
            chunk, offset = await client.read_log(run_id, "stdout", offset)
            seen += chunk
            if text in seen:
                return
            await asyncio.sleep(0.1)


def _file_locations(outputs: Any) -> dict[str, str]:
    """basename -> download URL of every File in an output object."""
    found: dict[str, str] = {}
    if isinstance(outputs, dict):
        if outputs.get("class") == "File":
            found[outputs["basename"]] = outputs["location"]
        else:
            for value in outputs.values():
                found |= _file_locations(value)
    elif isinstance(outputs, list):
        for value in outputs:
            found |= _file_locations(value)
    return found


async def test_service_info_lists_both_workflow_types(live_server: str) -> None:
    async with SpindleClient(live_server) as client:
        info = await client.service_info()
    assert info.supported_wes_versions == ["1.1.0"]
    assert {"SMK", "CWL"} <= set(info.workflow_type_versions)


@pytest.mark.engine
async def test_snakemake_wordcount_runs_to_complete(live_server: str, tmp_path: Path) -> None:
    folder = EXAMPLES / "snakemake" / "wordcount"
    params = json.loads((folder / "params.json").read_text())
    async with SpindleClient(live_server) as client:
        # rules/count.smk travels as a subfolder: the Snakefile's include needs it there
        run_id = await _submit_example(
            client, folder, "Snakefile", "SMK", "9", params, tags={"suite": "client"}
        )
        run = await _wait(client, run_id)
        assert run.state is State.COMPLETE, run.run_log.system_logs
        assert run.request.tags == {"suite": "client"}
        assert run.request.workflow_params == params

        files = _file_locations(run.outputs)
        saved = await client.download(files["summary.txt"], tmp_path)
        assert saved == tmp_path / "summary.txt"
        lines = saved.read_text().splitlines()
        assert lines[0] == "sample\twords"
        assert "results/alpha.count:4" in lines
        assert "results/beta.count:2" in lines

        by_path = await client.download(run_id, tmp_path / "beta", path="work/results/beta.count")
        assert by_path.read_text().strip() == "2"

        tasks = [t async for t in client.iter_tasks(run_id, page_size=2)]
        names = {t.name for t in tasks}
        assert {"count[sample=alpha]", "summary"} <= names
        one = await client.get_task(run_id, tasks[0].id)
        assert one.id == tasks[0].id

        progress = await client.progress(run_id)
        assert progress.state is State.COMPLETE
        assert progress.done >= 4

        stdout, next_offset = await client.read_log(run_id, "stdout")
        assert b"counting alpha" in stdout
        assert next_offset == len(stdout)
        rest, after = await client.read_log(run_id, "stdout", next_offset)
        assert (rest, after) == (b"", next_offset)

        followed = b"".join([c async for c in client.follow_log(run_id, "stderr", poll=0.1)])
        assert b"summary of alpha beta gamma" in followed


@pytest.mark.engine
async def test_cwl_wordcount_runs_to_complete(live_server: str, tmp_path: Path) -> None:
    folder = EXAMPLES / "cwl" / "wordcount"
    params = json.loads((folder / "inputs.json").read_text())
    async with SpindleClient(live_server) as client:
        run_id = await _submit_example(client, folder, "workflow.cwl", "CWL", "v1.2", params)
        run = await _wait(client, run_id)
        assert run.state is State.COMPLETE, run.run_log.system_logs
        assert set(run.outputs) == {"shouted", "counts"}
        counts = await client.download(run.outputs["counts"]["location"], tmp_path)
        assert [int(n) for n in counts.read_text().split()] == [3, 9]
        shouted = await client.download(run.outputs["shouted"]["location"], tmp_path)
        assert shouted.read_text().startswith("THE QUICK BROWN FOX")
        tasks = (await client.list_tasks(run_id)).task_logs
        assert {t.name for t in tasks} >= {"shout", "count"}


@pytest.mark.engine
async def test_attachment_names_keep_folders_spaces_and_unicode(
    live_server: str, tmp_path: Path
) -> None:
    """The multipart encoder names each part by its relative path, byte for byte."""
    odd = tmp_path / "notes.txt"
    odd.write_text("ünïcode payload\n")
    workflow = EXAMPLES / "cwl" / "fail" / "workflow.cwl"
    name = "deep/dir with space/ñame 1.txt"
    async with SpindleClient(live_server) as client:
        run_id = await client.submit(
            "workflow.cwl",
            workflow_type="CWL",
            workflow_type_version="v1.2",
            attachments=[("workflow.cwl", workflow), (name, odd)],
        )
        copy = await client.download(run_id, tmp_path / "copy.txt", path=f"attachments/{name}")
        assert copy.read_text() == "ünïcode payload\n"
        await _wait(client, run_id)


@pytest.mark.engine
async def test_iter_runs_follows_page_tokens(live_server: str) -> None:
    workflow = EXAMPLES / "cwl" / "fail" / "workflow.cwl"
    async with SpindleClient(live_server) as client:
        ids = [
            await client.submit(
                "workflow.cwl",
                workflow_type="CWL",
                workflow_type_version="v1.2",
                attachments={"workflow.cwl": workflow},
            )
            for _ in range(2)
        ]
        first = await client.list_runs(page_size=1)
        assert len(first.runs) == 1
        assert first.next_page_token
        seen = [r.run_id async for r in client.iter_runs(page_size=1)]
        assert len(seen) == len(set(seen))
        assert seen.index(ids[1]) < seen.index(ids[0])  # newest first
        for run_id in ids:
            assert (await _wait(client, run_id)).state is State.EXECUTOR_ERROR


@pytest.mark.engine
@pytest.mark.slow
async def test_cancel_stops_a_long_run(live_server: str) -> None:
    folder = EXAMPLES / "snakemake" / "sleep"
    async with SpindleClient(live_server) as client:
        run_id = await _submit_example(client, folder, "Snakefile", "SMK", "9", {"seconds": 300})
        await _wait_for_state(client, run_id, State.RUNNING)
        await _wait_for_log(client, run_id, b"sleeping 300s")  # the job itself has started
        assert await client.cancel(run_id) == run_id
        run = await _wait(client, run_id)
        assert run.state is State.CANCELED
        # following the log of a cancelled run still comes to an end
        async with asyncio.timeout(30):
            chunks = [c async for c in client.follow_log(run_id, "stdout", poll=0.1)]
        assert b"sleeping 300s" in b"".join(chunks)


async def test_bad_workflow_type_is_a_400_naming_the_field(live_server: str) -> None:
    async with SpindleClient(live_server) as client:
        with pytest.raises(SpindleClientError) as err:
            await client.submit("Snakefile", workflow_type="XYZ", workflow_type_version="1")
    assert err.value.status_code == 400
    assert "workflow_type" in err.value.msg
    assert str(err.value) == err.value.msg


async def test_unknown_run_is_a_404(live_server: str) -> None:
    async with SpindleClient(live_server) as client:
        with pytest.raises(SpindleClientError) as err:
            await client.get_run("no-such-run")
    assert err.value.status_code == 404
    assert "no-such-run" in err.value.msg


async def test_missing_attachment_fails_before_sending(live_server: str, tmp_path: Path) -> None:
    async with SpindleClient(live_server) as client:
        with pytest.raises(FileNotFoundError, match="absent"):
            await client.submit(
                "Snakefile",
                workflow_type="SMK",
                workflow_type_version="9",
                attachments={"Snakefile": tmp_path / "absent"},
            )


async def test_unreachable_server_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with SpindleClient(url, timeout=5) as client:
        with pytest.raises(SpindleConnectionError) as err:
            await client.service_info()
    assert err.value.status_code is None
    assert f"{url}/ga4gh/wes/v1/service-info" in err.value.msg
    assert isinstance(err.value, SpindleClientError)


class Recorder:
    """A tiny real HTTP server on loopback that records each request's headers and answers
    with a fixed status and body: what the client sends, seen from the other end."""

    def __init__(self, status: str = "200 OK", body: bytes = b"payload") -> None:
        self.status = status
        self.body = body
        self.requests: list[dict[str, str]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Recorder:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        self.requests.append({k.lower(): v for k, v in headers.items()})
        writer.write(
            f"HTTP/1.1 {self.status}\r\nContent-Length: {len(self.body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + self.body
        )
        await writer.drain()
        writer.close()


async def test_token_goes_only_to_the_spindle_server(tmp_path: Path) -> None:
    async with (
        Recorder() as spindle,
        Recorder() as elsewhere,
        SpindleClient(spindle.url, token="t0ken") as client,
    ):
        await client.download(f"{spindle.url}/ga4gh/wes/v1/runs/r/files/a", tmp_path / "a")
        await client.download(f"{elsewhere.url}/signed/b", tmp_path / "b")
    assert spindle.requests[0]["authorization"] == "Bearer t0ken"
    assert "authorization" not in elsewhere.requests[0]
    assert (tmp_path / "a").read_bytes() == b"payload"


async def test_an_answer_that_is_not_an_error_response_is_quoted() -> None:
    async with (
        Recorder("502 Bad Gateway", b"<html>proxy down</html>") as proxy,
        SpindleClient(proxy.url) as client,
    ):
        with pytest.raises(SpindleClientError) as err:
            await client.status("r")
    assert err.value.status_code == 502
    assert err.value.msg == f"HTTP 502 from {proxy.url}/ga4gh/wes/v1/runs/r/status: " + (
        "<html>proxy down</html>"
    )


async def test_base_url_and_token_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with Recorder() as spindle:
        monkeypatch.setenv("SPINDLE_URL", f"{spindle.url}/ga4gh/wes/v1/")
        monkeypatch.setenv("SPINDLE_TOKEN", "from-env")
        async with SpindleClient() as client:
            assert client.api == f"{spindle.url}/ga4gh/wes/v1"
            assert client.base_url == spindle.url
            await client.download("r", tmp_path / "x", path="p")
    assert spindle.requests[0]["authorization"] == "Bearer from-env"
    monkeypatch.delenv("SPINDLE_URL")
    async with SpindleClient() as client:
        assert client.api == "http://127.0.0.1:8000/ga4gh/wes/v1"


def test_folder_attachments_skip_hidden_and_engine_state(tmp_path: Path) -> None:
    for rel in (
        "Snakefile",
        "rules/a.smk",
        ".hidden",
        ".git/config",
        ".snakemake/x",
        "__pycache__/y",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert [name for name, _ in folder_attachments(tmp_path)] == ["Snakefile", "rules/a.smk"]


def _basic_header(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No credentials in the environment; the config file (not written yet) is returned."""
    for name in ("SPINDLE_URL", "SPINDLE_TOKEN", "SPINDLE_USERNAME", "SPINDLE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    monkeypatch.setenv("SPINDLE_CLIENT_CONFIG", str(config))
    return config


async def test_credentials_from_the_config_file(no_credentials: Path, tmp_path: Path) -> None:
    async with Recorder() as spindle, Recorder() as other:
        await asyncio.to_thread(
            no_credentials.write_text, f'url = "{spindle.url}"\ntoken = "from-file"\n'
        )
        async with SpindleClient() as client:
            assert client.base_url == spindle.url
            await client.download("r", tmp_path / "a", path="p")
        # the file's token is for the file's server only
        async with SpindleClient(other.url) as client:
            await client.download("r", tmp_path / "b", path="p")
        await asyncio.to_thread(
            no_credentials.write_text, 'username = "alice"\npassword = "pa:ss ✓"\n'
        )
        async with SpindleClient(other.url) as client:
            await client.download("r", tmp_path / "c", path="p")
    assert spindle.requests[0]["authorization"] == "Bearer from-file"
    assert "authorization" not in other.requests[0]
    assert other.requests[1]["authorization"] == _basic_header("alice", "pa:ss ✓")


async def test_credentials_from_arguments_then_environment(
    no_credentials: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await asyncio.to_thread(no_credentials.write_text, 'token = "from-file"\n')
    monkeypatch.setenv("SPINDLE_USERNAME", "bob")
    monkeypatch.setenv("SPINDLE_PASSWORD", "env pass")
    async with Recorder() as spindle:
        async with SpindleClient(spindle.url) as client:
            await client.download("r", tmp_path / "a", path="p")
        async with SpindleClient(spindle.url, username="carol", password="arg") as client:
            await client.download("r", tmp_path / "b", path="p")
        async with SpindleClient(spindle.url, token="arg-token") as client:
            await client.download("r", tmp_path / "c", path="p")
    assert [r["authorization"] for r in spindle.requests] == [
        _basic_header("bob", "env pass"),
        _basic_header("carol", "arg"),
        "Bearer arg-token",
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('token = "unterminated', "is not valid TOML"),
        ('tokn = "secret-value"', "unknown keys ['tokn']"),
        ("token = 42", "token must be a string"),
    ],
)
def test_a_broken_config_file_is_named_not_quoted(
    no_credentials: Path, content: str, problem: str
) -> None:
    no_credentials.write_text(content)
    with pytest.raises(ValueError, match=r"config\.toml") as err:
        SpindleClient()
    assert problem in str(err.value)
    assert "secret-value" not in str(err.value)
    assert "unterminated" not in str(err.value)


# --- run groups ----------------------------------------------------------------------------


@pytest.mark.engine
async def test_run_groups_through_the_client(live_server: str) -> None:
    workflow = EXAMPLES / "cwl" / "fail" / "workflow.cwl"
    async with SpindleClient(live_server) as client:
        group = await client.create_group(
            "client batch", description="from the client", max_runs=2, max_cpus=4, max_duration=30
        )
        assert (group.name, group.description) == ("client batch", "from the client")
        assert (group.max_runs, group.max_cpus, group.max_duration) == (2, 4, 30.0)
        assert group.run_counts["QUEUED"] == 0
        assert (group.usage.running, group.usage.cpus_in_use) == (0, 0)
        assert await client.get_group(group.id) == group

        # None clears a limit; what is not given stays as it was
        changed = await client.update_group(group.id, max_runs=None, name="renamed")
        assert (changed.name, changed.max_runs, changed.max_cpus) == ("renamed", None, 4)
        assert changed.max_duration == 30.0
        other = await client.create_group("another")
        listed = [g.id async for g in client.iter_groups(page_size=1)]
        assert listed.index(other.id) < listed.index(group.id)  # newest first, over two pages
        found = await client.list_groups(q="renam")
        assert [g.id for g in found.run_groups] == [group.id]
        assert found.next_page_token == ""

        run_id = await client.submit(
            "workflow.cwl",
            workflow_type="CWL",
            workflow_type_version="v1.2",
            attachments={"workflow.cwl": workflow},
            workflow_engine_parameters={"cpus": "2", "priority": "5"},
            run_group_id=group.id,
        )
        outside = await client.submit(
            "workflow.cwl",
            workflow_type="CWL",
            workflow_type_version="v1.2",
            attachments={"workflow.cwl": workflow},
        )
        assert (await _wait(client, run_id)).state is State.EXECUTOR_ERROR
        await _wait(client, outside)

        assert [r.run_id async for r in client.iter_group_runs(group.id)] == [run_id]
        failed = await client.list_group_runs(group.id, states=["EXECUTOR_ERROR", "COMPLETE"])
        assert [r.run_id for r in failed.runs] == [run_id]
        assert (await client.list_group_runs(group.id, states=["COMPLETE"])).runs == []
        assert [r.run_id async for r in client.iter_runs(run_group_id=group.id)] == [run_id]
        assert [r.run_id for r in (await client.list_runs(run_group_id=other.id)).runs] == []
        assert (await client.get_group(group.id)).run_counts["EXECUTOR_ERROR"] == 1

        with pytest.raises(SpindleClientError) as err:
            await client.move_run(run_id, other.id)
        assert err.value.status_code == 409
        assert "only a QUEUED run can change groups" in err.value.msg
        assert (await client.cancel_group(group.id)).canceled_runs == []  # all have ended

        with pytest.raises(SpindleClientError) as err:
            await client.delete_group(group.id)
        assert err.value.status_code == 409
        assert "detach_runs=true" in err.value.msg
        deleted = await client.delete_group(group.id, detach_runs=True)
        assert (deleted.group_id, deleted.detached_runs) == (group.id, 1)
        assert (await client.delete_group(other.id)).detached_runs == 0
        with pytest.raises(SpindleClientError) as err:
            await client.get_group(group.id)
        assert err.value.status_code == 404
        assert (await client.get_run(run_id)).state is State.EXECUTOR_ERROR  # the run stays


async def test_run_group_errors_name_the_field(live_server: str) -> None:
    async with SpindleClient(live_server) as client:
        with pytest.raises(SpindleClientError) as err:
            await client.create_group("g", max_runs=0)
        assert (err.value.status_code, err.value.msg.split(":")[0]) == (400, "max_runs")
        with pytest.raises(SpindleClientError) as err:
            await client.create_group("g", max_duration=0)
        assert (err.value.status_code, err.value.msg.split(":")[0]) == (400, "max_duration")
        with pytest.raises(SpindleClientError) as err:
            await client.update_group("no-such-group", max_cpus=2)
        assert err.value.status_code == 404
        assert "no-such-group" in err.value.msg
        with pytest.raises(SpindleClientError) as err:
            await client.move_run("no-such-run", None)
        assert err.value.status_code == 404
        with pytest.raises(SpindleClientError) as err:
            await client.submit(
                "Snakefile",
                workflow_type="SMK",
                workflow_type_version="9",
                run_group_id="no-such-group",
            )
        assert err.value.status_code == 400
        assert err.value.msg.startswith("run_group_id: ")
