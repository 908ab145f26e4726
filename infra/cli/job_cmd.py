"""`infra job`: prepare a job from a media file, run its stages, list the jobs, show one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infra.cli import options as opt

app = typer.Typer(help="Prepare jobs, run their stages and find them again.", no_args_is_help=True)


@app.command("prepare")
def prepare(
    media: Annotated[str, typer.Argument(metavar="MEDIA", help="The film or audio file.", show_default=False)],
    start: opt.Start = None,
    end: opt.End = None,
    workflow: opt.Workflow = "subtitles",
    mode: opt.JobMode = None,
    language: opt.Language = None,
    model: opt.Model = None,
    task: opt.Task = "transcribe",
    audio_track: opt.AudioTrack = None,
    audio_language: opt.AudioLanguage = None,
    name: opt.Name = None,
    user: opt.User = None,
    allow_cpu_fallback: opt.AllowCpuFallback = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print job.json.")] = False,
) -> None:
    """Check MEDIA with ffprobe, claim a job id, make the job directory (and clip) and write job.json."""
    from infra.cli.context import load
    from infra.jobs.media import MediaProbe
    from infra.jobs.prepare import prepare_job

    checked = opt.job_request(Path(media), start, end, workflow, mode, language, model, task, name, user,
                              audio_track, audio_language, allow_cpu_fallback)
    probe = MediaProbe(Path(media))       # ffprobe reads the file while the spec and the cache load
    job = prepare_job(load(), checked, probe=probe)
    data = job.data
    if data["hardware_cache"]["warning"]:
        typer.echo(f"warning: {data['hardware_cache']['warning']}", err=True)
    for warning in data["recommendation"]["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    if json_out:
        from infra.cli.output import print_json

        print_json(data)
        return
    cfg = data["config"]
    typer.echo(f"{job.job_id}  {job.path}")
    typer.echo(f"  {data['workflow']}, mode {cfg['mode']}, whisper {cfg['whisper_model']} {cfg['compute_type']} "
               f"batch {cfg['batch_size']}, {data['input']['duration_s']:.1f} s of media")


@app.command("run")
def run(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A job id, YYYYMMDD-NNNN.", show_default=False)],
    stages: Annotated[Optional[list[str]], typer.Option("--stages", metavar="STAGE[,STAGE]", help="Run only these stages.")] = None,
    from_stage: Annotated[Optional[str], typer.Option("--from", metavar="STAGE", help="Run this stage and every stage after it again.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run the chosen stages even when they are done.")] = False,
    mode: Annotated[Optional[str], typer.Option("--mode", help="Run in this mode instead of the job's: native, docker-cpu or docker-gpu.")] = None,
    sequential: opt.Sequential = False,
) -> None:
    """Run the job's stages in dependency order; done stages are skipped, so a rerun resumes."""
    from infra.cli.context import load, optional_mode
    from infra.cli.run_cmd import stage_list
    from infra.cli.run_view import run_and_show
    from infra.jobs.pipeline import RunRequest
    mode = optional_mode(mode)
    run_and_show(load(), RunRequest(job_id, stage_list(stages), from_stage, force, mode, parallel=not sequential))


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False) -> None:
    """The jobs of this workspace, oldest first."""
    from infra.cli.context import load
    from infra.cli.output import print_json, print_rows
    from infra.jobs.prepare import list_jobs
    from infra.workspace import Workspace

    rows = list_jobs(Workspace(load().workdir))
    if json_out:
        print_json(rows)
        return
    if not rows:
        typer.echo("no jobs yet: `infra job prepare MEDIA` makes one")
        return
    print_rows(["id", "user", "status", "workflow", "mode", "media", "duration", "name"],
               [[r["id"], r.get("user"), r["status"], r.get("workflow"), r.get("mode"), r.get("media"),
                 f"{r['duration_s']:.1f} s" if r.get("duration_s") is not None else "", r.get("name") or ""]
                for r in rows])


