"""What an engine on this host runs with: the allow-listed environment, the OS account, and
who may read its run folder (spindle.backends.sandbox, through the local backend)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from spindle.backends.local import LocalBackend
from spindle.backends.sandbox import Account, Sandbox, hand_over, secure_data_dir
from spindle.db.engine import create_engine
from spindle.domain import State
from spindle.errors import BackendError, ConfigError
from spindle.execution import Job, Launch
from spindle.storage.rundir import RunDir
from spindle.testing import job
from tests.backends.contract import launch, wait_terminal
from tests.support import missing


def test_the_environment_is_the_allow_list_then_settings_then_the_engine() -> None:
    spindle_env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "SPINDLE_SECRET_KEY": "s3cret",
        "SPINDLE_DATABASE_URL": "postgresql://u:pw@db/spindle",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "CONDA_PREFIX": "/opt/conda",
        "CONDA_EXE": "/opt/conda/bin/conda",
    }
    sandbox = Sandbox(passthrough=("CONDA_*",), extra={"TZ": "Europe/Paris", "X": "1"})
    env = sandbox.environment({"TZ": "UTC", "SPINDLE_X": "no"}, source=spindle_env)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_TIME": "C",
        "CONDA_PREFIX": "/opt/conda",
        "CONDA_EXE": "/opt/conda/bin/conda",
        "TZ": "UTC",  # the engine's own needs win
        "X": "1",
    }


def test_settings_cannot_hand_spindle_variables_on() -> None:
    from spindle.config import load_settings

    for bad in ({"engine_env_passthrough": ["SPINDLE_*"]}, {"engine_env": {"SPINDLE_A": "1"}}):
        with pytest.raises(ConfigError, match="never handed to engines"):
            load_settings(**bad)


async def test_an_engine_sees_none_of_spindles_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPINDLE_SECRET_KEY", "canary-secret")
    monkeypatch.setenv("SPINDLE_DATABASE_URL", "postgresql://spindle:canary-pw@db/spindle")
    monkeypatch.setenv("SOME_TOKEN", "canary-token")
    rundir = RunDir(tmp_path / "runs" / "run-1")
    rundir.create()
    backend = LocalBackend(cancel_grace_seconds=2, data_dir=tmp_path)
    try:
        handle = await backend.submit(
            job("run-1", launch(backend, "env; echo done", rundir), rundir)
        )
        assert (await wait_terminal(backend, handle)).state is State.COMPLETE
    finally:
        await backend.close()
    seen = rundir.stdout.read_text()
    assert "done" in seen
    assert "PATH=" in seen
    assert "canary" not in seen


def test_the_data_folder_and_database_are_spindles_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "spindle.db").write_text("")
    (data / "spindle.db").chmod(0o644)
    secure_data_dir(data, traversable=False)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "runs").stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "spindle.db").stat().st_mode) == 0o600
    secure_data_dir(data, traversable=True)  # other accounts pass through, never list
    assert stat.S_IMODE(data.stat().st_mode) == 0o711


# --- other OS accounts -----------------------------------------------------------------------


def _root_with_setpriv() -> None:
    if os.geteuid() != 0:
        missing("running engines as other OS accounts needs root (to create test accounts)")
    for tool in ("useradd", "userdel", "setpriv"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            missing(f"{tool} is not installed")


@contextlib.contextmanager
def os_accounts(*names: str) -> Iterator[list[str]]:
    """Throwaway unprivileged OS accounts (no home folder), removed at the end."""
    _root_with_setpriv()
    made = [f"sx{uuid.uuid4().hex[:8]}{name}" for name in names]
    try:
        for account in made:
            subprocess.run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    account,
                ],
                check=True,
            )
        yield made
    finally:
        for account in made:
            subprocess.run(["userdel", account], capture_output=True)


@pytest.fixture
def accounts() -> Iterator[list[str]]:
    with os_accounts("alice", "bob") as made:
        yield made


def test_run_as_needs_existing_unprivileged_accounts() -> None:
    _root_with_setpriv()
    with pytest.raises(ConfigError, match="does not exist"):
        Sandbox(run_as_user="no-such-account-spindle").check()
    with pytest.raises(ConfigError, match="is root"):
        Sandbox(run_as_user="root").check()
    with pytest.raises(BackendError, match=r"no OS account .* 'carol'"):
        Sandbox(run_as_users={"alice": "nobody"}).account_for("carol")


@pytest.fixture
def data() -> Iterator[Path]:
    """A data folder other accounts could reach (pytest's tmp_path is inside a folder only
    root may enter, which would hide everything whatever Spindle did)."""
    top = Path(tempfile.mkdtemp(prefix="spindle-sandbox-"))
    top.chmod(0o755)
    yield top / "data"
    shutil.rmtree(top)


@pytest.fixture
async def per_user(data: Path, accounts: list[str]) -> AsyncIterator[LocalBackend]:
    alice, bob = accounts
    backend = LocalBackend(
        cancel_grace_seconds=2,
        sandbox=Sandbox(run_as_users={"alice": alice, "bob": bob}),
        data_dir=data,
    )
    yield backend
    await backend.close()


async def test_each_user_runs_as_their_account_and_cannot_read_another_run(
    data: Path, accounts: list[str], per_user: LocalBackend
) -> None:
    db = data / "spindle.db"
    create_engine(f"sqlite+aiosqlite:///{db}")  # makes the file, as Spindle's start-up does
    db.write_text("password hashes")
    alice_dir = RunDir.for_run(data, "run-a")
    alice_dir.create()
    (alice_dir.attachments / "secret.txt").write_text("alice's data")
    alice = launch(per_user, "id -un; cat ../attachments/secret.txt", alice_dir, "run-a")
    handle = await per_user.submit(owned(job("run-a", alice, alice_dir), "alice"))
    assert (await wait_terminal(per_user, handle)).state is State.COMPLETE
    assert alice_dir.stdout.read_text().split() == [accounts[0], "alice's", "data"]

    bob_dir = RunDir.for_run(data, "run-b")
    bob_dir.create()
    files = [
        alice_dir.attachments / "secret.txt",
        alice_dir.params_file,
        data / "spindle.db",
        Path(f"/proc/{os.getpid()}/environ"),
    ]
    folders = [alice_dir.work, alice_dir.attachments, alice_dir.root, data, data / "runs"]
    script = "id -un\ncat /etc/hostname >/dev/null && echo can-read-a-public-file\n" + "".join(
        [f"cat {f} >/dev/null 2>&1 && echo READ {f}\n" for f in files]
        + [f"ls {d} >/dev/null 2>&1 && echo LISTED {d}\n" for d in folders]
        + ["true\n"]
    )
    handle = await per_user.submit(
        owned(job("run-b", launch(per_user, script, bob_dir, "run-b"), bob_dir), "bob")
    )
    assert (await wait_terminal(per_user, handle)).state is State.COMPLETE
    assert bob_dir.stdout.read_text().split() == [accounts[1], "can-read-a-public-file"]
    # the folder stays Spindle's (the exit code is out of the engine's reach); its parts are
    # the account's alone
    assert alice_dir.root.stat().st_uid == 0
    work = alice_dir.work.stat()
    assert (work.st_uid, stat.S_IMODE(work.st_mode)) == (pwd.getpwnam(accounts[0]).pw_uid, 0o700)
    assert alice_dir.exit_code_file.stat().st_uid == 0


def owned(job_: Job, owner: str) -> Job:
    """The job as the worker hands it over for a run of ``owner``."""
    return dataclasses.replace(job_, owner=owner)


async def test_slurm_commands_on_this_host_get_none_of_spindles_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sbatch passes its whole environment on to the job (``--export=ALL``, the default)."""
    from spindle.backends.remote.transport import LocalTransport

    monkeypatch.setenv("SPINDLE_SECRET_KEY", "canary-secret")
    done = await LocalTransport().run(["env"], limit=10)
    assert done.code == 0
    assert "PATH=" in done.stdout
    assert "canary" not in done.stdout


