"""Run a job's stages: plan what runs, run it in dependency order, record it in job.json, resume.

``plan_run`` is pure: from job.json, the spec's stages and the request it
decides, in dependency order (graphlib), which stages run and which are skipped
because they are done (status ``done`` and every output present) and nothing
before them runs again. ``--force`` runs the chosen stages anyway; ``--from
STAGE`` runs that stage and everything after it; ``--stages`` runs only those.
A stage whose inputs are neither in the job directory nor made earlier in the
same run is refused before anything starts, and so is a stage that reads the
job's media (``reads_media`` in the spec: demux, mux) when the media is gone;
the other stages run without it.

``run_job`` then hands the stages that run to infra/jobs/schedule.py, which
runs each through a StageRunner (infra/jobs/runners.py, or the container runner)
as soon as the stages it waits for are done, several at once with the CPU
threads shared out, appends its output to ``logs/<stage>.log``, and yields
events (start, progress, done). The stage itself records its result; the
scheduler adds the runner, the wall time, the exit code and the log, marks the
stages after a rerun stage ``pending`` (their inputs changed), and stops at the
first failure with the log's tail. Every change to job.json is made under the
job's lock (infra/jobproto.py), the same lock the stages and the stack's workers
take, so job.json stays consistent and a rerun resumes. Ctrl-C and SIGTERM stop
the running stages and leave the job ``stopped``, resumable.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from infra.errors import BadInputError, OperationError, Terminated
from infra.jobproto import CACHE_ENV, LOGS_DIR, RUN_LOCK, JobBusyError, model_cache, read_job_file, run_lock, set_job_status
from infra.jobs.schedule import StageEvent

if TYPE_CHECKING:
    from infra.spec import Stack
    from infra.spec.models import StageSpec
    from infra.jobs.runners import StageRunner
ASR_STAGE = "asr"
RESULT_SUFFIXES = (".srt", ".vtt", ".mp4")    # what a user wants from a job, besides its last outputs
STAGE_ENV = {"PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class RunRequest:
    job_id: str
    stages: tuple[str, ...] = ()
    from_stage: str | None = None
    force: bool = False
    mode: str | None = None           # None: the job's own mode
    parallel: bool = True             # stages whose inputs are ready run at the same time


@dataclass(frozen=True)
class PlannedStage:
    name: str
    action: Literal["run", "skip"]
    reason: str


def stage_order(job: dict[str, Any]) -> list[str]:
    """The job's stages in dependency order; among the stages that are ready, the job's own order decides."""
    names = [s["name"] for s in job["stages"]]
    sorter = graphlib.TopologicalSorter({s["name"]: [a for a in s.get("after", []) if a in names]
                                         for s in job["stages"]})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise BadInputError(f"job {job.get('id')}: its stages wait for each other in a cycle ({exc.args[1]})") from None
    order: list[str] = []
    ready: list[str] = []
    while sorter.is_active():
        ready = sorted([*ready, *sorter.get_ready()], key=names.index)
        order.append(ready.pop(0))
        sorter.done(order[-1])
    return order


def downstream(job: dict[str, Any], name: str) -> list[str]:
    """Every stage of the job that waits, directly or not, for ``name``."""
    found: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop()
        for s in job["stages"]:
            if current in s.get("after", []) and s["name"] not in found:
                found.append(s["name"])
                todo.append(s["name"])
    return found


def _check_names(job: dict[str, Any], names: list[str], flag: str) -> None:
    known = [s["name"] for s in job["stages"]]
    for name in names:
        if name not in known:
            raise BadInputError(f"{flag}: job {job.get('id')} has no stage '{name}' (its stages: {', '.join(known)})")


def is_done(job_dir: Path, entry: dict[str, Any], spec: StageSpec) -> bool:
    return entry.get("status") == "done" and all((job_dir / out).is_file() for out in spec.outputs)


def plan_run(job: dict[str, Any], job_dir: Path, specs: dict[str, StageSpec], request: RunRequest) -> list[PlannedStage]:
    """Which of the job's stages run and which are skipped, in the order they go; refuses what cannot run."""
    order = stage_order(job)
    missing = [n for n in order if n not in specs]
    if missing:
        raise BadInputError(f"job {job.get('id')} has stages the spec does not define: {', '.join(missing)}",
                            hint="run it with the spec it was prepared with (-f FILE)")
    if request.stages and request.from_stage:
        raise BadInputError("give --stages or --from, not both")
    _check_names(job, list(request.stages), "--stages")
    if request.from_stage:
        _check_names(job, [request.from_stage], "--from")
    entries = {s["name"]: s for s in job["stages"]}
    if request.stages:
        chosen, forced = set(request.stages), set(request.stages) if request.force else set()
    elif request.from_stage:
        chosen = {request.from_stage, *downstream(job, request.from_stage)}
        forced = set(chosen)
    else:
        chosen, forced = set(order), set(order) if request.force else set()
    plan: list[PlannedStage] = []
    running: set[str] = set()
    made: set[str] = set()
    for name in (n for n in order if n in chosen):
        spec = specs[name]
        rerun_before = [a for a in entries[name].get("after", []) if a in running]
        if name in forced:
            reason = "forced" if request.force else f"--from {request.from_stage}"
        elif entries[name].get("status") != "done":
            reason = str(entries[name].get("status") or "pending")
        elif not is_done(job_dir, entries[name], spec):
            reason = "an output is missing"
        elif rerun_before:
            reason = f"{rerun_before[0]} runs again"
        else:
            plan.append(PlannedStage(name, "skip", "done"))
            continue
        absent = [i for i in spec.inputs if i not in made and not (job_dir / i).is_file()]
        if absent:
            makers = [n for n in order if any(i in specs[n].outputs for i in absent)]
            how = f"run {', '.join(makers)} first" if makers else "prepare the job again"
            why = f"--from {request.from_stage}: " if request.from_stage else ""
            raise BadInputError(f"{why}stage {name} needs {', '.join(absent)}, which {job_dir} does not have: {how}")
        plan.append(PlannedStage(name, "run", reason))
        running.add(name)
        made.update(spec.outputs)
    return plan


