"""`infra doctor`: a line per prerequisite, with a fix for every line that is not green."""

from __future__ import annotations

from typing import Annotated

import typer


def doctor(json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False) -> None:
    """Check the engine, BuildKit, buildx, compose, swarm, registry, ffmpeg, native env and disk."""
    from infra.cli.app import load
    from infra.cli.output import print_json, stdout_console
    from infra.doctor import Check, run_checks
    from infra.errors import ConfigError

    checks: list[Check] = []
    try:
        stack = load()
        checks.append(Check("spec", "ok", "built-in default spec" if stack.embedded else str(stack.spec_path)))
    except ConfigError as exc:
        stack = None
        checks.append(Check("spec", "fail", exc.problems[0] + (f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""),
                            "`infra config validate` lists every problem"))

    console = None if json_out else stdout_console()
    for check in run_checks(stack):
        checks.append(check)
    if json_out:
        print_json([c.as_dict() for c in checks])
    else:
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
        console.print(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
