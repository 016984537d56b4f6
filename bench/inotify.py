"""When does a new run's ``pid`` file appear? Seen from outside the server with inotify.

The local backend writes ``<data_dir>/runs/<run_id>/pid`` right after the engine's wrapper
process is spawned (and the wrapper writes it too, whichever comes first). The run folder
itself arrives in ``runs/`` by a rename from ``runs/.incoming/`` while the POST is handled,
so the watcher follows two levels: a new folder in ``runs/``, then ``pid`` inside it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time
from pathlib import Path

IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class PidFileWatcher:
    """Armed before a POST; :meth:`wait` returns the wall-clock time (``time.time()``) at
    which the new run's ``pid`` file was first seen, and the run folder's name."""

    def __init__(self, runs_dir: Path, limit_seconds: float) -> None:
        self.runs_dir = runs_dir
        self.limit = limit_seconds
        self.seen_at: float | None = None
        self.run_id: str | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._fd = _check(_libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK), "inotify_init1")
        try:
            self._runs_wd = self._watch(runs_dir)
        except BaseException:
            os.close(self._fd)
            raise
        self._thread = threading.Thread(target=self._loop, name="pid-watcher", daemon=True)
        self._thread.start()

    def _watch(self, path: Path) -> int:
        return _check(
            _libc.inotify_add_watch(self._fd, os.fsencode(path), IN_CREATE | IN_MOVED_TO),
            f"inotify_add_watch {path}",
        )

    def _loop(self) -> None:
        deadline = time.monotonic() + self.limit
        run_wd: int | None = None
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self._fd], [], [], 0.05)
                if not ready:
                    continue
                try:
                    buf = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                now = time.time()
                for wd, mask, name in _events(buf):
                    if wd == self._runs_wd and mask & IN_ISDIR and not name.startswith("."):
                        if run_wd is None:
                            self.run_id = name
                            run_wd = self._watch(self.runs_dir / name)
                            # it may have been written before the watch was in place
                            if (self.runs_dir / name / "pid").exists():
                                self.seen_at = time.time()
                                return
                    elif wd == run_wd and name == "pid":
                        self.seen_at = now
                        return
        except BaseException as exc:  # reported by wait()
            self.error = exc
        finally:
            os.close(self._fd)
            self._done.set()

    def wait(self, timeout: float) -> tuple[float | None, str | None]:
        self._done.wait(timeout)
        if self.error is not None:
            raise self.error
        return self.seen_at, self.run_id


def _events(buf: bytes) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    offset = 0
    while offset + _EVENT.size <= len(buf):
        wd, mask, _cookie, length = _EVENT.unpack_from(buf, offset)
        start = offset + _EVENT.size
        name = buf[start : start + length].rstrip(b"\0").decode(errors="replace")
        out.append((wd, mask, name))
        offset = start + length
    return out
