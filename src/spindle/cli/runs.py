"""Commands that talk to a running Spindle through :mod:`spindle.client`: submit, runs,
status, logs, cancel, tasks, outputs.

They never touch the database: everything goes through the HTTP API, so they work against a
remote server exactly as against a local one. A server error is printed as ``error: <msg>``
(the WES ErrorResponse ``msg``) with exit code 1, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from spindle.cli.common import (
    CliError,
    Output,
    make_client,
    outputs_of,
    poll_option,
    print_outputs,
    print_table,
    reader_left,
    run_async,
    short_time,
    url_option,
)
from spindle.cli.submit import submit
from spindle.client import (
    SpindleClient,
)
from spindle.domain import State
from spindle.models import wes


@click.command("runs")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Runs to show."
)
@click.option("--all", "show_all", is_flag=True, help="Show every run (ignores --limit).")
@url_option
def list_runs(limit: int, show_all: bool, url: str | None) -> None:
    """List runs, newest first."""

    async def go() -> list[wes.RunSummary]:
        found: list[wes.RunSummary] = []
        async with make_client(url) as client:
            async for run in client.iter_runs(page_size=None if show_all else min(limit, 1000)):
                found.append(run)
                if not show_all and len(found) >= limit:
                    break
        return found

    runs = run_async(go())
    print_table(
        ["RUN ID", "STATE", "START", "END", "TAGS"],
        [
            (
                r.run_id,
                r.state.value if r.state else "-",
                short_time(r.start_time),
                short_time(r.end_time),
                ",".join(f"{k}={v}" for k, v in sorted(r.tags.items())),
            )
            for r in runs
        ],
    )


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the full WES RunLog as JSON.")
@url_option
def status(run_id: str, as_json: bool, url: str | None) -> None:
    """Print a run's state (or, with --json, its whole RunLog)."""

    async def go() -> str:
        async with make_client(url) as client:
            if as_json:
                return (await client.get_run(run_id)).model_dump_json(indent=2, exclude_none=True)
            state = (await client.status(run_id)).state
            return state.value if state else State.UNKNOWN.value

    click.echo(run_async(go()))


@click.command()
@click.argument("run_id")
@url_option
def tasks(run_id: str, url: str | None) -> None:
    """List a run's tasks in the order the engine started them."""

    async def go() -> list[wes.TaskLog]:
        async with make_client(url) as client:
            return [t async for t in client.iter_tasks(run_id)]

    print_table(
        ["TASK ID", "NAME", "START", "END", "EXIT"],
        [
            (
                t.id,
                t.name,
                short_time(t.start_time),
                short_time(t.end_time),
                "-" if t.exit_code is None else str(t.exit_code),
            )
            for t in run_async(go())
        ],
    )


async def _download_all(client: SpindleClient, items: Sequence[Output], dest: Path) -> None:
    used: dict[str, str] = {}
    for item in items:
        if item.url is None:
            continue
        if item.kind != "File" or item.save_as is None:
            click.echo(f"{item.name}: skipped ({item.kind} at {item.url})", err=True)
            continue
        if item.save_as in used:
            raise CliError(
                f"outputs {used[item.save_as]!r} and {item.name!r} would both be saved "
                f"as {item.save_as!r}"
            )
        used[item.save_as] = item.name
        saved = await client.download(item.url, dest / item.save_as)
        click.echo(f"{item.name} -> {saved}")


@click.command()
@click.argument("run_id")
@click.option(
    "--download",
    "download_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Download every output file into this folder (keeping relative paths).",
)
@url_option
def outputs(run_id: str, download_dir: Path | None, url: str | None) -> None:
    """List a run's outputs with their download URLs, or download them."""

    async def go() -> None:
        async with make_client(url) as client:
            items = outputs_of(await client.get_run(run_id))
            if download_dir is None:
                print_outputs(items)
            else:
                await _download_all(client, items, download_dir)

    run_async(go())


# --- logs, cancel --------------------------------------------------------------------------


@click.command()
@click.argument("run_id")
@click.option("--stderr", "use_stderr", is_flag=True, help="The engine's stderr, not stdout.")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing as it is written, until the run ends."
)
@poll_option
@url_option
def logs(run_id: str, use_stderr: bool, follow: bool, poll: float, url: str | None) -> None:
    """Write a run's engine log (stdout, or stderr) to stdout, byte for byte."""
    stream = "stderr" if use_stderr else "stdout"

    async def go() -> None:
        async with make_client(url) as client:
            if follow:
                async for chunk in client.follow_log(run_id, stream, poll=poll):
                    click.echo(chunk, nl=False)  # bytes go to stdout's buffer as they are
                return
            offset = 0
            while True:
                chunk, offset = await client.read_log(run_id, stream, offset)
                if not chunk:
                    return
                click.echo(chunk, nl=False)

    try:
        run_async(go())
    except BrokenPipeError:
        reader_left()


@click.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait until the run has stopped (CANCELED).")
@poll_option
@url_option
def cancel(run_id: str, wait: bool, poll: float, url: str | None) -> None:
    """Cancel a run and print its state (CANCELING until its processes are gone)."""

    async def go() -> str:
        async with make_client(url) as client:
            await client.cancel(run_id)
            if wait:
                return (await client.wait(run_id, poll=poll)).state.value
            state = (await client.status(run_id)).state
            return state.value if state else State.UNKNOWN.value

    click.echo(run_async(go()))


def register(main: click.Group) -> None:
    commands: list[click.Command] = [submit, list_runs, status, logs, cancel, tasks, outputs]
    for command in commands:
        main.add_command(command)
