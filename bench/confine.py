"""What confining an engine costs at its start: ``true`` run directly and through
``spindle.backends.confine`` (Landlock, the deny list of a typical data folder), as the local
backend starts every engine by default. Run: ``.venv/bin/python -m bench.confine [REPS]``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _times(argv: list[str], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory() as top:
        data = Path(top) / "data"
        work = data / "runs" / "r" / "work"
        work.mkdir(parents=True)
        helper = [sys.executable, "-I", "-m", "spindle.backends.confine", "--deny", str(data)]
        helper += ["--write", str(work), "--"]
        for name, argv in (("direct", ["true"]), ("confined", [*helper, "true"])):
            t = sorted(_times(argv, reps))
            print(
                f"{name:9} median {statistics.median(t) * 1000:6.1f} ms"
                f"  p90 {t[int(len(t) * 0.9) - 1] * 1000:6.1f} ms  ({reps} starts)"
            )


if __name__ == "__main__":
    main()
