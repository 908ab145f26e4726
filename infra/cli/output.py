"""How the CLI shows things: errors on stderr, tables and JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from infra.errors import InfraError


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_error(exc: InfraError) -> None:
    """One line per problem, then the hint. Plain text when stderr is not a terminal."""
    from rich.markup import escape

    console = stderr_console()
    for line in exc.lines:
        console.print(f"[bold red]error:[/] {escape(line)}")
    if exc.hint:
        console.print(f"[dim]hint:[/] {escape(exc.hint)}")
    tail = getattr(exc, "stderr_tail", "")
    if tail and tail.strip() not in exc.message:
        console.print(f"[dim]{escape(tail)}[/]")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def print_rows(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A plain table on stdout; cells are shown as text, never as rich markup."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False, title=title,
                  title_justify="left", title_style="bold")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(escape("" if cell is None else str(cell)) for cell in row))
    stdout_console().print(table)
