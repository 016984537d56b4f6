"""The run directory: ``<data_dir>/runs/<run_id>/`` and every path inside it.

Every path that comes from a request goes through :meth:`RunDir.resolve`, which refuses
anything that would leave its folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spindle.errors import InvalidPath

#: Scheme of file references inside stored outputs: ``run:<path relative to the run dir>``.
#: The API turns each ``location`` with this scheme into a download URL.
RUN_FILE_SCHEME = "run:"


def safe_relative(name: str, *, field: str) -> PurePosixPath:
    """Check a client-given relative path: no NUL, not absolute, no ``..``, not empty."""
    if not name or "\x00" in name:
        raise InvalidPath(field=field, name=name, problem="is empty or contains a NUL byte")
    if "\\" in name:
        raise InvalidPath(field=field, name=name, problem="contains a backslash")
    pure = PurePosixPath(name)
    if pure.is_absolute():
        raise InvalidPath(field=field, name=name, problem="is an absolute path")
    if any(part == ".." for part in pure.parts):
        raise InvalidPath(field=field, name=name, problem="contains '..'")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts:
        raise InvalidPath(field=field, name=name, problem="names no file")
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @classmethod
    def for_run(cls, data_dir: Path, run_id: str) -> RunDir:
        return cls(data_dir / "runs" / run_id)

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def stdout(self) -> Path:
        return self.logs / "stdout"

    @property
    def stderr(self) -> Path:
        return self.logs / "stderr"

    @property
    def exit_code_file(self) -> Path:
        return self.root / "exit_code"

    @property
    def params_file(self) -> Path:
        return self.root / "params.json"

    @property
    def support(self) -> Path:
        """Spindle's own helper files for the engine (e.g. Snakemake's logger plugin), copied
        in so that the folder holds everything the run needs wherever it is started."""
        return self.root / "support"

    def create(self) -> None:
        # the run's files are its owner's: nobody else's account reads them (docs/security.md)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.attachments, self.work, self.outputs, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    def resolve(self, name: str, *, field: str = "path") -> Path:
        """Resolve a client-given path relative to the run directory, refusing escapes
        (``..``, absolute paths, symlinks pointing outside)."""
        rel = safe_relative(name, field=field)
        root = self.root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise InvalidPath(field=field, name=name, problem="leaves the run directory")
        return target

    def ref(self, path: Path) -> str:
        """A ``run:`` reference for a file inside this run directory."""
        rel = path.resolve().relative_to(self.root.resolve())
        return f"{RUN_FILE_SCHEME}{rel.as_posix()}"


#: ``<data_dir>/staging/<run_id>/``: one submission while it is made (see :class:`Staging`)
STAGING = "staging"
#: in a staging folder: the working folder its run took over came from there
WORK_FROM = "work-from"


class Staging:
    """One submission's folder while it is made, so that a crash at any point leaves either
    a run row with its folder in place, or a staging folder the next start removes.

    ``<data_dir>/staging/<run_id>/`` holds ``run/`` (the run folder being filled) and
    ``lock``, locked (``flock``) by the submitting process for as long as the submission
    lasts. The run folder moves to ``runs/<run_id>`` inside the transaction that inserts the
    run, before its commit; the staging folder goes once the commit is done. So a staging
    folder whose lock is free belongs to a submission whose process is gone:
    :func:`abandoned` lists them, :meth:`settle` finishes (row stored) or undoes (no row)
    each one.
    """

    def __init__(self, data_dir: Path, run_id: str) -> None:
        self.run_id = run_id
        self.folder = data_dir / STAGING / run_id
        self.final = RunDir.for_run(data_dir, run_id)
        self._lock: int | None = None

    @property
    def rundir(self) -> RunDir:
        return RunDir(self.folder / "run")

    def begin(self) -> None:
        """Make the staging folder and lock it (blocking)."""
        self.folder.mkdir(parents=True)
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock = fd
        self.rundir.create()

    def place(self) -> None:
        """Move the run folder into ``runs/<run_id>`` (inside the insert's transaction)."""
        self.final.root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.rundir.root, self.final.root)

    def done(self) -> None:
        """The run is stored: the staging folder goes."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self._unlock()

    def take_work(self, source: Path) -> bool:
        """Move another run's working folder ``source`` in as this run's ``work/`` (a
        recovery, see ``spindle.runs.lineage``), noting where it came from first, so that a
        submission undone (:meth:`discard`, also by :meth:`settle` after a crash) gives it
        back. False if there is no such folder, or it is a link (the workflow may have put
        one there: a link is never followed out of a run folder)."""
        if source.is_symlink() or not source.is_dir():
            return False
        (self.folder / WORK_FROM).write_text(str(source))
        os.rmdir(self.rundir.work)
        os.replace(source, self.rundir.work)
        return True

    def _give_work_back(self) -> None:
        try:
            source = Path((self.folder / WORK_FROM).read_text())
        except FileNotFoundError:
            return
        for place in (self.rundir.work, self.final.work):
            if place.is_dir() and not source.exists():
                os.replace(place, source)
                break
        (self.folder / WORK_FROM).unlink()

    def discard(self) -> None:
        """The submission failed before its commit: nothing of it stays (a working folder
        it took from another run goes back there)."""
        self._give_work_back()
        if not self.rundir.root.exists():
            shutil.rmtree(self.final.root, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self._unlock()

    def settle(self, stored: bool) -> None:
        """Finish an abandoned submission: with its run ``stored``, put its folder in place
        (if the crash came before the move); without, remove whatever it left."""
        if stored:
            if self.rundir.root.exists() and not self.final.root.exists():
                self.place()
            shutil.rmtree(self.folder, ignore_errors=True)
        else:
            self.discard()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def claim(self) -> bool:
        """Take the lock of an existing staging folder: True when its submitter is gone."""
        try:
            fd = os.open(self.folder / "lock", os.O_RDWR)
        except FileNotFoundError:
            # (made before its lock, or finished meanwhile: the folder alone says which)
            if not self.folder.exists():
                return False
            fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock = fd
        return True


def abandoned(data_dir: Path) -> list[Staging]:
    """The staging folders whose submitting process is gone, each locked for settling."""
    root = data_dir / STAGING
    found: list[Staging] = []
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            staging = Staging(data_dir, entry.name)
            if entry.is_dir() and staging.claim():
                found.append(staging)
    # (Spindle before the staging folder staged under runs/.incoming, moving the folder
    # before the insert: what is left there never got a row)
    shutil.rmtree(data_dir / "runs" / ".incoming", ignore_errors=True)
    return found
