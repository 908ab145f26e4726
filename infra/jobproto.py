"""The job protocol: how infra, the stage programs and the stack's workers share a job directory.

One module, standard library only, imported alike by infra (prepare, pipeline,
submit), by the stage programs (``stages/``) and by the workers
(``stages/worker.py``). The stage images carry this file and ``infra/__init__.py``
(which imports nothing) beside the stage code, so every side runs the same code.

- A job directory holds ``job.json``: the job (``schema``, ``id``, ``input``,
  ``config``, ``status``) and its ``stages``, a list of entries (``name``,
  ``after``, ``device``, ``status`` and what a run adds).
- Files that others read are replaced whole: written to a temporary file beside
  the target, then renamed (``write_text_atomic``, ``write_json_atomic``).
- ``job.json`` is changed only under the job's lock (``locked_job``): an
  exclusive ``flock`` on ``.job.lock``, taken on a read-only descriptor so that a
  worker running as the images' user can lock a file that root created, and the
  other way round.
- Models come from one cache: ``$INFRA_CACHE``, else the workspace's
  ``shared-model-and-cache/`` (``model_cache``).
- A running stage says how far it is in ``progress/<stage>.json`` (seconds of
  media done out of the total, its rate and ETA), replaced about once a second
  (``StageProgress``); the CLI, job.json, `infra ps` and the workers read it.
- The stack's queue is ``jobs/queue/<stage>/<job-id>``: a small JSON file
  created with O_EXCL, so a stage of a job is queued once (``enqueue``); workers
  claim it by renaming it into ``jobs/running/<stage>/``. A stage run by a
  worker has ``$INFRA_WORKER_ID`` set, and records its result only while its
  entry's ``worker`` is that id (``update_stage_entry(..., owned_by=...)``).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
JOB_FILE = "job.json"
LOCK_FILE = ".job.lock"
RUN_LOCK = "run.lock"                 # one `infra job run` of a job at a time
RESULTS_DIR = "results"
PROGRESS_DIR = "progress"
PROGRESS_INTERVAL_S = 1.0
LOGS_DIR = "logs"
CACHE_ENV = "INFRA_CACHE"
CACHE_DIR = "shared-model-and-cache"
QUEUE, RUNNING, WORKERS = "queue", "running", "workers"
WORKER_ENV = "INFRA_WORKER_ID"         # set by the worker for its stage process: the id its entry must name

# A stage entry's status. "queued" and "running" are in flight: a resubmission leaves them to their worker.
PENDING, QUEUED, RUNNING_STATUS, DONE, FAILED = "pending", "queued", "running", "done", "failed"
IN_FLIGHT = (QUEUED, RUNNING_STATUS)
FINAL = (DONE, FAILED)


class JobFileError(Exception):
    """job.json is missing, unreadable, not a job file, or has no such stage."""


class JobBusyError(JobFileError):
    """Another run holds the job's run.lock."""


class SupersededError(JobFileError):
    """The stage's entry names another worker: it took the stage over, and this run's result is not recorded."""


def check_owner(entry: dict[str, Any], worker: str | None) -> None:
    """SupersededError when ``worker`` is given and the entry's ``worker`` is someone else."""
    if worker and entry.get("worker") != worker:
        raise SupersededError(f"stage {entry.get('name')} was taken over by worker {entry.get('worker')} "
                              f"on node {entry.get('node')}: the result of {worker}'s run is not recorded")


def now_iso() -> str:
    """The time now, to the second, in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one rename; a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as sorted, indented JSON, replaced in one rename."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def temporary_beside(path: Path, suffix: str | None = None) -> Path:
    """A name beside ``path`` for a tool to write to before the rename (same folder, same file system)."""
    return path.with_name(f".{path.stem}.partial{suffix or path.suffix}")


def read_job_file(job_dir: Path) -> dict[str, Any]:
    """job.json of ``job_dir``; JobFileError when it is missing, unreadable or not a job file."""
    path = job_dir / JOB_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JobFileError(f"{path}: no job.json (is {job_dir} a job directory?)") from None
    except (OSError, ValueError) as exc:
        raise JobFileError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
        raise JobFileError(f"{path}: not a job file (no stages list)")
    return data


@contextmanager
def locked_job(job_dir: Path) -> Iterator[dict[str, Any]]:
    """job.json under the job's exclusive lock; the caller changes the dict in place, and it is written back
    (atomically) when the block ends without an exception."""
    fd = os.open(job_dir / LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = read_job_file(job_dir)
        yield data
        write_json_atomic(job_dir / JOB_FILE, data)
    finally:
        os.close(fd)


@contextmanager
def run_lock(job_dir: Path) -> Iterator[None]:
    """One run of a job at a time: an exclusive, non-blocking flock on its run.lock (JobBusyError if held)."""
    path = job_dir / RUN_LOCK
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobBusyError(f"another run holds {path}") from None
        yield
    finally:
        os.close(fd)


def stage_entry(job: dict[str, Any], name: str) -> dict[str, Any]:
    """The entry of stage ``name`` in a loaded job.json; JobFileError when the job has no such stage."""
    for entry in job.get("stages", []):
        if entry.get("name") == name:
            return entry
    known = ", ".join(str(s.get("name")) for s in job.get("stages", []))
    raise JobFileError(f"job {job.get('id')} has no stage {name} (its stages: {known})")


def update_stage_entry(job_dir: Path, name: str, *, owned_by: str | None = None, **changes: Any) -> dict[str, Any]:
    """Set keys of one stage's entry in job.json under the lock (a None value removes the key); the new entry.
    With ``owned_by``, only while the entry's worker is that one (else SupersededError, nothing written)."""
    with locked_job(job_dir) as data:
        entry = stage_entry(data, name)
        check_owner(entry, owned_by)
        for key, value in changes.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
        return dict(entry)


