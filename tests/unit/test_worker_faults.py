"""The stage worker when a node is lost: real worker processes, killed or frozen mid-stage, and the takeover.

Each test's stage ``asr`` is a real stage program (stages/_jobio.py's run_stage) that notes every start in
attempts.txt, waits while the file ``hold`` exists, and notes every finish in finished.txt; ``subtitles``
follows it. The workers are processes of their own session, so that killing or freezing the group takes the
stage process with its worker, as the loss of a node does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from infra.jobproto import update_stage_entry
from tests.conftest import REPO

sys.path.insert(0, str(REPO))
from stages import _jobio  # noqa: E402
from stages import worker as w  # noqa: E402

JOB = "20261202-0013"
STAGE = """
import os, sys, time
from pathlib import Path
from stages._jobio import run_stage

def work(ctx):
    me = os.environ["INFRA_WORKER_ID"]
    with open("attempts.txt", "a") as out:
        out.write(me + "\\n")
    while Path("hold").exists():
        time.sleep(0.05)
    ctx.details["worker"] = me
    with open("finished.txt", "a") as out:
        out.write(me + "\\n")

sys.exit(run_stage("asr", work))
"""
CLAIM_TIMEOUT = "1"


def make_job(root: Path) -> Path:
    job_dir = root / "out" / JOB
    job_dir.mkdir(parents=True)
    plan = {"asr": [], "subtitles": ["asr"]}
    commands = {"asr": [sys.executable, "-c", STAGE],
                "subtitles": [sys.executable, "-c", "open('subtitles.out', 'a').write('x')"]}
    stages = [{"name": n, "after": a, "status": "pending"} for n, a in plan.items()]
    (job_dir / "job.json").write_text(json.dumps({"id": JOB, "status": "queued", "stages": stages}))
    work = {"job": JOB, "dir": f"out/{JOB}", "plan": {n: {"after": a, "command": commands[n]} for n, a in plan.items()}}
    w.enqueue(root / "jobs", "asr", {**work, "command": commands["asr"]})
    (job_dir / "hold").touch()
    return job_dir


def start_worker(root: Path, node: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "INFRA_JOBS": str(root / "jobs"), "INFRA_NODE": node, "PYTHONPATH": str(REPO)}
    env.pop("INFRA_WORKER_ID", None)
    with open(root / f"worker-{node}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "stages.worker", "asr", "--poll", "0.1",
                                 "--claim-timeout", CLAIM_TIMEOUT, *extra],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def started_by(proc: subprocess.Popen, job_dir: Path) -> str:
    """The id of the worker whose stage started (the stage notes it in attempts.txt): its host, pid, a token."""
    wait_for("the first worker's stage to start", lambda: len(lines(job_dir / "attempts.txt")) == 1)
    (worker_id,) = lines(job_dir / "attempts.txt")
    assert worker_id.startswith(f"{socket.gethostname()}-{proc.pid}-")
    return worker_id


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def job_json(job_dir: Path) -> dict:
    return json.loads((job_dir / "job.json").read_text())


def entry(job_dir: Path, name: str = "asr") -> dict:
    return next(s for s in job_json(job_dir)["stages"] if s["name"] == name)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def take_over_and_finish(root: Path, job_dir: Path) -> str:
    """Start the second worker (node-b); once it has recorded asr and dropped its claim, run subtitles."""
    second = start_worker(root, "node-b")
    try:
        wait_for("the second worker to record asr",
                 lambda: entry(job_dir).get("status") == "done" and not any((root / "jobs/running/asr").iterdir()))
    finally:
        stop_worker(second)
    w.Worker("subtitles", root, poll=0.01).serve(once=True)
    second_id = lines(job_dir / "attempts.txt")[-1]
    assert second_id.startswith(f"{socket.gethostname()}-{second.pid}-")
    return second_id


def check_takeover(job_dir: Path, first_id: str, second_id: str) -> None:
    job = job_json(job_dir)
    assert job["status"] == "done", job
    asr = entry(job_dir)
    assert (asr["worker"], asr["node"], asr["attempts"], asr["status"]) == (second_id, "node-b", 2, "done")
    (lost,) = asr["lost"]
    assert (lost["worker"], lost["node"]) == (first_id, "node-a")
    assert datetime.fromisoformat(lost["noticed"]) >= datetime.fromisoformat(lost["started"])
    assert lost["why"].startswith("no sign of life for ") and lost["why"].endswith(" s")
    assert lines(job_dir / "attempts.txt") == [first_id, second_id]
    assert json.loads((job_dir / "results/asr.json").read_text())["details"] == {"worker": second_id}
    assert entry(job_dir, "subtitles")["status"] == "done"


def test_a_killed_node_stage_is_taken_over_and_recorded_once(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    first = start_worker(tmp_path, "node-a")
    try:
        first_id = started_by(first, job_dir)
        assert (entry(job_dir)["worker"], entry(job_dir)["node"], entry(job_dir)["attempts"]) == (first_id, "node-a", 1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)      # the worker and its stage process, as a lost node
        first.wait(timeout=30)
    (job_dir / "hold").unlink()
    second_id = take_over_and_finish(tmp_path, job_dir)
    check_takeover(job_dir, first_id, second_id)
    assert lines(job_dir / "finished.txt") == [second_id], "the stage ran to completion once"
    log = (tmp_path / "worker-node-b.log").read_text()
    assert f"took over asr from worker {first_id} on node node-a: no sign of life for" in log


def test_a_frozen_worker_that_wakes_up_records_and_queues_nothing(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    first = start_worker(tmp_path, "node-a", "--once")
    try:
        first_id = started_by(first, job_dir)
        os.killpg(first.pid, signal.SIGSTOP)      # the worker and its stage, frozen past the claim timeout
        (job_dir / "hold").unlink()
        second_id = take_over_and_finish(tmp_path, job_dir)
        check_takeover(job_dir, first_id, second_id)
        before = job_json(job_dir)
        results = (job_dir / "results/asr.json").read_text()
        assert not any((tmp_path / "jobs/queue/subtitles").iterdir()), "subtitles was queued once, and ran"
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert lines(job_dir / "finished.txt") == [second_id, first_id], "the first stage did finish its work"
    assert job_json(job_dir) == before, "the superseded worker and its stage changed nothing in job.json"
    assert (job_dir / "results/asr.json").read_text() == results
    assert not any((tmp_path / "jobs/queue/subtitles").iterdir()), "nothing queued again"
    assert not any((tmp_path / "jobs/running").rglob("*@*"))
    log = (tmp_path / "worker-node-a.log").read_text()
    assert f"{JOB}: asr superseded, nothing recorded or queued" in log and "; queued" not in log
    stage_log = (job_dir / "logs/asr.log").read_text()
    assert f"asr: stage asr was taken over by worker {second_id} on node node-b" in stage_log


def test_a_stage_records_its_result_only_while_its_worker_holds_the_entry(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.json").write_text(json.dumps({"id": JOB, "stages": [
        {"name": "asr", "after": [], "status": "running", "worker": "node-b-7", "node": "node-b"}]}))
    before = (job_dir / "job.json").read_text()
    monkeypatch.setenv("INFRA_WORKER_ID", "node-a-5")
    assert _jobio.run_stage("asr", lambda ctx: None, [str(job_dir)]) == _jobio.FAILED
    assert (job_dir / "job.json").read_text() == before and not (job_dir / "results").exists()
    monkeypatch.setenv("INFRA_WORKER_ID", "node-b-7")
    assert _jobio.run_stage("asr", lambda ctx: None, [str(job_dir)]) == 0
    assert entry(job_dir)["status"] == "done" and (job_dir / "results/asr.json").exists()
    monkeypatch.delenv("INFRA_WORKER_ID")             # run natively, without a worker: no guard
    assert _jobio.run_stage("asr", lambda ctx: None, [str(job_dir)]) == 0


def test_a_stale_claim_whose_stage_was_recorded_is_removed_not_run_again(tmp_path: Path) -> None:
    job_dir = make_job(tmp_path)
    (job_dir / "hold").unlink()
    dead = w.Worker("asr", tmp_path, claim_timeout=1)
    dead.id = "node-a-1"
    claim = dead.claim()
    assert claim is not None
    update_stage_entry(job_dir, "asr", status="done", worker=dead.id, node="node-a")   # recorded, then lost
    old = time.time() - 60
    os.utime(claim, (old, old))
    assert w.Worker("asr", tmp_path, claim_timeout=1).claim() is None
    assert not claim.exists() and not any((tmp_path / "jobs/running/asr").iterdir())
    assert not (job_dir / "attempts.txt").exists() and "lost" not in entry(job_dir)
