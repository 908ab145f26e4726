"""The vad and asr stages on longer speech, run natively in the ML environment: blocks, spans, checkpoints.

- vad reads the audio in blocks and gives the segments of one pass over the whole file (faster-whisper's
  own function is the reference), joining speech that crosses a block's end;
- asr killed with SIGKILL after more than half of the film resumes from its checkpoints and writes the
  same asr.json, byte for byte, as an uninterrupted run of the same job;
- asr on a disk that fills up fails in one line, exit 1, leaves audio.wav and vad.json as they were and
  no temporary file, and runs through once there is room again;
- both stages record their peak memory.

The speech is espeak-ng's (the sample's dialogue, over and over with pauses); the model is tiny.en,
fetched once per module the way `infra bootstrap` does it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.jobproto import read_progress
from infra.jobs.sample import DIALOGUE
from tests.conftest import REPO
from tests.integration.media_fixtures import concat_with_pauses
from tests.integration.native_stages import Stages, new_job

SPAN_S = 20.0


def spoken(folder: Path, rounds: int) -> Path:
    """The dialogue's lines ``rounds`` times over, with pauses of 0.8 to 2.6 s, as a 16 kHz mono WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (voice, pitch, speed, text) in enumerate(DIALOGUE):
        lines.append(folder / f"line{i}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(lines[-1]), text],
                       check=True, capture_output=True, timeout=60)
    order = [(lines[k % len(lines)], 0.8 + (k % 3) * 0.9) for k in range(rounds * len(lines))]
    return concat_with_pauses(order, folder / "audio.wav")


@pytest.fixture(scope="module")
def stages(ml_env: Path, model_cache: Path) -> Stages:
    return Stages(ml_env, model_cache)


@pytest.fixture(scope="module")
def vad_done(tmp_path_factory: pytest.TempPathFactory, stages: Stages) -> Path:
    """A job of about 75 s of speech whose vad stage has run; every test copies it."""
    root = tmp_path_factory.mktemp("long")
    job = new_job(root / "job", spoken(root / "speech", rounds=3), SPAN_S)
    done = stages.run("vad", job)
    assert done.returncode == 0, done.stderr
    return job


@pytest.fixture(scope="module")
def short_vad_done(tmp_path_factory: pytest.TempPathFactory, stages: Stages) -> Path:
    """A job of the dialogue once (about 25 s), one span, whose vad stage has run."""
    root = tmp_path_factory.mktemp("short")
    job = new_job(root / "job", spoken(root / "speech", rounds=1), SPAN_S)
    done = stages.run("vad", job)
    assert done.returncode == 0, done.stderr
    return job


def record(job_dir: Path, stage: str) -> dict:
    return json.loads((job_dir / "results" / f"{stage}.json").read_text())


def entry(job_dir: Path, stage: str) -> dict:
    return next(s for s in json.loads((job_dir / "job.json").read_text())["stages"] if s["name"] == stage)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- vad ---------------------------------------------------------------------------------------------------------

BLOCKS = """
import json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from faster_whisper.vad import VadOptions, get_speech_timestamps
from stages._audio import SAMPLE_RATE, read_wav
from stages import vad

path = Path(sys.argv[1])
samples = read_wav(path)
out = []
for max_s in (30.0, 2.5):
    options = VadOptions(threshold=vad.THRESHOLD, min_speech_duration_ms=vad.MIN_SPEECH_MS,
                         min_silence_duration_ms=vad.MIN_SILENCE_MS, speech_pad_ms=vad.SPEECH_PAD_MS,
                         max_speech_duration_s=max_s)
    whole = [{{"start": round(s["start"] / SAMPLE_RATE, 3), "end": round(s["end"] / SAMPLE_RATE, 3)}}
             for s in get_speech_timestamps(samples, options)]
    for block_s in (7.0, 1.0, 0.5013):
        blocked, read = vad.silero_segments(path, max_s, block_s=block_s)
        out.append({{"max_s": max_s, "block_s": block_s, "whole": whole, "blocked": blocked,
                     "read": read, "samples": len(samples)}})
print(json.dumps(out))
"""


