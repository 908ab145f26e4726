"""What the HTTP service does, without HTTP: take films in, run them as `infra run` would, report, cancel.

The service holds no state of its own beyond the workspace: jobs are the workspace's job directories
(job.json, progress files, results), found again after a restart. What lives only in memory is the
list of films it is running right now, so that a cancel can reach them.

- **Films in.** A path inside the workspace, or an upload. An upload is streamed to a temporary file
  under ``in/uploads/`` (never more than the size limit), hashed on the way, and renamed to
  ``in/uploads/<sha256[:16]>/<name>``: two uploads of the same bytes become one file, and the batch
  machinery (infra/jobs/batch.py: run key, run lock) then runs that film once; the second request
  gets the same job.
- **Running.** Each film runs in a worker thread through :class:`~infra.jobs.batch.Batch`, with the
  stack's workers when the stack is up (a worker's heartbeat under ``jobs/workers/`` is fresh), natively
  or in the job's mode's containers otherwise, exactly as `infra run` (or `infra run --submit`) does.
- **Cancel** stops the film's running stages (the job is left ``stopped``, resumable); **retry** runs a
  stopped or failed job again from where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from infra.errors import BadInputError, InfraError, OperationError, Terminated
from infra.jobproto import read_progress
from infra.spec import Stack
from infra.workspace import Workspace

UPLOADS = "uploads"
CHUNK = 1 << 20
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
RESULT_KINDS = {"srt": "subtitles.srt", "vtt": "subtitles.vtt", "mp4": "subtitled.mp4"}
WORKER_FRESH_S = 30.0


class NotFoundError(BadInputError):
    """An unknown job id or result: HTTP 404."""


class TooLargeError(BadInputError):
    """An upload over the limit: HTTP 413."""


class CancelledError(Terminated):
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
    """A film this service is running now."""

    path: Path
    options: JobOptions
    job_id: str | None = None
    known: threading.Event = field(default_factory=threading.Event)   # job_id is set, or the film ended
    cancelled: threading.Event = field(default_factory=threading.Event)
    error: InfraError | None = None
    future: Future[None] | None = None


class JobService:
    """Films in, jobs out, over one workspace (see the module docstring)."""

    def __init__(self, stack: Stack, films_at_once: int = 1, max_upload_bytes: int = 16 << 30) -> None:
        self.stack = stack
        self.ws = Workspace(stack.workdir)
        self.max_upload_bytes = max_upload_bytes
        self._pool = ThreadPoolExecutor(max_workers=max(1, films_at_once), thread_name_prefix="film")
        self._lock = threading.Lock()
        self._films: list[Film] = []

    # -- films in -----------------------------------------------------------------------------------------
    def confined(self, path: str) -> Path:
        """A path the request names, inside the workspace (relative to it, or absolute within it)."""
        root = self.ws.root.resolve()
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
        if resolved != root and root not in resolved.parents:
            raise BadInputError(f"{path}: not inside the workspace")
        if not resolved.is_file():
            raise NotFoundError(f"{path}: no such file in the workspace")
        return resolved

    def save_upload(self, stream: BinaryIO, filename: str) -> Path:
        """Stream an upload into in/uploads/<sha256[:16]>/<name>; the same bytes give the same file."""
        name = SAFE_NAME.sub("_", Path(filename or "upload").name).strip(" .") or "upload"
        folder = self.ws.root / "in" / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        handle = tempfile.NamedTemporaryFile(prefix=".upload-", dir=folder, delete=False)   # noqa: SIM115
        tmp = handle.name
        try:
            with handle as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_upload_bytes:
                        raise TooLargeError(f"{name}: larger than the upload limit of {self.max_upload_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise BadInputError(f"{name}: the upload is empty")
            self._probe(Path(tmp), name)
            target = folder / digest.hexdigest()[:16] / name
            target.parent.mkdir(exist_ok=True)
            if target.is_file():
                return target
            os.replace(tmp, target)
            return target
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _probe(path: Path, name: str) -> None:
        """Refuse what is not media before it gets a name in the workspace (nothing of it is kept)."""
        from infra.jobs.media import MediaProbe

        try:
            MediaProbe(path).result()
        except BadInputError as exc:
            raise BadInputError(exc.message.replace(str(path), name), exc.hint) from None

    def submit(self, path: Path, options: JobOptions, wait_s: float = 60.0) -> str:
        """Start a film (or join the run of the same film already going); its job id once it has one.

        The job's options are checked first, so bad input is refused before anything runs; media that
        cannot be read is refused when its job is prepared (the error comes back here)."""
        checked = self._checked(path, options)
        film = Film(path, options)
        with self._lock:
            self._films = [f for f in self._films if f.future is None or not f.future.done()]
            self._films.append(film)
        film.future = self._pool.submit(self._run, film, checked)
        if not film.known.wait(wait_s):
            raise OperationError(f"{path.name}: its job was not prepared within {wait_s:.0f} s "
                                 "(the service is busy with other films)")
        if film.job_id is None:
            raise film.error or OperationError(f"{path.name}: no job was made")
        return film.job_id

    def _checked(self, path: Path, options: JobOptions) -> Any:
        from infra.jobs.prepare import JobRequest, check_request

        return check_request(JobRequest(media=path, workflow="subtitles", mode=options.mode, language=options.language,
                                        name=options.name, whisper_model=options.model, task=options.task))

    def _run(self, film: Film, checked: Any) -> None:
        from infra.hardware.cache import stack_hardware
        from infra.jobs.batch import Batch

        try:
            batch = Batch(self.stack, checked, stack_hardware(self.stack), self._runner(film), wait=True)
            for event in batch.run([film.path]):
                if event.kind == "prepared" and event.job is not None:
                    self._known(film, event.job.job_id)
                elif event.kind == "resumed" and event.job_id:
                    self._known(film, event.job_id)
                elif event.kind == "outcome" and event.outcome is not None:
                    if event.outcome.job_id:
                        self._known(film, event.outcome.job_id)
                    film.error = event.outcome.error
        except InfraError as exc:
            film.error = exc
        finally:
            film.known.set()

    @staticmethod
    def _known(film: Film, job_id: str) -> None:
        film.job_id = job_id
        film.known.set()

    def _runner(self, film: Film) -> Any:
        """Through the stack's workers when they are up, else here (natively or in the job mode's containers)."""
        from infra.jobs.batch import LocalRunner, SubmitRunner

        if self.workers_up():
            return SubmitRunner(self.stack, timeout_s=24 * 3600.0)

        def run_here(job_id: str) -> None:
            from infra.jobs.pipeline import RunRequest, run_job

            events = run_job(self.stack, RunRequest(job_id, mode=film.options.mode))
            for _ in events:
                if film.cancelled.is_set():
                    events.throw(CancelledError())
        return LocalRunner(run_here)

    def workers_up(self) -> bool:
        """Whether the stack's workers are running: one of them wrote its heartbeat recently."""
        from infra.jobproto import WORKERS

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

        return [self.job(row["id"]) if row.get("status") != "missing" else row for row in list_jobs(self.ws)]

    def job(self, job_id: str) -> dict[str, Any]:
        """A job as the API shows it: status, media, each stage's status and progress, its results."""
        data, job_dir = self._load(job_id)
        stages = []
        for entry in data.get("stages", []):
            progress = read_progress(job_dir, entry["name"]) if entry.get("status") == "running" else None
            stages.append({"name": entry["name"], "status": entry.get("status"), "wall_s": entry.get("wall_s"),
                           "error": entry.get("error"), "progress": _progress(progress)})
        results = {kind: f"/api/jobs/{job_id}/{kind}" for kind, name in RESULT_KINDS.items() if (job_dir / name).is_file()}
        return {"id": data["id"], "status": data.get("status"), "name": data.get("name"), "created": data.get("created"),
                "media": Path(str(data.get("media", {}).get("path", ""))).name,
                "duration_s": data.get("input", {}).get("duration_s"), "mode": data.get("config", {}).get("mode"),
                "language": data.get("config", {}).get("language"), "stages": stages, "results": results,
                "running_here": any(f.job_id == job_id and f.future is not None and not f.future.done()
                                    for f in self._snapshot())}

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
        """Stop the job's film if this service runs it (its stages stop; the job is left resumable)."""
        self._load(job_id)
        running = [f for f in self._snapshot() if f.job_id == job_id and f.future is not None and not f.future.done()]
        if not running:
            raise BadInputError(f"job {job_id} is not running here")
        for film in running:
            film.cancelled.set()
        return self.job(job_id)

    def retry(self, job_id: str) -> dict[str, Any]:
        """Run a stopped or failed job again: the stages that finished are kept."""
        data, _ = self._load(job_id)
        if data.get("status") not in ("failed", "stopped", "pending"):
            raise BadInputError(f"job {job_id} is {data.get('status')}: only a failed or stopped job is retried")
        media = Path(str(data.get("media", {}).get("path", "")))
        if not media.is_file():
            raise BadInputError(f"job {job_id}: its media {media} is gone")
        config = data.get("config", {})
        self.submit(media, JobOptions(language=config.get("language"), task=config.get("task", "transcribe"),
                                      model=config.get("whisper_model"), mode=config.get("mode"), name=data.get("name")))
        return self.job(job_id)

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.25) -> dict[str, Any]:
        """The job once it is no longer running (done, failed, stopped), or OperationError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = self.job(job_id)
            if view["status"] not in ("pending", "running") and not view["running_here"]:
                return view
            if time.monotonic() > deadline:
                raise OperationError(f"job {job_id} did not finish within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def close(self) -> None:
        for film in self._snapshot():
            film.cancelled.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _snapshot(self) -> Iterable[Film]:
        with self._lock:
            return list(self._films)

    def _load(self, job_id: str) -> tuple[dict[str, Any], Path]:
        from infra.jobs.prepare import JOB_ID_RE, read_job

        if not JOB_ID_RE.match(job_id):
            raise NotFoundError(f"no job '{job_id}' (ids look like 20261202-0001)")
        try:
            data = read_job(self.ws, job_id)
        except InfraError:       # no claim, or its job.json is gone
            raise NotFoundError(f"no job {job_id} in this workspace") from None
        return data, self.ws.root / data["dir"]


def _progress(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    if not progress:
        return None
    total = progress.get("total_s") or 0
    return {"done_s": progress.get("done_s"), "total_s": total, "eta_s": progress.get("eta_s"),
            "fraction": round(progress.get("done_s", 0) / total, 4) if total else None}
