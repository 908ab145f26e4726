"""Handing a prepared job to the running stack: the queue its stage workers serve.

The queue lives in the workspace's jobs/ folder, which every stage container
mounts at /data/jobs: ``jobs/queue/<stage>/<job-id>`` is work for a stage (its
command, the job's directory, the job's stage plan), created with O_EXCL so a
stage of a job is queued once. The workers (stages/worker.py) claim, run and
record; they queue the following stages themselves. job.json is changed only
under the job's lock (``.job.lock``, fcntl), the protocol the workers use too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from infra.errors import BadInputError, OperationError
from infra.jobproto import FINAL, IN_FLIGHT, JOB_FILE, QUEUE, RUNNING, enqueue, locked_job, read_progress
from infra.jobs.prepare import job_dir_of, reachable_input
from infra.spec import Stack
from infra.workspace import Workspace


def stage_plan_of(stack: Stack, job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The job's stages with what each waits for (within the job) and its command, for the workers."""
    names = [s["name"] for s in job.get("stages", [])]
    unknown = [n for n in names if n not in stack.spec.stages]
    if unknown:
        raise BadInputError(f"job {job.get('id')}: stage(s) {', '.join(unknown)} are not in {stack.spec_path.name}",
                            hint="prepare the job again with the current spec")
    return {n: {"after": [a for a in stack.spec.stages[n].after if a in names],
                "command": list(stack.spec.stages[n].command)} for n in names}


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
    queued = [name for name in ready
              if enqueue(ws.jobs, name, {**work, "stage": name, "command": plan[name]["command"]})]
    return queued


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


def work_in_flight(stack: Stack) -> list[dict[str, Any]]:
    """What the workers hold or wait for: each queued or claimed stage of a job, with its progress."""
    ws = Workspace(stack.workdir)
    rows: list[dict[str, Any]] = []
    for state, folder in (("running", RUNNING), ("queued", QUEUE)):
        for item in sorted((ws.jobs / folder).glob("*/*")):
            try:
                work = json.loads(item.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue                  # claimed or finished this instant
            job_id, _, worker = item.name.partition("@")
            job_dir = ws.root / str(work.get("dir", ""))
            progress = read_progress(job_dir, item.parent.name) if state == "running" else None
            rows.append({"job": job_id, "stage": item.parent.name, "state": state, "worker": worker or None,
                         "node": stage_node(job_dir, item.parent.name) if state == "running" else None,
                         "progress": {k: progress.get(k) for k in ("done_s", "total_s", "rate", "eta_s")}
                         if progress else None})
    return rows


def stage_node(job_dir: Path, stage: str) -> str | None:
    """The node job.json says a stage runs on (its worker records it), if it says."""
    try:
        job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = next((s for s in job.get("stages", []) if s.get("name") == stage), {})
    return entry.get("node")
