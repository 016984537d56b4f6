"""The run directory: ``<data_dir>/runs/<run_id>/`` and every path inside it.

Every path that comes from a request goes through :meth:`RunDir.resolve`, which refuses
anything that would leave its folder.
"""

from __future__ import annotations

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