def set_job_status(job_dir: Path, status: str) -> None:
    with locked_job(job_dir) as data:
        data["status"] = status


def model_cache(job: dict[str, Any], job_dir: Path | None = None) -> Path:
    """The shared model cache: $INFRA_CACHE, else the job's workspace's shared-model-and-cache/."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env)
    workspace = job.get("workspace")
    if workspace:
        return Path(workspace) / CACHE_DIR
    if job_dir is None:
        raise JobFileError(f"job {job.get('id')}: job.json names no workspace and {CACHE_ENV} is not set")
    return job_dir.parents[5] / CACHE_DIR       # <workspace>/out/YYYY/MM/DD/<user>/<job-id>


def enqueue(jobs_dir: Path, stage: str, work: dict[str, Any]) -> bool:
    """Queue ``stage`` of the job ``work['job']`` once (O_EXCL); False when it is already waiting.

    Run as root, the folders and the file it makes belong to ``jobs_dir``'s owner: the workers rename files out
    of them and touch what they claim."""
    folder = jobs_dir / QUEUE / stage
    missing = [p for p in (folder.parent, folder) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    owner = jobs_dir.stat() if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    if owner is not None:
        for path in missing:
            os.chown(path, owner.st_uid, owner.st_gid)
    try:
        fd = os.open(folder / str(work["job"]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
    except FileExistsError:
        return False
    if owner is not None:
        os.fchown(fd, owner.st_uid, owner.st_gid)       # the worker that claims it touches it while it runs
    with os.fdopen(fd, "w") as out:
        json.dump({**work, "stage": stage, "queued": now_iso()}, out, sort_keys=True)
    return True


class StageProgress:
    """How far a stage is, in seconds of media: ``progress/<stage>.json``, replaced at most once per interval.

    ``resumed_s`` is what an earlier, interrupted run already did: it counts as done but not towards the
    rate, so the ETA of a resumed stage is honest."""

    def __init__(self, job_dir: Path, stage: str, total_s: float, resumed_s: float = 0.0,
                 interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.path = job_dir / PROGRESS_DIR / f"{stage}.json"
        self.stage, self.total_s, self.resumed_s = stage, max(0.0, float(total_s)), float(resumed_s)
        self.interval_s = interval_s
        self.started = time.monotonic()
        self.started_at = now_iso()
        self.written = 0.0
        self.done_s = self.resumed_s
        self.update(self.resumed_s, force=True)

    def update(self, done_s: float, force: bool = False) -> None:
        self.done_s = min(max(float(done_s), self.done_s), self.total_s) if self.total_s else float(done_s)
        now = time.monotonic()
        if not force and now - self.written < self.interval_s:
            return
        self.written = now
        write_json_atomic(self.path, self.snapshot(now))

    def finish(self) -> None:
        self.update(self.total_s, force=True)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        elapsed = max(1e-6, (now or time.monotonic()) - self.started)
        rate = (self.done_s - self.resumed_s) / elapsed
        left = self.total_s - self.done_s
        return {"stage": self.stage, "done_s": round(self.done_s, 3), "total_s": round(self.total_s, 3),
                "resumed_s": round(self.resumed_s, 3), "elapsed_s": round(elapsed, 3),
                "rate": round(rate, 4), "eta_s": round(left / rate, 1) if rate > 0 else None,
                "started": self.started_at, "updated": now_iso(), "pid": os.getpid()}


def read_progress(job_dir: Path, stage: str) -> dict[str, Any] | None:
    """The last progress a stage reported, or None (never reported, or being replaced this instant)."""
    try:
        data = json.loads((job_dir / PROGRESS_DIR / f"{stage}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
