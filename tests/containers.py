"""The test container image, built here from Debian packages and never pulled: busybox-static
(every applet a link to it) plus bash and the libraries it links, turned into an image by
``podman import``. Built once per session (a fixture in tests/engines/conftest.py), with
Spindle's own containers.conf, so the machine's podman configuration is never needed nor
changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from spindle.engines.containers import CONTAINERS_CONF
from tests.support import missing

#: The image the examples name (examples/wdl/container, examples/cwl/container).
IMAGE = "spindle-test/busybox:1"
#: Debian packages the image is made of (the files they installed on this machine).
PACKAGES = ("busybox-static", "bash")


def _libraries(program: str) -> list[str]:
    """The shared libraries ``program`` loads (``ldd``), the loader included."""
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/"):
                found.append(word)
    return found


def build_image(folder: Path) -> str:
    """Build :data:`IMAGE` into the machine's image store (the same every time); its name."""
    for program in ("podman", "runc", "busybox", "ldd"):
        if shutil.which(program) is None:
            missing(f"{program} is not installed (apt-get install podman runc busybox-static)")
    busybox = shutil.which("busybox") or ""
    root = folder / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    shutil.copy(busybox, root / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    bash = os.path.realpath(shutil.which("bash") or "/bin/bash")
    shutil.copy(bash, root / "bin" / "bash")
    for lib in _libraries(bash):
        target = root / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(lib), target)
    archive = folder / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname=".")
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    subprocess.run(
        ["podman", "import", str(archive), IMAGE],
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        capture_output=True,
        check=True,
    )
    return IMAGE
