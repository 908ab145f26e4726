"""The recommendation table: every threshold at its boundary, and the table in the docs equals the code's."""

from __future__ import annotations

import pytest

from infra.errors import BadInputError
from infra.hardware import recommend as r
from infra.hardware.detect import torch_support
from tests.conftest import REPO
from tests.hardware_data import gpu, snapshot

EPS = 1e-6


@pytest.mark.parametrize("vram, model", [
    (r.GPU_LARGE_V3_MIN_GB, "large-v3"), (r.GPU_LARGE_V3_MIN_GB - EPS, "medium"),
    (r.GPU_MEDIUM_MIN_GB, "medium"), (r.GPU_MEDIUM_MIN_GB - EPS, "base"), (0.5, "base"),
])
def test_gpu_model_thresholds(vram: float, model: str) -> None:
    assert r.choose_model("cuda", vram).model == model


@pytest.mark.parametrize("ram, cores, model", [
    (r.CPU_LARGE_V3_MIN_RAM_GB, r.CPU_LARGE_V3_MIN_CORES, "large-v3"),
    (r.CPU_LARGE_V3_MIN_RAM_GB - EPS, r.CPU_LARGE_V3_MIN_CORES, "medium"),
    (r.CPU_LARGE_V3_MIN_RAM_GB, r.CPU_LARGE_V3_MIN_CORES - 1, "medium"),
    (r.CPU_MEDIUM_MIN_RAM_GB, r.CPU_MEDIUM_MIN_CORES, "medium"),
    (r.CPU_MEDIUM_MIN_RAM_GB - EPS, r.CPU_MEDIUM_MIN_CORES, "base"),
    (r.CPU_MEDIUM_MIN_RAM_GB, r.CPU_MEDIUM_MIN_CORES - 1, "base"),
    (64.0, 2, "base"),   # this test machine's shape: plenty of RAM, two cores
])
def test_cpu_model_needs_memory_and_cores(ram: float, cores: int, model: str) -> None:
    assert r.choose_model("cpu", ram, cores).model == model


@pytest.mark.parametrize("vram, model, batch", [
    (24 * 1.073741824, "large-v3", 12),     # floor((25.77 - 7) * 0.8 / 1.2) = 12
    (6.0, "large-v3", r.BATCH_MIN),          # below the model's own size: clamped up
    (17.0, "base", 32),                      # (17 - 1) * 0.8 / 0.4 = 32 exactly
    (17.5, "base", r.GPU_BATCH_MAX),         # 33 clamped down
    (1.5, "base", 1),                        # 1 exactly
    (1.49, "base", r.BATCH_MIN),             # 0.98 floors to 0, clamped up
])
def test_gpu_batch_formula_and_clamps(vram: float, model: str, batch: int) -> None:
    assert r.gpu_batch_size(vram, model) == batch


def test_cpu_batch_and_chunk_boundaries() -> None:
    assert r.cpu_batch_size(r.CPU_MANY_CORES) == r.CPU_BATCH_MANY_CORES == 2
    assert r.cpu_batch_size(r.CPU_MANY_CORES - 1) == r.CPU_BATCH == 1
    assert r.chunk_length(r.CHUNK_SMALL_RAM_GB) == r.CHUNK_S == 30
    assert r.chunk_length(r.CHUNK_SMALL_RAM_GB - EPS) == r.CHUNK_SMALL_S == 20


@pytest.mark.parametrize("cc, support", [("9.0", "full"), ("7.0", "full"), ("6.1", "legacy"), ("5.0", "legacy"),
                                         ("3.7", "incompatible")])
def test_torch_support_by_compute_capability(cc: str, support: str) -> None:
    assert torch_support(cc) == support


def test_full_gpu_gets_float16_and_the_batch_formula() -> None:
    rec = r.recommend(snapshot(gpus=[gpu(25.77, "8.9")], nvidia_runtime=True))
    assert (rec.mode, rec.whisper_model, rec.compute_type, rec.batch_size) == ("docker-gpu", "large-v3", "float16", 12)
    assert rec.stage_device("asr", True) == rec.stage_device("diarize", True) == "cuda"
    assert rec.stage_device("mux", False) == "cpu"
    assert rec.gpu_index == 0


def test_legacy_gpu_gets_float32_and_batch_one() -> None:
    rec = r.recommend(snapshot(gpus=[gpu(8.6, "6.1")]))
    assert (rec.whisper_model, rec.compute_type, rec.batch_size) == ("large-v3", "float32", r.LEGACY_GPU_BATCH)
    assert rec.mode == "native"  # a CUDA GPU, but Docker has no NVIDIA runtime


def test_mps_runs_asr_on_the_cpu_and_torch_stages_on_mps() -> None:
    rec = r.recommend(snapshot(ram_gb=16, cores=8, mps=True))
    assert rec.mode == "native"
    assert rec.stage_device("asr", True) == "cpu" and rec.compute_type == "int8"
    assert rec.stage_device("vad", True) == rec.stage_device("diarize", True) == "mps"
    assert rec.whisper_model == "medium"


def test_cuda_unavailable_runs_on_the_cpu_and_says_so() -> None:
    rec = r.recommend(snapshot(gpus=[gpu(25.77)], gpu_class="cuda-unavailable", cores=4))
    assert rec.asr_device == rec.torch_device == "cpu" and rec.compute_type == "int8"
    assert rec.mode == "docker-cpu"
    assert any("cannot be used" in w for w in rec.warnings)


@pytest.mark.parametrize("engine, mode", [(True, "docker-cpu"), (False, "native")])
def test_cpu_mode_depends_on_the_engine(engine: bool, mode: str) -> None:
    assert r.recommend(snapshot(engine=engine)).mode == mode


def test_mode_falls_back_to_what_the_spec_defines() -> None:
    rec = r.recommend(snapshot(gpus=[gpu(25.77)], nvidia_runtime=True), allowed=("native", "docker-cpu"))
    assert rec.mode == "native"
    with pytest.raises(BadInputError, match="defines no mode"):
        r.recommend(snapshot(mps=True), allowed=("docker-gpu",))


def test_asked_mode_is_checked() -> None:
    with pytest.raises(BadInputError, match="docker-gpu needs a CUDA GPU"):
        r.recommend(snapshot(), mode="docker-gpu")
    with pytest.raises(BadInputError, match="modes.docker-gpu: not defined"):
        r.recommend(snapshot(), mode="docker-gpu", allowed=("native",))
    rec = r.recommend(snapshot(gpus=[gpu(25.77)]), mode="docker-cpu")
    assert rec.asr_device == "cpu" and rec.whisper_model == "medium" and rec.compute_type == "int8"
    forced = r.recommend(snapshot(gpus=[gpu(25.77)]), mode="docker-gpu")
    assert any("NVIDIA runtime" in w for w in forced.warnings)


def test_docs_hold_the_table_the_code_uses() -> None:
    docs = (REPO / "docs" / "HARDWARE.md").read_text()
    assert r.rules_markdown() in docs, "regenerate the table in docs/HARDWARE.md from rules_markdown()"
