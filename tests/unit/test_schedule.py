"""The stage scheduler: stages start when their predecessors are done, share the CPU threads, report progress;
a failure or an interruption stops what runs and leaves it resumable. A runner in threads stands in for stages."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from infra.jobproto import StageProgress, write_json_atomic
from infra.jobs.runners import StageCall
from infra.jobs.schedule import StageFailedError, run_stages, thread_share

# demux -> vad -> asr; demux -> diarize; asr + diarize -> subtitles
AFTER = {"demux": set(), "vad": {"demux"}, "asr": {"vad"}, "diarize": {"demux"}, "subtitles": {"asr", "diarize"}}


class ThreadRunner:
    """Runs a 'stage' in the calling thread: reports progress, records itself in job.json as a stage would."""

    name = "test"

    def __init__(self, seconds: dict[str, float], fail: str | None = None) -> None:
        self.seconds, self.fail = seconds, fail
        self.lock = threading.Lock()
        self.active: set[str] = set()
        self.max_active = 0
        self.threads: dict[str, int] = {}
        self.order: list[str] = []
        self.stops: dict[str, threading.Event] = {}

    def check(self) -> None:
        pass

    def run(self, call: StageCall) -> int:
        stop = self.stops.setdefault(call.stage, threading.Event())
        with self.lock:
            self.active.add(call.stage)
            self.max_active = max(self.max_active, len(self.active))
            self.threads[call.stage] = int(call.env["INFRA_THREADS"])
            self.order.append(call.stage)
        try:
            progress = StageProgress(call.job_dir, call.stage, 100.0, interval_s=0)
            steps = 10
            for i in range(steps):
                if stop.wait(self.seconds.get(call.stage, 0.05) / steps):
                    return -15
                progress.update(100.0 * (i + 1) / steps)
            if call.stage == self.fail:
                mark(call.job_dir, call.stage, status="failed", error="the model would not load")
                return 1
            mark(call.job_dir, call.stage, status="done")
            return 0
        finally:
            with self.lock:
                self.active.discard(call.stage)

    def stop(self, call: StageCall) -> None:
        self.stops.setdefault(call.stage, threading.Event()).set()


def mark(job_dir: Path, stage: str, **changes: object) -> None:
    from infra.jobproto import update_stage_entry

    update_stage_entry(job_dir, stage, **changes)


def make_job(tmp_path: Path) -> tuple[dict, list[tuple[StageCall, str]]]:
    job = {"id": "20260101-0001", "stages": [{"name": n, "after": sorted(a), "status": "pending"}
                                             for n, a in AFTER.items()]}
    write_json_atomic(tmp_path / "job.json", job)
    calls = [(StageCall(n, ("true",), tmp_path, tmp_path / "logs" / f"{n}.log", "img", "cpu"), "pending")
             for n in AFTER]
    return job, calls


def entries(tmp_path: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((tmp_path / "job.json").read_text())["stages"]}


def test_stages_start_when_their_predecessors_are_done_and_share_the_threads(tmp_path: Path) -> None:
    job, calls = make_job(tmp_path)
    runner = ThreadRunner({"demux": 0.05, "vad": 0.1, "asr": 0.3, "diarize": 0.3, "subtitles": 0.05})
    events = list(run_stages(runner, calls, AFTER, job, {n: set() for n in AFTER}, parallel=True, threads=4))
    starts = [e.stage for e in events if e.kind == "start"]
    assert starts[0] == "demux" and starts[-1] == "subtitles"
    assert set(starts[1:3]) == {"vad", "diarize"}              # both wait only for demux
    assert runner.max_active == 2                              # asr and diarize overlap, as vad and diarize did
    assert runner.threads["demux"] == 4 and runner.threads["vad"] == runner.threads["diarize"] == 2
    assert runner.threads["asr"] == 2                          # diarize still holds its two
    assert {e.stage for e in events if e.kind == "done"} == set(AFTER)
    done = entries(tmp_path)
    assert all(done[n]["status"] == "done" and done[n]["threads"] == runner.threads[n] for n in AFTER)
    assert done["diarize"]["alongside"] == ["vad"] or done["vad"]["alongside"] == ["diarize"]


def test_progress_is_reported_and_recorded(tmp_path: Path) -> None:
    job, calls = make_job(tmp_path)
    runner = ThreadRunner({"asr": 1.0})
    events = list(run_stages(runner, calls, AFTER, job, {n: set() for n in AFTER}, threads=2))
    asr = [e.progress for e in events if e.kind == "progress" and e.stage == "asr"]
    assert asr and all(p["total_s"] == 100.0 for p in asr)
    assert [p["done_s"] for p in asr] == sorted(p["done_s"] for p in asr)
    assert entries(tmp_path)["asr"]["progress"]["done_s"] == 100.0


def test_sequential_runs_one_stage_at_a_time_with_every_thread(tmp_path: Path) -> None:
    job, calls = make_job(tmp_path)
    runner = ThreadRunner({})
    list(run_stages(runner, calls, AFTER, job, {n: set() for n in AFTER}, parallel=False, threads=2))
    assert runner.max_active == 1 and set(runner.threads.values()) == {2}
    assert runner.order.index("asr") > runner.order.index("vad")


def test_a_failure_stops_the_others_and_starts_nothing_new(tmp_path: Path) -> None:
    job, calls = make_job(tmp_path)
    runner = ThreadRunner({"vad": 0.05, "asr": 0.05, "diarize": 30.0}, fail="asr")
    started = time.monotonic()
    with pytest.raises(StageFailedError, match="stage asr failed: the model would not load"):
        list(run_stages(runner, calls, AFTER, job, {n: set() for n in AFTER}, threads=2))
    assert time.monotonic() - started < 10                    # diarize was stopped, not waited for
    done = entries(tmp_path)
    assert done["asr"]["status"] == "failed"
    assert done["diarize"]["status"] == "stopped" and "asr failed" in done["diarize"]["error"]
    assert done["subtitles"]["status"] == "pending" and "subtitles" not in runner.order


def test_an_interruption_stops_every_running_stage(tmp_path: Path) -> None:
    job, calls = make_job(tmp_path)
    runner = ThreadRunner({"vad": 30.0, "diarize": 30.0})
    events = run_stages(runner, calls, AFTER, job, {n: set() for n in AFTER}, threads=2)
    with pytest.raises(KeyboardInterrupt):
        for event in events:
            if event.kind == "progress" and event.stage in ("vad", "diarize"):
                events.throw(KeyboardInterrupt())   # what the CLI does when Ctrl-C lands while it shows an event
    done = entries(tmp_path)
    assert {done["vad"]["status"], done["diarize"]["status"]} == {"stopped"}
    assert done["vad"]["error"] == "stopped by Ctrl-C"
    assert not runner.active


@pytest.mark.parametrize(("free", "starting", "share"), [(2, 1, 2), (2, 2, 1), (1, 1, 1), (0, 1, 1), (16, 3, 5)])
def test_thread_share(free: int, starting: int, share: int) -> None:
    assert thread_share(free, starting) == share
