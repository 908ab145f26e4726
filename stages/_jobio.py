"""The stage contract in code: find the job, record the stage's result, fail in one line.

``run_stage(name, work)`` is each stage program's ``main``. It reads job.json from
the job directory (the first argument, else the current directory), marks the
stage ``running``, calls ``work(ctx)``, and then writes the stage's result record
(``results/<stage>.json``: status, seconds, versions, details) and its entry in
job.json (``done`` or ``failed``). A StageError becomes one line on stderr and
exit code 2 (bad input) or 1 (the work failed); any other exception is reported
the same way with its type, and its traceback goes to stderr before that line,
for the log.

job.json, its lock, the atomic writes and the model cache are the job protocol
(infra/jobproto.py), the one module that infra, the stages and the workers share.

Standard library only (with infra/jobproto.py): this runs in slim images where
infra itself is not installed.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from infra.jobproto import (JOB_FILE, RESULTS_DIR, JobFileError, model_cache, read_job_file, update_stage_entry,
                            write_json_atomic, write_text_atomic)

BAD_INPUT = 2
FAILED = 1


class StageError(Exception):
    """The work failed although its input was fine: exit 1 with this one-line message."""

    exit_code = FAILED


class StageInputError(StageError):
    """The stage's input is wrong or missing (a file, a model, job.json): exit 2."""

    exit_code = BAD_INPUT


def now_text() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class StageContext:
    """What a stage's work function gets: the job and places to put what it learns."""

    name: str
    job_dir: Path
    job: dict[str, Any]
    versions: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

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
        write_json_atomic(self.path(name), data)

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path(name), text)

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
        update_stage_entry(job_dir, name, status="running", started=started, finished=None, error=None)
    except StageError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.exit_code
    except JobFileError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return BAD_INPUT
    ctx.versions["python"] = sys.version.split()[0]
    try:
        work(ctx)
        status, error, code = "done", None, 0
    except StageError as exc:
        status, error, code = "failed", str(exc), exc.exit_code
    except JobFileError as exc:
        status, error, code = "failed", str(exc), BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - any failure ends as one line; the traceback goes to the log
        traceback.print_exc(file=sys.stderr)
        status, error, code = "failed", f"{exc.__class__.__name__}: {exc}".splitlines()[0], FAILED
    seconds = round(time.perf_counter() - clock, 3)
    record = {"stage": name, "job": ctx.job.get("id"), "status": status, "started": started, "finished": now_text(),
              "seconds": seconds, "versions": ctx.versions, "details": ctx.details, "error": error}
    try:
        write_json_atomic(job_dir / RESULTS_DIR / f"{name}.json", record)
        update_stage_entry(job_dir, name, status=status, finished=record["finished"], seconds=seconds, error=error,
                           result=f"{RESULTS_DIR}/{name}.json")
    except (OSError, JobFileError) as exc:
        error, code = error or f"cannot record the result: {exc}", code or FAILED
    if error:
        print(f"{name}: {error}", file=sys.stderr)
    return code


def main_of(name: str, work: Callable[[StageContext], None]) -> None:
    """``if __name__ == "__main__": main_of(...)``: run the stage and exit with its code."""
    sys.exit(run_stage(name, work))
