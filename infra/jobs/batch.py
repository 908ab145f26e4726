"""Many films in one `infra run`: one job per film, films already subtitled skipped, one film at a time per key.

``Batch.run`` takes the films (infra/jobs/films.py finds them on the command
line) one after the other and yields an event per step, so the CLI shows them:

- Each film has a run key (infra/jobs/fingerprint.py): its bytes' sha256, the
  settings, the stage code and the models. ``jobs/index/<key>/`` holds
  ``entry.json`` (the job of that key, its status, the pid running it), replaced
  atomically, and ``run.lock``, the job protocol's run lock: whoever holds it is
  running the film, and a second `infra run` of the same film says so and stops
  (``FilmBusyError``) or, with ``wait``, waits for it.
- A key whose job is done with every stage's outputs present is reported
  ``skipped`` without running anything (unless ``force``); a key whose job did
  not finish resumes that job; otherwise a new job is prepared.
- A film that fails is recorded and the next one starts; only Ctrl-C ends the batch.

The run itself is the caller's (``FilmRunner``): the CLI runs a job's stages with
its display; ``SubmitRunner`` queues them for the stack's workers and waits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from infra.errors import BadInputError, InfraError, OperationError
from infra.jobproto import JobBusyError, model_cache, now_iso, run_lock, write_json_atomic
from infra.jobs.fingerprint import (HASH_CACHE_DIR, RunSettings, media_digest, model_digest, run_key,
                                    stage_code_digest)
from infra.workspace import Workspace

if TYPE_CHECKING:
    from infra.hardware.cache import HardwareState
    from infra.jobs.prepare import CheckedRequest, PreparedJob
    from infra.spec import Stack

INDEX_DIR = "index"
ENTRY_FILE = "entry.json"
WAIT_POLL_S = 0.5
Status = Literal["done", "skipped", "failed", "busy"]


class FilmBusyError(OperationError):
    """Another `infra run` holds the film's run lock."""


@dataclass
class FilmOutcome:
    """What became of one film: done (ran now), skipped (done before), failed, or busy (run elsewhere)."""

    film: Path
    status: Status
    wall_s: float
    key: str | None = None
    job_id: str | None = None
    job_dir: Path | None = None
    duration_s: float | None = None
    srt: Path | None = None
    results: list[Path] = field(default_factory=list)
    error: InfraError | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"film": str(self.film), "status": self.status, "wall_s": round(self.wall_s, 3), "key": self.key,
                "job": self.job_id, "dir": str(self.job_dir) if self.job_dir else None,
                "duration_s": self.duration_s, "srt": str(self.srt) if self.srt else None,
                "results": [str(p) for p in self.results], "error": self.error.message if self.error else None}


@dataclass(frozen=True)
class BatchEvent:
    """``film`` (film number ``index`` of ``total`` starts), ``prepared`` (``job``), ``resumed`` (``job_id``),
    ``waiting`` (another run holds the film; ``detail`` says which), ``outcome`` (``outcome``)."""

    kind: Literal["film", "prepared", "resumed", "waiting", "outcome"]
    film: Path
    index: int = 0
    total: int = 0
    job: PreparedJob | None = None
    job_id: str | None = None
    detail: str = ""
    outcome: FilmOutcome | None = None


class FilmRunner(Protocol):
    """How a prepared job runs: ``start`` it, then ``finish`` it (``overlaps``: every film is started first)."""

    overlaps: bool

    def start(self, job_id: str) -> None: ...

    def finish(self, job_id: str) -> None: ...


@dataclass
class LocalRunner:
    """Run a job's stages here, natively or in containers (the job's mode): ``run`` does it all in ``start``."""

    run: Callable[[str], None]
    overlaps: bool = False

    def start(self, job_id: str) -> None:
        self.run(job_id)

    def finish(self, job_id: str) -> None:
        return None


@dataclass
class SubmitRunner:
    """Queue each job for the running stack's workers, then wait for them one by one (``notify`` sees job.json
    each time a stage's status changes)."""

    stack: Stack
    timeout_s: float
    notify: Callable[[dict[str, Any]], None] = lambda job: None
    overlaps: bool = True

    def start(self, job_id: str) -> None:
        from infra.stack.queue import submit_job

        submit_job(self.stack, job_id)

    def finish(self, job_id: str) -> None:
        from infra.stack.queue import wait_for_job

        job: dict[str, Any] = {}
        for job in wait_for_job(self.stack, job_id, self.timeout_s):
            self.notify(job)
        if job.get("status") == "failed":
            failed = [s["name"] for s in job.get("stages", []) if s.get("status") == "failed"]
            raise OperationError(f"job {job_id} failed at {', '.join(failed)}",
                                 hint=f"the stage's log is in {job.get('dir')}/logs/")


