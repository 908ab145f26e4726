"""`infra run`: prepare a job from a media file (or the built-in sample) and run its stages in one go.

Also how a run is shown, for `infra job run` too: one line per stage, then where the results are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from infra.cli import options as opt

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.jobs.pipeline import StageEvent
def stage_list(values: Optional[list[str]]) -> tuple[str, ...]:
    """--stages a,b --stages c -> (a, b, c)."""
    return tuple(name.strip() for value in values or [] for name in value.split(",") if name.strip())


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


def run(
    media: Annotated[Optional[str], typer.Argument(metavar="MEDIA", help="The film or audio file (or --sample).", show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use the built-in sample (two speakers; made on first use).")] = False,
    start: opt.Start = None,
    end: opt.End = None,
    workflow: opt.Workflow = "subtitles",
    mode: opt.JobMode = None,
    language: opt.Language = None,
    model: opt.Model = None,
    task: opt.Task = "transcribe",
    name: opt.Name = None,
    user: opt.User = None,
) -> None:
    """Prepare a job from MEDIA (or --sample) and run its stages: prints where the subtitles and the video are."""
    from infra.cli.context import load
    from infra.errors import BadInputError
    from infra.jobs.pipeline import RunRequest
    from infra.jobs.prepare import prepare_job

    if (media is None) == (not sample):
        raise BadInputError("give MEDIA or --sample (one of them)")
    stack = load()
    if sample:
        from infra.jobs.sample import sample_media
        from infra.workspace import Workspace

        media_path, made = sample_media(Workspace(stack.workdir), stack.workdir / stack.spec.native_env.path)
        typer.echo(f"sample: {media_path}" + (" (made now)" if made else ""))
    else:
        media_path = Path(str(media))
    job = prepare_job(stack, opt.job_request(media_path, start, end, workflow, mode, language, model, task, name, user))
    cfg = job.data["config"]
    typer.echo(f"job {job.job_id}: {job.path}")
    typer.echo(f"  {job.data['workflow']}, mode {cfg['mode']}, whisper {cfg['whisper_model']} {cfg['compute_type']}, "
               f"{job.data['input']['duration_s']:.1f} s of media")
    run_and_show(stack, RunRequest(job.job_id))
