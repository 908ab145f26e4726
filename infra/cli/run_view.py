"""How a job's run looks: a line per stage (or live progress bars on a terminal), then where the results are.

Shared by `infra run` and `infra job run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from infra.jobs.pipeline import StageEvent
    from infra.spec import Stack


def show_events(events: Iterator[StageEvent]) -> None:
    """A line per stage as it starts and ends; a failure ends the line before the error is shown."""
    open_line = False
    try:
        for event in events:
            if event.kind == "skip":
                typer.echo(f"  {event.stage:10} skipped ({event.detail})")
            elif event.kind == "start":
                why = "" if event.detail == "pending" else f" ({event.detail})"
                typer.echo(f"  {event.stage:10} running{why} ... ", nl=False)
                open_line = True
            elif event.kind == "done":
                typer.echo(f"done in {event.seconds:.1f} s")
                open_line = False
    except BaseException:
        if open_line:
            typer.echo("failed")
        raise


def run_and_show(stack: Stack, request: Any) -> None:
    """Run a job's stages with a line per stage, then list its result files and its final status."""
    from infra.jobs.pipeline import load_job, result_files, run_job
    show_events(run_job(stack, request))
    job_dir, job = load_job(stack, request.job_id)
    for path in result_files(stack, job_dir, job):
        typer.echo(f"  {path.suffix.lstrip('.') or path.name:5} {path}")
    typer.echo(f"job {request.job_id}: {job['status']}")


