"""A workflow is untrusted code: a real Snakemake run, as its user's own OS account, tries
every read issue 11 found open (Spindle's secrets in its environment, the database, another
user's run folder, Spindle's /proc environ, a log replaced by a link) and gets nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spindle.auth.accounts import AccountService
from spindle.config import Settings
from spindle.domain import Caller
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, app_client, make_app, wait_state
from tests.backends.test_sandbox import os_accounts
from tests.support import missing

pytestmark = pytest.mark.engine

ALICE_SNAKEFILE = """
rule all:
    output: "a.txt"
    shell: "echo alice-data > {output}"
"""

#: Tries each read (a folder: list it; a file: read it), then swaps its log for a link.
PROBE_SNAKEFILE = r"""
import shlex

rule all:
    output: "probe.txt"
    params: paths=" ".join(shlex.quote(p) for p in config["paths"].values())
    shell:
        '''
        for p in {params.paths}; do
            if [ -d "$p" ]; then ls "$p"; else cat "$p"; fi >/dev/null 2>&1 && r=read || r=denied
            echo "$r $p"
        done > {output}
        echo "env $(env | grep -c -e ^SPINDLE_ -e canary || true)" >> {output}
        rm ../logs/stdout && ln -s /etc/passwd ../logs/stdout
        '''
"""


@pytest.fixture
def data() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="spindle-sandbox-"))
    top.chmod(0o755)  # reachable by any account: only Spindle's own modes protect it
    yield top / "data"
    shutil.rmtree(top)


async def _token_headers(accounts: AccountService, name: str) -> dict[str, str]:
    """A user and their personal token (cheap to check, unlike a password on every poll)."""
    user = await accounts.add_user(name)
    _, secret = await accounts.create_token(Caller(user.id, user.name), "test")
    return {"Authorization": f"Bearer {secret}"}


def _form(snakefile: str, params: dict[str, object]) -> dict[str, object]:
    return {
        "data": {
            "workflow_type": "SMK",
            "workflow_type_version": "9",
            "workflow_url": "Snakefile",
            "workflow_params": json.dumps(params),
        },
        "files": [("workflow_attachment", ("Snakefile", snakefile.encode()))],
    }


async def test_a_workflow_run_as_its_users_account_reads_nothing_of_spindle_or_others(
    settings: Settings,
    catalog: Catalog,
    snakemake_exe: str,
    data: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPINDLE_SECRET_KEY", "canary-secret")
    with os_accounts("alice", "bob") as (alice_account, bob_account):
        values = {
            **settings.model_dump(),
            "auth": "basic",
            "data_dir": data,
            "run_as_users": {"alice": alice_account, "bob": bob_account},
        }
        app = make_app(Settings(**values), catalog)
        async with app_client(app) as api:
            alice, bob = [await _token_headers(app.state.accounts, n) for n in ("alice", "bob")]
            api.headers.update(alice)
            r = await api.post(f"{WES}/runs", **_form(ALICE_SNAKEFILE, {}))  # type: ignore[arg-type]
            alice_run = r.json()["run_id"]
            state = await wait_state(api, alice_run, ["COMPLETE", "EXECUTOR_ERROR"])
            assert state == "COMPLETE", (await api.get(f"{WES}/runs/{alice_run}/logs/stderr")).text

            alice_dir = data / "runs" / alice_run
            paths = {
                "database": str(data / "spindle.db"),
                "data folder": str(data),
                "alice's output": str(alice_dir / "work" / "a.txt"),
                "alice's workflow": str(alice_dir / "attachments" / "Snakefile"),
                "alice's work folder": str(alice_dir / "work"),
                "alice's params": str(alice_dir / "params.json"),
                "spindle's environ": f"/proc/{os.getpid()}/environ",
                "a public file": "/etc/hostname",  # shows the probe can read at all
            }
            api.headers.update(bob)
            r = await api.post(f"{WES}/runs", **_form(PROBE_SNAKEFILE, {"paths": paths}))  # type: ignore[arg-type]
            bob_run = r.json()["run_id"]
            state = await wait_state(api, bob_run, ["COMPLETE", "EXECUTOR_ERROR"])
            assert state == "COMPLETE", (await api.get(f"{WES}/runs/{bob_run}/logs/stderr")).text

            r = await api.get(f"{WES}/runs/{bob_run}/files/work/probe.txt")
            found = dict(line.split(" ", 1)[::-1] for line in r.text.splitlines())
            assert found.pop(paths["a public file"]) == "read"
            assert found == {p: "denied" for p in paths.values() if p != "/etc/hostname"} | {
                "0": "env"
            }
            # the log now leads to /etc/passwd: neither the API nor the run page serves it
            r = await api.get(f"{WES}/runs/{bob_run}/logs/stdout")
            assert "root:" not in r.text
            page = await api.get(f"/runs/{bob_run}")
            assert page.status_code == 200
            assert "root:x:0:0" not in page.text


#: Also reads the environment of every process above it, up to Spindle (``$PPID`` and its
#: parents), and tries to write beside its run folder's parts.
CONFINED_PROBE_SNAKEFILE = r"""
import shlex

