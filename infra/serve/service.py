"""What the HTTP service does, without HTTP: take films in, run them as `infra run` would, report, cancel.

The service holds no state of its own beyond the workspace: jobs are the workspace's job directories
(job.json, progress files, results), found again after a restart. What lives only in memory is the
list of films it is running right now, so that a cancel can reach them.

- **Films in.** A path inside the workspace, or an upload. An upload is streamed to a temporary file
  under ``in/uploads/`` (never more than the size limit), hashed on the way, and renamed to
  ``in/uploads/<sha256[:16]>/<name>``: two uploads of the same bytes become one file, and the batch
  machinery (infra/jobs/batch.py: run key, run lock) then runs that film once; the second request
  gets the same job.
- **Running.** A film's job is prepared (or found: the same film with the same settings is one job) while
  the request waits, through :class:`~infra.jobs.batch.Batch`, which also holds the film's run lock; then
  the film runs in a worker thread: with the stack's workers when the stack is up (a worker's heartbeat
  under ``jobs/workers/`` is fresh), natively or in the job's mode's containers otherwise, exactly as
  `infra run` (or `infra run --submit`) does. ``films_at_once`` films run here at a time, the others wait
  their turn (their jobs are ``prepared``); films handed to the workers wait for them without a turn.
  A request for a film that another request (or an `infra run`) is running gets that run's job.
- **In the stack** (``stack_mode``, `infra serve --stack-mode`): every film goes to the workers, and jobs get
  the host's hardware as `infra up` recorded it (docs/SERVE.md, "In the stack").
- **Cancel** stops a film run here (its running stages stop, the job is left ``stopped``, resumable) or
  takes a waiting one out of the queue; **retry** runs a stopped or failed job again from where it stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from infra.errors import BadInputError, InfraError, OperationError, Terminated
from infra.jobproto import JobBusyError, read_progress, run_lock, set_job_status
from infra.serve.intake import NotFoundError, TooLargeError, confined, save_upload
from infra.spec import Stack
from infra.workspace import Workspace

if TYPE_CHECKING:
    from infra.jobs.batch import Batch, Started

UPLOADS = "uploads"
RESULT_KINDS = {"srt": "subtitles.srt", "vtt": "subtitles.vtt", "mp4": "subtitled.mp4"}
WORKER_FRESH_S = 30.0
WORKER_WAIT_S = 24 * 3600.0


class ConflictError(BadInputError):
    """A request the job's state does not allow now (cancel a job not running here, retry a done one): HTTP 409."""


class Cancelled(Terminated):
    """Raised into a film's running stages when its job is cancelled."""


@dataclass(frozen=True)
class JobOptions:
    """What a request may choose of a job's settings (the rest comes from the spec and the hardware)."""

    language: str | None = None
    task: str = "transcribe"
    model: str | None = None
    mode: str | None = None
    name: str | None = None


@dataclass
class Film:
    """A film this service runs now (or that waits for its turn), with its job and the run lock it holds
    (``hold``; ``started`` when its run key's entry records the run, as `infra run` does)."""

    path: Path
    job_id: str
    batch: Batch
    started: Started | None
    hold: ExitStack
    workers: bool                         # handed to the stack's workers
    cancelled: threading.Event = field(default_factory=threading.Event)
    error: InfraError | None = None
    future: Future[None] | None = None

    @property
    def active(self) -> bool:
        return self.future is not None and not self.future.done()