def test_spindles_environ_is_unreadable_by_an_engine_of_its_own_account() -> None:
    """The default mode: Spindle and its engines share an OS account. Played by two
    processes of one throwaway account: "Spindle" (non-dumpable, as the local backend makes
    it) and a reader in its place of an engine."""
    src = Path(__file__).resolve().parents[2] / "src"
    with os_accounts("svc") as (account,):
        as_account = Sandbox(run_as_user=account).command(Account.lookup(account), [])
        spindle = subprocess.Popen(
            [
                *as_account,
                "/usr/bin/python3",
                "-c",
                "from spindle.backends.sandbox import hide_process; import time; "
                "print(hide_process(), flush=True); time.sleep(60)",
            ],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(src), "SPINDLE_SECRET_KEY": "canary"},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert spindle.stdout is not None
            assert spindle.stdout.readline().strip() == "True"
            reader = subprocess.run(
                [*as_account, "cat", f"/proc/{spindle.pid}/environ"],
                capture_output=True,
                text=True,
            )
            assert "canary" not in reader.stdout
            assert reader.returncode != 0
        finally:
            spindle.kill()
            spindle.communicate()


def test_handing_a_folder_over_again_never_follows_the_accounts_links(
    tmp_path: Path, accounts: list[str]
) -> None:
    """Started again (a worker died after starting it), the run folder already holds what
    the account's processes made: a link to a file of Spindle's must not hand that over."""
    precious = tmp_path / "precious"
    precious.write_text("spindle's")
    precious.chmod(0o640)
    rundir = RunDir(tmp_path / "run")
    rundir.create()
    (rundir.work / "link").symlink_to(precious)
    (rundir.support / "cwltool").mkdir(parents=True)
    account = Account.lookup(accounts[0])
    hand_over(rundir.root, account, ("work",), ("support",))
    hand_over(rundir.root, account, ("work",), ("support",))
    st = precious.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o640)
    assert (rundir.work / "link").lstat().st_uid == account.uid
    assert rundir.work.stat().st_uid == account.uid
    assert rundir.support.stat().st_uid == 0  # Spindle's helper code stays Spindle's


