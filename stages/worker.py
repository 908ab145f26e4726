"""The stage worker: serves one stage of the pipeline from the shared job tree.

    python3 -m stages.worker STAGE [--once] [--poll SECONDS] [--claim-timeout SECONDS]
    python3 -m stages.worker --health STAGE

Work for a stage is a file in ``jobs/queue/<stage>/<job-id>`` (JSON: the job's
directory, the stage's command and the job's stage plan). A worker claims it by
renaming it to ``jobs/running/<stage>/<job-id>@<worker>``: a rename is atomic,
so two workers never take the same stage of the same job. While the stage runs
the worker touches its claim; a claim nobody has touched for --claim-timeout
seconds belongs to a worker that died, and the next worker takes it over with
the same atomic rename. When a stage succeeds, the worker records it in
job.json and queues every stage whose predecessors are now all done.

A stage's entry in job.json says who runs it: ``worker``, ``node`` ($INFRA_NODE,
else the host name) and ``attempts``. A worker that takes a claim over renames
it and records the lost attempt (``lost``: the old worker, its node, when it
started, when the loss was noticed, why) in one critical section under the
job's lock; a worker checks that its claim and its entry are still its own under
that lock before it records an outcome or queues anything, so a worker that
was only frozen, not dead, drops its result. Its stage process gets the worker's
id ($INFRA_WORKER_ID) and records its own result on the same condition.

Standard library only (with the job protocol, infra/jobproto.py): the worker runs in
every stage image, where infra itself is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from infra.jobproto import (write_text_atomic, FINAL, JOB_FILE, QUEUE, RUNNING, WORKER_ENV, WORKERS, JobFileError, SupersededError,
                            check_owner, enqueue, locked_job, now_iso, read_progress, stage_entry, update_stage_entry)

DEFAULT_POLL_S = 1.0
PROGRESS_RECORD_S = 2.0      # how often a running stage's progress is copied into job.json
DEFAULT_CLAIM_TIMEOUT_S = 120.0


def data_root() -> Path:
    """The workspace as the container sees it: INFRA_JOBS is <root>/jobs (compose sets it)."""
    jobs = os.environ.get("INFRA_JOBS")
    return Path(jobs).parent if jobs else Path.cwd()


class Worker:
    def __init__(self, stage: str, root: Path, poll: float = DEFAULT_POLL_S,
                 claim_timeout: float = DEFAULT_CLAIM_TIMEOUT_S) -> None:
        self.stage = stage
        self.root = root
        self.poll = poll
        self.claim_timeout = claim_timeout
        # Host, process and a random part: a restarted container has its predecessor's host name and pid.
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.node = os.environ.get("INFRA_NODE") or socket.gethostname()
        self.taken_over: set[str] = set()      # claims whose takeover is recorded in job.json (run keeps attempts)
        self.queue = root / "jobs" / QUEUE / stage
        self.running = root / "jobs" / RUNNING / stage
        self.alive = root / "jobs" / WORKERS / stage / socket.gethostname()
        for folder in (self.queue, self.running, self.alive.parent):
            folder.mkdir(parents=True, exist_ok=True)

    def beat(self) -> None:
        self.alive.touch()

    def claim(self) -> Path | None:
        """Take the oldest queued job, else a claim whose worker stopped touching it."""
        for item in sorted(visible(self.queue), key=lambda p: p.stat().st_mtime if p.exists() else 0):
            target = self.running / f"{item.name}@{self.id}"
            with contextlib.suppress(FileNotFoundError):
                touched = touch(item)       # alive from its first instant, however long it sat in the queue
                os.rename(item, target)
                if not touched:
                    keep_alive(target)
                return target
        for item in sorted(visible(self.running)):
            with contextlib.suppress(FileNotFoundError):
                age = time.time() - item.stat().st_mtime
                if age > self.claim_timeout:
                    target = self.take_over(item, age)
                    if target is not None:
                        return target
        return None

    def take_over(self, item: Path, age: float) -> Path | None:
        """Rename a stale claim to this worker and record the lost attempt in its entry, under the job's lock.

        None when another worker took it this instant, or when its worker had recorded the stage's outcome
        before it went silent (the stale claim is removed: the stage is not run again)."""
        job_id, _, old = item.name.partition("@")
        target = self.running / f"{job_id}@{self.id}"
        why = f"no sign of life for {age:.0f} s"
        try:
            job_dir = self.root / json.loads(item.read_text())["dir"]
            with locked_job(job_dir) as job:
                entry = stage_entry(job, self.stage)
                if entry.get("worker") == old and entry.get("status") in FINAL:
                    item.unlink()
                    log(f"{job_id}: removed the stale claim of {old}, "
                        f"which had recorded {self.stage} {entry['status']}")
                    return None
                touched = touch(item)       # alive again before it shows under this worker's name
                os.rename(item, target)
                if not touched:
                    keep_alive(target)
                lost = record_loss(entry, old, why)
                entry.update(worker=self.id, node=self.node)
        except (OSError, KeyError, ValueError, TypeError, JobFileError) as exc:
            if not target.exists():
                try:
                    os.rename(item, target)
                except FileNotFoundError:
                    return None
            log(f"{job_id}: took over {self.stage} from worker {old} ({why}); "
                f"not recorded in job.json: {type(exc).__name__}: {exc}")
            return target
        self.taken_over.add(target.name)
        log(f"{job_id}: took over {self.stage} from worker {old} on node {lost['node'] or 'unknown'}: {why} "
            f"(attempt {entry['attempts']})")
        return target

    def serve(self, once: bool = False) -> None:
        log(f"serving stage {self.stage} from {self.root / 'jobs'} as {self.id}")
        while True:
            self.beat()
            claim = self.claim()
            if claim is not None:
                self.run(claim)
            elif once:
                return
            else:
                time.sleep(self.poll)

    def run(self, claim: Path) -> None:
        work = json.loads(claim.read_text())
        job_dir = self.root / work["dir"]
        fresh = claim.name not in self.taken_over
        self.taken_over.discard(claim.name)
        stop = threading.Event()
        keeper = threading.Thread(target=self._keep_claim, args=(claim, stop, job_dir), daemon=True)
        keeper.start()
        started = time.monotonic()
        try:
            with locked_job(job_dir) as job:
                entry = stage_entry(job, self.stage)
                if not claim.exists():        # frozen since the claim, and taken over meanwhile
                    raise SupersededError(f"{claim.name} was taken over by worker {entry.get('worker')}")
                if fresh:
                    entry.pop("lost", None)
                    entry["attempts"] = 1
                else:
                    check_owner(entry, self.id)
                entry.update(status="running", started=now_iso(), worker=self.id, node=self.node)
                job["status"] = "running"
            (job_dir / "logs").mkdir(exist_ok=True)
            with open(job_dir / "logs" / f"{self.stage}.log", "a") as out:
                code = subprocess.run(work["command"], cwd=job_dir, stdout=out, stderr=subprocess.STDOUT,
                                      env={**os.environ, WORKER_ENV: self.id}).returncode
        except SupersededError as exc:
            log(f"{work['job']}: {self.stage} superseded before it started: {exc}")
            return
        except (OSError, KeyError, ValueError, JobFileError) as exc:
            code, reason = 1, f"{type(exc).__name__}: {exc}"
        else:
            reason = f"exit code {code}" if code else ""
        finally:
            stop.set()
            keeper.join()
        if self.finish(work, job_dir, claim, code == 0, time.monotonic() - started, reason):
            claim.unlink(missing_ok=True)

    def _keep_claim(self, claim: Path, stop: threading.Event, job_dir: Path) -> None:
        """Touch the claim (it is alive) and copy the stage's progress into job.json while the stage runs."""
        last = None
        while not stop.wait(min(PROGRESS_RECORD_S, max(0.2, self.claim_timeout / 4))):
            with contextlib.suppress(FileNotFoundError):
                keep_alive(claim)
            self.beat()
            progress = read_progress(job_dir, self.stage)
            if progress and progress.get("updated") != last:
                last = progress.get("updated")
                shown = {k: progress.get(k) for k in ("done_s", "total_s", "rate", "eta_s", "resumed_s")}
                with contextlib.suppress(OSError, ValueError, JobFileError):
                    update_stage_entry(job_dir, self.stage, owned_by=self.id, progress=shown)

    def finish(self, work: dict, job_dir: Path, claim: Path, ok: bool, seconds: float, reason: str) -> bool:
        """Record the outcome; on success queue the stages that were waiting only for this one. False when
        another worker took the claim over: nothing is recorded or queued, and the claim is no longer ours."""
        ready: list[str] = []
        try:
            ok = self._record(work, job_dir, claim, ok, seconds, reason, ready)
        except SupersededError as exc:
            log(f"{work.get('job')}: {self.stage} superseded, nothing recorded or queued (its run ended "
                f"{'well' if ok else reason or 'failed'} after {seconds:.1f} s): {exc}")
            return False
        except (OSError, KeyError, ValueError, JobFileError) as exc:
            log(f"{work.get('job')}: cannot record {self.stage} in {job_dir / JOB_FILE}: {type(exc).__name__}: {exc}")
            return True
        for name in ready:
            enqueue(self.root / "jobs", name, {**work, "command": work["plan"][name]["command"]})
        log(f"{work['job']}: {self.stage} {'done' if ok else 'failed'} in {seconds:.1f} s"
            + (f" ({reason})" if reason else "") + (f"; queued {', '.join(ready)}" if ready else ""))
        return True

    def _record(self, work: dict, job_dir: Path, claim: Path, ok: bool, seconds: float, reason: str,
                ready: list[str]) -> bool:
        with locked_job(job_dir) as job:
            entry = stage_entry(job, self.stage)
            if not claim.exists():          # renamed by a takeover, under this lock
                raise SupersededError(f"{claim.name} was taken over by worker {entry.get('worker')} "
                                      f"on node {entry.get('node')}")
            check_owner(entry, self.id)
            # The stage records its own result (stages/_jobio.py); the worker fills in only what a stage
            # that crashed or was killed could not, and never overwrites the stage's seconds or error.
            ok = ok and entry.get("status") != "failed"
            entry.update(status="done" if ok else "failed", worker=self.id, worker_seconds=round(seconds, 3),
                         finished=entry.get("finished") or now_iso())
            if not ok and not entry.get("error"):
                entry["error"] = reason or "failed without a message"
            done = {s["name"] for s in job["stages"] if s.get("status") == "done"}
            if not ok:
                job["status"] = "failed"
            elif done == {s["name"] for s in job["stages"]}:
                job["status"] = "done"
            else:
                for name, step in work["plan"].items():
                    if self.stage in step["after"] and set(step["after"]) <= done and name not in done:
                        ready.append(name)
                        stage_entry(job, name)["status"] = "queued"
        return ok


