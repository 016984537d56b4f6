"""Spindle's plugins for miniwdl, loaded by miniwdl inside its own engine environment.

``SpindleTasks`` (entry point ``miniwdl.plugin.container_backend``, name ``spindle``) runs a
task's command:

- on the host, as a child of miniwdl (so in the run's process group: cancelling the run
  stops it), when the task names no ``runtime.docker``/``runtime.container``;
- in podman when it names one and Spindle's ``[spindle] containers`` setting for the run is
  ``podman``: the task's own folder is the only host folder mounted (at the same path, so a
  command means the same on the host and in the container), no network unless
  ``[spindle] network`` is true, nothing pulled for an image that exists locally;
- else it fails, saying which setting would let it run.

The container folder is the task's host folder itself, on the host and in podman alike:
miniwdl maps input files into the container folder before it knows the task's runtime, so
one mapping must serve both.

``download`` (entry point ``miniwdl.plugin.file_download``, names ``http`` and ``https``)
fetches a File input given by URL in Python into ``[spindle] downloads``, instead of
miniwdl's own downloader (a task in an aria2c container image).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

from WDL import Error
from WDL._util import StructuredLogMessage as _
from WDL.runtime import config
from WDL.runtime.backend.cli_subprocess import SubprocessBase
from WDL.runtime.error import Terminated

#: The setting that lets tasks run in containers (said in the error when it is off).
SETTING = "containers"


class SpindleTasks(SubprocessBase):
    """Tasks on the host, or in podman when they name an image (see the module docstring)."""

    @classmethod
    def global_init(cls, cfg: config.Loader, logger: logging.Logger) -> None:
        logger.notice(  # type: ignore[attr-defined]
            _("Spindle task runner", containers=_containers(cfg), network=_network(cfg))
        )
        cls._global_init = True

    def __init__(self, cfg: config.Loader, run_id: str, host_dir: str) -> None:
        super().__init__(cfg, run_id, host_dir)
        self.container_dir = host_dir

    @property
    def cli_name(self) -> str:
        return "podman"

    def _image(self) -> str | None:
        image = self.runtime_values.get("docker")
        return image if isinstance(image, str) and image else None

    def _run(self, logger: logging.Logger, terminating: Callable[[], bool], command: str) -> int:
        image = self._image()
        if image is None:
            return self._run_on_host(logger, terminating, command)
        if _containers(self.cfg) != "podman":
            raise Error.RuntimeError(
                f"task {self.run_id} names the container image {image!r} (runtime.docker), but "
                f"this compute environment runs no containers (Spindle setting {SETTING} = "
                f"{_containers(self.cfg)!r}); run it where {SETTING} = 'podman', or remove "
                "runtime.docker to run the command on the host"
            )
        # The container lives under podman's conmon, out of the run's process group, and its
        # first process ignores the SIGTERM `podman run` passes on: when miniwdl is told to
        # stop (a cancelled run), the container is removed, which ends `podman run`.
        finished = threading.Event()

        def remove_when_stopped() -> None:
            while not finished.wait(0.5):
                if terminating():
                    self._remove()
                    return

        watcher = threading.Thread(target=remove_when_stopped, daemon=True)
        watcher.start()
        try:
            return super()._run(logger, terminating, command)
        except BaseException:
            self._remove()
            raise
        finally:
            finished.set()

    def _remove(self) -> None:
        subprocess.run(
            ["podman", "rm", "--force", "--time", "0", self._container_name()],
            capture_output=True,
            check=False,
        )

    def _container_name(self) -> str:
        return f"spindle-{os.getpid()}-{self.run_id}-{self.try_counter}"[:200].replace("/", "-")

    # --- on the host ---------------------------------------------------------------------

    def _run_on_host(
        self, logger: logging.Logger, terminating: Callable[[], bool], command: str
    ) -> int:
        work = self.host_work_dir()
        os.makedirs(work, exist_ok=True)
        # inputs where the command names them (container paths are host paths here)
        for host_path, container_path in self.input_path_map.items():
            link = self.host_work_path(container_path.rstrip("/"))
            if not os.path.lexists(link):
                os.makedirs(os.path.dirname(link), exist_ok=True)
                os.symlink(host_path.rstrip("/"), link)
        script = os.path.join(self.host_dir, "command")
        with open(script, "w") as f:
            for k, v in self.runtime_values.get("env", {}).items():
                f.write(f"export {k}={shlex.quote(v)}\n")
            f.write(command)
        shell = self.cfg.get("task_runtime", "command_shell")
        with ExitStack() as cleanup:
            stdout = cleanup.enter_context(open(self.host_stdout_txt(), "ab"))
            stderr = cleanup.enter_context(open(self.host_stderr_txt(), "ab"))
            poll_stderr = cleanup.enter_context(self.poll_stderr_context(logger))
            proc = subprocess.Popen(
                [*shlex.split(shell), script],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=work,
                env={**os.environ, "HOME": work, "TMPDIR": _tmpdir(work)},
            )
            logger.notice(_("host run", pid=proc.pid))  # type: ignore[attr-defined]
            cleanup.enter_context(self.task_running_context())
            exit_code = None
            while exit_code is None:
                if terminating():
                    proc.terminate()
                with suppress(subprocess.TimeoutExpired):
                    exit_code = proc.wait(1)
                poll_stderr()
            if terminating():
                raise Terminated()
        return exit_code

    # --- in podman -----------------------------------------------------------------------

    def _pull_invocation(self, logger: logging.Logger, cleanup: ExitStack) -> tuple[str, list[str]]:
        image = self._image() or ""
        exists = subprocess.run(
            ["podman", "image", "exists", image], capture_output=True, check=False
        )
        # an image that exists locally is never pulled
        return (image, [] if exists.returncode == 0 else ["podman", "pull", image])

    def _run_invocation(self, logger: logging.Logger, cleanup: ExitStack, image: str) -> list[str]:
        argv = [
            "podman",
            "run",
            "--rm",
            "--name",
            self._container_name(),
            "--workdir",
            os.path.join(self.container_dir, "work"),
        ]
        if not _network(self.cfg):
            argv += ["--network", "none"]
        cpu = self.runtime_values.get("cpu", 0)
        if cpu > 0:
            argv += ["--cpus", str(cpu)]
        memory_limit = self.runtime_values.get("memory_limit", 0)
        if memory_limit > 0:
            argv += ["--memory", str(memory_limit)]
        for container_path, host_path, writable in self.prepare_mounts():
            if ":" in container_path + host_path:
                raise Error.InputError("input file names cannot contain ':' in podman")
            argv += ["-v", f"{host_path}:{container_path}" + ("" if writable else ":ro")]
        argv.append(image)
        logger.info(_("podman invocation", args=" ".join(shlex.quote(a) for a in argv)))
        return argv


def _containers(cfg: config.Loader) -> str:
    return cfg.get("spindle", "containers") if cfg.has_option("spindle", "containers") else "none"


def _network(cfg: config.Loader) -> bool:
    return cfg.has_option("spindle", "network") and cfg.get_bool("spindle", "network")


def _tmpdir(work: str) -> str:
    tmp = os.path.join(work, "_miniwdl_tmpdir")
    os.makedirs(tmp, exist_ok=True)
    return tmp


# --- File inputs by URL ------------------------------------------------------------------

#: Seconds one download may wait for the server.
DOWNLOAD_TIMEOUT = 60


def download(
    cfg: config.Loader, logger: logging.Logger, uri: str, **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """Fetch ``uri`` into a fresh folder under ``[spindle] downloads`` (the run folder)."""
    root = cfg.get("spindle", "downloads")
    os.makedirs(root, exist_ok=True)
    folder = tempfile.mkdtemp(dir=root)
    name = os.path.basename(unquote(urlsplit(uri).path)) or "download"
    path = os.path.join(folder, name)
    logger.info(_("spindle download", uri=uri, file=path))
    with urllib.request.urlopen(uri, timeout=DOWNLOAD_TIMEOUT) as response, open(path, "wb") as f:  # noqa: S310 (http(s) only: the entry points' names)
        shutil.copyfileobj(response, f)
    yield {"outputs": {"file": path}}
