"""The log archive's memory: a run whose log is large, its archive streamed to nowhere
(``storage/archive.py``, zipstream-ng), the peak resident memory measured before and after.

    .venv/bin/python -m bench.archive [--mib 512]

Each figure comes from a fresh process (peak RSS only grows), so the script runs itself
once per mode: ``stream`` (Spindle's archive) and ``memory`` (the same members written by
``zipfile`` into a ``BytesIO``, what building it in memory would cost)."""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from spindle.domain import State
from spindle.storage import archive
from spindle.storage.rundir import RunDir
from spindle.testing import run_record


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _make(root: Path, mib: int) -> RunDir:
    rundir = RunDir(root / "run")
    rundir.create()
    with rundir.stdout.open("wb") as f:
        for _ in range(mib):  # random hex: compresses about 2:1, like a busy log
            f.write(os.urandom(1 << 19).hex().encode())
    rundir.stderr.write_bytes(b"done\n")
    return rundir


def _one(mode: str, mib: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rundir = _make(Path(tmp), mib)
        run = run_record("bench", state=State.COMPLETE)
        before = _peak_mib()
        start = time.perf_counter()
        size = 0
        if mode == "stream":
            for chunk in archive.stream(run, rundir, []):
                size += len(chunk)
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.write(rundir.stdout, "logs/stdout")
                zf.write(rundir.stderr, "logs/stderr")
            size = len(buffer.getvalue())
        seconds = time.perf_counter() - start
        print(f"{mode}\t{mib}\t{size / 2**20:.0f}\t{seconds:.1f}\t{before:.0f}\t{_peak_mib():.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512, help="size of the run's log (MiB)")
    parser.add_argument("--mode", choices=["stream", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        _one(args.mode, args.mib)
        return
    print("| Mode | Log (MiB) | Zip (MiB) | Seconds | Peak RSS before (MiB) | after (MiB) |")
    print("|---|---|---|---|---|---|")
    for mode in ("stream", "memory"):
        out = subprocess.run(
            [sys.executable, "-m", "bench.archive", "--mib", str(args.mib), "--mode", mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        print("| " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