def visible(folder: Path) -> list[Path]:
    """The work files of a queue folder (a claim being rewritten leaves a hidden temporary beside it)."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def touch(path: Path) -> bool:
    """Set a file's time to now; False when this worker may not (a file another user queued)."""
    try:
        os.utime(path)
    except PermissionError:
        return False
    return True


def keep_alive(claim: Path) -> None:
    """Touch a claim; one this worker cannot touch (another user queued it) it makes its own, by rewriting it."""
    if not touch(claim):
        write_text_atomic(claim, claim.read_text())


def record_loss(entry: dict, old: str, why: str) -> dict:
    """Add the attempt of worker ``old`` to the entry's ``lost`` list (its node and start as it recorded them,
    when it started at all) and count this attempt; the item added."""
    mine = entry.get("worker") == old
    lost = list(entry.get("lost") or []) if mine else []     # an entry of another worker is an earlier run's
    item = {"worker": old, "node": entry.get("node") if mine else None,
            "started": entry.get("started") if mine else None, "noticed": now_iso(), "why": why}
    lost.append(item)
    entry.update(lost=lost, attempts=len(lost) + 1)
    return item


def healthy(stage: str, root: Path, max_age: float) -> bool:
    alive = root / "jobs" / WORKERS / stage / socket.gethostname()
    try:
        return time.time() - alive.stat().st_mtime <= max_age
    except FileNotFoundError:
        return False


def log(message: str) -> None:
    print(f"{now_iso()} worker: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m stages.worker", description="Serve one pipeline stage.")
    parser.add_argument("stage")
    parser.add_argument("--health", action="store_true", help="exit 0 if this container's worker is alive")
    parser.add_argument("--once", action="store_true", help="process what is queued, then exit")
    parser.add_argument("--poll", type=float, default=float(os.environ.get("INFRA_WORKER_POLL_S", DEFAULT_POLL_S)))
    parser.add_argument("--claim-timeout", type=float,
                        default=float(os.environ.get("INFRA_CLAIM_TIMEOUT_S", DEFAULT_CLAIM_TIMEOUT_S)))
    args = parser.parse_args(argv)
    root = data_root()
    if args.health:
        return 0 if healthy(args.stage, root, max(30.0, 3 * args.poll, args.claim_timeout / 2)) else 1
    try:
        Worker(args.stage, root, args.poll, args.claim_timeout).serve(once=args.once)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
