"""What `infra hw detect` finds, as strict models: the hardware cache stores exactly this."""

from __future__ import annotations

from typing import Literal

from pathlib import Path

from pydantic import BaseModel, ConfigDict

PROC_NVIDIA = Path("/proc/driver/nvidia")   # the NVIDIA driver's files, when it is loaded
MIB = 1024 * 1024

GB = 1e9  # memory figures in recommendations are decimal gigabytes (bytes / 1e9)

GpuClass = Literal["cuda", "cuda-unavailable", "mps", "cpu"]
TorchSupport = Literal["full", "legacy", "incompatible"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CpuInfo(Model):
    model: str
    arch: str
    physical_cores: int
    logical_cores: int


class MemoryInfo(Model):
    total_bytes: int
    available_bytes: int

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB


class DiskInfo(Model):
    path: str
    free_bytes: int


class GpuDevice(Model):
    index: int
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    compute_capability: str          # "8.6"
    torch_support: TorchSupport

    @property
    def memory_total_gb(self) -> float:
        return self.memory_total_bytes / GB


class NvidiaInfo(Model):
    source: Literal["nvml", "nvidia-smi", "none"] = "none"
    driver_version: str | None = None
    cuda_version: str | None = None  # the newest CUDA the driver supports, e.g. "12.4"
    gpus: list[GpuDevice] = []
    error: str | None = None         # why neither NVML nor nvidia-smi answered, when a driver seems present

    @property
    def count(self) -> int:
        return len(self.gpus)

    @property
    def best(self) -> GpuDevice | None:
        """The device the ML stages use: the one with the most memory that torch can run on."""
        usable = [g for g in self.gpus if g.torch_support != "incompatible"]
        return max(usable, key=lambda g: g.memory_total_bytes, default=None)


class MpsInfo(Model):
    available: bool = False
    detail: str = "not macOS on arm64"


class ToolInfo(Model):
    path: str | None = None
    version: str | None = None       # "5.1.9-0+deb12u1"


class DockerInfo(Model):
    engine: str | None = None
    buildx: str | None = None
    compose: str | None = None
    runtimes: list[str] = []
    nvidia_runtime: bool = False     # "nvidia" among docker info's Runtimes
    cdi_spec_dirs: list[str] = []    # docker info's CDISpecDirs: empty when CDI is off
    cdi_devices: list[str] = []      # docker info's DiscoveredDevices from CDI, e.g. nvidia.com/gpu=0
    nvidia_hook: str | None = None   # nvidia-container-runtime-hook on this host's PATH
    error: str | None = None         # infra/hardware/enginegpu.py judges whether containers can get the GPU


class NativeEnvInfo(Model):
    path: str
    present: bool = False
    python: str | None = None
    torch: str | None = None
    torch_cuda: str | None = None    # the CUDA version torch was built for; None for a CPU build
    error: str | None = None


class Fingerprint(Model):
    """Cheap facts (no psutil, no NVML) whose change makes the cache invalid at once."""

    host: str
    cpu_count: int
    ram_mib: int
    gpu_count: int
    driver: str | None


class HardwareSnapshot(Model):
    host: str
    os: str
    cpu: CpuInfo
    memory: MemoryInfo
    disk: DiskInfo
    nvidia: NvidiaInfo
    mps: MpsInfo
    ffmpeg: ToolInfo
    ffprobe: ToolInfo
    docker: DockerInfo
    native_env: NativeEnvInfo
    gpu_class: GpuClass
    gpu_class_reason: str
    detected_at: float               # seconds since the epoch
    detect_seconds: float
