"""``spindle groups``: run groups (docs/groups.md) through :mod:`spindle.client`, like the run
commands: create, list, show, update, delete, and the group's runs (runs, cancel, move).

Limits are checked by the server, so a bad one is the server's ``error: max_runs: ...``; a
limit option takes ``none`` to mean "no limit" (with ``update``: clear it).
"""

from __future__ import annotations

from typing import Any

import click

from spindle.cli.common import make_client, print_table, run_async, short_time, url_option
from spindle.client import UNSET, Unset
from spindle.models import wes
from spindle.models.groups import RunGroup


class _Clear:
    """What a limit option holds when given ``none``."""

    def __repr__(self) -> str:
        return "none"


CLEAR = _Clear()
LimitValue = int | float | _Clear


class Limit(click.ParamType[LimitValue, str]):
    """A positive number, or ``none`` (no limit). Whether the number is in range is the
    server's to say, so the message is the same as the API's."""

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind
        self.name = "integer|none" if kind is int else "minutes|none"

    def convert(
        self, value: str | LimitValue, param: click.Parameter | None, ctx: click.Context | None
    ) -> LimitValue:
        if isinstance(value, int | float | _Clear):
            return value
        text = str(value).strip()
        if text.lower() in ("none", "null", ""):
            return CLEAR
        try:
            return self.kind(text)
        except ValueError:
            what = "a whole number" if self.kind is int else "a number of minutes"
            self.fail(f"{value!r} is not {what} or 'none'", param, ctx)


def _limit(value: Any) -> Any:
    """An option's value for the client: None for ``none``, UNSET when not given."""
    if value is None:
        return UNSET
    return None if value is CLEAR else value


def _limit_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--max-runs",
                type=Limit(int),
                help="Runs of the group running at once (more wait QUEUED); none: no limit.",
            ),
            click.option(
                "--max-cpus",
                type=Limit(int),
                help="CPUs (the cpus engine parameter) its running runs may hold together; "
                "none: no limit.",
            ),
            click.option(
                "--max-duration",
                type=Limit(float),
                metavar="MINUTES",
                help="Minutes a run may run before it is stopped (SYSTEM_ERROR); none: no limit.",
            ),
            click.option(
                "--compute-env",
                metavar="NAME|none",
                help="Compute environment of its runs that name none; none: the default.",
            ),
            click.option("--description", metavar="TEXT", help="Free text about the group."),
        ]
    ):
        f = option(f)
    return f


def _limit_text(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    return shown + unit


def _counts(group: RunGroup) -> str:
    parts = [f"{state}={n}" for state, n in group.run_counts.items() if n]
    return " ".join(parts) or "no runs"


@click.group()
def groups() -> None:
    """Run groups: batches of runs with limits on what they use at once."""


@groups.command("create")
@click.argument("name")
@_limit_options
@url_option
def create(
    name: str,
    max_runs: Any,
    max_cpus: Any,
    max_duration: Any,
    compute_env: str | None,
    description: str | None,
    url: str | None,
) -> None:
    """Create a run group and print its id."""

    def given(value: Any) -> Any:
        limit = _limit(value)
        return None if limit is UNSET else limit

    env = None if compute_env is None or compute_env.lower() == "none" else compute_env

    async def go() -> RunGroup:
        async with make_client(url) as client:
            return await client.create_group(
                name,
                description=description,
                max_runs=given(max_runs),
                max_cpus=given(max_cpus),
                max_duration=given(max_duration),
                compute_env=env,
            )

    click.echo(run_async(go()).id)


@groups.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Groups to show."
)
@click.option("--all", "show_all", is_flag=True, help="Show every group (ignores --limit).")
@click.option("--search", metavar="TEXT", help="Only groups with TEXT in name, description or id.")
@click.option(
    "--sort",
    type=click.Choice(["created", "name"]),
    default="created",
    show_default=True,
    help="Sort by creation time (newest first) or name (A first).",
)
@url_option
def list_groups(limit: int, show_all: bool, search: str | None, sort: str, url: str | None) -> None:
    """List run groups with their limits and runs."""

    async def go() -> list[RunGroup]:
        found: list[RunGroup] = []
        order = "asc" if sort == "name" else "desc"
        async with make_client(url) as client:
            async for group in client.iter_groups(
                page_size=None if show_all else min(limit, 1000), q=search, sort=sort, order=order
            ):
                found.append(group)
                if not show_all and len(found) >= limit:
                    break
        return found

    print_table(
        ["GROUP ID", "NAME", "MAX RUNS", "MAX CPUS", "MAX MINUTES", "RUNNING", "QUEUED", "RUNS"],
        [
            (
                g.id,
                g.name,
                _limit_text(g.max_runs),
                _limit_text(g.max_cpus),
                _limit_text(g.max_duration),
                str(g.usage.running),
                str(g.run_counts.get("QUEUED", 0)),
                str(sum(g.run_counts.values())),
            )
            for g in run_async(go())
        ],
    )


