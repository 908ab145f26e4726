"""`infra run`: prepare a job from a media file (or the built-in sample) and run its stages in one go.

Also how a run is shown, for `infra job run` too: one line per stage, then where the results are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.jobs.pipeline import StageEvent
RESULT_SUFFIXES = (".srt", ".vtt", ".mp4")


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


def result_files(stack: Stack, job_dir: Path, job: dict[str, Any]) -> list[Path]:
    """The files a user wants from a job: subtitles, the muxed video, and the outputs of its last stages."""
    names = [s["name"] for s in job["stages"]]
    waited_for = {a for s in job["stages"] for a in s.get("after", [])}
    found = []
    for name in names:
        for output in stack.spec.stages[name].outputs if name in stack.spec.stages else []:
            path = job_dir / output
            if path.is_file() and (path.suffix in RESULT_SUFFIXES or name not in waited_for):
                found.append(path)
    return found


def run_and_show(stack: Stack, request: Any) -> None:
    """Run a job's stages with a line per stage, then list its result files and its final status."""
    from infra.jobs.pipeline import load_job, run_job
    show_events(run_job(stack, request))
    job_dir, job = load_job(stack, request.job_id)
    for path in result_files(stack, job_dir, job):
        typer.echo(f"  {path.suffix.lstrip('.') or path.name:5} {path}")
    typer.echo(f"job {request.job_id}: {job['status']}")


def run(
    media: Annotated[Optional[str], typer.Argument(metavar="MEDIA", help="The film or audio file (or --sample).", show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use the built-in sample (two speakers; made on first use).")] = False,
    start: Annotated[Optional[str], typer.Option("--start", metavar="HH:MM:SS", help="Cut a clip from here; needs --end.")] = None,
    end: Annotated[Optional[str], typer.Option("--end", metavar="HH:MM:SS", help="End of the clip.")] = None,
    workflow: Annotated[str, typer.Option("--workflow", help="transcribe or subtitles.")] = "subtitles",
    mode: Annotated[Optional[str], typer.Option("--mode", help="native, docker-cpu or docker-gpu (default: recommended).")] = None,
    language: Annotated[Optional[str], typer.Option("--language", help="Spoken language code, e.g. hi or en (default: detect).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Whisper model, e.g. tiny.en or base (default: recommended).")] = None,
    task: Annotated[str, typer.Option("--task", help="transcribe, or translate into English.")] = "transcribe",
    name: Annotated[Optional[str], typer.Option("--name", help="A label for the job.")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="Whose job (default: the login name).")] = None,
) -> None:
    """Prepare a job from MEDIA (or --sample) and run its stages: prints where the subtitles and the video are."""
    from infra.cli.context import load, optional_mode
    from infra.errors import BadInputError
    from infra.jobs.prepare import JobRequest, check_request, prepare_job
    from infra.jobs.pipeline import RunRequest
    if (media is None) == (not sample):
        raise BadInputError("give MEDIA or --sample (one of them)")
    mode = optional_mode(mode)
    stack = load()
    if sample:
        from infra.jobs.sample import sample_media
        from infra.workspace import Workspace

        media_path, made = sample_media(Workspace(stack.workdir), stack.workdir / stack.spec.native_env.path)
        typer.echo(f"sample: {media_path}" + (" (made now)" if made else ""))
    else:
        media_path = Path(str(media))
    checked = check_request(JobRequest(media=media_path, start=start, end=end, workflow=workflow, mode=mode,
                                       language=language, name=name, user=user, whisper_model=model, task=task))
    job = prepare_job(stack, checked)
    cfg = job.data["config"]
    typer.echo(f"job {job.job_id}: {job.path}")
    typer.echo(f"  {job.data['workflow']}, mode {cfg['mode']}, whisper {cfg['whisper_model']} {cfg['compute_type']}, "
               f"{job.data['input']['duration_s']:.1f} s of media")
    run_and_show(stack, RunRequest(job.job_id))
