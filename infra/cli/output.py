"""How the CLI shows things: errors on stderr, tables and JSON on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from infra.errors import InfraError


PIPE_WIDTH = 160  # wide enough for job ids and paths when the output goes to a file or a pipe


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)


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


def print_checks(checks: list[Any]) -> None:
    """Doctor-style lines: name, a coloured status, the detail and, for anything not green, the fix."""
    from rich.markup import escape
    from rich.table import Table

    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    for c in checks:
        detail = escape(c.detail) + (f"\n[dim]fix: {escape(c.hint)}[/]" if c.hint else "")
        table.add_row(c.name, marks[c.status], detail)
    stdout_console().print(table)