class JobService:
    """Films in, jobs out, over one workspace (see the module docstring)."""

    def __init__(self, stack: Stack, films_at_once: int = 1, max_upload_bytes: int = 16 << 30,
                 stack_mode: str | None = None) -> None:
        self.stack = stack
        self.stack_mode = stack_mode          # set when this is the stack's service 'serve' (see _hardware)
        self.ws = Workspace(stack.workdir)
        self.max_upload_bytes = max_upload_bytes
        self._pool = ThreadPoolExecutor(max_workers=max(1, films_at_once), thread_name_prefix="film")
        self._waiters = ThreadPoolExecutor(max_workers=64, thread_name_prefix="workers")
        self._lock = threading.Lock()
        self._films: list[Film] = []

    # -- films in -----------------------------------------------------------------------------------------
    def confined(self, path: str) -> Path:
        """A file the request names, inside the workspace (see :func:`infra.serve.intake.confined`)."""
        return confined(self.ws.root, path, never=(self.stack.workdir / self.stack.spec.secrets.file,))

    def save_upload(self, stream: BinaryIO, filename: str) -> Path:
        """An upload kept as in/uploads/<sha256[:16]>/<name> (see :func:`infra.serve.intake.save_upload`)."""
        return save_upload(self.ws.root / "in" / UPLOADS, stream, filename, self.max_upload_bytes)

    def submit(self, path: Path, options: JobOptions, wait_s: float = 60.0) -> str:
        """The job of a film: prepared now and started (or queued for a turn), or the job of the same film done
        before, or the job another run of it is running now (waiting up to ``wait_s`` for it to get one).

        Bad options and media that cannot be read are refused here, before anything runs."""
        from infra.jobs.batch import Batch, FilmBusyError, FilmOutcome, Started

        checked = self.check(options)
        workers = self.workers_up()
        cancelled = threading.Event()
        batch = Batch(self.stack, checked, self._hardware(), self._runner(options, cancelled, workers))
        step: Any = None
        try:
            for event in batch.begin(path, time.perf_counter()):
                step = event if isinstance(event, Started | FilmOutcome) else step
        except FilmBusyError:
            return self._job_of_running(batch, path, wait_s)
        if isinstance(step, FilmOutcome) and step.job_id:
            return step.job_id                           # done before: skipped
        if not isinstance(step, Started):
            raise getattr(step, "error", None) or OperationError(f"{path.name}: no job was made")
        return self._start(Film(path, step.job_id, batch, step, step.lock, workers, cancelled))

    def _start(self, film: Film) -> str:
        with self._lock:
            self._films = [f for f in self._films if f.active or f.future is None]
            self._films.append(film)
            film.future = (self._waiters if film.workers else self._pool).submit(self._run, film)
        return film.job_id

    def check(self, options: JobOptions) -> Any:
        """The options checked (a CheckedRequest for every film), before any film is taken in."""
        from infra.jobs.prepare import JobRequest, check_request

        if options.mode is not None:
            self.stack.check_mode(options.mode, flag="mode")
        return check_request(JobRequest(media=Path("."), workflow="subtitles", mode=options.mode or self.stack_mode,
                                        language=options.language, name=options.name, whisper_model=options.model,
                                        task=options.task))

    def _job_of_running(self, batch: Batch, path: Path, wait_s: float) -> str:
        """The job of the run that holds the film's run lock (once that run has prepared it)."""
        from infra.jobs.batch import index_folder, read_entry

        folder = index_folder(self.ws, batch.film_key(path))
        deadline = time.monotonic() + wait_s
        while True:
            entry = read_entry(folder)
            if entry.get("job") and entry.get("status") != "preparing":
                return str(entry["job"])
            if time.monotonic() > deadline:
                raise OperationError(f"{path.name}: another run of this film did not prepare its job "
                                     f"within {wait_s:.0f} s")
            time.sleep(0.1)

    def _run(self, film: Film) -> None:
        """Run a film whose turn came (or hand it to the workers and wait), then release its run lock."""
        with film.hold:
            if film.cancelled.is_set():       # cancelled as its turn came
                self._stopped(film)
                return
            try:
                if film.started is not None:
                    film.batch.start(film.started)
                    film.error = film.batch.end(film.started).error
                else:
                    film.batch.runner.start(film.job_id)
                    film.batch.runner.finish(film.job_id)
            except InfraError as exc:
                film.error = exc
            except Cancelled:
                pass

    def _runner(self, options: JobOptions, cancelled: threading.Event, workers: bool) -> Any:
        """Through the stack's workers when they are up, else here (natively or in the job mode's containers)."""
        from infra.jobs.batch import LocalRunner, SubmitRunner

        if workers:
            return SubmitRunner(self.stack, timeout_s=WORKER_WAIT_S)

        def run_here(job_id: str) -> None:
            from infra.jobs.pipeline import RunRequest, run_job

            if cancelled.is_set():
                raise Cancelled()
            events = run_job(self.stack, RunRequest(job_id, mode=options.mode))
            for _ in events:
                if cancelled.is_set():
                    events.throw(Cancelled())
        return LocalRunner(run_here)

    def _hardware(self) -> Any:
        """The hardware a job's settings follow: this machine's (the workspace's cache, detected when stale), or,
        as the stack's service, the host's as `infra up` recorded it (a container sees neither the host's name,
        which the cache's fingerprint holds, nor its GPU)."""
        from infra.hardware.cache import Fingerprint, HardwareState, read_cache, stack_hardware

        if self.stack_mode is None:
            return stack_hardware(self.stack)
        path, forever = self.ws.hardware_cache, 10 ** 9
        try:
            recorded = Fingerprint.model_validate(json.loads(path.read_text(encoding="utf-8"))["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            raise OperationError(f"no hardware snapshot of the host in {path}",
                                 hint="`infra up` records one before it starts the service") from None
        found = read_cache(path, forever, recorded)
        if found.snapshot is None:
            raise OperationError(f"the hardware snapshot in {path} cannot be used: {found.reason}",
                                 hint="`infra up` records one before it starts the service")
        return HardwareState(found.snapshot, "cache", path, forever, found.age_s or 0.0, found.reason)

    def workers_up(self) -> bool:
        """Whether the stack's workers are running: one of them wrote its heartbeat recently. The stack's own
        service always hands its films to them (they may still be starting)."""
        from infra.jobproto import WORKERS

        if self.stack_mode is not None:
            return True
        now = time.time()
        for beat in (self.ws.jobs / WORKERS).glob("*/*"):       # workers/<stage>/<host>
            try:
                if now - beat.stat().st_mtime < WORKER_FRESH_S:
                    return True
            except OSError:
                continue
        return False

    # -- jobs out -----------------------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, Any]]:
        from infra.jobs.prepare import list_jobs

        shown = []
        for row in list_jobs(self.ws):
            try:
                shown.append(self.job(row["id"]) if row.get("status") != "missing" else row)
            except InfraError as exc:         # removed or rewritten while listing
                shown.append({"id": row["id"], "status": "missing", "detail": exc.message})
        return shown

    def job(self, job_id: str) -> dict[str, Any]:
        """A job as the API shows it: status, media, each stage's status and progress, its results."""
        data, job_dir = self._load(job_id)
        stages = []
        for entry in data.get("stages", []):
            progress = read_progress(job_dir, entry["name"]) if entry.get("status") == "running" else None
            stages.append({"name": entry["name"], "status": entry.get("status"), "wall_s": entry.get("wall_s"),
                           "error": entry.get("error"), "progress": _progress(progress)})
        results = {kind: f"/api/jobs/{job_id}/{kind}" for kind, name in RESULT_KINDS.items()
                   if (job_dir / name).is_file()}
        return {"id": data["id"], "status": data.get("status"), "name": data.get("name"),
                "created": data.get("created"),
                "media": Path(str(data.get("media", {}).get("path", ""))).name,
                "duration_s": data.get("input", {}).get("duration_s"), "mode": data.get("config", {}).get("mode"),
                "language": data.get("config", {}).get("language"), "stages": stages, "results": results,
                "running_here": any(f.job_id == job_id and f.active for f in self._snapshot())}

    def result(self, job_id: str, kind: str) -> Path:
        if kind not in RESULT_KINDS:
            raise NotFoundError(f"no result '{kind}' (results: {', '.join(RESULT_KINDS)})")
        _, job_dir = self._load(job_id)
        path = job_dir / RESULT_KINDS[kind]
        if not path.is_file():
            raise NotFoundError(f"job {job_id} has no {RESULT_KINDS[kind]} (yet)")
        return path

    def log_tail(self, job_id: str, stage: str, lines: int = 30) -> str:
        data, job_dir = self._load(job_id)
        if stage not in {s["name"] for s in data.get("stages", [])}:
            raise NotFoundError(f"job {job_id} has no stage '{stage}'")
        try:
            text = (job_dir / "logs" / f"{stage}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop the job's film if this service runs it (its stages stop; the job is left ``stopped``, resumable),
        or take it out of the queue if it waits for its turn."""
        self._load(job_id)
        films = [f for f in self._snapshot() if f.job_id == job_id and f.active]
        if not films:
            raise ConflictError(f"job {job_id} is not running here", hint="only a film this service runs is cancelled")
        if any(f.workers for f in films):
            raise ConflictError(f"job {job_id} runs in the stack's workers, which finish what they started",
                                hint="`infra down` stops the workers; a later submit resumes the job")
        for film in films:
            film.cancelled.set()
            if film.future is not None and film.future.cancel():      # it was waiting for its turn
                with film.hold:
                    self._stopped(film)
        return self.job(job_id)

    def _stopped(self, film: Film) -> None:
        """A film cancelled before its turn: its job is ``stopped`` (a retry runs it)."""
        if film.started is not None:
            film.batch.record(film.started.folder, film.started.key, film.path, film.job_id, "stopped")
        set_job_status(self._dir(film.job_id), "stopped")

    def retry(self, job_id: str) -> dict[str, Any]:
        """Run a stopped or failed job again, with its own settings: the stages that finished are kept. When a run
        key's entry names the job (it came through `infra run` or this service), its run lock is held meanwhile."""
        from infra.jobs.batch import Batch, Started

        data, _ = self._load(job_id)
        if data.get("status") not in ("failed", "stopped", "prepared", "pending"):
            raise ConflictError(f"job {job_id} is {data.get('status')}: only a failed or stopped job is retried")
        if any(f.job_id == job_id and f.active for f in self._snapshot()):
            raise ConflictError(f"job {job_id} is running here already")
        media = Path(str(data.get("media", {}).get("path", "")))
        media = media if media.is_absolute() else self.ws.root / media
        if not media.is_file():
            raise ConflictError(f"job {job_id}: its media {media.name} is gone")
        config = data.get("config", {})
        options = JobOptions(language=config.get("language"), task=config.get("task", "transcribe"),
                             model=config.get("whisper_model"), mode=config.get("mode"), name=data.get("name"))
        cancelled, workers = threading.Event(), self.workers_up()
        batch = Batch(self.stack, self.check(options), self._hardware(), self._runner(options, cancelled, workers))
        hold, started = ExitStack(), None
        folder = self._index_of(job_id)
        if folder is not None:
            try:
                hold.enter_context(run_lock(folder))
            except JobBusyError:
                raise ConflictError(f"job {job_id} is running elsewhere (an `infra run` of its film)") from None
            started = Started(media, folder.name, folder, job_id, time.perf_counter(), hold)
        self._start(Film(media, job_id, batch, started, hold, workers, cancelled))
        return self.job(job_id)

    def _index_of(self, job_id: str) -> Path | None:
        """The run key's folder whose entry names this job, if one does."""
        from infra.jobs.batch import INDEX_DIR, read_entry

        return next((entry.parent for entry in sorted((self.ws.jobs / INDEX_DIR).glob("*/entry.json"))
                     if read_entry(entry.parent).get("job") == job_id), None)

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.25) -> dict[str, Any]:
        """The job once it is no longer running (done, failed, stopped), or OperationError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.job(job_id)
            if view["status"] not in ("running", "queued") and not view["running_here"]:
                return view
            if time.monotonic() > deadline:
                raise OperationError(f"job {job_id} did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def close(self) -> None:
        """Stop the films running here (their jobs are left ``stopped``) and those waiting for a turn."""
        for film in self._snapshot():
            film.cancelled.set()
            if film.future is not None and film.future.cancel():
                with film.hold:
                    self._stopped(film)
        self._pool.shutdown(wait=True)
        self._waiters.shutdown(wait=False, cancel_futures=True)

    def _snapshot(self) -> Iterable[Film]:
        with self._lock:
            return list(self._films)

    def _dir(self, job_id: str) -> Path:
        from infra.jobs.prepare import job_dir_of

        return job_dir_of(self.ws, job_id)

    def _load(self, job_id: str) -> tuple[dict[str, Any], Path]:
        from infra.jobs.prepare import JOB_ID_RE, read_job

        if not JOB_ID_RE.match(job_id):
            raise NotFoundError(f"no job '{job_id}' (ids look like 20261202-0001)")
        try:
            data = read_job(self.ws, job_id)
        except InfraError:       # no claim, or its job.json is gone
            raise NotFoundError(f"no job {job_id} in this workspace") from None
        return data, self._dir(job_id)


def _progress(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    if not progress:
        return None
    total = progress.get("total_s") or 0
    return {"done_s": progress.get("done_s"), "total_s": total, "eta_s": progress.get("eta_s"),
            "fraction": round(progress.get("done_s", 0) / total, 4) if total else None}
