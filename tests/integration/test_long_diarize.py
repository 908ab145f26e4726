"""The diarize stage on a film of a few minutes, span by span: the same numbers in any spans, resume after SIGKILL.

Real speech: espeak-ng's two voices of the built-in sample's dialogue, over and
over, with pauses and one long silence, about four minutes. The stage and the
backend run in the native ML environment (.venv-ml: torch, resemblyzer), with
torch on one thread (INFRA_THREADS=1).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
import wave
from pathlib import Path

import pytest

from infra.jobproto import read_progress
from infra.jobs.sample import DIALOGUE
from tests.conftest import REPO

RATE = 16000
ROUNDS = 11
PAUSES_S = (0.5, 1.2, 0.8, 2.0, 0.4, 1.6)
LONG_SILENCE_S = 25.0          # one stretch with no speech: a span may hold no window at all
SPAN_S = 20
OUTPUTS = ("diarization.json", "diarization.rttm")


@pytest.fixture(scope="module")
def ml_python(native_env: Path) -> Path:
    python = native_env / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import resemblyzer, webrtcvad, torch"], check=False,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    return python


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About four minutes of two voices taking turns, 16 kHz mono 16-bit, as demux writes audio.wav; quiet, so
    that the embeddings see the volume normalisation (one gain for the whole film)."""
    root = tmp_path_factory.mktemp("film")
    lines = []
    for i, (voice, pitch, speed, text) in enumerate(DIALOGUE):
        raw, wav = root / f"raw{i}.wav", root / f"line{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(raw), text],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(raw), "-ac", "1", "-ar", str(RATE),
                        "-af", "volume=0.05", "-c:a", "pcm_s16le", str(wav)], check=True, capture_output=True, timeout=60)
        with wave.open(str(wav), "rb") as handle:
            lines.append(handle.readframes(handle.getnframes()))
    out = root / "audio.wav"
    with wave.open(str(out), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        for r in range(ROUNDS):
            for i, line in enumerate(lines):
                handle.writeframes(line)
                handle.writeframes(bytes(2 * int(RATE * PAUSES_S[(r + i) % len(PAUSES_S)])))
            if r == ROUNDS // 2:
                handle.writeframes(bytes(2 * int(RATE * LONG_SILENCE_S)))
    with wave.open(str(out), "rb") as handle:
        assert 200 < handle.getnframes() / RATE < 300
    return out


def make_job(folder: Path, audio: Path, span_s: float) -> Path:
    folder.mkdir(parents=True)
    shutil.copy2(audio, folder / "audio.wav")
    job = {"id": "20260101-0000", "workspace": str(folder), "config": {"max_speakers": 10, "span_s": span_s},
           "stages": [{"name": "diarize", "status": "pending"}]}
    (folder / "job.json").write_text(json.dumps(job))
    return folder


def stage_env(tmp_path: Path) -> dict[str, str]:
    """One torch thread, and an empty model cache: the offline backend."""
    (tmp_path / "cache").mkdir(exist_ok=True)
    return {**os.environ, "INFRA_THREADS": "1", "INFRA_CACHE": str(tmp_path / "cache")}


def run_diarize(python: Path, job: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([str(python), "-m", "stages.diarize", str(job)], check=False, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((job / "results" / "diarize.json").read_text())["details"]


SAME_NUMBERS = """
import json, sys
from pathlib import Path
import numpy as np
import torch
from stages._audio import read_wav, read_wav_span, wav_spans
import stages._speakers as sp

torch.set_num_threads(1)
path = Path(sys.argv[1])
whole = read_wav(path)
blocks = sp.scan_speech(b for _, b in wav_spans(path, 7.77))     # blocks that are not whole VAD frames
speech = sp.scan_speech([whole])
assert (blocks.mask == speech.mask).all() and blocks.gain == speech.gain and blocks.samples == speech.samples
starts = sp.window_starts(speech)
encoder = sp.load_encoder("cpu")
one_pass = sp.embed_windows(whole, 0, starts, speech, encoder, "cpu")
spans, read = [], []
for steps in (sp.BATCH_STEPS, 3 * sp.BATCH_STEPS):
    frames = steps * sp.STEP_FRAMES
    parts = []
    for k in range(len(speech.mask) // frames + 1):
        mine = [s for s in starts if s // frames == k]
        if mine:
            first, last = sp.span_audio(mine, speech.samples)
            read.append((last - first) / sp.SAMPLE_RATE)
            audio = read_wav_span(path, first / sp.SAMPLE_RATE, last / sp.SAMPLE_RATE)
            parts.append(sp.embed_windows(audio, first, mine, speech, encoder, "cpu"))
    spans.append(np.concatenate(parts))
turns = [sp.speaker_turns(speech, starts, emb, 10)[0] for emb in (one_pass, *spans)]
print(json.dumps({"windows": len(starts), "gain": speech.gain, "max_read_s": max(read),
                  "same_embeddings": [bool(np.array_equal(one_pass, emb)) for emb in spans],
                  "same_turns": [t == turns[0] for t in turns[1:]], "turns": turns[0]}))
"""


def test_span_wise_embedding_gives_the_same_windows_embeddings_and_turns_as_one_pass(ml_python: Path, film: Path,
                                                                                       tmp_path: Path) -> None:
    short = tmp_path / "short.wav"                  # the first 130 s: spans of 20 s and of 60 s, and less to embed
    with wave.open(str(film), "rb") as src, wave.open(str(short), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(130 * RATE))
    proc = subprocess.run([str(ml_python), "-c", SAME_NUMBERS, str(short)], check=False, cwd=REPO,
                          env=stage_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["windows"] > 300 and found["gain"] > 1.0        # espeak-ng is quieter than -30 dBFS
    assert found["same_embeddings"] == [True, True]
    assert found["same_turns"] == [True, True]
    assert {t["speaker"] for t in found["turns"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert found["max_read_s"] < 62                              # a span's audio and its margin, never the film


TWO_VOICES = """
import json
import numpy as np
import stages._speakers as sp

rng = np.random.default_rng(0)
a = rng.standard_normal(256)
a /= np.linalg.norm(a)
b = rng.standard_normal(256)
b -= (b @ a) * a
b = 0.85 * a + np.sqrt(1 - 0.85 ** 2) * b / np.linalg.norm(b)          # two voices, 0.85 alike
found = {}
for windows in (1200, 23000):                      # 5 min of speech; 1.6 h (sampled every 16th window)
    truth = (np.arange(windows) // 24) % 2          # turns of 6 s
    emb = np.where(truth[:, None] == 0, a, b) + rng.standard_normal((windows, 256)) * 0.045
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    labels = sp.cluster(emb, 10)
    found[windows] = [int(labels.max()) + 1, float((labels == truth).mean())]
print(json.dumps(found))
"""


def test_two_voices_stay_two_speakers_however_long_the_film(ml_python: Path) -> None:
    """Clustering samples long films down to MAX_CLUSTERED windows; averaging neighbours instead merged two voices
    into one once the film was long enough."""
    proc = subprocess.run([str(ml_python), "-c", TWO_VOICES], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {"1200": [2, 1.0], "23000": [2, 1.0]}


CHECKPOINT = """
import sys
from pathlib import Path
import numpy as np
from stages.diarize import read_part, write_part

folder = Path(sys.argv[1])
emb = np.random.default_rng(0).random((3, 256), dtype=np.float32)
write_part(folder / "0000.npz", "key-a", [0, 25, 50], emb)
back = read_part(folder / "0000.npz", "key-a", [0, 25, 50])
assert back is not None and np.array_equal(back, emb)
assert read_part(folder / "0000.npz", "key-b", [0, 25, 50]) is None            # other audio, settings or model
assert read_part(folder / "0000.npz", "key-a", [0, 25]) is None                # other windows
assert read_part(folder / "0001.npz", "key-a", [0, 25, 50]) is None            # none
(folder / "0002.npz").write_bytes((folder / "0000.npz").read_bytes()[:300])
assert read_part(folder / "0002.npz", "key-a", [0, 25, 50]) is None            # torn
assert sorted(p.name for p in folder.iterdir()) == ["0000.npz", "0002.npz"]   # no temporary file left
print("ok")
"""


def test_a_checkpoint_is_trusted_only_for_its_key_and_windows(ml_python: Path, tmp_path: Path) -> None:
    proc = subprocess.run([str(ml_python), "-c", CHECKPOINT, str(tmp_path / "parts")], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_a_killed_diarize_resumes_from_its_checkpoints_with_the_same_output(ml_python: Path, film: Path,
                                                                             tmp_path: Path) -> None:
    env = stage_env(tmp_path)
    whole = make_job(tmp_path / "whole", film, SPAN_S)
    killed = make_job(tmp_path / "killed", film, SPAN_S)

    proc = subprocess.Popen([str(ml_python), "-m", "stages.diarize", str(killed)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, parts = time.monotonic() + 240, killed / "diarize.parts"
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            progress = read_progress(killed, "diarize")
            if progress and progress["done_s"] > progress["total_s"] / 2 and any(parts.glob("[0-9]*.npz")):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the stage ended before it was past half"
    assert not (killed / "diarization.json").exists()
    saved = sorted(p.name for p in parts.glob("[0-9]*.npz"))   # whole ones: a kill may leave a .NNNN.partial.npz
    assert saved and saved[0] == "0000.npz"

    resumed = run_diarize(ml_python, killed, env)
    assert resumed["torch_threads"] == 1 and resumed["span_s"] == SPAN_S
    with wave.open(str(film), "rb") as handle:
        frames = int(handle.getnframes() / RATE / 0.01)         # the speech mask's 10 ms frames
    assert resumed["spans_total"] == math.ceil(frames / (SPAN_S * 100)) > 10
    assert 1 <= resumed["spans_resumed"] < resumed["spans_total"]
    assert resumed["spans_resumed"] == len(saved)            # every checkpoint written is whole (atomic rename)
    progress = read_progress(killed, "diarize")
    assert progress["done_s"] == progress["total_s"] and progress["resumed_s"] >= SPAN_S

    fresh = run_diarize(ml_python, whole, env)
    assert fresh["spans_resumed"] == 0 and fresh["speakers"] == 2
    for name in OUTPUTS:
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    assert not parts.exists() and not (whole / "diarize.parts").exists()
