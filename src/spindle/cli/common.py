"""What the run commands share: running a coroutine, the --url option, tables, times,
sizes, and reading a run's outputs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any, TypeVar
from urllib.parse import unquote, urlsplit

import click

from spindle.client import (
    DEFAULT_URL,
    SpindleClient,
    SpindleClientError,
)
from spindle.models import wes

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

#: Snakefile names Snakemake itself looks for, in its order.


class CliError(click.ClickException):
    """A failure the user can act on: printed as ``error: <msg>``, exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine; client errors become ``error: <msg>``."""
    try:
        return asyncio.run(coro)
    except SpindleClientError as exc:
        raise CliError(exc.msg) from None
    except BrokenPipeError:
        raise
    except OSError as exc:  # a local file: a missing attachment, an unwritable download
        raise CliError(str(exc)) from None


def reader_left() -> None:
    """``spindle logs ID | head``: the reader closed the pipe. Point stdout at /dev/null so
    the interpreter's final flush does not complain, and stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def url_option(f: F) -> F:
    return click.option(
        "--url",
        envvar="SPINDLE_URL",
        default=None,
        metavar="URL",
        help=f"Spindle server (env SPINDLE_URL; default {DEFAULT_URL}).",
    )(f)


def poll_option(f: F) -> F:
    return click.option(
        "--poll",
        type=click.FloatRange(min=0.05),
        default=1.0,
        show_default=True,
        metavar="SECONDS",
        help="Seconds between checks of the run.",
    )(f)


def make_client(
    url: str | None, *, username: str | None = None, password: str | None = None
) -> SpindleClient:
    try:
        return SpindleClient(url, username=username, password=password)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def read_password(prompt: str = "Password", *, confirm: bool = False) -> str:
    """A password from the terminal (not echoed; typed twice with ``confirm``), or, when
    stdin is not a terminal, its first line: passwords never go on the command line, where
    ``ps`` shows them to everyone."""
    if sys.stdin.isatty():
        value: str = click.prompt(
            prompt, hide_input=True, confirmation_prompt=confirm, err=True, show_default=False
        )
    else:
        value = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not value:
        raise CliError("the password is empty")
    return value


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Plain aligned columns (no box drawing): stable to read, grep and cut."""
    body = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    for row in [list(headers), *body]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)] + [row[-1]]
        click.echo("  ".join(cells).rstrip())


def short_time(value: str | None) -> str:
    return value or "-"


# --- submit: what to send ---------------------------------------------------------------


def human_size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    size = n / 1000
    for unit in ("kB", "MB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# --- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    """One line of a run's outputs: a file (with its download URL) or a plain value."""

    name: str
    url: str | None = None
    value: Any = None
    kind: str = "File"
    save_as: str | None = None


def _safe_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value or "\\" in value:
        return None
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts:
        return None
    return pure.as_posix()


def _list_item_name(parent: str, index: int, item: Any) -> str:
    """Files in a list are named by their relative path (Snakemake's outputs are one list
    of files), anything else by position."""
    if isinstance(item, dict) and isinstance(item.get("location"), str):
        path = _safe_name(item.get("path"))
        if path:
            return path
    return f"{parent}[{index}]"


def _walk_outputs(value: Any, name: str, out: list[Output]) -> None:
    if isinstance(value, dict):
        location = value.get("location")
        if isinstance(location, str):
            last = unquote(urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1])
            save_as = _safe_name(value.get("path")) or _safe_name(value.get("basename"))
            out.append(
                Output(
                    name=name or "output",
                    url=location,
                    kind=str(value.get("class", "File")),
                    save_as=save_as or _safe_name(last),
                )
            )
            for i, extra in enumerate(value.get("secondaryFiles") or []):
                _walk_outputs(extra, f"{name}.secondaryFiles[{i}]", out)
            return
        for key, item in value.items():
            _walk_outputs(item, f"{name}.{key}" if name else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _walk_outputs(item, _list_item_name(name, i, item), out)
    else:
        out.append(Output(name=name or "output", value=value))


def outputs_of(run: wes.RunLog) -> list[Output]:
    """A run's outputs flattened to named files and values, whatever the engine's shape."""
    out: list[Output] = []
    _walk_outputs(run.outputs, "", out)
    return out


def print_outputs(items: Sequence[Output]) -> None:
    if not items:
        click.echo("no outputs")
        return
    print_table(
        ["OUTPUT", "LOCATION"],
        [(o.name, o.url if o.url is not None else json.dumps(o.value)) for o in items],
    )


# --- submit --------------------------------------------------------------------------------
