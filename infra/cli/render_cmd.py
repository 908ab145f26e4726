"""`infra render`: write the Dockerfiles, compose file, bake file and swarm stack of each mode."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def render(
    modes: Annotated[Optional[list[str]], typer.Option("--mode", "-m", metavar="MODE", help="A mode to render (repeatable; default: every mode in the spec).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="DIR", help="Folder for the files of the one --mode (default: <output_dir>/<mode>).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 with a unified diff if the files on disk differ.")] = False,
) -> None:
    """Render the spec into .infra/out/<mode>/: Dockerfiles, compose.yaml, docker-bake.json, stack.yaml."""
    from infra.cli.context import checked_modes, load
    from infra.errors import BadInputError
    from infra.render import default_layout, render_mode
    from infra.render.write import diff_files, write_files

    stack = load()
    wanted = checked_modes(stack, modes)
    if out is not None and len(wanted) != 1:
        raise BadInputError(f"--out: needs exactly one --mode (got {len(wanted)}: {', '.join(wanted)})",
                            hint="leave out --out to render each mode into <output_dir>/<mode>")
    cwd = Path.cwd()
    target = (cwd / out) if out is not None and not out.is_absolute() else out
    # Everything is rendered before anything is written: bad input leaves the disk as it was.
    rendered = []
    for mode in wanted:
        layout = default_layout(stack, mode, target)  # type: ignore[arg-type]
        files = render_mode(stack, mode, layout)
        folder = stack.workdir.resolve() / layout.from_project
        rendered.append((mode, Path(os.path.normpath(folder)), files))

    if check:
        differ = []
        for mode, folder, files in rendered:
            diff = diff_files(folder, files, _shown(folder, cwd))
            if diff:
                sys.stdout.write(diff)
                differ.append(mode)
            else:
                typer.echo(f"{mode}: {_shown(folder, cwd)} is up to date ({len(files)} files)", err=True)
        if differ:
            typer.echo(f"error: rendered files differ from the spec for {', '.join(differ)}; "
                       f"run `infra render` to update them", err=True)
            raise typer.Exit(1)
        return
    for mode, folder, files in rendered:
        result = write_files(folder, files)
        extra = f", {len(result.removed)} removed" if result.removed else ""
        typer.echo(f"{mode}: {_shown(folder, cwd)}: {len(result.written)} written, "
                   f"{len(result.unchanged)} unchanged{extra}")


def _shown(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd)) or "."
    except ValueError:
        return str(path)
