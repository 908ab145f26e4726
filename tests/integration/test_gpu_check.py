"""scripts/gpu-check.sh's checks that load torch and faster-whisper, run here in the native ML environment (CPU
torch, CTranslate2 4.8.5, no GPU): each says why it cannot use cuda, as the stages would, and the faster-whisper
check itself works where it can run (on the CPU, in int8) on the clip the script makes (espeak-ng's speech here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.quality.scoring import word_errors
from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def step(ml_env: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([str(ml_env / "bin" / "python"), str(SCRIPT), "--step", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str | None]:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_clip(tmp_path_factory.mktemp("clip"))


def test_torch_says_why_it_has_no_cuda(ml_env: Path) -> None:
    result = step(ml_env, "torch")
    assert result["status"] == "failed"
    assert result["detail"] == ("torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU build "
                                "(torch.version.cuda is None)")


def test_faster_whisper_says_why_it_has_no_cuda_and_runs_where_it_can(ml_env: Path, model_cache: Path,
                                                                      clip: tuple[Path, str, str | None]) -> None:
    model, (audio, what, words) = str(model_cache / "whisper" / "tiny.en"), clip
    result = step(ml_env, "faster-whisper", model, str(audio), "float16", "cuda")
    assert (result["status"], result["detail"]) == ("failed", "ctranslate2 4.8.5 sees no CUDA device "
                                                              "(get_cuda_device_count() is 0)")

    result = step(ml_env, "faster-whisper", model, str(audio), "float16", "cpu")      # no float16 on the CPU
    assert result["status"] == "failed" and "Requested float16 compute type" in result["detail"]
    assert result["detail"].endswith("; not a CUDA failure)")

    result = step(ml_env, "faster-whisper", model, str(audio), "int8", "cpu")
    assert result["status"] == "ok", result
    figures = result["figures"]
    assert figures["device"] == "cpu" and len(figures["transcribe_s"]) == 3 and 0 < figures["rtf"] < 1
    assert abs(figures["audio_s"] - (8.0 if words is None else 8.8)) < 1.5
    if words is not None:                                # espeak-ng's speech: the words come back
        assert what == "espeak-ng speech" and word_errors(words, figures["text"]).wer < 0.2, figures["text"]
