"""`infra run`: prepare a job per film (files, folders, or the built-in sample) and run its stages in one go.

One film shows its stages as they run, as `infra job run` does. Several films (or
a folder) run one after the other and end with a table; a film already subtitled
with the same settings is skipped (infra/jobs/batch.py decides, and holds the lock
that keeps two runs of one film apart).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from infra.cli import options as opt
from infra.cli.run_view import run_and_show

if TYPE_CHECKING:
    from infra.jobs.batch import BatchEvent, FilmOutcome

STATUS_SHOWN = {"done": "done", "skipped": "skipped (done)", "failed": "failed", "busy": "busy (running elsewhere)"}


def stage_list(values: Optional[list[str]]) -> tuple[str, ...]:
    """--stages a,b --stages c -> (a, b, c)."""
    return tuple(name.strip() for value in values or [] for name in value.split(",") if name.strip())


def run(
    media: opt.Films = None,
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
    recursive: opt.Recursive = False,
    force: opt.RerunDone = False,
    wait: opt.WaitForFilm = False,
    submit: opt.Submit = False,
    timeout: opt.SubmitTimeout = 6 * 3600.0,
    json_out: opt.JsonFilms = False,
    sequential: opt.Sequential = False,
    allow_cpu_fallback: opt.AllowCpuFallback = False,
) -> None:
    """Prepare a job per film and run its stages (or skip it when it is done): prints where the subtitles are."""
    from infra.cli.context import load
    from infra.errors import BadInputError, OperationError
    from infra.hardware.cache import stack_hardware
    from infra.jobs.batch import Batch
    from infra.jobs.films import expand_inputs
    from infra.workspace import Workspace

    if (not media) == (not sample):
        raise BadInputError("give MEDIA or --sample (one of them)")
    checked = opt.job_request(Path(media[0] if media else "."), start, end, workflow, mode, language, model, task,
                              name, user, audio_track, audio_language, allow_cpu_fallback)
    stack = load()
    ws = Workspace(stack.workdir)
    if sample:
        from infra.jobs.sample import sample_media

        media_path, made = sample_media(ws, stack.workdir / stack.spec.native_env.path)
        typer.echo(f"sample: {media_path}" + (" (made now)" if made else ""), err=json_out)
        films, single = [media_path], True
    else:
        paths = [Path(m) for m in media or []]
        films = expand_inputs(paths, recursive, ws.out)
        single = len(paths) == 1 and not paths[0].is_dir()
    batch = Batch(stack, checked, stack_hardware(stack), film_runner(stack, mode, submit, timeout, json_out, not sequential),
                  force=force, wait=wait)
    outcomes = []
    for event in batch.run(films):
        show_event(event, single, json_out)
        if event.outcome is not None:
            outcomes.append(event.outcome)
    if json_out:
        from infra.cli.output import print_json

        print_json([o.as_dict() for o in outcomes])
    elif not single:
        show_table(outcomes)
    failed = [o for o in outcomes if o.status in ("failed", "busy")]
    if single and failed and failed[0].error is not None:
        raise failed[0].error
    if failed:
        raise OperationError(f"{len(failed)} of {len(outcomes)} films did not finish: "
                             f"{', '.join(str(o.film) for o in failed)}",
                             hint="their errors are above; run the same command again to resume them "
                                  "(finished films are skipped)")


def film_runner(stack: Any, mode: Optional[str], submit: bool, timeout: float, json_out: bool,
                parallel: bool = True) -> Any:
    """How each film's job runs: here with the per-stage display (on stderr with --json), or by the workers."""
    from infra.jobs.batch import LocalRunner, SubmitRunner
    from infra.jobs.pipeline import RunRequest

    if submit:
        def notify(job: dict[str, Any]) -> None:
            typer.echo("  " + ", ".join(f"{s['name']} {s.get('status')}" for s in job["stages"]), err=True)

        return SubmitRunner(stack, timeout, notify)

    def run_here(job_id: str) -> None:
        with redirect_stdout(sys.stderr) if json_out else nullcontext():
            run_and_show(stack, RunRequest(job_id, mode=mode, parallel=parallel))

    return LocalRunner(run_here)


def show_event(event: BatchEvent, single: bool, json_out: bool) -> None:
    """A line or two per step of a film; with --json on stderr, so that stdout holds only the JSON."""
    from infra.cli.output import print_error

    def say(text: str) -> None:
        typer.echo(text, err=json_out)

    if event.kind == "film" and not single:
        say(f"[{event.index}/{event.total}] {event.film}")
    elif event.kind == "waiting":
        typer.echo(f"{event.film}: another `infra run` is running this film ({event.detail}); waiting for it",
                   err=True)
    elif event.kind == "prepared" and event.job is not None:
        job = event.job
        cfg = job.data["config"]
        say(f"job {job.job_id}: {job.path}")
        say(f"  {job.data['workflow']}, mode {cfg['mode']}, whisper {cfg['whisper_model']} {cfg['compute_type']}, "
            f"{job.data['input']['duration_s']:.1f} s of media")
    elif event.kind == "resumed":
        say(f"job {event.job_id}: resumed (the same film with the same settings did not finish before)")
    elif event.kind == "outcome" and event.outcome is not None:
        outcome = event.outcome
        if outcome.status == "skipped":
            say(f"job {outcome.job_id}: done already, with the same media and settings ({outcome.job_dir}); "
                "--force runs it again")
            for path in outcome.results:
                say(f"  {path.suffix.lstrip('.') or path.name:5} {path}")
        elif outcome.error is not None and not single:
            print_error(outcome.error)


def show_table(outcomes: list[FilmOutcome]) -> None:
    """The batch's summary: a row per film, then the counts."""
    from infra.cli.output import print_rows

    print_rows(["film", "status", "job", "duration", "wall", "srt"],
               [[str(o.film), STATUS_SHOWN[o.status], o.job_id or "", duration(o.duration_s), f"{o.wall_s:.1f} s",
                 str(o.srt or "")] for o in outcomes])
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUS_SHOWN}
    typer.echo(f"{len(outcomes)} films: " + ", ".join(f"{n} {STATUS_SHOWN[s]}" for s, n in counts.items() if n))


def duration(seconds: Optional[float]) -> str:
    """5.0 s, or 1:02:03 from a minute up."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
