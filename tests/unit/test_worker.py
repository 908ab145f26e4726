"""The stage worker's queue protocol on real files: claims, takeover, next stages, failures."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO))
from stages import worker as w  # noqa: E402


def make_job(root: Path, job_id: str, plan: dict[str, list[str]], commands: dict[str, list[str]]) -> dict:
    job_dir = root / "out" / job_id
    job_dir.mkdir(parents=True)
    stages = [{"name": n, "after": a, "status": "pending"} for n, a in plan.items()]
    (job_dir / "job.json").write_text(json.dumps({"id": job_id, "status": "queued", "stages": stages}))
    work = {"job": job_id, "dir": f"out/{job_id}",
            "plan": {n: {"after": a, "command": commands[n]} for n, a in plan.items()}}
    for name, after in plan.items():
        if not after:
            w.enqueue(root / "jobs", name, {**work, "command": commands[name]})
    return work


def touch(name: str) -> list[str]:
    return [sys.executable, "-c", f"open({name!r}, 'a').write('x')"]


def job_json(root: Path, job_id: str) -> dict:
    return json.loads((root / "out" / job_id / "job.json").read_text())


def test_a_job_flows_through_its_stages_and_joins_wait_for_both(tmp_path: Path) -> None:
    plan = {"demux": [], "vad": ["demux"], "diarize": ["demux"], "subtitles": ["vad", "diarize"]}
    make_job(tmp_path, "20261128-0001", plan, {n: touch(f"{n}.out") for n in plan})
    for stage in ("demux", "vad", "diarize", "subtitles"):
        queued = list((tmp_path / "jobs" / "queue" / stage).glob("*")) if (tmp_path / "jobs/queue" / stage).is_dir() else []
        assert [p.name for p in queued] == ["20261128-0001"], stage
        if stage == "vad":
            assert not (tmp_path / "jobs/queue/subtitles").exists(), "subtitles waits for diarize too"
        w.Worker(stage, tmp_path, poll=0.01).serve(once=True)
    job = job_json(tmp_path, "20261128-0001")
    assert job["status"] == "done"
    assert {s["name"]: s["status"] for s in job["stages"]} == dict.fromkeys(plan, "done")
    assert all((tmp_path / "out/20261128-0001" / f"{n}.out").read_text() == "x" for n in plan)
    assert (tmp_path / "out/20261128-0001/logs/demux.log").exists()
    assert not any((tmp_path / "jobs" / "running").rglob("*@*"))


def test_two_workers_never_take_the_same_job(tmp_path: Path) -> None:
    commands = {"asr": [sys.executable, "-c", "import time; open('ran', 'a').write('x'); time.sleep(0.05)"]}
    for i in range(12):
        make_job(tmp_path, f"20261128-{i:04d}", {"asr": []}, commands)
    workers = [w.Worker("asr", tmp_path, poll=0.01) for _ in range(3)]
    for i, worker in enumerate(workers):
        worker.id = f"test-{i}"
    threads = [threading.Thread(target=worker.serve, kwargs={"once": True}) for worker in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(12):
        assert (tmp_path / "out" / f"20261128-{i:04d}" / "ran").read_text() == "x", "each job ran exactly once"
        assert job_json(tmp_path, f"20261128-{i:04d}")["status"] == "done"


def test_a_dead_workers_claim_is_taken_over_after_the_timeout(tmp_path: Path) -> None:
    make_job(tmp_path, "20261128-0007", {"asr": []}, {"asr": touch("asr.out")})
    dead = w.Worker("asr", tmp_path, claim_timeout=5)
    dead.id = "dead-worker"
    claim = dead.claim()
    assert claim is not None and claim.name == "20261128-0007@dead-worker"
    live = w.Worker("asr", tmp_path, claim_timeout=5)
    assert live.claim() is None, "a fresh claim is left alone"
    old = time.time() - 60
    os.utime(claim, (old, old))
    taken = live.claim()
    assert taken is not None and taken.name == f"20261128-0007@{live.id}" and not claim.exists()
    live.run(taken)
    assert job_json(tmp_path, "20261128-0007")["status"] == "done"


def test_a_claim_is_alive_from_its_first_instant_however_long_it_waited(tmp_path: Path) -> None:
    """Work that sat in the queue longer than the claim timeout, and a claim just taken over, are not stale
    the moment they are taken: a rename keeps the file's old time, so another worker would take them again."""
    make_job(tmp_path, "20261128-0008", {"asr": []}, {"asr": touch("asr.out")})
    queued = next((tmp_path / "jobs" / w.QUEUE / "asr").iterdir())
    old = time.time() - 60
    os.utime(queued, (old, old))
    first = w.Worker("asr", tmp_path, claim_timeout=5)
    claim = first.claim()
    assert claim is not None
    other = w.Worker("asr", tmp_path, claim_timeout=5)
    assert other.claim() is None, "a claim taken from an old queue entry is fresh"
    os.utime(claim, (old, old))
    taken = other.claim()
    assert taken is not None
    third = w.Worker("asr", tmp_path, claim_timeout=5)
    assert third.claim() is None, "a claim just taken over is fresh"
    assert job_json(tmp_path, "20261128-0008")["stages"][0]["attempts"] == 2


