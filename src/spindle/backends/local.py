"""Local backend: the engine runs on this host, in its own session and process group, under a
small ``sh`` wrapper that records the engine's exit code in the run folder.

Because the wrapper is not tied to Spindle's process (new session, no pipes to Spindle), the
engine keeps going if Spindle is killed, even with ``kill -9``. A restarted Spindle re-attaches
through the saved handle: the exit code file says the run ended; otherwise the wrapper's pid,
checked against its start time so a recycled pid is not mistaken for it, says it still runs;
neither means it is gone, which is a SYSTEM_ERROR with the reason.

Failures that are Spindle's or the machine's, not the workflow's, are told apart from the
engine's own exit code: an engine (or the interpreter its script names) that is missing
when the run starts is written to ``launch_error`` by the wrapper, and an exit code that
could not be written (a full disk, a folder that cannot be written) is named with the path
and the error, found by trying to write it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from spindle.backends.base import Backend, Capabilities, Handle, Status
from spindle.backends.sandbox import (
    Sandbox,
    hand_over,
    hide_process,
    sandbox_for,
    secure_data_dir,
)
from spindle.compute import EnvSettings, LocalEnv
from spindle.config import Settings
from spindle.domain import State
from spindle.errors import BackendError
from spindle.execution import Job, Site
from spindle.storage.rundir import RunDir

# $1: run folder, $2: working directory, $3: how many of the words after it start the
# engine confined and/or as another OS account (spindle.backends.confine ..., setpriv ...);
# the rest: the engine's argv.
# The wrapper itself stays Spindle's, so the exit code it records is out of the engine's
# reach. The pid file lets a worker that died between submit and saving the handle find the
# process again (submit is idempotent per run). The wrapper changes directory itself
# because posix_spawn has no chdir.
# Before starting the engine it checks that the executable (and the interpreter its #! line
# names) is there, so a missing engine is a launch_error, never the workflow's exit 127. If
# the exit code cannot be recorded it says so on stderr and exits with the engine's code.
WRAPPER = r"""
d=$1 n=$3
fail() { printf '%s\n' "$1" > "$d/launch_error"; printf 'spindle: %s\n' "$1" >&2; exit 127; }
cd "$2" || fail "cannot enter the working directory $2"
shift 3
echo $$ > "$d/pid"
i=0
for engine; do [ "$i" -eq "$n" ] && break; i=$((i + 1)); done
case $engine in
  */*) exe=$engine ;;
  *) exe=$(command -v "$engine") || fail "the engine $engine is not on PATH" ;;
esac
case $exe in
  */*)
    [ -f "$exe" ] && [ -x "$exe" ] || fail "the engine $exe is missing or not executable"
    first=; IFS= read -r first < "$exe" || true
    case $first in
      '#!'*)
        interp=${first#??}; interp=${interp# }; interp=${interp%% *}
        [ -x "$interp" ] || fail "the interpreter $interp named by the engine $exe is missing"
        ;;
    esac
    ;;
esac
"$@"
code=$?
[ -e "$d/launch_error" ] && exit 127  # the confinement could not be set up
printf '%s\n' "$code" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code" || {
  printf 'spindle: could not record the exit code %s in %s\n' "$code" "$d/exit_code" >&2
  exit "$code"
}
"""

log = logging.getLogger(__name__)

# O_NOFOLLOW: a log the engine of an earlier attempt replaced with a link is not followed.
_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
#: What an engine run as another account gets of its run folder (the rest stays Spindle's).
#: Confined (spindle.backends.confine), the only places it may write; ``tmp`` is its TMPDIR
#: and holds its HOME.
ENGINE_PARTS = ("attachments", "work", "outputs", "logs", "tmp", "params.json")
#: Spindle's helper code for the engine (a logger plugin, cwltool's guard): read-only to it.
HELPER_PARTS = ("support",)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or
    None if there is no such process or it is a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _read_exit_code(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _launch_error(root: Path) -> Status | None:
    """What the wrapper wrote when it could not start the engine, as a SYSTEM_ERROR."""
    try:
        error = (root / "launch_error").read_text().strip()
    except FileNotFoundError:
        return None
    return Status(State.SYSTEM_ERROR, reason=f"the engine could not be started: {error}")


def _write_failure(root: Path) -> str | None:
    """Why the wrapper could not record an exit code in ``root``, found by writing where it
    writes (``exit_code.tmp``); None if that works now."""
    probe = root / "exit_code.tmp"
    try:
        probe.write_text("0\n")
        probe.unlink()
    except OSError as exc:
        return f"{exc.strerror or exc} ({exc.filename or probe})"
    return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _status_for_exit(code: int) -> Status:
    return Status(State.COMPLETE if code == 0 else State.EXECUTOR_ERROR, exit_code=code)


class LocalBackend(Backend):
    name = "local"
    settings_model = LocalEnv
    capabilities = Capabilities(local_files=True, waits=True)

    def __init__(
        self,
        *,
        cancel_grace_seconds: float = 10.0,
        sandbox: Sandbox | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.grace = cancel_grace_seconds
        self.sandbox = sandbox or Sandbox()
        self.sandbox.check()
        if os.geteuid() == 0 and not self.sandbox.switches_account:
            log.warning(
                "Spindle runs as root and engines run as root too%s: set run_as_user or "
                "run_as_users (docs/security.md)",
                " (confined, without capabilities, but owning root's files)"
                if self.sandbox.confine
                else "",
            )
        hide_process()
        if data_dir is not None:
            secure_data_dir(data_dir, traversable=self.sandbox.switches_account)
        self.host = socket.gethostname()
        #: what runs workflow containers here (``containers``, ``container_network``)
        self.containers = "none"
        self.container_network = False
        # Engines being watched, by run id: each is resolved when its wrapper exits, seen
        # through a pidfd at once rather than at the next poll.
        self._exits: dict[str, _ExitWatch] = {}

    @classmethod
    def from_settings(cls, env_name: str, env: EnvSettings, settings: Settings) -> LocalBackend:
        sandbox = sandbox_for(settings)
        backend = cls(
            cancel_grace_seconds=settings.cancel_grace_seconds,
            sandbox=sandbox,
            data_dir=settings.data_dir,
        )
        backend.containers = env.containers
        backend.container_network = env.container_network
        return backend

    def site(self, run_id: str, rundir: RunDir) -> Site:
        """This host, with the environment's containers (the ``containers`` setting)."""
        return replace(
            Site.local(rundir),
            containers=self.containers,
            container_network=self.container_network,
        )

    async def submit(self, job: Job) -> Handle:
        run_id, launch, rundir = job.run_id, job.launch, job.rundir
        if launch is None:
            raise BackendError("the local backend runs an engine's launch; this job has none")
        watch = self._exits.get(run_id)
        if watch is not None:
            return self._handle(run_id, watch.pid, rundir)
        existing = self._find_existing(run_id, rundir)
        if existing is not None:
            return existing
        if rundir.logs.is_symlink():
            rundir.logs.unlink()
        rundir.logs.mkdir(parents=True, exist_ok=True)
        for log in (rundir.stdout, rundir.stderr):
            os.close(os.open(log, _LOG_FLAGS, 0o600))
        # The engine gets an allow-listed environment, never Spindle's (its secret, the
        # database URL), and runs as the run's OS account if one is configured; the wrapper
        # stays Spindle's, so the exit code it records is out of the engine's reach.
        account = self.sandbox.account_for(job.owner)
        private = rundir.root / "tmp"
        (private / "home").mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(hand_over, rundir.root, account, ENGINE_PARTS, HELPER_PARTS)
        env = self.sandbox.environment(
            launch.env, account, workdir=str(launch.cwd), private=private
        )
        prefix = self.sandbox.command(account, [], rundir.root, ENGINE_PARTS, HELPER_PARTS)
        # posix_spawn (vfork-like in glibc) costs the same at any server size, where a fork
        # of the whole server (what uvloop's subprocess does) grows with its memory; it
        # hands the child no asyncio transport that could outlive this backend. Microseconds
        # of work: a thread hop would only add to dispatch latency.
        try:
            # posix_spawn returns once the child exists; it does not wait for it
            pid = os.posix_spawn(  # noqa: ASYNC221
                "/bin/sh",
                ["sh", "-c", WRAPPER, "spindle-run", str(rundir.root), str(launch.cwd)]
                + [str(len(prefix)), *prefix]
                + [str(a) for a in launch.argv],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(rundir.stdout), _LOG_FLAGS, 0o600),
                    (os.POSIX_SPAWN_OPEN, 2, str(rundir.stderr), _LOG_FLAGS, 0o600),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise BackendError(f"could not start the engine: {exc}") from exc
        # Recorded at once (the wrapper writes it too, but later), so a second submit for
        # this run finds the first one even before the wrapper has run a line.
        (rundir.root / "pid").write_text(f"{pid}\n")
        self._watch(run_id, pid, child=True)
        return self._handle(run_id, pid, rundir)

    def _watch(self, run_id: str, pid: int, *, child: bool) -> None:
        """Resolve an exit future when ``pid`` ends (our child or not: a pidfd works for
        any process). A child of ours is reaped then, so it leaves no zombie."""
        if run_id in self._exits:
            return
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            if child:
                _reap(pid)
            return
        except OSError:
            return  # no pidfd (an old kernel): polling still sees the exit
        watch = _ExitWatch(pid=pid, fd=fd, child=child, ended=loop.create_future())

        def on_exit() -> None:
            loop.remove_reader(fd)
            if child:
                _reap(pid)
            if not watch.ended.done():
                watch.ended.set_result(None)

        loop.add_reader(fd, on_exit)
        self._exits[run_id] = watch

    def _handle(self, run_id: str, pid: int, rundir: RunDir) -> Handle:
        return Handle(
            run_id=run_id,
            data={
                "pid": pid,
                "pgid": pid,
                "host": self.host,
                "start_ticks": _start_ticks(pid),
                "rundir": str(rundir.root),
            },
        )

    def _find_existing(self, run_id: str, rundir: RunDir) -> Handle | None:
        """A wrapper already started for this run (by a worker that died before saving)."""
        try:
            pid = int((rundir.root / "pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if rundir.exit_code_file.exists() or (rundir.root / "launch_error").exists():
            return self._handle(run_id, pid, rundir)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            return None
        if str(rundir.root).encode() in cmdline.split(b"\0"):
            return self._handle(run_id, pid, rundir)
        return None

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Status]:
        return {h.run_id: self._status(h) for h in handles}

    def _status(self, handle: Handle) -> Status:
        data = handle.data
        exit_file = Path(data["rundir"]) / "exit_code"
        code = _read_exit_code(exit_file)
        if code is not None:
            return _status_for_exit(code)
        launch_error = _launch_error(Path(data["rundir"]))
        if launch_error is not None:
            return launch_error
        if data["host"] != self.host:
            return Status(
                State.SYSTEM_ERROR,
                reason=(
                    f"the engine ran on host {data['host']!r}, which this worker "
                    f"({self.host!r}) cannot reach; the local backend only re-attaches on "
                    "the same host"
                ),
            )
        ticks = _start_ticks(data["pid"])
        if ticks is not None and (data["start_ticks"] is None or ticks == data["start_ticks"]):
            return Status(State.RUNNING)
        # It may have written its exit code between our two looks.
        code = _read_exit_code(exit_file)
        if code is not None:
            return _status_for_exit(code)
        failure = _write_failure(Path(data["rundir"]))
        if failure is not None:
            return Status(
                State.SYSTEM_ERROR,
                reason=(
                    f"the engine process (pid {data['pid']} on {data['host']}) ended, but "
                    f"its exit code could not be written to {exit_file}: {failure}; "
                    "the end of logs/stderr may say more"
                ),
            )
        return Status(
            State.SYSTEM_ERROR,
            reason=(
                f"the engine process (pid {data['pid']} on {data['host']}) is gone and "
                "recorded no exit code: it was killed or the machine restarted"
            ),
        )

    async def attach(self, handle: Handle) -> Status:
        status = self._status(handle)
        if status.state is State.RUNNING:
            pid = int(handle.data["pid"])
            self._watch(handle.run_id, pid, child=False)
            # the pidfd was opened after the check: make sure it is still the same process
            if _start_ticks(pid) != handle.data["start_ticks"]:
                self._forget(handle.run_id)
                return self._status(handle)
        return status

    async def wait(self, handle: Handle, max_wait: float) -> None:
        watch = self._exits.get(handle.run_id)
        if watch is None:
            await asyncio.sleep(max_wait)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(watch.ended), max_wait)
        if watch.ended.done():
            self._forget(handle.run_id)

    def _forget(self, run_id: str) -> None:
        watch = self._exits.pop(run_id, None)
        if watch is not None:
            watch.close()

    async def cancel(self, handle: Handle) -> None:
        """TERM the whole process group, KILL it after the grace period, and return only
        when no process of the run is left."""
        pgid = int(handle.data["pgid"])
        if handle.data["host"] != self.host:
            raise BackendError(f"cannot cancel a local run on another host {handle.data['host']}")
        if not self._same_process(handle):
            return
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            if await self._wait_group_gone(handle.run_id, pgid, wait):
                break
        else:
            raise BackendError(f"process group {pgid} survived SIGKILL")
        self._forget(handle.run_id)

    def _same_process(self, handle: Handle) -> bool:
        ticks = _start_ticks(int(handle.data["pid"]))
        expected = handle.data.get("start_ticks")
        if ticks is None:
            # the wrapper is gone (or a zombie); its children may still live in the group
            return _group_alive(int(handle.data["pgid"]))
        return expected is None or ticks == expected

    async def _wait_group_gone(self, run_id: str, pgid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            watch = self._exits.get(run_id)
            if watch is not None and not watch.ended.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(watch.ended), 0.05)
            if not _group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop watching. Engines still running are left alone (they outlive Spindle by
        design); a child of ours is reaped whenever it ends, by a daemon thread that
        outlives the event loop, so it never lingers as a zombie in its process group."""
        for run_id in list(self._exits):
            watch = self._exits.pop(run_id)
            watch.close(reap=False)
            if watch.child:
                threading.Thread(
                    target=_reap, args=(watch.pid, 0), name=f"reap-{watch.pid}", daemon=True
                ).start()


@dataclass
class _ExitWatch:
    pid: int
    fd: int
    child: bool
    ended: asyncio.Future[None]

    def close(self, *, reap: bool = True) -> None:
        with contextlib.suppress(ValueError, RuntimeError):  # loop already closed
            asyncio.get_running_loop().remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.child and reap:
            _reap(self.pid)
        if not self.ended.done():
            self.ended.cancel()


def _reap(pid: int, options: int = os.WNOHANG) -> None:
    """Collect a child's exit status (it is in the exit code file already); by default only
    if it has ended."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, options)
