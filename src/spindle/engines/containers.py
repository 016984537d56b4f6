"""Containers without a Docker engine: what an engine needs to run a workflow's tools in
podman when its compute environment says ``containers = "podman"``.

Spindle never changes the machine's podman configuration: each run gets its own
``containers.conf`` (``support/containers/containers.conf``), named by ``CONTAINERS_CONF`` in
the engine's environment only, with what podman needs on these hosts (runc, cgroupfs, a file
event log, no default ulimits). cwltool, which knows ``docker`` but cannot run podman as root
(its ``--podman`` mode asks for a rootless user namespace), finds a ``docker`` on its ``PATH``
that is podman (``support/containers/bin/docker``); that shim also turns any network a tool
asks for into none unless the environment allows it.
"""

from __future__ import annotations

from pathlib import Path

from spindle.execution import Site
from spindle.storage.rundir import RunDir

#: The compute environment setting (said in errors when it is off).
SETTING = "containers"
#: The values it takes.
NONE, PODMAN = "none", "podman"

#: Podman's configuration for engines (see the module docstring).
CONTAINERS_CONF = """\
# Written by Spindle for this run's engine only (CONTAINERS_CONF); the machine's own
# configuration is never changed.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

#: ``docker`` for cwltool: podman, with any ``--net``/``--network`` of ``docker run`` replaced
#: by none unless the environment allows the network (@NETWORK@ is written in).
DOCKER_SHIM = """\
#!/bin/sh
# Written by Spindle: cwltool's `docker` is podman here (docs/containers.md).
network=@NETWORK@
if [ "$1" = run ] && [ "$network" = none ]; then
  shift
  for a do
    shift
    case $a in --net=*|--network=*) ;; *) set -- "$@" "$a" ;; esac
  done
  set -- run --network=none "$@"
fi
exec podman "$@"
"""


def folder(rundir: RunDir) -> Path:
    return rundir.support / "containers"


def write_conf(rundir: RunDir, site: Site) -> dict[str, str]:
    """Write the run's ``containers.conf``; the engine environment that names it."""
    where = folder(rundir)
    where.mkdir(parents=True, exist_ok=True)
    conf = where / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {"CONTAINERS_CONF": str(site.path(rundir, conf.absolute()))}


def docker_shim(rundir: RunDir) -> Path:
    """Where cwltool's ``docker`` is: ``support/containers/bin/docker``; cwltool's guard
    (``cwl_guard/sitecustomize.py``) puts its folder first on cwltool's PATH when it exists."""
    return folder(rundir) / "bin" / "docker"


def write_docker_shim(rundir: RunDir, network: bool) -> None:
    """Write the ``docker`` shim for cwltool (``network``: containers may reach it)."""
    shim = docker_shim(rundir)
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(DOCKER_SHIM.replace("@NETWORK@", "host" if network else "none"))
    shim.chmod(0o755)


def remove_docker_shim(rundir: RunDir) -> None:
    """No ``docker`` for cwltool (an environment without containers)."""
    docker_shim(rundir).unlink(missing_ok=True)
