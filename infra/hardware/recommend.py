"""The recommendation table: from a hardware snapshot to mode, Whisper model, compute type, batch,
chunk length, max speakers and a device per stage.

Every threshold is a named constant below, the model choice is the table
``MODEL_TABLE`` (first matching row wins), and ``rules_markdown()`` prints the
whole table for docs/HARDWARE.md, so the code and the docs cannot drift apart
(a test compares them). Memory is in decimal gigabytes (bytes / 1e9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from infra.errors import BadInputError
from infra.hardware.enginegpu import gpu_access
from infra.hardware.snapshot import GpuClass, HardwareSnapshot, Model
from infra.spec.modes import MODES, Mode, check_mode

Device = Literal["cuda", "mps", "cpu"]

# Whisper model footprint on a GPU and the extra memory each batch item takes, in GB.
MODEL_SIZE_GB = {"tiny": 0.5, "tiny.en": 0.5, "base": 1.0, "small": 2.0, "medium": 3.5, "large-v3": 7.0}
BATCH_ITEM_GB = {"tiny": 0.3, "tiny.en": 0.3, "base": 0.4, "small": 0.6, "medium": 0.8, "large-v3": 1.2}

GPU_LARGE_V3_MIN_GB = 6.0        # VRAM
GPU_MEDIUM_MIN_GB = 4.0          # VRAM
GPU_BATCH_HEADROOM = 0.8         # share of the VRAM left after the model that batches may use
GPU_BATCH_MAX = 32
BATCH_MIN = 1
GPU_COMPUTE_TYPE = "float16"
LEGACY_GPU_COMPUTE_TYPE = "float32"  # CTranslate2 runs float16 efficiently only from compute capability 7.0
LEGACY_GPU_BATCH = 1

CPU_COMPUTE_TYPE = "int8"
CPU_LARGE_V3_MIN_RAM_GB = 16.0
CPU_LARGE_V3_MIN_CORES = 16      # physical cores; measured: see docs/HARDWARE.md
CPU_MEDIUM_MIN_RAM_GB = 8.0
CPU_MEDIUM_MIN_CORES = 8         # physical cores; measured: see docs/HARDWARE.md
CPU_BATCH = 1
CPU_BATCH_MANY_CORES = 2
CPU_MANY_CORES = 16              # physical cores

CHUNK_SMALL_RAM_GB = 8.0         # below this much RAM, shorter chunks
CHUNK_SMALL_S = 20
CHUNK_S = 30
MAX_SPEAKERS = 10                # a property of films, not of hardware: the same everywhere

# Stages whose work runs in torch (VAD segmentation, diarization) follow the GPU class;
# the ASR stage runs in CTranslate2, which has CUDA and CPU backends but no MPS one.
ASR_STAGE = "asr"


@dataclass(frozen=True)
class ModelRule:
    device: Literal["cuda", "cpu"]
    model: str
    min_memory_gb: float             # VRAM on cuda, RAM on cpu
    min_cores: int = 0               # physical CPU cores (cpu rows only)

    def matches(self, memory_gb: float, cores: int) -> bool:
        return memory_gb >= self.min_memory_gb and cores >= self.min_cores

    @property
    def when(self) -> str:
        if self.min_memory_gb <= 0 and self.min_cores <= 0:
            return "otherwise"
        memory = "VRAM" if self.device == "cuda" else "RAM"
        parts = [f"{memory} ≥ {self.min_memory_gb:g} GB"]
        if self.min_cores:
            parts.append(f"≥ {self.min_cores} physical cores")
        return " and ".join(parts)


MODEL_TABLE: tuple[ModelRule, ...] = (
    ModelRule("cuda", "large-v3", GPU_LARGE_V3_MIN_GB),
    ModelRule("cuda", "medium", GPU_MEDIUM_MIN_GB),
    ModelRule("cuda", "base", 0.0),
    ModelRule("cpu", "large-v3", CPU_LARGE_V3_MIN_RAM_GB, CPU_LARGE_V3_MIN_CORES),
    ModelRule("cpu", "medium", CPU_MEDIUM_MIN_RAM_GB, CPU_MEDIUM_MIN_CORES),
    ModelRule("cpu", "base", 0.0),
)


class Recommendation(Model):
    mode: Mode
    gpu_class: GpuClass
    gpu_index: int | None
    asr_device: Device
    torch_device: Device
    whisper_model: str
    compute_type: str
    batch_size: int
    chunk_length_s: int
    max_speakers: int
    reasons: list[str]
    warnings: list[str] = []

    def stage_device(self, stage: str, uses_gpu: bool) -> Device:
        """The device for a spec stage: GPU stages follow the accelerator, the rest run on the CPU."""
        if not uses_gpu:
            return "cpu"
        return self.asr_device if stage == ASR_STAGE else self.torch_device


def choose_model(device: Literal["cuda", "cpu"], memory_gb: float, cores: int = 0) -> ModelRule:
    return next(r for r in MODEL_TABLE if r.device == device and r.matches(memory_gb, cores))


def gpu_batch_size(vram_gb: float, model: str) -> int:
    """floor((VRAM - model size) x headroom / per-item cost), clamped to BATCH_MIN..GPU_BATCH_MAX."""
    raw = math.floor((vram_gb - MODEL_SIZE_GB[model]) * GPU_BATCH_HEADROOM / BATCH_ITEM_GB[model])
    return max(BATCH_MIN, min(GPU_BATCH_MAX, raw))


def cpu_batch_size(physical_cores: int) -> int:
    return CPU_BATCH_MANY_CORES if physical_cores >= CPU_MANY_CORES else CPU_BATCH


def chunk_length(ram_gb: float) -> int:
    return CHUNK_SMALL_S if ram_gb < CHUNK_SMALL_RAM_GB else CHUNK_S


def choose_mode(hw: HardwareSnapshot, allowed: tuple[str, ...]) -> tuple[Mode, str]:
    """The mode by the table, or the first allowed one in the same order of preference."""
    engine = hw.docker.engine is not None
    if hw.gpu_class == "cuda" and engine and gpu_access(hw.docker):
        order, why = ("docker-gpu", "native", "docker-cpu"), "CUDA GPU, and Docker can give containers the GPU"
    elif hw.gpu_class == "cuda":
        order, why = ("native", "docker-gpu", "docker-cpu"), ("CUDA GPU, but Docker cannot give containers the GPU "
                                                               "(no NVIDIA runtime, CDI devices or toolkit hook)")
    elif hw.gpu_class == "mps":
        order, why = ("native", "docker-cpu"), "Apple MPS: containers cannot reach Metal"
    elif engine:
        order, why = ("docker-cpu", "native"), "no usable GPU; a Docker engine answers"
    else:
        order, why = ("native", "docker-cpu"), "no usable GPU and no Docker engine"
    for mode in order:
        if mode in allowed:
            return mode, why if mode == order[0] else f"{why}; {order[0]} is not defined in the spec"
    raise BadInputError(f"the spec defines no mode this machine can use (defined: {', '.join(allowed)})")


def recommend(hw: HardwareSnapshot, mode: Mode | None = None,
              allowed: tuple[str, ...] = MODES) -> Recommendation:
    """The settings for a job on ``hw``; ``mode`` overrides the table's choice of mode."""
    reasons: list[str] = [f"GPU class {hw.gpu_class}: {hw.gpu_class_reason}"]
    warnings: list[str] = []
    if mode is None:
        mode, why = choose_mode(hw, allowed)
        reasons.append(f"mode {mode}: {why}")
    else:
        mode = check_mode(mode, allowed)
        if mode == "docker-gpu" and hw.gpu_class != "cuda":
            raise BadInputError(f"--mode docker-gpu needs a CUDA GPU, but this machine is {hw.gpu_class}: "
                                f"{hw.gpu_class_reason}", hint="use --mode docker-cpu or native, or leave --mode out")
        if mode == "docker-gpu" and not gpu_access(hw.docker):
            warnings.append("Docker has no NVIDIA runtime, NVIDIA CDI devices or toolkit hook: containers will not "
                            "see the GPU (install the NVIDIA Container Toolkit)")
        reasons.append(f"mode {mode}: asked for with --mode")
    if hw.gpu_class == "cuda-unavailable":
        warnings.append(f"an NVIDIA GPU is present but cannot be used, so the ML stages run on the CPU: "
                        f"{hw.gpu_class_reason}")

    ram_gb = hw.memory.total_gb
    cores = hw.cpu.physical_cores
    gpu = hw.nvidia.best
    use_cuda = hw.gpu_class == "cuda" and mode != "docker-cpu" and gpu is not None
    use_mps = hw.gpu_class == "mps" and mode == "native"
    if use_cuda:
        assert gpu is not None
        vram = gpu.memory_total_gb
        rule = choose_model("cuda", vram)
        reasons.append(f"model {rule.model}: cuda row '{rule.when}' ({gpu.name}, {vram:.1f} GB VRAM)")
        if gpu.torch_support == "full":
            compute, batch = GPU_COMPUTE_TYPE, gpu_batch_size(vram, rule.model)
            reasons.append(f"batch {batch}: floor(({vram:.1f} - {MODEL_SIZE_GB[rule.model]:g}) x "
                           f"{GPU_BATCH_HEADROOM:g} / {BATCH_ITEM_GB[rule.model]:g}) clamped to "
                           f"{BATCH_MIN}..{GPU_BATCH_MAX}")
        else:
            compute, batch = LEGACY_GPU_COMPUTE_TYPE, LEGACY_GPU_BATCH
            reasons.append(f"compute {compute}, batch {batch}: compute capability {gpu.compute_capability} "
                           "is legacy (5.x-6.x)")
        asr_device: Device = "cuda"
        torch_device: Device = "cuda"
    else:
        rule = choose_model("cpu", ram_gb, cores)
        reasons.append(f"model {rule.model}: cpu row '{rule.when}' ({ram_gb:.1f} GB RAM, {cores} physical cores)")
        compute, batch = CPU_COMPUTE_TYPE, cpu_batch_size(cores)
        asr_device = "cpu"
        torch_device = "mps" if use_mps else "cpu"
        if use_mps:
            reasons.append("ASR on the CPU: CTranslate2 has no MPS backend; VAD and diarization on mps")
    chunk = chunk_length(ram_gb)
    reasons.append(f"chunk {chunk} s: {ram_gb:.1f} GB RAM ({CHUNK_SMALL_S} s below {CHUNK_SMALL_RAM_GB:g} GB)")
    return Recommendation(mode=mode, gpu_class=hw.gpu_class, gpu_index=gpu.index if use_cuda and gpu else None,
                          asr_device=asr_device, torch_device=torch_device, whisper_model=rule.model,
                          compute_type=compute, batch_size=batch, chunk_length_s=chunk, max_speakers=MAX_SPEAKERS,
                          reasons=reasons, warnings=warnings)


