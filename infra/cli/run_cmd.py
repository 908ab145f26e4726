"""`infra run`: prepare a job from a media file (or the built-in sample) and run its stages in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infra.cli import options as opt
from infra.cli.run_view import run_and_show


def stage_list(values: Optional[list[str]]) -> tuple[str, ...]:
    """--stages a,b --stages c -> (a, b, c)."""
    return tuple(name.strip() for value in values or [] for name in value.split(",") if name.strip())


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
    audio_track: opt.AudioTrack = None, audio_language: opt.AudioLanguage = None,
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
    job = prepare_job(stack, opt.job_request(media_path, start, end, workflow, mode, language, model, task, name, user, audio_track, audio_language))
    cfg = job.data["config"]
    typer.echo(f"job {job.job_id}: {job.path}")
    typer.echo(f"  {job.data['workflow']}, mode {cfg['mode']}, whisper {cfg['whisper_model']} {cfg['compute_type']}, "
               f"{job.data['input']['duration_s']:.1f} s of media")
    run_and_show(stack, RunRequest(job.job_id))
