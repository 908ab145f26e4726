"""Bad input for `infra job run`: one line, exit 2 or 1, and job.json left consistent and resumable.

These need no ML environment: the native env is a stand-in whose python is the test
interpreter, which runs the demux stage (standard library and FFmpeg) for real.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

from tests.integration.media_fixtures import detected, media, workspace  # noqa: F401


@pytest.fixture
def stand_in_env(workspace: Path) -> Path:
    """<workspace>/.venv-ml whose bin/python is this interpreter (enough for demux and the checks)."""
    env = workspace / ".venv-ml"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    return env


@pytest.fixture
def prepared(workspace: Path, stand_in_env: Path, media: dict[str, Path], run_cli, tmp_path: Path) -> dict:
    """A job prepared from a copy of speech.mp4 (so a test can spoil the copy), with tiny.en as its model."""
    source = tmp_path / "film.mp4"
    shutil.copy(media["speech"], source)
    result = run_cli("job", "prepare", str(source), "--mode", "native", "--model", "tiny.en", "--json", cwd=workspace)
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    return {"id": data["id"], "dir": workspace / data["dir"], "source": source}


def errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def job_file(job: dict) -> dict:
    return json.loads((job["dir"] / "job.json").read_text())


def test_a_job_that_does_not_exist(workspace: Path, run_cli) -> None:
    result = run_cli("job", "run", "20200101-0042", cwd=workspace)
    assert result.code == 2 and errors(result) == [f"error: no job 20200101-0042 in {workspace}"]
    assert run_cli("job", "run", "latest", cwd=workspace).code == 2


def test_an_unknown_stage_name(prepared: dict, run_cli) -> None:
    before = (prepared["dir"] / "job.json").read_bytes()
    result = run_cli("job", "run", prepared["id"], "--stages", "demux,transcode")
    assert result.code == 2
    assert errors(result) == [f"error: --stages: job {prepared['id']} has no stage 'transcode' "
                              "(its stages: demux, vad, asr, diarize, subtitles, mux)"]
    assert (prepared["dir"] / "job.json").read_bytes() == before


def test_from_a_stage_whose_inputs_are_missing(prepared: dict, run_cli) -> None:
    before = (prepared["dir"] / "job.json").read_bytes()
    result = run_cli("job", "run", prepared["id"], "--from", "asr")
    assert result.code == 2 and len(errors(result)) == 1
    assert "--from asr: stage asr needs audio.wav, vad.json" in errors(result)[0]
    assert "run demux, vad first" in errors(result)[0]
    assert (prepared["dir"] / "job.json").read_bytes() == before


def test_a_missing_model_names_the_model_and_the_command_that_fetches_it(
        prepared: dict, run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_CACHE", str(tmp_path / "empty-cache"))
    before = (prepared["dir"] / "job.json").read_bytes()
    result = run_cli("job", "run", prepared["id"])
    assert result.code == 2 and len(errors(result)) == 1
    assert "Whisper model tiny.en is not in the model cache" in errors(result)[0]
    assert "fetch it with `infra bootstrap --model whisper/tiny.en`" in errors(result)[0]
    assert (prepared["dir"] / "job.json").read_bytes() == before          # nothing ran


def test_media_ffmpeg_cannot_decode_fails_demux_and_the_job_resumes_once_it_is_fixed(prepared: dict, run_cli,
                                                                                     media: dict[str, Path]) -> None:
    prepared["source"].write_bytes(os.urandom(50_000))      # the film was replaced after the job was prepared
    result = run_cli("job", "run", prepared["id"], "--stages", "demux")
    assert result.code == 2
    assert errors(result) == [f"error: stage demux failed: ffmpeg cannot decode film.mp4: "
                              "Invalid data found when processing input"]
    data = job_file(prepared)
    demux = data["stages"][0]
    assert (data["status"], demux["status"], demux["exit_code"], demux["runner"]) == ("failed", "failed", 2, "native")
    assert demux["error"].startswith("ffmpeg cannot decode film.mp4")
    record = json.loads((prepared["dir"] / "results" / "demux.json").read_text())
    assert record["status"] == "failed" and record["versions"]["ffmpeg"]
    assert not (prepared["dir"] / "audio.wav").exists()
    assert not list(prepared["dir"].glob(".*partial*"))                      # no partial output
    assert "ffmpeg cannot decode" in (prepared["dir"] / "logs" / "demux.log").read_text()

    shutil.copy(media["speech"], prepared["source"])
    again = run_cli("job", "run", prepared["id"], "--stages", "demux")
    assert again.code == 0, again.stderr
    demux = job_file(prepared)["stages"][0]
    assert demux["status"] == "done" and "error" not in demux and demux["exit_code"] == 0
    assert (prepared["dir"] / "audio.wav").stat().st_size > 32_000 * 2       # over 2 s of 16 kHz 16-bit audio
    assert job_file(prepared)["status"] == "incomplete"                       # the other stages are still pending


def test_a_job_whose_native_env_is_missing(prepared: dict, stand_in_env: Path, run_cli) -> None:
    shutil.rmtree(stand_in_env)
    result = run_cli("job", "run", prepared["id"])
    assert result.code == 2 and len(errors(result)) == 1
    assert f"native environment {stand_in_env} not found" in errors(result)[0]


@pytest.mark.docker
def test_a_docker_mode_whose_images_are_not_built(prepared: dict, workspace: Path, run_cli) -> None:
    """The workspace's own spec names images no one has built: the container runner refuses before any stage."""
    import shutil

    shutil.copytree(REPO / "images", workspace / "images", dirs_exist_ok=True)
    (workspace / "infra.yaml").write_text((REPO / "infra.yaml").read_text().replace("project: speech",
                                                                                    "project: notbuiltyet"))
    result = run_cli("job", "run", prepared["id"], "--mode", "docker-cpu", cwd=workspace)
    assert result.code == 2
    assert errors(result)[0].startswith("error: images not built or out of date for docker-cpu: asr, ")
    assert "infra build --mode docker-cpu" in result.stderr
    assert job_file(prepared)["status"] == "prepared"


def test_a_job_run_while_another_runs_it(prepared: dict, run_cli) -> None:
    with open(prepared["dir"] / "run.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = run_cli("job", "run", prepared["id"], "--stages", "demux")
    assert result.code == 1 and errors(result) == [f"error: job {prepared['id']} is already running "
                                                   f"(another `infra job run` holds {prepared['dir'] / 'run.lock'})"]


def test_a_job_whose_job_json_was_removed(prepared: dict, run_cli) -> None:
    (prepared["dir"] / "job.json").unlink()
    result = run_cli("job", "run", prepared["id"])
    assert result.code == 1 and len(errors(result)) == 1 and "job.json is missing" in errors(result)[0]


def test_infra_run_takes_media_or_the_sample_not_both_nor_neither(workspace: Path, run_cli) -> None:
    for args in ((), ("film.mp4", "--sample")):
        result = run_cli("run", *args, cwd=workspace)
        assert result.code == 2 and errors(result) == ["error: give MEDIA or --sample (one of them)"]
    assert not (workspace / "jobs").exists() or not list((workspace / "jobs").iterdir())
