"""The container runner's refusals, against the in-memory engine: nothing runs in a container when they apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.jobproto import write_json_atomic
from infra.jobs.containers import ContainerRunner
from infra.jobs.runners import StageCall
from infra.spec import Stack, load_stack
from tests.fake_stack import CLASH, COMPATIBLE, OLD_PYTHON, make_native_env, spec_engine

MODE = "docker-cpu"
JOB_ID = "20260101-0001"


@pytest.fixture
def stack(project: Path) -> Stack:
    stack = load_stack(project / "infra.yaml")
    make_native_env(stack)
    return stack


def make_job(stack: Stack, stages: list[str]) -> dict:
    job_dir = stack.workdir / "jobs" / JOB_ID
    job_dir.mkdir(parents=True)
    job = {"id": JOB_ID, "dir": f"jobs/{JOB_ID}", "input": {"file": "/nowhere/talk.wav"},
           "stages": [{"name": s, "status": "pending"} for s in stages]}
    write_json_atomic(job_dir / "job.json", job)
    return job


def test_images_not_built_are_refused_with_the_build_hint(stack: Stack) -> None:
    engine = spec_engine(stack, MODE, current=False, default_python_output=COMPATIBLE)
    runner = ContainerRunner(stack, MODE, make_job(stack, ["demux", "asr"]), engine)
    with pytest.raises(BadInputError) as caught:
        runner.check()
    assert caught.value.message == f"images not built or out of date for {MODE}: asr, ffmpeg"
    assert caught.value.hint == f"`infra build --mode {MODE}`"
    assert not engine.runs and not engine.calls_to("run_python") and not engine.builds


def test_only_the_job_stages_images_matter(stack: Stack) -> None:
    # diarization is missing, but this job does not run it; the stale one it runs (asr) is named alone
    engine = spec_engine(stack, MODE, except_=("diarization",), default_python_output=COMPATIBLE)
    (stack.images_dir / "asr" / "extra.txt").write_text("a change to asr's build context\n")
    runner = ContainerRunner(stack, MODE, make_job(stack, ["demux", "asr"]), engine)
    with pytest.raises(BadInputError, match=f"out of date for {MODE}: asr$"):
        runner.check()
    assert not engine.runs


@pytest.mark.parametrize("answer, problem", [
    (OLD_PYTHON, "Python 3.9 in the image, 3.11 in the environment"),
    (CLASH, "torch 2.1.0 (image) vs 2.13.0+cpu (environment)"),
])
def test_an_image_that_cannot_load_the_native_env_is_refused(stack: Stack, answer: str, problem: str) -> None:
    engine = spec_engine(stack, MODE, python_output={"asr": answer}, default_python_output=COMPATIBLE)
    runner = ContainerRunner(stack, MODE, make_job(stack, ["demux", "asr"]), engine)
    with pytest.raises(BadInputError) as caught:
        runner.check()
    assert caught.value.message.startswith(f"{stack.image_ref('asr', MODE)} cannot load the native environment ")
    assert problem in caught.value.message
    assert "native_env.torch: baked" in (caught.value.hint or "")
    assert not engine.runs


def test_a_ready_mode_passes_and_each_stage_runs_in_its_image(stack: Stack) -> None:
    engine = spec_engine(stack, MODE, default_python_output=COMPATIBLE, run_exit=0)
    runner = ContainerRunner(stack, MODE, make_job(stack, ["demux", "asr"]), engine)
    runner.check()
    assert {c[1] for c in engine.calls_to("run_python")} == {stack.image_ref("asr", MODE), stack.image_ref("ffmpeg", MODE)}

    job_dir = stack.workdir / "jobs" / JOB_ID
    call = StageCall("asr", ("python3", "-m", "stages.asr"), job_dir, job_dir / "asr.log", "asr", "cpu")
    assert runner.run(call) == 0
    [run] = engine.runs
    assert run.ref == stack.image_ref("asr", MODE) and run.command == ["python3", "-m", "stages.asr", f"/data/jobs/{JOB_ID}"]
    assert run.workdir == f"/data/jobs/{JOB_ID}" and not run.gpus
    assert run.labels["io.infra.stage"] == "asr"
    site = [m for m in run.mounts if m[1].endswith("native-site")]
    assert len(site) == 1 and site[0][2] is True                     # the native env, read-only
