"""A job whose media was moved after demux: the stages that do not read it still run, in containers too;
demux and mux are refused before anything starts with the line the stage itself would give.

Needs the native ML environment (mounted into the stage images), the docker-cpu images (built here,
BuildKit's cache makes that quick after the other tests) and Whisper tiny.en (fetched once per module).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.media_fixtures import detected, media, workspace  # noqa: F401

pytestmark = pytest.mark.docker


@pytest.fixture
def moved(workspace: Path, native_env: Path, model_cache: Path, media: dict[str, Path], run_cli,
          tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A job of a film outside the workspace, demuxed natively, whose film was then moved away."""
    elsewhere = tmp_path_factory.mktemp("films")
    (workspace / ".venv-ml").symlink_to(native_env)
    shutil.copytree(model_cache / "whisper", workspace / "shared-model-and-cache" / "whisper", copy_function=os.link)
    monkeypatch.setenv("INFRA_CACHE", str(model_cache))
    film = elsewhere / "film.mp4"
    shutil.copy(media["speech"], film)
    prepared = run_cli("job", "prepare", str(film), "--mode", "native", "--model", "tiny.en", "--language", "en",
                       "--json", cwd=workspace)
    assert prepared.code == 0, prepared.stderr
    data = json.loads(prepared.stdout)
    demux = run_cli("job", "run", data["id"], "--stages", "demux", cwd=workspace)
    assert demux.code == 0, demux.stderr
    film.rename(elsewhere / "moved.mp4")
    return {"id": data["id"], "dir": workspace / data["dir"], "film": film}


def test_stages_that_do_not_read_the_media_run_in_containers_and_those_that_do_are_refused(
        moved: dict, workspace: Path, run_cli, ca_bundle) -> None:
    built = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu"], cwd=workspace,
                           capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]

    ran = run_cli("job", "run", moved["id"], "--stages", "vad,asr", "--mode", "docker-cpu", cwd=workspace)
    assert ran.code == 0, ran.stdout + ran.stderr
    data = json.loads((moved["dir"] / "job.json").read_text())
    entries = {s["name"]: s for s in data["stages"]}
    assert [(entries[s]["status"], entries[s]["runner"]) for s in ("vad", "asr")] == [("done", "docker-cpu")] * 2
    assert json.loads((moved["dir"] / "results" / "asr.json").read_text())["details"]["words"] > 5
    assert data["input"]["file"] == str(moved["film"])         # nothing was linked in its place

    (moved["dir"] / "subtitles.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nSpeaker 1: Hello.\n")
    before = (moved["dir"] / "job.json").read_bytes()
    expected = f"error: the job's input {moved['film']} is missing (moved or deleted since the job was prepared?)"
    for stage, mode in (("mux", "docker-cpu"), ("demux", "docker-cpu"), ("mux", "native")):
        refused = run_cli("job", "run", moved["id"], "--stages", stage, "--force", "--mode", mode, cwd=workspace)
        assert refused.code == 2, (stage, mode, refused.stderr)
        assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == [expected]
        assert "Traceback" not in refused.stderr and refused.stdout == ""
        assert (moved["dir"] / "job.json").read_bytes() == before          # nothing started
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.infra.job={moved['id']}"],
                          capture_output=True, text=True).stdout
    assert left.strip() == ""