async def test_a_missing_engine_run_as_an_account_is_still_named(
    data: Path, per_user: LocalBackend
) -> None:
    """The wrapper checks the engine itself, not setpriv that starts it."""
    rundir = RunDir.for_run(data, "run-x")
    rundir.create()
    gone = "/nowhere/engines/cwltool/bin/cwltool"
    handle = await per_user.submit(
        owned(job("run-x", Launch([gone], rundir.work), rundir), "alice")
    )
    status = await wait_terminal(per_user, handle)
    assert status.state is State.SYSTEM_ERROR
    assert status.reason is not None
    assert f"the engine {gone} is missing" in status.reason


def test_a_run_folder_is_private_from_the_start(tmp_path: Path) -> None:
    rundir = RunDir.for_run(tmp_path, "run-1")
    rundir.create()
    assert stat.S_IMODE(rundir.root.stat().st_mode) == 0o700


# --- confinement (Landlock) ------------------------------------------------------------------


def _landlock() -> None:
    from spindle.backends import confine

    if not confine.supported():
        missing(f"this kernel has no Landlock ABI {confine.MIN_ABI} (ABI {confine.abi()})")


#: Tries each read and write a confined engine must not make, then one it must.
CONFINED_PROBE = """
for f in "$@"; do
    if [ -d "$f" ]; then ls "$f"; else cat "$f"; fi >/dev/null 2>&1 && echo "READ $f"
done
echo 0 > ../exit_code 2>/dev/null && echo FORGED
echo x > ../elsewhere 2>/dev/null && echo WROTE-BESIDE
echo x > /var/tmp/spindle-confined-$$ 2>/dev/null && echo WROTE-OUTSIDE
head -c 1 /dev/vda /dev/sda /dev/nvme0n1 /dev/mem 2>/dev/null | grep -q . && echo READ-DISK
echo ok > out.txt && echo x > "$TMPDIR/t" && echo > /dev/null && cat /etc/hostname >/dev/null \
    && [ "$HOME" = "$TMPDIR/home" ] && echo WORKS
"""


