"""Spindle's guard inside cwltool's own process (not Spindle's): copied into the run folder's
``support/cwltool/`` and put on cwltool's ``PYTHONPATH``, so Python loads it at start-up.

cwltool copies an output that is a link to a file outside its job folders into ``--outdir``
(``relocateOutputs``), so a tool whose output is a link to ``/etc/passwd`` or to another
run's folder would have that file copied into the run's outputs and served. The guard wraps
``relocateOutputs``: an output (or a file inside an output folder) that lies inside the run
folder but is a link leading out of it stops the run with a message naming it, unless it
leads into a folder of the ``cwl_input_roots`` setting (which Spindle writes beside this file,
in ``allowed_roots.json``): such a file could as well have been named as an input. Files
outside the run folder that the workflow names itself (allowed inputs passed on) are left
alone.

Standard library and cwltool only: it runs in cwltool's environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: This file is ``<run folder>/support/cwltool/sitecustomize.py`` wherever the folder is.
RUN_FOLDER = Path(os.path.realpath(__file__)).parents[2]

#: Where Spindle put a ``docker`` that is podman, when the compute environment runs
#: containers (spindle.engines.containers): first on cwltool's PATH, in front of whatever
#: PATH the site gave it (a cluster's ``module load``).
DOCKER_SHIM = RUN_FOLDER / "support" / "containers" / "bin"
if (DOCKER_SHIM / "docker").is_file():
    os.environ["PATH"] = f"{DOCKER_SHIM}{os.pathsep}{os.environ.get('PATH', '')}"


def _allowed_roots() -> tuple[Path, ...]:
    """The ``cwl_input_roots`` folders (links resolved), as Spindle wrote them."""
    try:
        raw = json.loads((Path(__file__).parent / "allowed_roots.json").read_text())
    except (OSError, ValueError):
        return ()
    return tuple(Path(os.path.realpath(p)) for p in raw if isinstance(p, str))


ALLOWED_ROOTS = _allowed_roots()


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            location = value.get("location")
            if isinstance(location, str) and urlsplit(location).scheme in ("", "file"):
                yield unquote(urlsplit(location).path)
        for item in value.values():
            yield from _refs(item)


def _leads_out(path: str, places: tuple[Path, ...]) -> bool:
    real = Path(os.path.realpath(path))
    return not any(real.is_relative_to(place) for place in places)


def links_out(
    output: Any, root: Path = RUN_FOLDER, allowed: tuple[Path, ...] | None = None
) -> list[str]:
    """Paths inside ``root`` among the outputs (and inside output folders) that are links
    leading out of it, other than into an ``allowed`` folder (``cwl_input_roots``)."""
    places = (root, *(ALLOWED_ROOTS if allowed is None else allowed))
    found = []
    for ref in _refs(output):
        if not Path(os.path.abspath(ref)).is_relative_to(root):
            continue  # named outside the run by the workflow itself: not a link of ours
        if _leads_out(ref, places):
            found.append(ref)
        elif os.path.isdir(ref):
            for folder, dirs, files in os.walk(ref):
                found += [
                    os.path.join(folder, n)
                    for n in (*dirs, *files)
                    if _leads_out(os.path.join(folder, n), places)
                ]
    return found


def _install() -> None:
    try:
        import cwltool.executors as executors
        from cwltool.errors import WorkflowException
    except ImportError:
        return
    relocate = executors.relocateOutputs

    def guarded(output: Any, *args: Any, **kwargs: Any) -> Any:
        bad = links_out(output)
        if bad:
            raise WorkflowException(
                "Spindle refuses outputs that are links out of the run folder: " + ", ".join(bad)
            )
        return relocate(output, *args, **kwargs)

    executors.relocateOutputs = guarded


_install()
