"""`infra lock`: pin the exact apt and pip packages of every image into infra.lock beside the spec."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def lock(
    modes: Annotated[Optional[list[str]], typer.Option("--mode", "-m", metavar="MODE", help="A mode whose images to lock (repeatable; default: every mode; the other modes' entries are kept).")] = None,
) -> None:
    """Resolve what every image's apt and pip lines install (apt in the mode's base, pip for the image's Python)
    and write infra.lock; render and build then install exactly that."""
    from infra.build.lock import LockResult, lock_stack
    from infra.cli.context import state
    from infra.cli.output import stderr_console
    from infra.spec import load_stack

    stack = load_stack(state.spec_file, with_lock=False)
    console = stderr_console()
    for event in lock_stack(stack, modes):  # type: ignore[arg-type]
        if isinstance(event, LockResult):
            for base in event.bases:
                typer.echo(f"{base.base}: {base.images} images, {base.apt} apt and {base.pip} pip packages pinned "
                           f"({base.seconds:.1f} s)")
            typer.echo(f"{event.path}: {'written' if event.written else 'unchanged'} in {event.seconds:.1f} s")
        else:
            console.print(event, markup=False)
