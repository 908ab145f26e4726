"""GPU detection through a stand-in NVML (no GPU here), and the class and recommendation each card gets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from infra.hardware.detect import classify, detect_native_env, detect_nvidia, parse_nvidia_smi
from infra.hardware.recommend import recommend
from infra.hardware.snapshot import MpsInfo
from tests.hardware_data import (
    ANCIENT_CARD, CARD_24GB, CARD_80GB, LAPTOP_GPU, LEGACY_CARD, FakeNVML, native_env, snapshot,
)


def recommend_for(nvml: FakeNVML, env: Path, cores: int = 8) -> tuple[str, object]:
    nvidia = detect_nvidia(nvml)
    gpu_class, reason = classify(nvidia, MpsInfo(), detect_native_env(env))
    hw = snapshot(cores=cores).model_copy(update={"nvidia": nvidia, "gpu_class": gpu_class,
                                                  "gpu_class_reason": reason})
    return reason, recommend(hw)


@pytest.fixture
def cuda_env(tmp_path: Path) -> Path:
    return native_env(tmp_path / "env")


def test_nvml_facts_are_read_and_nvml_is_shut_down() -> None:
    nvml = FakeNVML([LAPTOP_GPU, CARD_24GB], names_as_bytes=True)
    info = detect_nvidia(nvml)
    assert nvml.initialised == 0
    assert (info.source, info.driver_version, info.cuda_version, info.count) == ("nvml", "550.54.15", "12.4", 2)
    laptop = info.gpus[0]
    assert laptop.name == LAPTOP_GPU.name and laptop.compute_capability == "8.6"
    assert laptop.memory_total_bytes == 4 * 1024**3 and 0 < laptop.memory_free_bytes < laptop.memory_total_bytes
    assert info.best is not None and info.best.name == CARD_24GB.name


def test_laptop_gpu(cuda_env: Path) -> None:
    reason, rec = recommend_for(FakeNVML([LAPTOP_GPU]), cuda_env)
    assert rec.gpu_class == "cuda" and "CUDA 12.1" in reason
    assert (rec.whisper_model, rec.compute_type, rec.batch_size) == ("medium", "float16", 1)  # 4.29 GB VRAM


def test_24gb_card(cuda_env: Path) -> None:
    _, rec = recommend_for(FakeNVML([CARD_24GB]), cuda_env)
    assert (rec.whisper_model, rec.compute_type, rec.batch_size) == ("large-v3", "float16", 12)


def test_80gb_card_batch_is_clamped(cuda_env: Path) -> None:
    _, rec = recommend_for(FakeNVML([CARD_80GB]), cuda_env)
    assert (rec.whisper_model, rec.batch_size) == ("large-v3", 32)


def test_legacy_card(cuda_env: Path) -> None:
    nvidia = detect_nvidia(FakeNVML([LEGACY_CARD]))
    assert nvidia.gpus[0].torch_support == "legacy"
    _, rec = recommend_for(FakeNVML([LEGACY_CARD]), cuda_env)
    assert (rec.gpu_class, rec.compute_type, rec.batch_size) == ("cuda", "float32", 1)


def test_card_too_old_for_torch_is_no_gpu(cuda_env: Path) -> None:
    reason, rec = recommend_for(FakeNVML([ANCIENT_CARD]), cuda_env)
    assert rec.gpu_class == "cpu" and "3.7" in reason


def test_driver_without_torch_cuda(tmp_path: Path) -> None:
    cpu_torch = native_env(tmp_path / "cpu-env", torch="2.13.0+cpu", cuda=None)
    reason, rec = recommend_for(FakeNVML([CARD_24GB]), cpu_torch, cores=2)
    assert rec.gpu_class == "cuda-unavailable" and "CPU build" in reason
    assert rec.asr_device == "cpu" and rec.whisper_model == "base" and rec.warnings
    no_torch = native_env(tmp_path / "bare-env", torch=None)
    assert "no torch" in recommend_for(FakeNVML([CARD_24GB]), no_torch)[0]
    assert "no native env" in recommend_for(FakeNVML([CARD_24GB]), tmp_path / "absent")[0]


def test_driver_older_than_torchs_cuda(tmp_path: Path) -> None:
    env = native_env(tmp_path / "env", torch="2.5.1+cu121", cuda="12.1")
    reason, rec = recommend_for(FakeNVML([CARD_24GB], cuda=11040), env)
    assert rec.gpu_class == "cuda-unavailable" and "update the driver" in reason


def test_no_nvml_and_no_nvidia_smi_means_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    info = detect_nvidia(FakeNVML([], fail=True))
    assert info.gpus == [] and info.source == "none"


def test_nvidia_smi_is_the_fallback_when_nvml_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stand-in nvidia-smi program on PATH answers the two queries detection makes."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\nif [ -n "$1" ]; then echo "0, NVIDIA GeForce GTX 1080, 8192, 8000, 6.1, 470.42.01"; '
                   'else echo "| NVIDIA-SMI 470.42.01    Driver Version: 470.42.01    CUDA Version: 11.4     |"; fi\n')
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    info = detect_nvidia(FakeNVML([], fail=True))
    assert (info.source, info.driver_version, info.cuda_version) == ("nvidia-smi", "470.42.01", "11.4")
    assert info.gpus[0].memory_total_bytes == 8192 * 1024**2 and info.gpus[0].torch_support == "legacy"


def test_nvidia_smi_parser_skips_odd_lines() -> None:
    info = parse_nvidia_smi("[N/A]\n1, A100-SXM4-80GB, 81920, 81000, 8.0, 535.104.05\n", "no banner")
    assert [g.index for g in info.gpus] == [1] and info.cuda_version is None
