"""The stage contract in code: find the job, record the stage's result, fail in one line.

``run_stage(name, work)`` is each stage program's ``main``. It reads job.json from
the job directory (the first argument, else the current directory), marks the
stage ``running``, calls ``work(ctx)``, and then writes the stage's result record
(``results/<stage>.json``: status, seconds, versions, details, and
``device_used``, the device it really ran on and why: stages/_device.py) and its
entry in job.json (``done`` or ``failed``, with the same ``device_used``). A
StageError becomes one line on stderr and exit code 2 (bad input, or a device
the job asks for that this machine cannot give) or 1 (the work failed); any
other exception is reported the same way with its type, and its traceback goes
to stderr before that line, for the log.

A write that fails (the disk is full, or any other OSError while writing) ends
the stage with one line, ``disk full while writing X`` or ``cannot write X: ...``,
exit 1; the atomic writes leave the earlier file (or none) and no temporary file
behind. When even job.json cannot be written, the line still goes to stderr.

Both records carry the stage's peak resident memory (``peak_rss_mb``): the
stage process's own peak plus the largest of the programs it ran and waited for
(ffmpeg), from ``getrusage``.

job.json, its lock, the atomic writes and the model cache are the job protocol
(infra/jobproto.py), the one module that infra, the stages and the workers share.

Standard library only (with infra/jobproto.py): this runs in slim images where
infra itself is not installed.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.jobproto import (JOB_FILE, RESULTS_DIR, WORKER_ENV, JobFileError, StageProgress, SupersededError,
                            check_owner, model_cache, read_job_file, stage_entry, update_stage_entry,
                            write_json_atomic, write_text_atomic)

BAD_INPUT = 2
FAILED = 1
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class StageError(Exception):
    """The work failed although its input was fine: exit 1 with this one-line message."""

    exit_code = FAILED


class StageInputError(StageError):
    """The stage's input is wrong or missing (a file, a model, job.json): exit 2."""

    exit_code = BAD_INPUT


def now_text() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def write_failure(path: Path | str, exc: OSError, job_dir: Path | None = None) -> str:
    """One line for a failed write: 'disk full while writing X' or 'cannot write X: why' (X relative to the job)."""
    where = Path(path)
    if job_dir is not None and where.is_relative_to(job_dir):
        where = where.relative_to(job_dir)
    if exc.errno in DISK_FULL:
        return f"disk full while writing {where}"
    return f"cannot write {where}: {exc.strerror or exc}"


def peak_rss() -> tuple[float, dict[str, float]]:
    """Peak resident memory in MB: this process's plus the largest waited-for child's, and the two apart."""
    unit = 1 if sys.platform == "darwin" else 1024          # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit / 2**20
    return round(own + children, 1), {"self_mb": round(own, 1), "children_mb": round(children, 1)}


class StageMeter(StageProgress):
    """The job protocol's progress file, whose failed writes end the stage with ``write_failure``'s line."""

    def update(self, done_s: float, force: bool = False) -> None:
        try:
            super().update(done_s, force)
        except OSError as exc:
            raise StageError(write_failure(self.path, exc, self.path.parent.parent)) from None


@dataclass
class StageContext:
    """What a stage's work function gets: the job and places to put what it learns."""

    name: str
    job_dir: Path
    job: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    device_used: dict[str, Any] | None = None     # set by stages/_device.py; see device_record

    @property
    def config(self) -> dict[str, Any]:
        return self.job.get("config") or {}

    @property
    def entry(self) -> dict[str, Any]:
        return next((s for s in self.job["stages"] if s.get("name") == self.name), {})

    @property
    def device(self) -> str:
        return str(self.entry.get("device") or "cpu")

    def path(self, name: str) -> Path:
        return self.job_dir / name

    def require(self, *names: str, made_by: str | None = None) -> list[Path]:
        """The paths of input files, or a StageInputError naming the missing ones (and the stage that makes them)."""
        missing = [n for n in names if not self.path(n).is_file()]
        if missing:
            source = f": run stage {made_by} first" if made_by else ""
            raise StageInputError(f"missing input {', '.join(missing)} in {self.job_dir}{source}")
        return [self.path(n) for n in names]

    def read_json(self, name: str, made_by: str | None = None) -> Any:
        (path,) = self.require(name, made_by=made_by)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise StageInputError(f"{path.name} is not valid JSON ({exc}): run stage {made_by or 'that made it'} again")

    def write_json(self, name: str, data: Any) -> None:
        """``name`` (relative to the job) replaced atomically; a failed write is a StageError line."""
        try:
            write_json_atomic(self.path(name), data)
        except OSError as exc:
            raise StageError(write_failure(name, exc)) from None

    def write_text(self, name: str, text: str) -> None:
        try:
            write_text_atomic(self.path(name), text)
        except OSError as exc:
            raise StageError(write_failure(name, exc)) from None

    def progress(self, total_s: float, resumed_s: float = 0.0) -> StageMeter:
        """This stage's progress file (progress/<stage>.json), started now; ``.update(done_s)``, ``.finish()``."""
        return StageMeter(self.job_dir, self.name, total_s, resumed_s)

    def input_media(self) -> Path:
        """The file the job works on: the clip when the job has one, else the source (input.file)."""
        name = (self.job.get("input") or {}).get("file")
        if not name:
            raise StageInputError(f"{self.job_dir / JOB_FILE}: no input.file")
        path = Path(name)
        path = path if path.is_absolute() else self.job_dir / path
        if not path.is_file():
            raise StageInputError(f"the job's input {path} is missing (moved or deleted since the job was prepared?)")
        return path

    def model_cache(self) -> Path:
        """The shared model cache (the job protocol's ``model_cache``)."""
        return model_cache(self.job, self.job_dir)


