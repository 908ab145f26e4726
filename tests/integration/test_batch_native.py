"""`infra run` over a folder of films, natively with the real stages: one job per film, finished films skipped,
a bad film among good ones, and two `infra run` of one film at once.

Needs the native ML environment (the session fixture `native_env` makes it when absent) and Whisper tiny.en,
fetched once for the module the way `infra bootstrap` does it. The films are a few seconds of espeak-ng speech
each. The `--submit` path (the same batch handed to the stack's workers) is not run here: bringing the stack up
takes minutes (tests/integration/test_stack.py covers `job submit --wait`, which it uses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from tests.conftest import REPO
from tests.integration.media_fixtures import detected, media  # noqa: F401

FLAGS = ("--mode", "native", "--model", "tiny.en", "--language", "en")
SECOND_FILM = "A second film. Two people talk about the weather and the train to the coast."


@pytest.fixture(scope="module")
def frozen_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of infra and its stages as they are when the module starts, for the runs' PYTHONPATH: the stage code
    is part of the run key, so an edit of stages/ in the checkout while the module runs would change the key."""
    import shutil

    code = tmp_path_factory.mktemp("code")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("infra", "stages", "images", "templates"):
        shutil.copytree(REPO / folder, code / folder, ignore=ignore)
    shutil.copy(REPO / "infra.yaml", code / "infra.yaml")
    return code


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, native_env: Path, model_cache: Path, frozen_code: Path,
          detected, media) -> dict:  # noqa: F811
    """A workspace with films/: two good films, a text file named .mp4 between them and a video without audio;
    then `infra run films` once."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / ".venv-ml").symlink_to(native_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    films = ws / "films"
    films.mkdir()
    (films / "a-first.mp4").write_bytes(media["speech"].read_bytes())
    (films / "b-notes.mp4").write_bytes(media["notes"].read_bytes())
    wav = ws / "second.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SECOND_FILM], check=True, capture_output=True, timeout=60)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "color=c=black:s=64x36:r=5",
                    "-i", str(wav), "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    str(films / "c-second.mp4")], check=True, capture_output=True, timeout=60)
    (films / "d-silent.mp4").write_bytes(media["silent"].read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}
    env["INFRA_CACHE"] = str(model_cache)
    env["PYTHONPATH"] = str(frozen_code)

    def infra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ws, env=env, capture_output=True,
                              text=True, timeout=600)

    first = infra("run", "films", *FLAGS)
    return {"ws": ws, "films": films, "env": env, "infra": infra, "first": first}


def jobs_of(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "jobs").glob("2*"))


def logs_of(ws: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in (ws / "out").rglob("logs/*.log")}


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The summary table's rows by film: the cells, split on runs of two or more spaces."""
    import re

    rows = {}
    for line in stdout.splitlines():
        if line.startswith("films/"):
            cells = re.split(r" {2,}", line.strip())
            rows[cells[0]] = cells[1:]
    return rows


def test_a_folder_runs_each_film_and_a_bad_one_does_not_stop_the_others(batch: dict) -> None:
    first, ws = batch["first"], batch["ws"]
    assert first.returncode == 1, first.stdout + first.stderr
    assert [ln for ln in first.stdout.splitlines() if ln.startswith("[")] == [
        "[1/4] films/a-first.mp4", "[2/4] films/b-notes.mp4", "[3/4] films/c-second.mp4", "[4/4] films/d-silent.mp4"]
    rows = table_rows(first.stdout)
    assert [rows[f][0] for f in ("films/a-first.mp4", "films/b-notes.mp4", "films/c-second.mp4",
                                 "films/d-silent.mp4")] == ["done", "failed", "done", "failed"]
    assert len(jobs_of(ws)) == 2
    for film in ("films/a-first.mp4", "films/c-second.mp4"):
        job_id, srt = rows[film][1], Path(rows[film][-1])
        assert srt.name == "subtitles.srt" and srt.parent == ws / (ws / "jobs" / job_id).read_text().strip()
        assert " --> " in srt.read_text()
        assert json.loads((srt.parent / "job.json").read_text())["status"] == "done"
    assert "2 done, 2 failed" in first.stdout.splitlines()[-1]
    errors = [ln for ln in first.stderr.splitlines() if ln.startswith("error:")]
    assert errors[0].startswith("error: films/b-notes.mp4: not a media file ffprobe can read")
    assert errors[1] == "error: films/d-silent.mp4: has no audio stream (streams found: video)"
    assert errors[2] == "error: 2 of 4 films did not finish: films/b-notes.mp4, films/d-silent.mp4"
    assert "Traceback" not in first.stderr