@groups.command("show")
@click.argument("group_id")
@click.option("--json", "as_json", is_flag=True, help="Print the group as the API answers it.")
@url_option
def show(group_id: str, as_json: bool, url: str | None) -> None:
    """Show a group: its limits, what its runs use now, and its runs by state."""

    async def go() -> RunGroup:
        async with make_client(url) as client:
            return await client.get_group(group_id)

    g = run_async(go())
    if as_json:
        click.echo(g.model_dump_json(indent=2))
        return
    rows = [
        ("id", g.id),
        ("name", g.name),
        ("description", g.description or "-"),
        ("created", g.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("updated", g.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("running", f"{g.usage.running} / {_limit_text(g.max_runs)}"),
        ("cpus in use", f"{g.usage.cpus_in_use} / {_limit_text(g.max_cpus)}"),
        ("max duration", _limit_text(g.max_duration, " min")),
        ("compute env", g.compute_env or "-"),
        ("runs", _counts(g)),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key + ':':<{width + 1}}  {value}")


@groups.command("update")
@click.argument("group_id")
@click.option("--name", metavar="NAME", help="A new name.")
@_limit_options
@url_option
def update(
    group_id: str,
    name: str | None,
    max_runs: Any,
    max_cpus: Any,
    max_duration: Any,
    compute_env: str | None,
    description: str | None,
    url: str | None,
) -> None:
    """Change a group's name, description or limits (`--max-runs none` clears a limit)."""
    env: str | Unset | None = UNSET
    if compute_env is not None:
        env = None if compute_env.lower() == "none" else compute_env
    changes = {
        "name": UNSET if name is None else name,
        "description": UNSET if description is None else description,
        "max_runs": _limit(max_runs),
        "max_cpus": _limit(max_cpus),
        "max_duration": _limit(max_duration),
        "compute_env": env,
    }
    if all(v is UNSET for v in changes.values()):
        raise click.UsageError("nothing to change: give --name, --description or a limit")

    async def go() -> RunGroup:
        async with make_client(url) as client:
            return await client.update_group(
                group_id,
                name=changes["name"],
                description=changes["description"],
                max_runs=changes["max_runs"],
                max_cpus=changes["max_cpus"],
                max_duration=changes["max_duration"],
                compute_env=changes["compute_env"],
            )

    g = run_async(go())
    click.echo(
        f"updated run group {g.id}: max runs {_limit_text(g.max_runs)}, max cpus "
        f"{_limit_text(g.max_cpus)}, max duration {_limit_text(g.max_duration, ' min')}"
    )


@groups.command("delete")
@click.argument("group_id")
@click.option(
    "--detach-runs",
    is_flag=True,
    help="Delete a group that has runs; they stay, in no group (unfinished ones go on).",
)
@url_option
def delete(group_id: str, detach_runs: bool, url: str | None) -> None:
    """Delete a run group (one with runs only with --detach-runs)."""

    async def go() -> int:
        async with make_client(url) as client:
            return (await client.delete_group(group_id, detach_runs=detach_runs)).detached_runs

    detached = run_async(go())
    suffix = f" ({detached} run{'s' if detached != 1 else ''} detached)" if detached else ""
    click.echo(f"deleted run group {group_id}{suffix}")


@groups.command("runs")
@click.argument("group_id")
@click.option(
    "--state", "states", multiple=True, metavar="STATE", help="Only runs in STATE (repeatable)."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Runs to show."
)
@click.option("--all", "show_all", is_flag=True, help="Show every run (ignores --limit).")
@url_option
def runs(
    group_id: str, states: tuple[str, ...], limit: int, show_all: bool, url: str | None
) -> None:
    """List a group's runs, newest first."""

    async def go() -> list[wes.RunSummary]:
        found: list[wes.RunSummary] = []
        async with make_client(url) as client:
            async for run in client.iter_group_runs(
                group_id, page_size=None if show_all else min(limit, 1000), states=states
            ):
                found.append(run)
                if not show_all and len(found) >= limit:
                    break
        return found

    print_table(
        ["RUN ID", "STATE", "START", "END"],
        [
            (
                r.run_id,
                r.state.value if r.state else "-",
                short_time(r.start_time),
                short_time(r.end_time),
            )
            for r in run_async(go())
        ],
    )


@groups.command("cancel")
@click.argument("group_id")
@url_option
def cancel(group_id: str, url: str | None) -> None:
    """Cancel every unfinished run of a group; print their ids."""

    async def go() -> list[str]:
        async with make_client(url) as client:
            return (await client.cancel_group(group_id)).canceled_runs

    canceled = run_async(go())
    if not canceled:
        click.echo("no unfinished runs", err=True)
    for run_id in canceled:
        click.echo(run_id)


@groups.command("move")
@click.argument("run_id")
@click.argument("group_id", metavar="GROUP_ID|none")
@url_option
def move(run_id: str, group_id: str, url: str | None) -> None:
    """Move a QUEUED run into a group (`none`: out of any group)."""
    target = None if group_id.lower() == "none" else group_id

    async def go() -> str | None:
        async with make_client(url) as client:
            return (await client.move_run(run_id, target)).run_group_id

    now = run_async(go())
    click.echo(f"run {run_id} is in run group {now}" if now else f"run {run_id} is in no group")


def register(main: click.Group) -> None:
    main.add_command(groups)