def rules_markdown() -> str:
    """The whole recommendation table as Markdown, built from the constants above (docs/HARDWARE.md holds it)."""
    from infra.hardware.detect import FULL_SUPPORT_MIN_CC, LEGACY_MIN_CC

    full, legacy = ".".join(map(str, FULL_SUPPORT_MIN_CC)), ".".join(map(str, LEGACY_MIN_CC))
    rows = [
        ("GPU class", f"NVIDIA GPU with compute capability ≥ {legacy}, native torch built for CUDA, "
                      "driver's CUDA major ≥ torch's", "cuda"),
        ("", "NVIDIA GPU, but no CUDA torch (CPU build, no torch or native env, or a driver too old)",
         "cuda-unavailable: runs on the CPU and says why"),
        ("", "macOS on arm64, torch's MPS check passes", "mps"),
        ("", f"otherwise (also a GPU below compute capability {legacy})", "cpu"),
        ("torch support", f"compute capability ≥ {full} / {legacy} up to {full} / below {legacy}",
         "full / legacy / incompatible"),
        ("mode", "cuda, and Docker can give containers the GPU (NVIDIA runtime, NVIDIA CDI devices or the "
                 "toolkit's hook)", "docker-gpu"),
        ("", "cuda without any of those; mps", "native"),
        ("", "cpu or cuda-unavailable, a Docker engine answers", "docker-cpu"),
        ("", "no Docker engine", "native"),
    ]
    for rule in MODEL_TABLE:
        rows.append((f"Whisper model ({rule.device})", rule.when, rule.model))
    rows += [
        ("compute type", "cuda, full support", GPU_COMPUTE_TYPE),
        ("", "cuda, legacy support", LEGACY_GPU_COMPUTE_TYPE),
        ("", "CPU (and the ASR stage on mps)", CPU_COMPUTE_TYPE),
        ("batch size", "cuda, full support", f"floor((VRAM − model size) × {GPU_BATCH_HEADROOM:g} / per-item cost), "
                                             f"clamped to {BATCH_MIN}..{GPU_BATCH_MAX}"),
        ("", "cuda, legacy support", str(LEGACY_GPU_BATCH)),
        ("", f"CPU with ≥ {CPU_MANY_CORES} physical cores", str(CPU_BATCH_MANY_CORES)),
        ("", "CPU otherwise", str(CPU_BATCH)),
        ("chunk length", f"RAM < {CHUNK_SMALL_RAM_GB:g} GB", f"{CHUNK_SMALL_S} s"),
        ("", "otherwise", f"{CHUNK_S} s"),
        ("max speakers", "always", str(MAX_SPEAKERS)),
        ("device per stage", "stages with gpu: false (demux, subtitles, mux)", "cpu"),
        ("", "gpu: true stages on cuda", "cuda"),
        ("", "gpu: true stages on mps", "asr: cpu; vad, diarize: mps"),
        ("", "gpu: true stages otherwise", "cpu"),
    ]
    lines = ["| setting | when | value |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| model | size on the GPU | per batch item |", "|---|---|---|"]
    lines += [f"| {m} | {MODEL_SIZE_GB[m]:g} GB | {BATCH_ITEM_GB[m]:g} GB |" for m in MODEL_SIZE_GB]
    return "\n".join(lines) + "\n"
