"""Hardware snapshots and NVML stand-ins for tests: data only, no detection.

``FakeNVML`` has the few pynvml functions detection calls; it stands in for a GPU
this machine does not have. ``snapshot()`` builds a HardwareSnapshot from a handful
of figures, for the recommendation table's boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.hardware.snapshot import (
    CpuInfo, DiskInfo, DockerInfo, GpuDevice, HardwareSnapshot, MemoryInfo, MpsInfo, NativeEnvInfo, NvidiaInfo,
    ToolInfo,
)

GIB = 1024 ** 3


@dataclass
class FakeCard:
    name: str
    memory_gib: float
    cc: tuple[int, int]
    free_share: float = 0.95


LAPTOP_GPU = FakeCard("NVIDIA GeForce RTX 3050 Laptop GPU", 4, (8, 6))
CARD_24GB = FakeCard("NVIDIA GeForce RTX 4090", 24, (8, 9))
CARD_80GB = FakeCard("NVIDIA H100 80GB HBM3", 81559 / 1024, (9, 0))
LEGACY_CARD = FakeCard("NVIDIA GeForce GTX 1080", 8, (6, 1))
ANCIENT_CARD = FakeCard("Tesla K80", 12, (3, 7))


class FakeNVMLError(Exception):
    pass


class FakeNVML:
    """The pynvml functions detection uses, answering for the given cards."""

    NVMLError = FakeNVMLError

    def __init__(self, cards: list[FakeCard], driver: str = "550.54.15", cuda: int = 12040,
                 names_as_bytes: bool = False, fail: bool = False) -> None:
        self.cards, self.driver, self.cuda, self.bytes, self.fail = cards, driver, cuda, names_as_bytes, fail
        self.initialised = 0

    def nvmlInit(self) -> None:
        if self.fail:
            raise FakeNVMLError("NVML Shared Library Not Found")
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        return self.driver.encode() if self.bytes else self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeCard:
        return self.cards[index]

    def nvmlDeviceGetName(self, card: FakeCard) -> Any:
        return card.name.encode() if self.bytes else card.name

    def nvmlDeviceGetMemoryInfo(self, card: FakeCard) -> Any:
        total = int(card.memory_gib * GIB)
        return type("Memory", (), {"total": total, "free": int(total * card.free_share), "used": 0})()

    def nvmlDeviceGetCudaComputeCapability(self, card: FakeCard) -> tuple[int, int]:
        return card.cc


def native_env(root: Path, torch: str | None = "2.5.1+cu121", cuda: str | None = "12.1") -> Path:
    """A virtualenv's files as detection reads them: pyvenv.cfg, a torch dist-info and torch/version.py."""
    site = root / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7.final.0\n")
    if torch is not None:
        (site / f"torch-{torch}.dist-info").mkdir()
        (site / "torch").mkdir()
        value = f"'{cuda}'" if cuda else "None"
        (site / "torch" / "version.py").write_text(
            f"from typing import Optional\n__version__ = '{torch}'\ncuda: Optional[str] = {value}\n")
    return root


def gpu(memory_gb: float, cc: str = "8.6", index: int = 0, name: str = "test GPU") -> GpuDevice:
    from infra.hardware.detect import torch_support

    total = round(memory_gb * 1e9)
    return GpuDevice(index=index, name=name, memory_total_bytes=total, memory_free_bytes=total,
                     compute_capability=cc, torch_support=torch_support(cc))


def snapshot(ram_gb: float = 32.0, cores: int = 8, gpus: list[GpuDevice] | None = None, gpu_class: str | None = None,
             engine: bool = True, nvidia_runtime: bool = False, mps: bool = False) -> HardwareSnapshot:
    gpus = gpus or []
    if gpu_class is None:
        gpu_class = "cuda" if gpus else ("mps" if mps else "cpu")
    return HardwareSnapshot(
        host="test", os="Linux test", cpu=CpuInfo(model="test CPU", arch="x86_64", physical_cores=cores,
                                                   logical_cores=cores * 2),
        memory=MemoryInfo(total_bytes=round(ram_gb * 1e9), available_bytes=round(ram_gb * 1e9)),
        disk=DiskInfo(path="/", free_bytes=100 * 10**9),
        nvidia=NvidiaInfo(source="nvml" if gpus else "none", driver_version="550.54.15" if gpus else None,
                          cuda_version="12.4" if gpus else None, gpus=gpus),
        mps=MpsInfo(available=mps, detail="test"), ffmpeg=ToolInfo(path="/usr/bin/ffmpeg", version="5.1"),
        ffprobe=ToolInfo(path="/usr/bin/ffprobe", version="5.1"),
        docker=DockerInfo(engine="28.0" if engine else None, runtimes=["nvidia", "runc"] if nvidia_runtime else ["runc"],
                          nvidia_runtime=nvidia_runtime, error=None if engine else "no engine"),
        native_env=NativeEnvInfo(path="/env", present=True, python="3.11.7", torch="2.5.1", torch_cuda="12.1"),
        gpu_class=gpu_class, gpu_class_reason="test", detected_at=0.0, detect_seconds=0.0)  # type: ignore[arg-type]
