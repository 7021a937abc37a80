"""Printing for the CLI: tables, JSON, and errors as a person reads them (never a traceback)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from conveyor.errors import ConveyorError, SpecError

# soft_wrap: long lines stay whole when piped (no hard wrapping at 80 columns)
# piped output is not cut at Rich's 80-column default
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
console = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(Output.table, "--output", "-o", help="table for people, json for scripts")


def print_json(value: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def short_time(stamp: str | None) -> str | None:
    """`2026-11-25T10:00:01.123456Z` as `2026-11-25 10:00:01` for tables."""
    return stamp[:19].replace("T", " ") if stamp else stamp


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Rich table; `None` cells print as a dash."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("—" if cell is None else str(cell) for cell in row))
    console.print(table)


def render_error(exc: ConveyorError) -> str:
    """The lines a user sees for an error: what, where, and the fix."""
    lines: list[str] = []
    if isinstance(exc, SpecError):
        lines.extend(f"error: {p.render()}" for p in exc.problems)
        if not exc.problems:
            lines.append(f"error: {exc.detail}")
        return "\n".join(lines)
    lines.append(f"error: {exc.detail}")
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    request_id = exc.extra.get("request_id")
    if request_id and exc.status >= 500:
        lines.append(f"request id: {request_id}")
    return "\n".join(lines)


def exit_with_error(exc: ConveyorError) -> NoReturn:
    """Print the error on stderr and exit non-zero (2 for invalid input, 1 otherwise)."""
    err_console.print(render_error(exc), markup=False, soft_wrap=True)
    raise typer.Exit(2 if isinstance(exc, SpecError) else 1)