@app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A job id, YYYYMMDD-NNNN.", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="Print job.json as it is.")] = False,
) -> None:
    """One job: its media, configuration, hardware, recommendation and stages."""
    from infra.cli.context import load
    from infra.cli.output import print_json, print_rows
    from infra.jobs.prepare import read_job
    from infra.workspace import Workspace

    ws = Workspace(load().workdir)
    data = read_job(ws, job_id)
    if json_out:
        print_json(data)
        return
    media, cfg, inp = data["media"], data["config"], data["input"]
    print_rows(["field", "value"], [
        ["id", data["id"]], ["status", data["status"]], ["user", data["user"]], ["name", data.get("name") or ""],
        ["created", data["created"]], ["dir", str(ws.root / data["dir"])], ["workflow", data["workflow"]],
        ["media", f"{media['path']} ({media['format']}, {media['duration_s']:.1f} s)"],
        ["input", f"{inp['file']} ({inp['start_s']:.1f}-{inp['end_s']:.1f} s)"],
        ["mode", cfg["mode"]], ["language", cfg["language"] or "detect"],
        ["whisper", f"{cfg['whisper_model']} {cfg['compute_type']}, batch {cfg['batch_size']}, "
                    f"chunk {cfg['chunk_length_s']} s, up to {cfg['max_speakers']} speakers"],
        ["hardware", f"{data['hardware']['gpu_class']}: {data['hardware']['gpu_class_reason']}"],
    ])
    print_rows(["stage", "status", "device", "threads", "progress", "wall", "peak memory"],
               [stage_row(ws.root / data["dir"], s) for s in data["stages"]])


def stage_row(job_dir: Path, entry: dict) -> list[str]:
    """One stage of `job show`: live progress while it runs (from its progress file), what it recorded after."""
    from infra.cli.run_view import progress_text
    from infra.jobproto import read_progress

    progress = read_progress(job_dir, entry["name"]) if entry.get("status") == "running" else entry.get("progress")
    wall = f"{entry['wall_s']:.1f} s" if entry.get("wall_s") is not None else ""
    memory = f"{entry['peak_rss_mb']:.0f} MB" if entry.get("peak_rss_mb") is not None else ""
    status, error = entry.get("status", "pending"), entry.get("error") or ""
    status = error if error.startswith(status) else f"{status}: {error}" if error else status
    return [entry["name"], status, device_text(entry), str(entry.get("threads") or ""),
            progress_text(progress) if progress else "", wall, memory]


def device_text(entry: dict) -> str:
    """The device asked for, and the one the stage really used when that differs (its result's device_used)."""
    asked, used = str(entry.get("device", "")), entry.get("device_used") or {}
    if not used:
        return asked
    if used.get("device") is None:
        return f"{asked} (unusable)"
    if used.get("fallback"):
        return f"cpu (fallback from {asked})"
    return asked if used["device"] == asked else f"{used['device']} (asked {asked})"


@app.command("submit")
def submit(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="The job id (YYYYMMDD-NNNN).", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the workers finish the job.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait at most.")] = 3600.0,
) -> None:
    """Queue a prepared job for the running stack's stage workers (`infra up`)."""
    from infra.cli.context import load
    from infra.errors import OperationError
    from infra.stack.queue import submit_job, wait_for_job
    stack = load()
    queued = submit_job(stack, job_id)
    typer.echo(f"{job_id}: queued {', '.join(queued) or 'nothing (every stage is done or waiting)'}", err=True)
    if not wait:
        return
    job: dict = {}
    for job in wait_for_job(stack, job_id, timeout):
        typer.echo("  " + ", ".join(f"{s['name']} {s.get('status')}" for s in job["stages"]), err=True)
    if job.get("status") == "failed":
        failed = [s for s in job["stages"] if s.get("status") == "failed"]
        raise OperationError(f"job {job_id} failed at {', '.join(s['name'] for s in failed)}",
                             hint=f"the stage's log is in {job.get('dir')}/logs/")
    typer.echo(f"{job_id}: done")