def run_settings(stack: Stack, checked: CheckedRequest, hardware: HardwareState) -> RunSettings:
    """The settings a job of ``checked`` gets, as prepare_job resolves them (the recommendation fills the gaps)."""
    from infra.hardware.recommend import recommend

    request = checked.request
    rec = recommend(hardware.snapshot, mode=request.mode, allowed=tuple(stack.spec.modes))  # type: ignore[arg-type]
    return RunSettings(workflow=request.workflow, whisper_model=request.whisper_model or rec.whisper_model,
                       compute_type=rec.compute_type, language=checked.language, task=request.task,
                       start_s=checked.start_s, end_s=checked.end_s, audio_track=request.audio_track,
                       audio_language=request.audio_language)


def index_folder(ws: Workspace, key: str) -> Path:
    return ws.jobs / INDEX_DIR / key


def read_entry(folder: Path) -> dict[str, Any]:
    """The key's entry.json ({} when there is none or it cannot be read)."""
    import json

    try:
        data = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def finished_job(stack: Stack, job_id: str | None) -> tuple[Path, dict[str, Any]] | None:
    """The job's directory and job.json when it is done: status done, every stage done with all its outputs."""
    from infra.jobs.pipeline import load_job

    if not job_id:
        return None
    try:
        job_dir, job = load_job(stack, job_id)
    except InfraError:
        return None
    if job.get("status") != "done":
        return None
    for entry in job["stages"]:
        spec = stack.spec.stages.get(entry.get("name"))
        if entry.get("status") != "done" or spec is None or not all((job_dir / o).is_file() for o in spec.outputs):
            return None
    return job_dir, job


@dataclass
class Started:
    """A film whose job was handed to the runner, with the lock it holds until it ends."""

    film: Path
    key: str
    folder: Path
    job_id: str
    began: float
    lock: ExitStack


