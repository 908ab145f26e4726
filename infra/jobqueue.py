"""Handing a prepared job to the running stack: the queue its stage workers serve.

The queue lives in the workspace's jobs/ folder, which every stage container
mounts at /data/jobs: ``jobs/queue/<stage>/<job-id>`` is work for a stage (its
command, the job's directory, the job's stage plan), created with O_EXCL so a
stage of a job is queued once. The workers (stages/worker.py) claim, run and
record; they queue the following stages themselves. job.json is changed only
under the job's lock (``.job.lock``, fcntl), the protocol the workers use too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infra.atomicfile import write_json_atomic
from infra.config import Stack
from infra.errors import BadInputError, OperationError
from infra.jobs import JOB_FILE, job_dir_of
from infra.workspace import Workspace

LOCK_FILE = ".job.lock"
QUEUE = "queue"
FINAL = ("done", "failed")
IN_FLIGHT = ("queued", "running")     # a resubmission leaves these alone: no stage runs twice


@contextlib.contextmanager
def locked_job(job_dir: Path) -> Iterator[dict[str, Any]]:
    """job.json for read-modify-write under the job's exclusive lock (taken on a read-only descriptor,
    so that workers running as the images' user can lock a file root created, and the other way round)."""
    fd = os.open(job_dir / LOCK_FILE, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
        yield data
        write_json_atomic(job_dir / JOB_FILE, data)
    finally:
        os.close(fd)


def stage_plan_of(stack: Stack, job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The job's stages with what each waits for (within the job) and its command, for the workers."""
    names = [s["name"] for s in job.get("stages", [])]
    unknown = [n for n in names if n not in stack.spec.stages]
    if unknown:
        raise BadInputError(f"job {job.get('id')}: stage(s) {', '.join(unknown)} are not in {stack.spec_path.name}",
                            hint="prepare the job again with the current spec")
    return {n: {"after": [a for a in stack.spec.stages[n].after if a in names],
                "command": list(stack.spec.stages[n].command)} for n in names}


def reachable_input(ws: Workspace, job_dir: Path, job: dict[str, Any]) -> str:
    """The input as a path the containers can open: inside the workspace (relative to the job
    directory), linked or copied into the job directory when it lies elsewhere."""
    source = Path(job["input"]["file"])
    source = source if source.is_absolute() else job_dir / source
    root = ws.root.resolve()
    if source.resolve().is_relative_to(root):
        return os.path.relpath(source.resolve(), job_dir.resolve())
    local = job_dir / f"media{source.suffix}"
    if not local.exists():
        try:
            os.link(source, local)
        except OSError:
            shutil.copy2(source, local)
    return local.name


def submit_job(stack: Stack, job_id: str) -> list[str]:
    """Queue a prepared job for the stack's workers; returns the stages queued now.

    Stages already done stay done (a resubmitted job resumes), queued or running ones are left to their
    workers (submitting twice runs nothing twice), and a failed stage is queued again.
    """
    ws = Workspace(stack.workdir)
    job_dir = job_dir_of(ws, job_id)
    with locked_job(job_dir) as job:
        plan = stage_plan_of(stack, job)
        if not plan:
            raise BadInputError(f"job {job_id} has no stages to run")
        job["input"]["file"] = reachable_input(ws, job_dir, job)
        status = {s["name"]: s.get("status", "pending") for s in job["stages"]}
        done = {n for n, st in status.items() if st == "done"}
        in_flight = {n for n, st in status.items() if st in IN_FLIGHT}
        ready = [n for n, step in plan.items()
                 if n not in done and n not in in_flight and set(step["after"]) <= done]
        for entry in job["stages"]:
            if entry["name"] in ready:
                entry.update(status="queued")
                entry.pop("error", None)
            elif entry["name"] not in done and entry["name"] not in in_flight:
                entry.update(status="pending")
                entry.pop("error", None)
        job["status"] = "done" if len(done) == len(plan) else "queued"
        job["submitted"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    work = {"job": job_id, "dir": str(job_dir.resolve().relative_to(ws.root.resolve())), "plan": plan}
    queued = []
    for name in ready:
        folder = ws.jobs / QUEUE / name
        _make_like(folder, ws.jobs)
        try:
            fd = os.open(folder / job_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
        except FileExistsError:
            continue          # already waiting for a worker
        with os.fdopen(fd, "w") as out:
            json.dump({**work, "stage": name, "command": plan[name]["command"]}, out, sort_keys=True)
        queued.append(name)
    return queued


def _make_like(folder: Path, parent: Path) -> None:
    """mkdir -p, owned like ``parent`` when run as root: the workers rename files out of it."""
    missing = [p for p in (folder.parent, folder) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        owner = parent.stat()
        for path in missing:
            os.chown(path, owner.st_uid, owner.st_gid)


def wait_for_job(stack: Stack, job_id: str, timeout_s: float, poll_s: float = 0.5) -> Iterator[dict[str, Any]]:
    """Yield job.json each time a stage's status changes, until the job is done or failed."""
    job_dir = job_dir_of(Workspace(stack.workdir), job_id)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
        state = [(s["name"], s.get("status")) for s in job.get("stages", [])]
        if state != last:
            last = state
            yield job
        if job.get("status") in FINAL:
            return
        if time.monotonic() > deadline:
            raise OperationError(f"job {job_id} did not finish within {timeout_s:.0f} s "
                                 f"(stages: {', '.join(f'{n} {s}' for n, s in state)})",
                                 hint="`infra ps` shows the workers; `infra logs STAGE` what they did")
        time.sleep(poll_s)