def parse_job_dir(argv: list[str], name: str) -> Path:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        raise StageInputError(f"usage: python3 -m stages.{name} [JOB_DIR]")
    return Path(argv[0] if argv else ".").resolve()


def run_stage(name: str, work: Callable[[StageContext], None], argv: list[str] | None = None) -> int:
    """Run one stage on a job directory with the contract above; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    started, clock = now_text(), time.perf_counter()
    try:
        job_dir = parse_job_dir(args, name)
        ctx = StageContext(name, job_dir, read_job_file(job_dir))
        if not ctx.entry:
            raise StageInputError(f"job {ctx.job.get('id', job_dir.name)} has no stage {name} "
                                  f"(its stages: {', '.join(str(s.get('name')) for s in ctx.job['stages'])})")
        update_stage_entry(job_dir, name, owned_by=worker_id(), status="running", started=started, finished=None,
                           error=None)
    except SupersededError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return FAILED
    except StageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except JobFileError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        print(f"{name}: {write_failure(job_dir / JOB_FILE, exc, job_dir)}", file=sys.stderr)
        return FAILED
    ctx.versions["python"] = sys.version.split()[0]
    status, error, code = run_work(ctx, work)
    seconds = round(time.perf_counter() - clock, 3)
    peak_mb, parts = peak_rss()
    record = {"stage": name, "job": ctx.job.get("id"), "status": status, "started": started, "finished": now_text(),
              "seconds": seconds, "peak_rss_mb": peak_mb, "peak_rss": parts, "device_used": device_record(ctx, status),
              "versions": ctx.versions, "details": ctx.details, "error": error}
    error, code = record_result(ctx, record, error, code)
    if error:
        print(f"{name}: {error}", file=sys.stderr)
    return code


def device_record(ctx: StageContext, status: str) -> dict[str, Any] | None:
    """The device the stage really used and why (stages/_device.py); a stage that finished without choosing one
    has no GPU work: the CPU. None when it failed before choosing."""
    if ctx.device_used is not None or status != "done":
        return ctx.device_used
    return {"device": "cpu", "requested": ctx.device, "reason": f"stage {ctx.name} has no GPU work: it runs on the CPU",
            "fallback": False}


def run_work(ctx: StageContext, work: Callable[[StageContext], None]) -> tuple[str, str | None, int]:
    """Call the stage's work: (status, one-line error or None, exit code)."""
    try:
        work(ctx)
        return "done", None, 0
    except StageError as exc:
        return "failed", str(exc), exc.exit_code
    except JobFileError as exc:
        return "failed", str(exc), BAD_INPUT
    except OSError as exc:
        if exc.errno in DISK_FULL:          # a write the stage made itself, outside ctx.write_*
            return "failed", write_failure(exc.filename or f"a file in {ctx.job_dir}", exc, ctx.job_dir), FAILED
        traceback.print_exc(file=sys.stderr)
        return "failed", f"{exc.__class__.__name__}: {exc}".splitlines()[0], FAILED
    except Exception as exc:  # noqa: BLE001 - any failure ends as one line; the traceback goes to the log
        traceback.print_exc(file=sys.stderr)
        return "failed", f"{exc.__class__.__name__}: {exc}".splitlines()[0], FAILED


def record_result(ctx: StageContext, record: dict[str, Any], error: str | None, code: int) -> tuple[str | None, int]:
    """results/<stage>.json and the stage's job.json entry, each tried on its own (a full disk may refuse either);
    the error and exit code to report: the work's own, else why the result could not be recorded."""
    name, job_dir = ctx.name, ctx.job_dir
    why = superseded(job_dir, name)
    if why:
        return why, code or FAILED
    result: str | None = f"{RESULTS_DIR}/{name}.json"
    try:
        write_json_atomic(job_dir / RESULTS_DIR / f"{name}.json", record)
    except OSError as exc:
        error, code, result = error or f"cannot record the result: {write_failure(result, exc)}", code or FAILED, None
    try:
        update_stage_entry(job_dir, name, owned_by=worker_id(), status=record["status"], finished=record["finished"],
                           seconds=record["seconds"], peak_rss_mb=record["peak_rss_mb"], error=record["error"],
                           device_used=record["device_used"], result=result)
    except OSError as exc:
        error, code = error or f"cannot record the result: {write_failure(JOB_FILE, exc)}", code or FAILED
    except JobFileError as exc:
        error, code = error or f"cannot record the result: {exc}", code or FAILED
    return error, code


def worker_id() -> str | None:
    """The id of the worker that runs this stage ($INFRA_WORKER_ID), None when it runs without one."""
    return os.environ.get(WORKER_ENV) or None


def superseded(job_dir: Path, name: str) -> str | None:
    """Why this run's result must not be recorded: its worker's claim was taken over (the entry names another
    worker). None when the entry is still its worker's, or when the stage runs without a worker."""
    if not worker_id():
        return None
    try:
        check_owner(stage_entry(read_job_file(job_dir), name), worker_id())
    except SupersededError as exc:
        return str(exc)
    except JobFileError:
        return None                  # recording the result reports it
    return None


def main_of(name: str, work: Callable[[StageContext], None]) -> None:
    """``if __name__ == "__main__": main_of(...)``: run the stage and exit with its code.

    The outcome is recorded and written by then, so the process ends at once, without the interpreter's
    finalisation: a native library torn down mid-use there (a decoder's generator left suspended by a failed
    write, with CTranslate2 threads behind it) could crash and turn the recorded exit code into a signal."""
    code = run_stage(name, work)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
