"""Commands for runs made from runs and for removing a run's files, through
:mod:`spindle.client`: ``resubmit``, ``resume``, ``lineage``, ``delete``."""

from __future__ import annotations

import json

import click

from spindle.cli.common import make_client, print_table, run_async, url_option
from spindle.cli.submit import _pairs, _yaml_value
from spindle.models.lineage import LineageResponse


@click.command()
@click.argument("run_id")
@url_option
def resubmit(run_id: str, url: str | None) -> None:
    """Submit a run again (same request and attachments); print the new run's id."""

    async def go() -> str:
        async with make_client(url) as client:
            return await client.resubmit(run_id)

    click.echo(run_async(go()))


@click.command()
@click.argument("run_id")
@click.option(
    "--param",
    "param",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one workflow parameter; VALUE is read as YAML (3, true, text).",
)
@click.option(
    "--engine-param",
    "engine_param",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one workflow engine parameter.",
)
@click.option("--notes", default="", help="Why, kept with the lineage.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Start afresh (a resubmission with the overrides) instead of continuing in the "
    "run's working folder.",
)
@url_option
def resume(
    run_id: str,
    param: tuple[str, ...],
    engine_param: tuple[str, ...],
    notes: str,
    fresh: bool,
    url: str | None,
) -> None:
    """Recover a run that ended EXECUTOR_ERROR, SYSTEM_ERROR or CANCELED: a new run that
    reuses what it finished (Snakemake reruns only failed and incomplete jobs, cwltool only
    uncached steps). Prints the new run's id."""
    params = {key: _yaml_value(raw) for key, raw in _pairs("--param", param)}
    engine_parameters = dict(_pairs("--engine-param", engine_param))

    async def go() -> str:
        async with make_client(url) as client:
            return await client.recover(
                run_id,
                reuse_work_dir=not fresh,
                notes=notes,
                override_params=params,
                override_engine_parameters=engine_parameters,
            )

    click.echo(run_async(go()))


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the lineage as JSON.")
@url_option
def lineage(run_id: str, as_json: bool, url: str | None) -> None:
    """Show a run's parent, its children and what changed from its parent."""

    async def go() -> LineageResponse:
        async with make_client(url) as client:
            return await client.lineage(run_id)

    found = run_async(go())
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return
    parent = found.parent
    click.echo(f"run:      {found.run_id}")
    if parent is not None:
        how = "recovery of" if found.recovery else "submitted again from"
        click.echo(f"parent:   {how} {parent.run_id} ({parent.state.value})")
        if found.work_from:
            click.echo(f"work:     continued in the working folder of {found.work_from}")
        if found.notes:
            click.echo(f"notes:    {found.notes}")
    else:
        click.echo("parent:   -")
    if found.changes:
        click.echo("changes:")
        print_table(
            ["KEY", "PARENT", "THIS RUN"],
            [
                (
                    ("engine:" if c.engine_parameter else "") + c.key,
                    json.dumps(c.before),
                    json.dumps(c.after),
                )
                for c in found.changes
            ],
        )
    if found.children:
        click.echo("children:")
        print_table(
            ["RUN ID", "STATE", "KIND"],
            [
                (c.run_id, c.state.value, "recovery" if c.recovery else "resubmission")
                for c in found.children
            ],
        )


@click.command()
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@url_option
def delete(run_id: str, yes: bool, url: str | None) -> None:
    """Remove a finished run's files; the run stays listed as deleted."""
    if not yes:
        click.confirm(f"Remove every file of run {run_id}?", abort=True)

    async def go() -> str:
        async with make_client(url) as client:
            deleted = await client.delete_run(run_id)
            return deleted.deleted_at.isoformat()

    click.echo(f"deleted {run_id} at {run_async(go())}")


def register(main: click.Group) -> None:
    for command in (resubmit, resume, lineage, delete):
        main.add_command(command)