async def test_a_confined_engine_reads_and_writes_only_what_is_its_own(
    data: Path, tmp_path: Path
) -> None:
    _landlock()
    extra_secret = tmp_path / "more-secrets"
    extra_secret.write_text("x")
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    sandbox = Sandbox(confine=True, deny=(data, extra_secret), write=(shared,))
    backend = LocalBackend(cancel_grace_seconds=2, sandbox=sandbox, data_dir=data)
    other = RunDir.for_run(data, "run-other")
    other.create()
    (other.work / "result.txt").write_text("other user's result")
    (data / "spindle.db").write_text("password hashes")
    rundir = RunDir.for_run(data, "run-1")
    rundir.create()
    reads = [data / "spindle.db", other.work / "result.txt", other.root, data, extra_secret]
    script = f"set -- {' '.join(map(str, reads))}\n{CONFINED_PROBE}echo c > {shared}/c\n"
    try:
        handle = await backend.submit(job("run-1", launch(backend, script, rundir), rundir))
        assert (await wait_terminal(backend, handle)).state is State.COMPLETE
    finally:
        await backend.close()
    assert rundir.stdout.read_text().split() == ["WORKS"], rundir.stderr.read_text()
    assert (rundir.work / "out.txt").read_text() == "ok\n"
    assert (shared / "c").read_text() == "c\n"  # confine_write_paths


async def test_a_confined_engine_of_another_account_runs(data: Path, accounts: list[str]) -> None:
    """Landlock first (as root, before setpriv), then the account: both hold."""
    _landlock()
    sandbox = Sandbox(confine=True, deny=(data,), run_as_user=accounts[0])
    backend = LocalBackend(cancel_grace_seconds=2, sandbox=sandbox, data_dir=data)
    rundir = RunDir.for_run(data, "run-1")
    rundir.create()
    script = f"id -un\nset -- {data / 'spindle.db'}\n{CONFINED_PROBE}"
    try:
        handle = await backend.submit(job("run-1", launch(backend, script, rundir), rundir))
        assert (await wait_terminal(backend, handle)).state is State.COMPLETE
    finally:
        await backend.close()
    assert rundir.stdout.read_text().split() == [accounts[0], "WORKS"], rundir.stderr.read_text()


def test_confinement_keeps_spindles_files_and_keys_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spindle.backends.sandbox import denied_paths
    from spindle.config import load_settings

    config = tmp_path / "etc" / "spindle.toml"
    monkeypatch.setenv("SPINDLE_CONFIG", str(config))
    key = tmp_path / "id_ed25519"
    key.write_text("")
    hpc = {
        "type": "slurm",
        "work_root": "/cluster",
        "ssh": {"host": "login", "key_file": str(key)},
    }
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db' / 'spindle.db'}",
        compute_envs={"hpc": hpc},
        confine_deny_paths=[tmp_path / "more"],
    )
    assert set(denied_paths(settings)) >= {
        tmp_path / "data",
        config,
        tmp_path / "db" / "spindle.db",
        key,
        Path("~/.ssh").expanduser().resolve(),
        Path("/etc/shadow"),
        tmp_path / "more",
    }


def test_without_landlock_several_users_sharing_spindles_account_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a kernel without Landlock (played by the check saying so: this one has it)."""
    from spindle.backends import confine
    from spindle.backends.sandbox import sandbox_for
    from spindle.config import load_settings

    monkeypatch.setattr(confine, "supported", lambda: False)
    for auth in ("basic", "oidc", "proxy-jwt"):
        settings = load_settings(data_dir=tmp_path, auth=auth)
        with pytest.raises(ConfigError, match=r"run_as_users .* confine_engines = false"):
            sandbox_for(settings)
    basic = load_settings(data_dir=tmp_path, auth="basic")
    assert not sandbox_for(basic.model_copy(update={"confine_engines": False})).confine
    assert not sandbox_for(basic.model_copy(update={"run_as_user": "nobody"})).confine
    assert not sandbox_for(load_settings(data_dir=tmp_path)).confine  # auth none: a warning
    assert "engines run unconfined" in caplog.text


def test_a_shared_writable_folder_holding_a_denied_path_is_refused(tmp_path: Path) -> None:
    from spindle.backends.sandbox import sandbox_for
    from spindle.config import load_settings

    _landlock()
    for write in (tmp_path, tmp_path / "data" / "cache"):
        settings = load_settings(data_dir=tmp_path / "data", confine_write_paths=[write])
        with pytest.raises(ConfigError, match=r"confine_write_paths: .* overlap"):
            sandbox_for(settings)