class Batch:
    """The films of one `infra run`, with the settings they share (see the module's docstring)."""

    def __init__(self, stack: Stack, checked: CheckedRequest, hardware: HardwareState, runner: FilmRunner,
                 force: bool = False, wait: bool = False) -> None:
        self.stack, self.checked, self.hardware, self.runner = stack, checked, hardware, runner
        self.force, self.wait = force, wait
        self.ws = Workspace(stack.workdir)
        self.settings = run_settings(stack, checked, hardware)
        self.models = model_digest(model_cache({"workspace": str(self.ws.root)}), self.settings.whisper_model)

    def film_key(self, film: Path) -> str:
        """The film's run key (its bytes are read once; later the workspace's hash cache answers)."""
        try:
            sha = media_digest(film, self.ws.out / HASH_CACHE_DIR).sha256
        except OSError as exc:
            raise BadInputError(f"{film}: cannot be read ({exc.strerror or exc})") from None
        return run_key(sha, self.settings, stage_code_digest(), self.models)

    def run(self, films: list[Path]) -> Iterator[BatchEvent]:
        """Each film in turn: an event as it starts, as its job is prepared or resumed, and its outcome."""
        with ExitStack() as held:
            pending: list[Started] = []
            for number, film in enumerate(films, start=1):
                yield BatchEvent("film", film, number, len(films))
                began = time.perf_counter()
                step: Started | FilmOutcome | None = None
                try:
                    for event in self.begin(film, began):
                        if isinstance(event, BatchEvent):
                            yield event
                        else:
                            step = event
                except InfraError as exc:
                    step = FilmOutcome(film, "busy" if isinstance(exc, FilmBusyError) else "failed",
                                       time.perf_counter() - began, error=exc)
                if not isinstance(step, Started):
                    if step is not None:
                        yield BatchEvent("outcome", film, outcome=step)
                    continue
                with step.lock:
                    try:
                        self.start(step)
                    except InfraError as exc:
                        yield BatchEvent("outcome", film, outcome=self.failed(step, exc))
                        continue
                    if self.runner.overlaps:
                        held.push(step.lock.pop_all())
                        pending.append(step)
                        continue
                    outcome = self.end(step)
                yield BatchEvent("outcome", film, outcome=outcome)
            for step in pending:
                yield BatchEvent("outcome", step.film, outcome=self.end(step))

    def begin(self, film: Path, began: float) -> Iterator[BatchEvent | Started | FilmOutcome]:
        """Key, lock, then skip, resume or prepare; yields events, then a Started (holding the lock) or an outcome."""
        from infra.jobs.prepare import prepare_job

        key = self.film_key(film)
        folder = index_folder(self.ws, key)
        lock = ExitStack()
        try:
            yield from self.hold(film, folder, lock)
            entry = read_entry(folder)
            done = None if self.force else finished_job(self.stack, entry.get("job"))
            if done is not None:
                lock.close()
                yield self.outcome(film, key, "skipped", began, entry["job"], *done)
                return
            if entry.get("job") and not self.force and self.resumable(entry["job"]):
                job_id = str(entry["job"])
                self.carry_fallback(job_id)
                yield BatchEvent("resumed", film, job_id=job_id)
            else:
                self.record(folder, key, film, None, "preparing")
                try:
                    job = prepare_job(self.stack, replace(self.checked, request=replace(self.checked.request,
                                                                                          media=film)),
                                      hardware=self.hardware)
                except BaseException as exc:
                    self.record(folder, key, film, entry.get("job"), stopped_or_failed(exc))
                    raise
                job_id = job.job_id
                yield BatchEvent("prepared", film, job=job, job_id=job_id)
            self.record(folder, key, film, job_id, "running")
            yield Started(film, key, folder, job_id, began, lock)
        except BaseException:
            lock.close()
            raise

    def hold(self, film: Path, folder: Path, lock: ExitStack) -> Iterator[BatchEvent]:
        """Take the key's run lock into ``lock``; FilmBusyError when another run holds it (or wait, with ``wait``)."""
        folder.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            try:
                lock.enter_context(run_lock(folder))
                return
            except JobBusyError:
                entry = read_entry(folder)
                who = (f"job {entry['job']}" if entry.get("job") else "preparing its job") + \
                      (f", pid {entry['pid']}" if entry.get("pid") else "")
                if not self.wait:
                    raise FilmBusyError(f"{film}: another `infra run` is running this film ({who})",
                                        hint="--wait waits for it to finish") from None
                if not told:
                    told = True
                    yield BatchEvent("waiting", film, detail=who)
                time.sleep(WAIT_POLL_S)

    def resumable(self, job_id: str) -> bool:
        """The key's earlier job can go on where it stopped: its job.json is there and readable."""
        from infra.jobs.pipeline import load_job

        try:
            load_job(self.stack, job_id)
        except InfraError:
            return False
        return True

    def carry_fallback(self, job_id: str) -> None:
        """A resumed job may fall back to the CPU when this run allows it (job.json's config says so), not the first."""
        from infra.jobproto import locked_job
        from infra.jobs.prepare import job_dir_of

        with locked_job(job_dir_of(self.ws, job_id)) as data:
            data.setdefault("config", {})["allow_cpu_fallback"] = self.checked.request.allow_cpu_fallback

    def start(self, started: Started) -> None:
        try:
            self.runner.start(started.job_id)
        except BaseException as exc:
            self.record(started.folder, started.key, started.film, started.job_id, stopped_or_failed(exc))
            raise

    def end(self, started: Started) -> FilmOutcome:
        """Wait for the film's run to end (when the runner overlaps), record it and release its lock."""
        with started.lock:
            try:
                self.runner.finish(started.job_id)
            except InfraError as exc:
                self.record(started.folder, started.key, started.film, started.job_id, "failed")
                return self.failed(started, exc)
            except BaseException as exc:
                self.record(started.folder, started.key, started.film, started.job_id, stopped_or_failed(exc))
                raise
            done = finished_job(self.stack, started.job_id)
            status = "done" if done is not None else "failed"
            self.record(started.folder, started.key, started.film, started.job_id, status)
        if done is None:
            return self.failed(started, OperationError(f"job {started.job_id} did not finish: a stage is not done "
                                                       "or an output is missing",
                                                       hint=f"`infra job show {started.job_id}` shows its stages"))
        return self.outcome(started.film, started.key, "done", started.began, started.job_id, *done)

    def failed(self, started: Started, error: InfraError) -> FilmOutcome:
        """A film whose job failed: its job, where it is and how long the media is, when job.json says."""
        from infra.jobs.pipeline import load_job

        try:
            job_dir, job = load_job(self.stack, started.job_id)
        except InfraError:
            job_dir, job = None, {}
        return FilmOutcome(started.film, "failed", time.perf_counter() - started.began, started.key, started.job_id,
                           job_dir, job.get("input", {}).get("duration_s"), error=error)

    def outcome(self, film: Path, key: str, status: Status, began: float, job_id: str, job_dir: Path | None,
                job: dict[str, Any] | None) -> FilmOutcome:
        from infra.jobs.pipeline import result_files

        results = result_files(self.stack, job_dir, job) if job_dir is not None and job is not None else []
        srt = next((p for p in results if p.suffix == ".srt"), None)
        duration = (job or {}).get("input", {}).get("duration_s")
        return FilmOutcome(film, status, time.perf_counter() - began, key, job_id, job_dir, duration, srt, results)

    def record(self, folder: Path, key: str, film: Path, job_id: str | None, status: str) -> None:
        """The key's entry.json: which job, its status, who runs it; replaced whole."""
        write_json_atomic(folder / ENTRY_FILE, {
            "key": key, "media": str(film.resolve()), "job": job_id, "status": status, "pid": os.getpid(),
            "updated": now_iso(), "settings": asdict(self.settings)})


def stopped_or_failed(exc: BaseException) -> str:
    """An error is a failure; Ctrl-C, SIGTERM and the like (not Exceptions) stop the run, which resumes later."""
    return "failed" if isinstance(exc, Exception) else "stopped"
