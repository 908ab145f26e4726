"""`infra doctor`: a line per prerequisite, with a fix for every line that is not green."""

from __future__ import annotations

from typing import Annotated

import typer


def doctor(json_out: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False) -> None:
    """Check the engine, BuildKit, buildx, compose, swarm, registry, ffmpeg, native env and disk."""
    from infra.cli.context import load
    from infra.cli.output import print_checks, print_json
    from infra.hardware.doctor import Check, run_checks
    from infra.errors import ConfigError

    checks: list[Check] = []
    try:
        stack = load()
        checks.append(Check("spec", "ok", "built-in default spec" if stack.embedded else str(stack.spec_path)))
    except ConfigError as exc:
        stack = None
        checks.append(Check("spec", "fail", exc.problems[0] + (f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""),
                            "`infra config validate` lists every problem"))

    for check in run_checks(stack):
        checks.append(check)
    if json_out:
        print_json([c.as_dict() for c in checks])
    else:
        print_checks(checks)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
