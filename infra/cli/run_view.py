"""How a job's run looks: a line per stage (or live progress bars on a terminal), then where the results are.

Shared by `infra run` and `infra job run`.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from infra.jobs.pipeline import StageEvent
    from infra.spec import Stack


PLAIN_EVERY_S = 10.0      # a progress line per running stage at most this often, when not on a terminal


def clock(seconds: float | None) -> str:
    """1:02:03 or 2:03."""
    if seconds is None:
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_text(progress: dict[str, Any]) -> str:
    """'42% of 1:00:00 of media, 11.2x real time, ETA 3:01'."""
    done, total = progress.get("done_s") or 0.0, progress.get("total_s") or 0.0
    share = f"{100 * done / total:.0f}% of {clock(total)}" if total else f"{clock(done)}"
    rate = progress.get("rate")
    speed = f", {rate:.1f}x real time" if rate else ""
    eta = f", ETA {clock(progress.get('eta_s'))}" if progress.get("eta_s") is not None else ""
    return f"{share} of media{speed}{eta}"


def start_text(event: StageEvent) -> str:
    why = "" if event.detail == "pending" else f" ({event.detail})"
    threads = f", {event.threads} thread{'s' if event.threads != 1 else ''}" if event.threads else ""
    return f"  {event.stage:10} running{why}{threads}"


def show_events(events: Iterator[StageEvent]) -> None:
    """Live bars per running stage (rate, ETA) on a terminal; elsewhere a line per start and end, and a
    progress line per stage every PLAIN_EVERY_S seconds (logs, CI)."""
    from infra.cli.output import stdout_console

    console = stdout_console()
    try:
        if console.is_terminal:
            show_bars(events, console)
        else:
            show_lines(events)
    except BaseException as exc:
        # Ctrl-C or SIGTERM may land while an event is being shown: hand it to the run, which stops its stages
        # and marks them stopped, and raises it again.
        if isinstance(events, Generator) and events.gi_frame is not None:
            events.throw(exc)
        raise


def show_lines(events: Iterator[StageEvent]) -> None:
    shown: dict[str, float] = {}
    for event in events:
        if event.kind == "skip":
            typer.echo(f"  {event.stage:10} skipped ({event.detail})")
        elif event.kind == "start":
            typer.echo(start_text(event))
            shown[event.stage] = time.monotonic()
        elif event.kind == "progress":
            if time.monotonic() - shown.get(event.stage, 0.0) >= PLAIN_EVERY_S:
                shown[event.stage] = time.monotonic()
                typer.echo(f"  {event.stage:10} {progress_text(event.progress)}")
        elif event.kind == "done":
            typer.echo(f"  {event.stage:10} done in {event.seconds:.1f} s")


def show_bars(events: Iterator[StageEvent], console: Any) -> None:
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    tasks: dict[str, TaskID] = {}
    with Progress(TextColumn("  {task.description:<10}"), BarColumn(), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), console=console, transient=False) as bars:
        for event in events:
            if event.kind == "skip":
                bars.console.print(f"  {event.stage:10} skipped ({escape(event.detail)})")
            elif event.kind == "start":
                tasks[event.stage] = bars.add_task(event.stage, total=None, note=escape(start_text(event).split(
                    "running", 1)[1].strip(" (),") or "running"))
            elif event.kind == "progress" and event.stage in tasks:
                p = event.progress
                bars.update(tasks[event.stage], total=p.get("total_s") or None, completed=p.get("done_s") or 0,
                            note=escape(progress_text(p)))
            elif event.kind == "done" and event.stage in tasks:
                task = tasks[event.stage]
                total = bars.tasks[task].total or 1
                bars.update(task, total=total, completed=total, note=f"done in {event.seconds:.1f} s")
                bars.stop_task(task)


def run_and_show(stack: Stack, request: Any) -> None:
    """Run a job's stages with a line per stage, then list its result files and its final status."""
    from infra.jobs.pipeline import load_job, result_files, run_job
    show_events(run_job(stack, request))
    job_dir, job = load_job(stack, request.job_id)
    for entry in job["stages"]:
        if entry.get("warning"):
            typer.echo(f"warning: {entry['name']}: {entry['warning']}", err=True)
        used = entry.get("device_used") or {}
        if used.get("fallback"):
            typer.echo(f"warning: {entry['name']}: ran on the CPU, not {used.get('requested')}: {used.get('reason')}",
                       err=True)
    for path in result_files(stack, job_dir, job):
        typer.echo(f"  {path.suffix.lstrip('.') or path.name:5} {path}")
    typer.echo(f"job {request.job_id}: {job['status']}")