rule all:
    output: "probe.txt"
    params: paths=" ".join(shlex.quote(p) for p in config["paths"].values())
    shell:
        '''
        for p in {params.paths}; do
            if [ -d "$p" ]; then ls "$p"; else cat "$p"; fi >/dev/null 2>&1 && r=read || r=denied
            echo "$r $p"
        done > {output}
        pid=$PPID leaked=0
        while [ "${{pid:-1}}" -gt 1 ]; do
            if tr '\\0' '\\n' < /proc/$pid/environ 2>/dev/null | grep -q canary; then
                leaked=1
            fi
            pid=$(awk '/^PPid:/ {{print $2}}' /proc/$pid/status 2>/dev/null || true)
        done
        echo "ancestors-leaked $leaked" >> {output}
        echo 0 > ../exit_code 2>/dev/null && echo "forged exit_code" >> {output} || true
        echo x > $TMPDIR/scratch && echo "tmp writable" >> {output}
        '''
"""


async def test_a_confined_workflow_of_spindles_own_account_reads_nothing_of_spindle_or_others(
    settings: Settings,
    catalog: Catalog,
    snakemake_exe: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default mode with several users: no run-as account, so every engine runs as
    Spindle's own OS account, confined by Landlock (confine_engines, on by default)."""
    from spindle.backends import confine

    if not confine.supported():
        missing(f"this kernel has no Landlock ABI {confine.MIN_ABI} (ABI {confine.abi()})")
    config = tmp_path / "spindle.toml"
    config.write_text('secret_key = "canary-in-the-file"\n')
    monkeypatch.setenv("SPINDLE_CONFIG", str(config))
    monkeypatch.setenv("SPINDLE_SECRET_KEY", "canary-secret")
    values = {**settings.model_dump(), "auth": "basic"}
    assert values["confine_engines"] is True  # the default
    app = make_app(Settings(**values), catalog)
    data = settings.data_dir
    async with app_client(app) as api:
        alice, bob = [await _token_headers(app.state.accounts, n) for n in ("alice", "bob")]
        api.headers.update(alice)
        r = await api.post(f"{WES}/runs", **_form(ALICE_SNAKEFILE, {}))  # type: ignore[arg-type]
        alice_run = r.json()["run_id"]
        state = await wait_state(api, alice_run, ["COMPLETE", "EXECUTOR_ERROR"])
        assert state == "COMPLETE", (await api.get(f"{WES}/runs/{alice_run}/logs/stderr")).text

        alice_dir = data / "runs" / alice_run
        paths = {
            "database": str(data / "spindle.db"),
            "data folder": str(data),
            "runs folder": str(data / "runs"),
            "settings file": str(config),
            "alice's output": str(alice_dir / "work" / "a.txt"),
            "alice's workflow": str(alice_dir / "attachments" / "Snakefile"),
            "alice's params": str(alice_dir / "params.json"),
            "spindle's environ": f"/proc/{os.getpid()}/environ",
            "a public file": "/etc/hostname",  # shows the probe can read at all
        }
        api.headers.update(bob)
        r = await api.post(f"{WES}/runs", **_form(CONFINED_PROBE_SNAKEFILE, {"paths": paths}))  # type: ignore[arg-type]
        bob_run = r.json()["run_id"]
        state = await wait_state(api, bob_run, ["COMPLETE", "EXECUTOR_ERROR"])
        assert state == "COMPLETE", (await api.get(f"{WES}/runs/{bob_run}/logs/stderr")).text

        r = await api.get(f"{WES}/runs/{bob_run}/files/work/probe.txt")
        found = dict(line.split(" ", 1)[::-1] for line in r.text.splitlines())
        assert found.pop(paths["a public file"]) == "read"
        assert found == {p: "denied" for p in paths.values() if p != "/etc/hostname"} | {
            "0": "ancestors-leaked",
            "writable": "tmp",
        }
        assert (data / "runs" / bob_run / "exit_code").read_text().strip() == "0"
