"""Printing for people (rich tables) and scripts (--json), and the one place errors become exit codes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.errors import VoxgateError
from pipeline.settings import DEFAULT_HOME

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

Home = Annotated[Path, typer.Option("--home", envvar="VOXGATE_HOME", help="Workspace folder.", show_default=True)]
AsUser = Annotated[Optional[str], typer.Option("--as", envvar="VOXGATE_USER", help="Acting user (or VOXGATE_USER).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
HOME_DEFAULT = DEFAULT_HOME


def handles_errors(fn: F) -> F:
    """Turn a `VoxgateError` into one red line on stderr and exit status 1; anything else is a bug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VoxgateError as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def fail(exc: VoxgateError) -> None:
    line = Text.assemble((type(exc).__name__, "bold red"), ": ", " ".join(str(exc).split()))
    err_console.print(line, soft_wrap=True, highlight=False)
    raise typer.Exit(1)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(data: Any) -> None:
    console.out(json.dumps(data, default=_plain, indent=2, ensure_ascii=False), highlight=False)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(_plain(v))) for v in row))
    console.print(table)


def print_fields(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in fields:
        table.add_row(name, Text("" if value is None else str(_plain(value))))
    console.print(table)


def success(message: str) -> None:
    console.print(Text(message, style="green"), soft_wrap=True)