def test_a_failed_stage_stops_the_job_and_queues_nothing(tmp_path: Path) -> None:
    make_job(tmp_path, "20261128-0009", {"demux": [], "vad": ["demux"]},
             {"demux": [sys.executable, "-c", "import sys; sys.exit('no audio stream')"], "vad": touch("vad.out")})
    w.Worker("demux", tmp_path).serve(once=True)
    job = job_json(tmp_path, "20261128-0009")
    assert job["status"] == "failed"
    demux = job["stages"][0]
    assert demux["status"] == "failed" and demux["error"] == "exit code 1"
    assert "no audio stream" in (tmp_path / "out/20261128-0009/logs/demux.log").read_text()
    assert not (tmp_path / "jobs/queue/vad").exists()


def test_health_follows_the_heartbeat(tmp_path: Path) -> None:
    assert not w.healthy("asr", tmp_path, 30)
    w.Worker("asr", tmp_path).beat()
    assert w.healthy("asr", tmp_path, 30)
    alive = next((tmp_path / "jobs/workers/asr").iterdir())
    os.utime(alive, (time.time() - 120, time.time() - 120))
    assert not w.healthy("asr", tmp_path, 30)


def test_health_command_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_JOBS", str(tmp_path / "jobs"))
    assert w.main(["asr", "--health"]) == 1
    w.Worker("asr", tmp_path).beat()
    assert w.main(["asr", "--health"]) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_work_queued_by_root_belongs_to_the_workspace_owner(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    os.chown(jobs, 12345, 12345)
    assert w.enqueue(jobs, "asr", {"job": "20261128-0009", "dir": "out/x", "plan": {}})
    queued = jobs / w.QUEUE / "asr" / "20261128-0009"
    assert (queued.stat().st_uid, queued.stat().st_gid) == (12345, 12345)


def test_a_claim_the_worker_may_not_touch_becomes_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work queued by another user: the worker cannot set its time, so it rewrites the claim as its own file
    (same content, fresh time) and keeps touching that."""
    make_job(tmp_path, "20261128-0010", {"asr": []}, {"asr": touch("asr.out")})
    queued = next((tmp_path / "jobs" / w.QUEUE / "asr").iterdir())
    content = queued.read_text()
    old = time.time() - 60
    os.utime(queued, (old, old))
    real_utime = os.utime
    foreign = {queued.stat().st_ino}

    def utime(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if os.stat(path).st_ino in foreign:
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_utime(path, *args, **kwargs)

    monkeypatch.setattr(w.os, "utime", utime)
    worker = w.Worker("asr", tmp_path, claim_timeout=5)
    claim = worker.claim()
    assert claim is not None and claim.read_text() == content
    assert claim.stat().st_ino not in foreign and time.time() - claim.stat().st_mtime < 5
    assert w.Worker("asr", tmp_path, claim_timeout=5).claim() is None
    assert [p.name for p in claim.parent.iterdir()] == [claim.name], "no temporary left beside it"
