"""The pipeline's plan: dependency order, resume, --force, --from, --stages, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.spec import load_stack
from infra.errors import BadInputError
from infra.jobproto import locked_job
from infra.jobs.pipeline import RunRequest, check_media, downstream, plan_run, stage_order
from tests.conftest import REPO

SPECS = load_stack(REPO / "infra.yaml").spec.stages
OUTPUTS = {name: spec.outputs for name, spec in SPECS.items()}


def make_job(tmp_path: Path, done: tuple[str, ...] = (), names: tuple[str, ...] = tuple(SPECS)) -> dict:
    """A job like `job prepare` writes, with the ``done`` stages finished and their outputs present."""
    stages = [{"name": n, "after": list(SPECS[n].after), "image": SPECS[n].image, "device": "cpu",
               "status": "done" if n in done else "pending"} for n in names]
    for name in done:
        for output in OUTPUTS[name]:
            (tmp_path / output).write_text("x")
    job = {"id": "20260101-0001", "stages": stages, "config": {"mode": "native"}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    return job


def actions(plan: list) -> dict[str, str]:
    return {p.name: p.action for p in plan}


def test_stage_order_follows_dependencies_and_the_job_order_among_ready_stages(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    assert stage_order(job) == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    job["stages"].reverse()                        # the job's order only breaks ties; dependencies come first
    order = stage_order(job)
    assert order.index("demux") < order.index("vad") < order.index("asr") < order.index("subtitles")
    assert order.index("diarize") < order.index("subtitles") < order.index("mux")


def test_a_cycle_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    job["stages"][0]["after"] = ["mux"]
    with pytest.raises(BadInputError, match="cycle"):
        stage_order(job)


def test_downstream_is_everything_that_waits_for_a_stage(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    assert sorted(downstream(job, "vad")) == ["asr", "mux", "subtitles"]
    assert downstream(job, "mux") == []


def test_a_fresh_job_runs_every_stage_in_order(tmp_path: Path) -> None:
    plan = plan_run(make_job(tmp_path), tmp_path, SPECS, RunRequest("20260101-0001"))
    assert [(p.name, p.action) for p in plan] == [(n, "run") for n in ("demux", "vad", "asr", "diarize", "subtitles", "mux")]


def test_a_rerun_skips_done_stages_and_resumes_at_the_first_that_is_not(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=("demux", "vad", "diarize"))
    plan = plan_run(job, tmp_path, SPECS, RunRequest("20260101-0001"))
    assert actions(plan) == {"demux": "skip", "vad": "skip", "asr": "run", "diarize": "skip",
                             "subtitles": "run", "mux": "run"}


def test_a_done_stage_whose_output_is_gone_runs_again_and_so_does_what_follows(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=tuple(SPECS))
    (tmp_path / "vad.json").unlink()
    plan = plan_run(job, tmp_path, SPECS, RunRequest("20260101-0001"))
    assert actions(plan) == {"demux": "skip", "vad": "run", "asr": "run", "diarize": "skip",
                             "subtitles": "run", "mux": "run"}
    assert {p.name: p.reason for p in plan}["vad"] == "an output is missing"
    assert {p.name: p.reason for p in plan}["asr"] == "vad runs again"


def test_force_runs_everything_chosen(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=tuple(SPECS))
    assert set(actions(plan_run(job, tmp_path, SPECS, RunRequest("x", force=True))).values()) == {"run"}
    plan = plan_run(job, tmp_path, SPECS, RunRequest("x", stages=("vad",), force=True))
    assert actions(plan) == {"vad": "run"}


def test_from_runs_that_stage_and_everything_after_it(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=tuple(SPECS))
    plan = plan_run(job, tmp_path, SPECS, RunRequest("x", from_stage="asr"))
    assert actions(plan) == {"asr": "run", "subtitles": "run", "mux": "run"}


def test_stages_runs_only_those_and_skips_them_when_done(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=("demux", "vad"))
    assert actions(plan_run(job, tmp_path, SPECS, RunRequest("x", stages=("diarize", "vad")))) == \
        {"vad": "skip", "diarize": "run"}


def test_inputs_made_earlier_in_the_same_run_are_fine(tmp_path: Path) -> None:
    job = make_job(tmp_path, done=("demux",))
    assert actions(plan_run(job, tmp_path, SPECS, RunRequest("x", stages=("vad", "asr")))) == {"vad": "run", "asr": "run"}


@pytest.mark.parametrize(("request_", "message"), [
    (RunRequest("x", stages=("asr",)), "stage asr needs audio.wav, vad.json, which .* does not have: run demux, vad first"),
    (RunRequest("x", from_stage="subtitles"), "--from subtitles: stage subtitles needs asr.json, diarization.json"),
    (RunRequest("x", stages=("transcribe",)), "--stages: job 20260101-0001 has no stage 'transcribe' \\(its stages: demux,"),
    (RunRequest("x", from_stage="Mux"), "--from: job 20260101-0001 has no stage 'Mux'"),
    (RunRequest("x", stages=("vad",), from_stage="vad"), "give --stages or --from, not both"),
])
def test_what_the_plan_refuses_before_anything_runs(tmp_path: Path, request_: RunRequest, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as caught:
        plan_run(make_job(tmp_path), tmp_path, SPECS, request_)
    assert caught.value.exit_code == 2 and "\n" not in caught.value.message


def test_a_job_stage_the_spec_does_not_define_is_refused(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    job["stages"].append({"name": "translate", "after": ["asr"], "status": "pending"})
    with pytest.raises(BadInputError, match="stages the spec does not define: translate"):
        plan_run(job, tmp_path, SPECS, RunRequest("x"))


def test_the_transcribe_workflow_has_no_subtitles_stage(tmp_path: Path) -> None:
    job = make_job(tmp_path, names=("demux", "vad", "asr"))
    with pytest.raises(BadInputError, match="has no stage 'subtitles'"):
        plan_run(job, tmp_path, SPECS, RunRequest("x", from_stage="subtitles"))


def test_the_spec_says_which_stages_read_the_media() -> None:
    assert [name for name, spec in SPECS.items() if spec.reads_media] == ["demux", "mux"]


@pytest.mark.parametrize("name", ["gone.mp4", "/elsewhere/gone.mp4"])
def test_a_missing_media_refuses_only_the_stages_that_read_it_with_the_stage_s_own_line(tmp_path: Path,
                                                                                           name: str) -> None:
    from stages._jobio import StageContext, StageInputError

    job = make_job(tmp_path, done=tuple(SPECS))
    job["input"] = {"file": name}
    for stages in (("vad", "asr"), ("diarize", "subtitles")):
        check_media(job, tmp_path, SPECS, plan_run(job, tmp_path, SPECS, RunRequest("x", stages=stages, force=True)))
    check_media(job, tmp_path, SPECS, plan_run(job, tmp_path, SPECS, RunRequest("x")))      # all done: mux skipped
    with pytest.raises(StageInputError) as stage_says:
        StageContext("mux", tmp_path, job).input_media()
    for request in (RunRequest("x", stages=("mux",), force=True), RunRequest("x", from_stage="subtitles"),
                    RunRequest("x", force=True)):
        with pytest.raises(BadInputError) as caught:
            check_media(job, tmp_path, SPECS, plan_run(job, tmp_path, SPECS, request))
        assert caught.value.exit_code == 2 and caught.value.message == str(stage_says.value)
    assert "the job's input " in caught.value.message and "(moved or deleted" in caught.value.message
    assert caught.value.hint == "demux, mux read it: put it back, or prepare the job again"
    (tmp_path / "gone.mp4").write_bytes(b"back")
    if name == "gone.mp4":
        check_media(job, tmp_path, SPECS, plan_run(job, tmp_path, SPECS, RunRequest("x", force=True)))


STAGE_SIDE = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from stages._jobio import update_stage_entry
for i in range(40):
    update_stage_entry(Path({job!r}), "asr", count=i, status="running")
"""
INFRA_SIDE = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from infra.jobproto import locked_job
for i in range(40):
    with locked_job(Path({job!r})) as data:
        next(s for s in data["stages"] if s["name"] == "diarize").update(count=i, status="running")
"""


def test_stages_and_infra_changing_job_json_at_once_keep_each_others_changes(tmp_path: Path) -> None:
    """A stage (stages/_jobio.py) and infra (the pipeline's and the workers' lock) each rewrite job.json
    40 times at once under the job's lock; neither loses the other's entry."""
    make_job(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", side.format(repo=str(REPO), job=str(tmp_path))])
             for side in (STAGE_SIDE, INFRA_SIDE)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with locked_job(tmp_path) as data:
        entries = {s["name"]: s for s in data["stages"]}
    assert entries["asr"]["count"] == 39 and entries["diarize"]["count"] == 39
    assert entries["demux"]["status"] == "pending"
    assert not list(tmp_path.glob(".job.json.*"))          # no temporary file left behind
