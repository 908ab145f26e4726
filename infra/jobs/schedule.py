"""Running a job's planned stages: each as soon as the stages it waits for are done, several at once.

``run_stages`` starts every stage whose predecessors are done (asr and diarize
run side by side once demux and vad are), gives each a share of the machine's
CPU threads (``INFRA_THREADS``: the threads that no running stage holds, divided
among the stages starting together, so their sum does not exceed the machine;
the share is recorded in the stage's entry), and while they run yields their progress, read from the
``progress/<stage>.json`` files the stages write (infra/jobproto.py), and copies
it into job.json about every PROGRESS_RECORD_S seconds. ``parallel=False`` runs
one stage at a time with every thread.

When a stage fails, nothing new starts, the stages still running are stopped
(they keep their checkpoints, so a rerun resumes them), and the failure is
raised. An interruption (Ctrl-C, SIGTERM) stops every running stage the same
way; their entries say ``stopped``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from infra.errors import OperationError
from infra.jobproto import LOGS_DIR, PROGRESS_DIR, locked_job, read_progress, update_stage_entry

if TYPE_CHECKING:
    from infra.jobs.runners import StageCall, StageRunner

POLL_S = 0.25
PROGRESS_RECORD_S = 2.0
LOG_TAIL_LINES = 12
THREADS_ENV = "INFRA_THREADS"
STOP_REASONS = {"KeyboardInterrupt": "stopped by Ctrl-C", "Terminated": "stopped by SIGTERM"}


@dataclass(frozen=True)
class StageEvent:
    stage: str
    kind: Literal["skip", "start", "progress", "done"]
    detail: str = ""
    seconds: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)   # done_s, total_s, rate, eta_s (kind "progress")
    threads: int | None = None                              # the stage's share of the CPU threads (kind "start")


class StageFailedError(OperationError):
    """A stage exited non-zero: its one-line message, the tail of its log, exit 2 when the stage said bad input."""

    def __init__(self, message: str, log_tail: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.stderr_tail = log_tail
        self.exit_code = exit_code


def machine_threads() -> int:
    """The CPU threads this process may use (its affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_share(free: int, starting: int) -> int:
    """A starting stage's share: the threads no running stage holds, divided among the stages starting now;
    at least one (so the sum exceeds the machine only when more stages are ready than it has threads)."""
    return max(1, free // max(1, starting))


@dataclass
class Running:
    call: StageCall
    reason: str
    future: Future[int]
    started: float
    log_offset: int
    threads: int
    last_update: tuple[Any, Any] | None = None
    recorded: float = 0.0


def run_stages(runner: StageRunner, calls: list[tuple[StageCall, str]], waits_for: dict[str, set[str]],
               job: dict[str, Any], downstream: dict[str, set[str]], parallel: bool = True,
               threads: int | None = None) -> Iterator[StageEvent]:
    """Run ``calls`` (each with the reason it runs) as their predecessors in ``waits_for`` finish."""
    total = threads or machine_threads()
    todo = {call.stage: (call, reason) for call, reason in calls}
    running: dict[str, Running] = {}
    failure: StageFailedError | None = None
    with ThreadPoolExecutor(max_workers=max(1, len(todo)), thread_name_prefix="stage") as pool:
        try:
            while todo or running:
                if failure is None:
                    starting = ready(todo, waits_for, running, parallel)
                    free = total - sum(r.threads for r in running.values())
                    for name in starting:
                        call, reason = todo.pop(name)
                        share = thread_share(free, len(starting))
                        yield start_stage(runner, pool, running, call, reason, share, job, downstream[name])
                if not running:
                    break
                finished, _ = wait([r.future for r in running.values()], timeout=POLL_S, return_when=FIRST_COMPLETED)
                yield from progress_events(running)
                for name in [n for n, r in running.items() if r.future in finished]:
                    record = running.pop(name)
                    try:
                        seconds = finish_stage(runner, record, job)
                    except StageFailedError as exc:
                        failure = failure or exc
                        stop_all(runner, running, "stopped: " + exc.message)
                        continue
                    yield StageEvent(name, "done", seconds=seconds)
        except BaseException as exc:
            stop_all(runner, running, STOP_REASONS.get(type(exc).__name__, f"stopped ({type(exc).__name__})"))
            raise
    if failure is not None:
        raise failure


def ready(todo: dict[str, tuple[StageCall, str]], waits_for: dict[str, set[str]], running: dict[str, Running],
          parallel: bool) -> list[str]:
    """Stages to start now: no predecessor is still to run or running (one at a time unless ``parallel``)."""
    if running and not parallel:
        return []
    waiting = set(todo) | set(running)
    names = [n for n in todo if not waits_for[n] & waiting]
    return names if parallel else names[:1]


def start_stage(runner: StageRunner, pool: ThreadPoolExecutor, running: dict[str, Running], call: StageCall,
                reason: str, share: int, job: dict[str, Any], later: set[str]) -> StageEvent:
    """Mark what the stage makes stale, log its start, and run it in a thread with its thread share."""
    with locked_job(call.job_dir) as data:
        for entry in data["stages"]:
            if entry["name"] in later and entry.get("status") == "done":
                entry.update(status="pending", stale=f"{call.stage} ran again")
            if entry["name"] == call.stage:
                entry.update(threads=share, alongside=sorted(running))
                entry.pop("progress", None)
    (call.job_dir / PROGRESS_DIR / f"{call.stage}.json").unlink(missing_ok=True)   # an earlier run's
    (call.job_dir / LOGS_DIR).mkdir(exist_ok=True)
    offset = call.log.stat().st_size if call.log.exists() else 0
    with open(call.log, "a", encoding="utf-8") as log:
        log.write(f"=== {datetime.now().astimezone().isoformat(timespec='seconds')} {runner.name}: "
                  f"{call.stage} ({reason}), {share} thread(s)\n")
    call = replace(call, env={**call.env, THREADS_ENV: str(share)})
    running[call.stage] = Running(call, reason, pool.submit(runner.run, call), time.perf_counter(), offset, share)
    return StageEvent(call.stage, "start", reason, threads=share)


def progress_events(running: dict[str, Running]) -> Iterator[StageEvent]:
    """A progress event for each running stage whose progress file changed; job.json gets it now and then."""
    now = time.monotonic()
    for name, record in running.items():
        progress = read_progress(record.call.job_dir, name)
        if not progress or (progress.get("updated"), progress.get("done_s")) == record.last_update:
            continue
        record.last_update = (progress.get("updated"), progress.get("done_s"))
        shown = {k: progress.get(k) for k in ("done_s", "total_s", "rate", "eta_s", "resumed_s")}
        if now - record.recorded >= PROGRESS_RECORD_S:
            record.recorded = now
            update_stage_entry(record.call.job_dir, name, progress=shown)
        yield StageEvent(name, "progress", progress=shown)


def finish_stage(runner: StageRunner, record: Running, job: dict[str, Any]) -> float:
    """Record what the runner saw; the stage's wall seconds, or StageFailedError with its log's tail."""
    call = record.call
    try:
        code = record.future.result()
    except BaseException:
        update_stage_entry(call.job_dir, call.stage, status="failed", error="the runner failed", runner=runner.name)
        raise
    wall = round(time.perf_counter() - record.started, 3)
    final = read_progress(call.job_dir, call.stage)
    entry = update_stage_entry(
        call.job_dir, call.stage, runner=runner.name, wall_s=wall, exit_code=code, log=f"{LOGS_DIR}/{call.stage}.log",
        stale=None, progress={k: final.get(k) for k in ("done_s", "total_s", "rate")} if final else None)
    if code == 0 and entry.get("status") == "done":
        return wall
    tail = log_tail(call.log, record.log_offset)
    error = entry.get("error") if entry.get("status") in ("failed", "stopped") else None
    if not error:
        error = f"killed by signal {-code}" if code < 0 else f"exited with code {code} without recording a result"
        update_stage_entry(call.job_dir, call.stage, status="failed", error=error)
    shown = "\n".join(line for line in tail.splitlines() if error not in line and not line.startswith("=== "))
    raise StageFailedError(f"stage {call.stage} failed: {error}", shown, 2 if code == 2 else 1,
                           hint=f"full log: {call.log}; after fixing it, `infra job run {job['id']}` resumes here")


def stop_all(runner: StageRunner, running: dict[str, Running], why: str) -> None:
    """Stop every running stage, wait for it, and mark it ``stopped`` (a rerun resumes it)."""
    for record in running.values():
        try:
            runner.stop(record.call)
        except Exception:  # noqa: BLE001 - stopping is best effort; the stage's own end is recorded below
            pass
    for name, record in list(running.items()):
        try:
            record.future.result(timeout=60)
        except BaseException:  # noqa: BLE001 - a stage that would not stop is still marked stopped
            pass
        try:
            update_stage_entry(record.call.job_dir, name, status="stopped", error=why, runner=runner.name,
                               wall_s=round(time.perf_counter() - record.started, 3))
        except Exception:  # noqa: BLE001 - job.json itself may be what failed
            pass
    running.clear()


def log_tail(log: Any, offset: int, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            text = handle.read()
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
