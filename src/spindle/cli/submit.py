"""``spindle submit``: find the workflow and its files, submit, and with ``--wait`` follow
the run's progress to its end."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import yaml

from spindle.cli.common import (
    CliError,
    human_size,
    make_client,
    outputs_of,
    poll_option,
    print_outputs,
    run_async,
    url_option,
)
from spindle.client import (
    SpindleClient,
    folder_attachments,
)
from spindle.domain import State
from spindle.models import wes
from spindle.models.extensions import RunProgress

SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")


@dataclass
class Workflow:
    """What ``spindle submit`` sends: the workflow_url and the attachments."""

    url: str
    attachments: list[tuple[str, Path]]
    #: the local workflow file, when there is one (to read its declared version)
    local: Path | None
    #: the folder relative attachment names start from
    base: Path


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _find_workflow(folder: Path) -> Path:
    for name in SNAKEFILES:
        if (folder / name).is_file():
            return folder / name
    cwl = sorted(p for p in folder.glob("*.cwl") if p.is_file())
    if len(cwl) == 1:
        return cwl[0]
    if cwl:
        names = ", ".join(p.name for p in cwl)
        raise CliError(f"{folder} holds several .cwl files ({names}): name the one to run")
    raise CliError(f"{folder} holds no Snakefile, workflow/Snakefile or .cwl file")


def _attach_extra(paths: Sequence[Path], base: Path) -> list[tuple[str, Path]]:
    """``--attach`` files and folders, named relative to ``base`` when inside it, else by
    their own name."""
    out: list[tuple[str, Path]] = []
    root = base.resolve()
    for path in paths:
        full = path.resolve()
        name = full.relative_to(root).as_posix() if full.is_relative_to(root) else path.name
        if path.is_dir():
            out.extend((f"{name}/{rel}", p) for rel, p in folder_attachments(path))
        elif path.is_file():
            out.append((name, path))
        else:
            raise CliError(f"--attach {path}: no such file or folder")
    return out


def _workflow(target: str, extra: Sequence[Path]) -> Workflow:
    if _is_url(target):
        base = Path.cwd()
        return Workflow(target, _attach_extra(extra, base), None, base)
    path = Path(target)
    if path.is_dir():
        base, local = path, _find_workflow(path)
    elif path.is_file():
        base, local = path.parent, path
    else:
        raise CliError(f"{target}: no such file or folder (or give an http(s) URL)")
    files = folder_attachments(base)
    seen = {name: p.resolve() for name, p in files}
    for name, p in _attach_extra(extra, base):
        if name in seen and seen[name] != p.resolve():
            raise CliError(f"--attach {p}: another file is already attached as {name!r}")
        if name not in seen:
            seen[name] = p.resolve()
            files.append((name, p))
    url = local.relative_to(base).as_posix()
    return Workflow(url, files, local, base)


def _infer_type(name: str) -> str:
    """The workflow type whose engine plugins claim the file name (their ``workflow_files``)."""
    from spindle.engines.registry import engine_classes

    lowered = name.lower()
    engines = engine_classes().values()
    for engine in engines:
        if any(fnmatch.fnmatchcase(lowered, pattern) for pattern in engine.workflow_files):
            return engine.workflow_type
    types = " or ".join(f"--type {t}" for t in sorted({e.workflow_type for e in engines}))
    raise CliError(f"cannot tell the workflow type of {name!r}: give {types}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


_CWL_VERSION = re.compile(r"""["']?cwlVersion["']?\s*:\s*["']?([\w.\-]+)""")


def _declared_version(workflow_type: str, local: Path | None) -> str | None:
    """The version a local CWL document declares (``cwlVersion``), if any."""
    if workflow_type != "CWL" or local is None:
        return None
    try:
        found = _CWL_VERSION.search(local.read_text(errors="replace"))
    except OSError:
        return None
    return found.group(1) if found else None


def _choose_version(info: wes.ServiceInfo, workflow_type: str, declared: str | None) -> str:
    """The version the workflow declares if the server runs it, else the newest listed."""
    entry = info.workflow_type_versions.get(workflow_type)
    if entry is None or not entry.workflow_type_version:
        runs = ", ".join(sorted(info.workflow_type_versions)) or "nothing"
        raise CliError(f"this Spindle does not run {workflow_type} workflows (it runs: {runs})")
    listed = entry.workflow_type_version
    if declared in listed:
        return declared
    return max(listed, key=_version_key)


def _yaml_value(raw: str) -> Any:
    """A ``--param`` value as YAML (``3`` is a number, ``true`` a boolean); anything YAML
    reads as something JSON cannot carry (a date) stays the string it was."""
    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
        json.dumps(value)
    except (yaml.YAMLError, TypeError, ValueError):
        return raw
    return value


def _pairs(option: str, values: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out.append((key.strip(), value))
    return out


def _params(params_file: Path | None, overrides: Sequence[str]) -> dict[str, Any] | None:
    params: dict[str, Any] | None = None
    if params_file is not None:
        try:
            text = params_file.read_text()
            loaded = (
                json.loads(text) if params_file.suffix.lower() == ".json" else yaml.safe_load(text)
            )
        except (OSError, ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
            raise CliError(f"--params {params_file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise CliError(f"--params {params_file}: must hold a mapping of parameter names")
        params = loaded
    for key, raw in _pairs("--param", overrides):
        params = params or {}
        params[key] = _yaml_value(raw)
    return params


async def _watch(client: SpindleClient, run_id: str, poll: float) -> RunProgress:
    """A live bar on stderr (tasks done of total; a spinner when the engine gives no total)
    until the run reaches a terminal state."""
    from rich.console import Console, RenderableType
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Mark(SpinnerColumn):
        """A spinner while the run goes on; a tick or a cross once it has ended."""

        def render(self, task: Task) -> RenderableType:
            mark = task.fields.get("mark")
            return Text(mark) if mark else super().render(task)

    columns = (
        Mark(),
        TextColumn("{task.fields[state]:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("", total=None, state=State.QUEUED.value, mark="")
        while True:
            progress = await client.progress(run_id)
            total = progress.total
            mark = ""
            if progress.state.terminal:
                ok = progress.state is State.COMPLETE
                mark = "✓" if ok else "✗"
                if ok and total is None:  # the count is final now
                    total = progress.done
            bar.update(
                task,
                completed=progress.done,
                total=total,
                description=", ".join(progress.current),
                state=progress.state.value,
                mark=mark,
            )
            if progress.state.terminal:
                return progress
            await asyncio.sleep(poll)


async def _submit(
    url: str | None,
    workflow: Workflow,
    workflow_type: str,
    type_version: str | None,
    declared: str | None,
    engine: str | None,
    engine_version: str | None,
    params: dict[str, Any] | None,
    tags: dict[str, str],
    engine_params: dict[str, str],
    group: str | None,
    wait: bool,
    poll: float,
) -> int:
    async with make_client(url) as client:
        if type_version is None:
            type_version = _choose_version(await client.service_info(), workflow_type, declared)
        run_id = await client.submit(
            workflow.url,
            workflow_type=workflow_type,
            workflow_type_version=type_version,
            attachments=workflow.attachments,
            workflow_params=params,
            tags=tags or None,
            workflow_engine=engine,
            workflow_engine_version=engine_version,
            workflow_engine_parameters=engine_params or None,
            run_group_id=group,
        )
        click.echo(run_id)
        if not wait:
            return 0
        try:
            final = await _watch(client, run_id, poll)
        except asyncio.CancelledError:
            click.echo(f"stopped waiting; run {run_id} goes on (spindle cancel {run_id})", err=True)
            raise
        run = await client.get_run(run_id)
        click.echo(final.state.value)
        if final.state is State.COMPLETE:
            print_outputs(outputs_of(run))
            return 0
        for line in run.run_log.system_logs or []:
            click.echo(line, err=True)
        click.echo(f"see the engine's log: spindle logs {run_id} --stderr", err=True)
        return 1


@click.command()
@click.argument("workflow", metavar="PATH_OR_URL")
@click.option(
    "--type",
    "workflow_type",
    metavar="TYPE",
    help="Workflow type: SMK or CWL (default: from the file name).",
)
@click.option(
    "--type-version",
    metavar="VERSION",
    help="workflow_type_version (default: the version a CWL file declares, else the newest "
    "the server lists for the type).",
)
@click.option("--engine", metavar="NAME", help="workflow_engine, e.g. snakemake or cwltool.")
@click.option("--engine-version", metavar="VERSION", help="workflow_engine_version.")
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="workflow_params from a .json or .yaml file.",
)
@click.option(
    "--param",
    "param",
    multiple=True,
    metavar="KEY=VALUE",
    help="One workflow parameter; VALUE is read as YAML (3, true, text). Overrides --params.",
)
@click.option("--tag", multiple=True, metavar="KEY=VALUE", help="A tag on the run.")
@click.option(
    "--engine-param",
    multiple=True,
    metavar="KEY=VALUE",
    help="A workflow_engine_parameters entry, e.g. compute_env=local.",
)
@click.option(
    "--group",
    metavar="GROUP_ID",
    help="Put the run into this run group (see `spindle groups`).",
)
@click.option(
    "--cpus",
    type=click.IntRange(min=1),
    help="CPUs the run counts against its group's max_cpus (the cpus engine parameter; "
    "default: Snakemake's cores, else 1).",
)
@click.option(
    "--priority",
    type=int,
    help="Order inside its run group: higher runs start first (the priority engine "
    "parameter; default 0).",
)
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Another file or folder to attach (named relative to the workflow's folder).",
)
@click.option("--wait", is_flag=True, help="Show progress until the run ends; exit 0 if COMPLETE.")
@poll_option
@url_option
def submit(
    workflow: str,
    workflow_type: str | None,
    type_version: str | None,
    engine: str | None,
    engine_version: str | None,
    params_file: Path | None,
    param: tuple[str, ...],
    tag: tuple[str, ...],
    engine_param: tuple[str, ...],
    group: str | None,
    cpus: int | None,
    priority: int | None,
    attach: tuple[Path, ...],
    wait: bool,
    poll: float,
    url: str | None,
) -> None:
    """Submit a workflow and print its run id.

    PATH_OR_URL is a workflow file (a Snakefile or a .cwl file), a folder holding one
    (Snakefile, workflow/Snakefile or a single .cwl), or an http(s) URL. For a file or folder
    every file of the folder is attached, keeping subfolders; hidden files, .snakemake/ and
    __pycache__/ are left out.
    """
    flow = _workflow(workflow, attach)
    name = flow.local.name if flow.local else urlsplit(workflow).path.rsplit("/", 1)[-1]
    wtype = workflow_type.upper() if workflow_type else _infer_type(name)
    params = _params(params_file, param)
    engine_params = dict(_pairs("--engine-param", engine_param))
    for option, key, value in (("--cpus", "cpus", cpus), ("--priority", "priority", priority)):
        if value is None:
            continue
        if key in engine_params:
            raise click.UsageError(f"give {key} either as {option} or as --engine-param, not both")
        engine_params[key] = str(value)
    if flow.attachments:
        total = sum(p.stat().st_size for _, p in flow.attachments)
        click.echo(
            f"attaching {len(flow.attachments)} files ({human_size(total)}) from {flow.base}",
            err=True,
        )
    code = run_async(
        _submit(
            url,
            flow,
            wtype,
            type_version,
            _declared_version(wtype, flow.local),
            engine,
            engine_version,
            params,
            dict(_pairs("--tag", tag)),
            engine_params,
            group,
            wait,
            poll,
        )
    )
    raise click.exceptions.Exit(code)


# --- runs, status, tasks, outputs ----------------------------------------------------------