def test_a_rerun_skips_the_finished_films_without_running_a_stage(batch: dict) -> None:
    ws = batch["ws"]
    jobs, logs = jobs_of(ws), logs_of(ws)
    first_rows = table_rows(batch["first"].stdout)
    again = batch["infra"]("run", "films/a-first.mp4", "films/c-second.mp4", *FLAGS, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout)
    assert [(r["film"], r["status"]) for r in result] == [("films/a-first.mp4", "skipped"),
                                                          ("films/c-second.mp4", "skipped")]
    assert [r["job"] for r in result] == [first_rows["films/a-first.mp4"][1], first_rows["films/c-second.mp4"][1]]
    assert [Path(r["srt"]).name for r in result] == ["subtitles.srt", "subtitles.srt"]
    assert all(r["duration_s"] > 2 for r in result)
    assert jobs_of(ws) == jobs and logs_of(ws) == logs          # no new job, no stage ran
    assert "running" not in again.stderr

    # The whole folder again: the good films are skipped, the bad ones fail again, still no stage runs.
    folder = batch["infra"]("run", "films", *FLAGS)
    assert folder.returncode == 1
    assert [table_rows(folder.stdout)[f][0] for f in sorted(table_rows(folder.stdout))] == [
        "skipped (done)", "failed", "skipped (done)", "failed"]
    assert jobs_of(ws) == jobs and logs_of(ws) == logs


def test_a_copy_under_another_name_is_done_and_another_language_is_not(batch: dict) -> None:
    ws = batch["ws"]
    copy = ws / "copy of the first film.mkv"
    copy.write_bytes((batch["films"] / "a-first.mp4").read_bytes())
    jobs = jobs_of(ws)
    same = batch["infra"]("run", str(copy), *FLAGS, "--json")
    assert same.returncode == 0 and json.loads(same.stdout)[0]["status"] == "skipped"
    # Bad input before anything runs: exit 2, one line, nothing made.
    missing = batch["infra"]("run", "films/a-first.mp4", "films/nope.mp4", *FLAGS)
    assert missing.returncode == 2
    assert [ln for ln in missing.stderr.splitlines() if ln.startswith("error:")] == [
        "error: films/nope.mp4: no such file or folder"]
    assert jobs_of(ws) == jobs


def test_two_runs_of_one_film_at_once(batch: dict) -> None:
    """A runs the film again (--force); B, started meanwhile, names A's job and exits 1; C (--wait) waits for A
    and then reports the film done by A's job."""
    ws, env = batch["ws"], batch["env"]
    before = set(jobs_of(ws))
    command = [sys.executable, "-m", "infra", "run", "films/c-second.mp4", *FLAGS]
    a = subprocess.Popen([*command, "--force"], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 120
        new: list[str] = []
        while time.monotonic() < deadline and a.poll() is None:
            time.sleep(0.1)
            new = sorted(set(jobs_of(ws)) - before)
            entries = [json.loads(p.read_text()) for p in (ws / "jobs" / "index").glob("*/entry.json")]
            if new and any(e["job"] == new[0] and e["status"] == "running" for e in entries):
                break
        assert new, "A did not prepare a job"
        b = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, timeout=120)
        assert a.poll() is None, "A ended before B asked: the film is too short for this test"
        c = subprocess.Popen([*command, "--wait", "--json"], cwd=ws, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        a_out, a_err = a.communicate(timeout=300)
        c_out, c_err = c.communicate(timeout=120)
    finally:
        for proc in (a, locals().get("c")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert a.returncode == 0, a_out + a_err
    assert b.returncode == 1, b.stdout + b.stderr
    assert [ln for ln in b.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: films/c-second.mp4: another `infra run` is running this film (job {new[0]}, pid {a.pid})"]
    assert "hint: --wait waits for it to finish" in b.stderr
    # A, a single film, shows its stages as they run and where the results are, and no table.
    assert f"job {new[0]}: done" in a_out.splitlines()
    assert any(ln.split()[0] == "asr" and "running" in ln for ln in a_out.splitlines() if ln.strip())
    assert "films/c-second.mp4  " not in a_out
    assert c.returncode == 0, c_out + c_err
    assert "another `infra run` is running this film" in c_err and "waiting for it" in c_err
    assert [(r["status"], r["job"]) for r in json.loads(c_out)] == [("skipped", new[0])]
    assert sorted(set(jobs_of(ws)) - before) == new