def test_vad_in_blocks_gives_the_segments_of_one_pass_and_joins_speech_across_blocks(
        stages: Stages, vad_done: Path, tmp_path: Path) -> None:
    """Against faster-whisper's get_speech_timestamps over the whole array, at several block sizes (one not a
    whole number of Silero windows), with the long-speech cut (2.5 s) and without it; the second file ends
    exactly on a window, where faster-whisper pads one window more."""
    cut = tmp_path / "cut.wav"
    samples = 512 * 2000
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(vad_done / "audio.wav"), "-af",
                    f"atrim=end_sample={samples}", "-c:a", "pcm_s16le", str(cut)], check=True, capture_output=True)
    for audio, length in ((vad_done / "audio.wav", None), (cut, samples)):
        out = subprocess.run([stages.python, "-c", BLOCKS.format(repo=str(REPO)), str(audio)], check=False,
                             env=stages.env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        for case in json.loads(out.stdout.splitlines()[-1]):
            assert case["read"] == case["samples"] == (length or case["samples"])
            assert len(case["whole"]) >= 8
            assert case["blocked"] == case["whole"], (audio.name, case["max_s"], case["block_s"])
            crossing = [s for s in case["whole"] if int(s["start"] // case["block_s"]) != int(s["end"] // case["block_s"])]
            assert crossing, "a segment crosses a block's end and is still one segment"


RULE = """
import json, random, sys
sys.path.insert(0, {repo!r})
import numpy as np
import faster_whisper.vad as fw
from stages.vad import SpeechTracker, WINDOW

random.seed(11)
mismatches = 0
for trial in range(300):
    probs = []
    while len(probs) < 400:
        probs += [random.choice([0.0, 0.2, 0.35, 0.4, 0.45, 0.5, 0.55, 0.9])] * random.randint(1, 40)
    n = len(probs) * WINDOW - random.randint(1, WINDOW - 1)      # faster-whisper pads to len(probs) windows
    fw.get_vad_model = lambda: (lambda audio: np.array(probs, dtype=np.float32))
    max_s = random.choice([1.0, 2.0, 4.0, 30.0])
    expected = [(s["start"], s["end"]) for s in fw.get_speech_timestamps(
        np.zeros(n, np.float32), fw.VadOptions(threshold=0.5, min_speech_duration_ms=250, min_silence_duration_ms=300,
                                               speech_pad_ms=200, max_speech_duration_s=max_s))]
    tracker = SpeechTracker(max_s, 0.5, 250, 300, 200)       # faster-whisper's values, given to both
    step = random.randint(1, 50)
    for i in range(0, len(probs), step):
        tracker.feed(np.array(probs[i:i + step], dtype=np.float32))
    mismatches += tracker.finish(n) != expected
print(json.dumps(mismatches))
"""


def test_the_vad_rule_is_faster_whisper_s_on_any_probabilities(stages: Stages) -> None:
    """300 random probability tracks (speech, pauses, values between the two thresholds, long speech cut at
    1 to 30 s), fed in random blocks: the same segments as faster-whisper's function."""
    out = subprocess.run([stages.python, "-c", RULE.format(repo=str(REPO))], check=False, env=stages.env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == 0


def test_the_vad_stage_reports_its_progress_and_peak_memory(vad_done: Path) -> None:
    progress = read_progress(vad_done, "vad")
    assert progress and progress["done_s"] == progress["total_s"] > 60
    data = json.loads((vad_done / "vad.json").read_text())
    assert data["backend"] == "silero" and len(data["segments"]) >= 10
    assert data["duration_s"] == progress["total_s"]
    assert 20 < record(vad_done, "vad")["peak_rss_mb"] == entry(vad_done, "vad")["peak_rss_mb"] < 1000


# --- asr: kill and resume ------------------------------------------------------------------------------------------

def kill_past_half(proc: subprocess.Popen[str], job_dir: Path, timeout_s: float = 240) -> dict:
    """SIGKILL the stage once a checkpoint is written and the progress says more than half is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        progress = read_progress(job_dir, "asr")
        if (progress and progress["done_s"] >= 0.5 * progress["total_s"]
                and any((job_dir / "asr.parts").glob("[0-9]*.json"))):
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return progress
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"the stage ended (exit {proc.returncode}) before it could be killed past half: {err[-2000:]}")


def test_asr_killed_past_half_resumes_from_its_checkpoints_and_writes_the_same_bytes(
        stages: Stages, vad_done: Path, tmp_path: Path) -> None:
    killed = shutil.copytree(vad_done, tmp_path / "killed")
    whole = shutil.copytree(vad_done, tmp_path / "whole")

    seen = kill_past_half(stages.start("asr", killed), killed)
    assert seen["done_s"] < seen["total_s"]
    # whole checkpoints only: a kill may leave a .NNNN.partial.json, which nothing reads
    checkpoints = sorted(p.name for p in (killed / "asr.parts").glob("[0-9]*.json"))
    assert not (killed / "asr.json").exists() and entry(killed, "asr")["status"] == "running"

    again = stages.run("asr", killed)
    assert again.returncode == 0, again.stderr
    details = record(killed, "asr")["details"]
    assert details["spans_total"] >= 3
    assert details["spans_resumed"] == len(checkpoints) >= 1
    assert details["spans_resumed"] + details["spans_transcribed"] == details["spans_total"]
    progress = read_progress(killed, "asr")
    assert 0 < progress["resumed_s"] == details["resumed_s"] < progress["total_s"] == progress["done_s"]
    assert not (killed / "asr.parts").exists()

    uninterrupted = stages.run("asr", whole)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert record(whole, "asr")["details"]["spans_resumed"] == 0
    assert (killed / "asr.json").read_bytes() == (whole / "asr.json").read_bytes()
    data = json.loads((whole / "asr.json").read_text())
    assert data["span_s"] == SPAN_S and len(data["spans"]) == details["spans_total"] and data["language"] == "en"
    assert len(data["segments"]) >= 8 and data["segments"][-1]["end"] > 60          # times are in the film
    memory = record(whole, "asr")["peak_rss_mb"]
    assert 100 < memory == entry(whole, "asr")["peak_rss_mb"] < 1500


# --- asr: disk full ------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12M", "tmpfs", str(where)], check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            block = bytes(size)
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def test_asr_on_a_full_disk_fails_in_one_line_keeps_its_inputs_and_reruns_once_there_is_room(
        stages: Stages, short_vad_done: Path, small_disk: Path) -> None:
    job = shutil.copytree(short_vad_done, small_disk / "job")
    inputs = {name: digest(job / name) for name in ("audio.wav", "vad.json")}
    proc = stages.start("asr", job)
    try:
        deadline = time.monotonic() + 120
        while read_progress(job, "asr") is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGSTOP)            # the stage has started: fill the disk under it
        fill(small_disk / "filler")
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("asr: disk full while writing "), err
    written = lines[0].removeprefix("asr: disk full while writing ")
    assert written in ("progress/asr.json", "asr.json") or written.startswith("asr.parts/"), written
    assert {name: digest(job / name) for name in inputs} == inputs
    leftovers = [str(p.relative_to(job)) for p in job.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]
    assert leftovers == []
    assert not (job / "asr.json").exists()
    assert entry(job, "asr")["status"] in ("running", "failed")          # job.json is whole, whatever it managed

    (small_disk / "filler").unlink()
    again = stages.run("asr", job)
    assert again.returncode == 0, again.stderr
    assert entry(job, "asr")["status"] == "done" and json.loads((job / "asr.json").read_text())["segments"]