def check_models(job: dict[str, Any], plan: list[PlannedStage]) -> None:
    """Before anything runs: the Whisper model that ASR will load is in the cache (the stage checks again)."""
    if not any(p.name == ASR_STAGE and p.action == "run" for p in plan):
        return
    from infra.models.catalogue import CATALOGUE, whisper_model

    name = str(job.get("config", {}).get("whisper_model"))
    folder = model_cache(job) / "whisper" / name
    if not (folder / "model.bin").is_file():
        how = (f"fetch it with `infra bootstrap --model {whisper_model(name)}`" if whisper_model(name) in CATALOGUE
               else "it is not in infra's catalogue: put a CTranslate2 Whisper model there")
        raise BadInputError(f"Whisper model {name} is not in the model cache ({folder}): {how}")


def check_media(job: dict[str, Any], job_dir: Path, specs: dict[str, StageSpec], plan: list[PlannedStage]) -> None:
    """Before anything runs: the job's input media is there when a stage that reads it (``reads_media``) runs."""
    from infra.jobs.prepare import input_path

    readers = [p.name for p in plan if p.action == "run" and specs[p.name].reads_media]
    if not readers or not job.get("input", {}).get("file"):
        return
    media = input_path(job_dir, job)
    if not media.is_file():
        raise BadInputError(f"the job's input {media} is missing (moved or deleted since the job was prepared?)",
                            hint=f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''} it: put it back, "
                                 "or prepare the job again")


@contextmanager
def exclusive_run(job_dir: Path, job_id: str) -> Iterator[None]:
    """One `job run` per job at a time (the job protocol's run.lock)."""
    try:
        with run_lock(job_dir):
            yield
    except JobBusyError:
        raise OperationError(f"job {job_id} is already running (another `infra job run` holds "
                             f"{job_dir / RUN_LOCK})") from None


def final_status(job_dir: Path) -> str:
    data = read_job_file(job_dir)
    statuses = {s.get("status") for s in data["stages"]}
    return "done" if statuses == {"done"} else "failed" if "failed" in statuses else "incomplete"


def load_job(stack: Stack, job_id: str) -> tuple[Path, dict[str, Any]]:
    from infra.jobs.prepare import job_dir_of, read_job
    from infra.workspace import Workspace

    ws = Workspace(stack.workdir)
    job = read_job(ws, job_id)
    if not isinstance(job.get("stages"), list):
        raise OperationError(f"job {job_id}: its job.json has no stages list")
    return job_dir_of(ws, job_id), job


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


def run_job(stack: Stack, request: RunRequest) -> Iterator[StageEvent]:
    """Run the planned stages of a job; yields events; raises StageFailedError when a stage fails."""
    from infra.jobs.runners import StageCall
    from infra.jobs.schedule import run_stages

    job_dir, job = load_job(stack, request.job_id)
    plan = plan_run(job, job_dir, stack.spec.stages, request)
    runner = runner_for(request.mode or job["config"]["mode"], job, stack)
    if any(p.action == "run" for p in plan):
        check_media(job, job_dir, stack.spec.stages, plan)
        runner.check()
        check_models(job, plan)
    with exclusive_run(job_dir, request.job_id):
        set_job_status(job_dir, "running")
        entries = {s["name"]: s for s in job["stages"]}
        to_run = [p for p in plan if p.action == "run"]
        names = {p.name for p in to_run}
        calls = []
        for step in plan:
            if step.action == "skip":
                yield StageEvent(step.name, "skip", step.reason)
                continue
            spec = stack.spec.stages[step.name]
            calls.append((StageCall(step.name, tuple(spec.command), job_dir, job_dir / LOGS_DIR / f"{step.name}.log",
                                    spec.image, str(entries[step.name].get("device", "cpu")),
                                    {**STAGE_ENV, CACHE_ENV: str(model_cache(job))}), step.reason))
        waits_for = {n: set(entries[n].get("after", [])) & names for n in names}
        later = {n: set(downstream(job, n)) for n in names}
        try:
            yield from run_stages(runner, calls, waits_for, job, later, parallel=request.parallel)
        except KeyboardInterrupt:
            set_job_status(job_dir, "stopped")
            raise
        except Terminated:
            set_job_status(job_dir, "stopped")
            raise
        except BaseException:
            set_job_status(job_dir, "failed")
            raise
        set_job_status(job_dir, final_status(job_dir))


def runner_for(mode: str, job: dict[str, Any], stack: Stack) -> StageRunner:
    """The runner for ``mode``: natively, or in the stage images (docker-cpu, docker-gpu)."""
    from infra.jobs.runners import NativeRunner
    if mode == "native":
        return NativeRunner(Path(job["config"]["native_env"]))
    if mode in ("docker-cpu", "docker-gpu"):
        from infra.jobs.containers import ContainerRunner

        if mode not in stack.spec.modes:
            raise BadInputError(f"mode {mode} is not defined in {stack.spec_path.name}")
        return ContainerRunner(stack, mode, job)
    raise BadInputError(f"unknown mode {mode!r} (native, docker-cpu, docker-gpu)")
