"""`infra job prepare`, `list` and `show` on real media: real ffprobe, ffmpeg and espeak-ng."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.media_fixtures import detected, ffprobe_duration, job_dirs, media, workspace  # noqa: F401

BAD_INPUT = {
    "missing file": (["{media}/absent.mp4"], "no such file"),
    "a directory": (["{media}/folder.mp4"], "is a directory"),
    "an empty file": (["{media}/empty.mp4"], "is empty"),
    "a text file named .mp4": (["{media}/notes.mp4"], "not a media file ffprobe can read"),
    "no audio stream": (["{media}/silent.mp4"], "has no audio stream"),
    "--start without --end": (["{media}/speech.mp4", "--start", "00:00:01"], "--start needs --end"),
    "--end without --start": (["{media}/speech.mp4", "--end", "00:00:01"], "--end needs --start"),
    "--end before --start": (["{media}/speech.mp4", "--start", "00:00:02", "--end", "00:00:01"], "is not after"),
    "--end past the duration": (["{media}/speech.mp4", "--start", "0", "--end", "00:10:00"], "past the end"),
    "a malformed time": (["{media}/speech.mp4", "--start", "1:2:3:4", "--end", "00:00:02"], "is not a time"),
    "a name with a separator": (["{media}/speech.mp4", "--name", "a/b"], "job name"),
    "a name with ..": (["{media}/speech.mp4", "--name", "..secret"], "job name"),
    "a user with a separator": (["{media}/speech.mp4", "--user", "x/../y"], "user id"),
    "a user that is ..": (["{media}/speech.mp4", "--user", ".."], "user id"),
    "an unknown workflow": (["{media}/speech.mp4", "--workflow", "dub"], "unknown workflow"),
    "an unknown mode": (["{media}/speech.mp4", "--mode", "cloud"], "is not a mode"),
    "docker-gpu without a GPU": (["{media}/speech.mp4", "--mode", "docker-gpu"], "needs a CUDA GPU"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: str, workspace: Path, media: dict[str, Path],
                                                         run_cli) -> None:
    args, expected = BAD_INPUT[case]
    result = run_cli("job", "prepare", *(a.format(media=media["speech"].parent) for a in args), cwd=workspace)
    assert result.code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert job_dirs(workspace) == []
    assert not (workspace / "jobs").exists() or list((workspace / "jobs").iterdir()) == []


def test_prepare_writes_a_complete_job(workspace: Path, media: dict[str, Path], run_cli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_never_written_anywhere")
    result = run_cli("job", "prepare", str(media["speech"]), "--language", "en", "--name", "first take",
                     "--user", "asha", "--json", cwd=workspace)
    assert result.code == 0, result.stderr
    job = json.loads(result.stdout)
    [job_dir] = job_dirs(workspace)
    assert job_dir.name == job["id"] and job_dir.parent.name == "asha"
    assert json.loads((job_dir / "job.json").read_text()) == job
    assert job["schema"] == 1 and job["status"] == "prepared" and job["workflow"] == "subtitles"
    assert job["media"]["audio"][0]["codec"] == "aac" and job["media"]["video"][0]["width"] == 64
    assert abs(job["media"]["duration_s"] - ffprobe_duration(media["speech"])) < 0.05
    assert job["input"] == {"file": str(media["speech"]), "clipped": False, "start_s": 0.0,
                            "end_s": job["media"]["duration_s"], "duration_s": job["media"]["duration_s"],
                            "audio": {"track": 0, "stream": 1, "codec": "aac", "channels": 1, "channel_layout": "mono",
                                      "language": "und", "duration_s": job["media"]["audio"][0]["duration_s"],
                                      "reason": "the first audio track"}}
    assert job["config"]["language"] == "en" and job["config"]["mode"] == job["recommendation"]["mode"]
    assert job["hardware_cache"]["source"] == "cache"
    assert [s["name"] for s in job["stages"]] == ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
    assert all(s["status"] == "pending" and s["device"] in ("cpu", "cuda", "mps") for s in job["stages"])
    assert job["hardware"]["cpu"]["logical_cores"] == os.cpu_count()
    assert "hf_never_written_anywhere" not in (job_dir / "job.json").read_text()


def test_prepare_cuts_a_clip(workspace: Path, media: dict[str, Path], run_cli) -> None:
    result = run_cli("job", "prepare", str(media["speech"]), "--start", "00:00:01", "--end", "00:00:02.5",
                     "--workflow", "transcribe", "--json", cwd=workspace)
    assert result.code == 0, result.stderr
    job = json.loads(result.stdout)
    [job_dir] = job_dirs(workspace)
    clip = job_dir / job["input"]["file"]
    assert clip.name == "clip.mp4" and job["input"]["clipped"] and job["input"]["duration_s"] == 1.5
    assert abs(ffprobe_duration(clip) - 1.5) < 0.2
    assert [s["name"] for s in job["stages"]] == ["demux", "vad", "asr"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root can give folders away")
def test_job_folders_belong_to_the_owner_of_out(workspace: Path, media: dict[str, Path], run_cli) -> None:
    os.chown(workspace / "out", 10001, 10001)
    result = run_cli("job", "prepare", str(media["speech"]), "--start", "1", "--end", "2", cwd=workspace)
    assert result.code == 0, result.stderr
    [job_dir] = job_dirs(workspace)
    made = [job_dir, *job_dir.iterdir(), *[p for p in job_dir.parents if workspace / "out" in p.parents]]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in made} == {(10001, 10001)}
    assert len(made) == 7  # YYYY, MM, DD, user, the job, job.json, clip.mp4


def test_audio_only_media_and_list_and_show(workspace: Path, media: dict[str, Path], run_cli) -> None:
    ids = []
    for item in ("tone", "speech"):
        result = run_cli("job", "prepare", str(media[item]), cwd=workspace)
        assert result.code == 0, result.stderr
        ids.append(result.stdout.split()[0])
    assert ids[0][:8] == ids[1][:8] and int(ids[1][9:]) == int(ids[0][9:]) + 1
    listed = json.loads(run_cli("job", "list", "--json", cwd=workspace).stdout)
    assert [row["id"] for row in listed] == ids and listed[0]["media"] == "tone.wav"
    table = run_cli("job", "list", cwd=workspace).stdout
    assert ids[0] in table and ids[1] in table
    shown = run_cli("job", "show", ids[0], "--json", cwd=workspace)
    assert shown.code == 0 and json.loads(shown.stdout)["media"]["video"] == []
    human = run_cli("job", "show", ids[1], cwd=workspace)
    assert human.code == 0 and re.search(r"^demux +pending +cpu", human.stdout, re.M), human.stdout
    for bad, message in (("20990101-0001", "no job"), ("../etc", "not a job id")):
        missing = run_cli("job", "show", bad, cwd=workspace)
        assert missing.code == 2 and message in missing.stderr


def test_fifty_prepares_at_once_get_fifty_ids(workspace: Path, media: dict[str, Path]) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "infra", "job", "prepare", str(media["tone"])], cwd=workspace,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(50)]
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert all(code == 0 for code, _, _ in outcomes), [err for code, _, err in outcomes if code]
    ids = {out.split()[0] for _, out, _ in outcomes}
    assert len(ids) == 50
    jobs = [json.loads((d / "job.json").read_text()) for d in job_dirs(workspace)]
    assert len(jobs) == 50 and {j["id"] for j in jobs} == ids
    assert sorted(p.name for p in (workspace / "jobs").iterdir()) == sorted(ids)


@pytest.mark.parametrize("script", ["prepare-job.sh", "prepare-job-venv.sh"])
def test_shell_wrappers(script: str, workspace: Path, media: dict[str, Path]) -> None:
    result = subprocess.run([str(REPO / script), str(media["tone"]), "--name", "wrapped"], cwd=workspace,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("deprecated" in result.stderr) == (script == "prepare-job-venv.sh")
    [job_dir] = job_dirs(workspace)
    assert json.loads((job_dir / "job.json").read_text())["name"] == "wrapped"
    assert len((REPO / "prepare-job.sh").read_text().splitlines()) == 2
