"""Local backend: the engine runs on this host, in its own session and process group, under a
small ``sh`` wrapper that records the engine's exit code in the run folder.

Because the wrapper is not tied to Spindle's process (new session, no pipes to Spindle), the
engine keeps going if Spindle is killed, even with ``kill -9``. A restarted Spindle re-attaches
through the saved handle: the exit code file says the run ended; otherwise the wrapper's pid,
checked against its start time so a recycled pid is not mistaken for it, says it still runs;
neither means it is gone, which is a SYSTEM_ERROR with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from spindle.backends.base import Backend, Capabilities, Handle, Status
from spindle.domain import State
from spindle.engines.base import Launch
from spindle.errors import BackendError
from spindle.storage.rundir import RunDir

# $1: run folder; the rest: the engine's argv. The pid file lets a worker that died between
# submit and saving the handle find the process again (submit is idempotent per run).
WRAPPER = r"""
d=$1; shift
echo $$ > "$d/pid"
"$@"
code=$?
printf '%s\n' "$code" > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"
"""


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
    capabilities = Capabilities(local_files=True, waits=True)

    def __init__(self, *, cancel_grace_seconds: float = 10.0) -> None:
        self.grace = cancel_grace_seconds
        self.host = socket.gethostname()
        # Wrappers this process started: awaited so they are reaped and so exits are seen
        # at once rather than at the next poll.
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._reapers: dict[str, asyncio.Task[int]] = {}

    async def submit(self, run_id: str, launch: Launch, rundir: RunDir) -> Handle:
        child = self._children.get(run_id)
        if child is not None:
            return self._handle(run_id, child.pid, rundir)
        existing = self._find_existing(run_id, rundir)
        if existing is not None:
            return existing
        rundir.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **launch.env}
        # Opening two local log files to hand to the child takes microseconds; a thread hop
        # would only add to dispatch latency.
        with open(rundir.stdout, "ab") as out, open(rundir.stderr, "ab") as err:  # noqa: ASYNC230
            try:
                proc = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    WRAPPER,
                    "spindle-run",
                    str(rundir.root),
                    *launch.argv,
                    cwd=launch.cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BackendError(f"could not start the engine: {exc}") from exc
        # Recorded at once (the wrapper writes it too, but later), so a second submit for
        # this run finds the first one even before the wrapper has run a line.
        (rundir.root / "pid").write_text(f"{proc.pid}\n")
        self._children[run_id] = proc
        self._reapers[run_id] = asyncio.create_task(proc.wait())
        return self._handle(run_id, proc.pid, rundir)

    def _handle(self, run_id: str, pid: int, rundir: RunDir) -> Handle:
        return Handle(
            run_id=run_id,
            backend=self.name,
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
        if rundir.exit_code_file.exists():
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
        return Status(
            State.SYSTEM_ERROR,
            reason=(
                f"the engine process (pid {data['pid']} on {data['host']}) is gone and "
                "recorded no exit code: it was killed or the machine restarted"
            ),
        )

    async def wait(self, handle: Handle, max_wait: float) -> None:
        reaper = self._reapers.get(handle.run_id)
        if reaper is None:
            await asyncio.sleep(max_wait)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reaper), max_wait)
        if reaper.done():
            self._forget(handle.run_id)

    def _forget(self, run_id: str) -> None:
        self._children.pop(run_id, None)
        self._reapers.pop(run_id, None)

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
            reaper = self._reapers.get(run_id)
            if reaper is not None and not reaper.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reaper), 0.05)
            if not _group_alive(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._reapers.values():
            task.cancel()
        self._reapers.clear()
        self._children.clear()
