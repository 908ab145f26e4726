"""`infra base`: make the offline base images the modes start from."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def base(
    mode: Annotated[Optional[list[str]], typer.Option("--mode", "-m", help="Mode(s) whose base to make (default: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the image exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Build offline base images from Debian packages (debootstrap + docker import); reuse existing ones."""
    from infra.build.base import BaseResult, ensure_bases
    from infra.cli.context import checked_modes, load
    from infra.cli.output import print_json, stderr_console

    stack = load()
    modes = checked_modes(stack, mode)
    results: list[BaseResult] = []
    console = stderr_console()
    for event in ensure_bases(stack, modes, force=force):
        if isinstance(event, str):
            console.print(event)
        else:
            results.append(event)
            if not json_out:
                size = f"{event.size_bytes / 1e6:.0f} MB" if event.size_bytes else ""
                took = f"in {event.seconds:.0f} s" if event.seconds else ""
                typer.echo(f"{event.name}: {event.ref} {event.status} {size} {took}".rstrip())
    if json_out:
        print_json([r.__dict__ for r in results])
