"""Fresh hardware detection: CPU, memory, disk, NVIDIA GPUs, Apple MPS, FFmpeg, Docker, the native env.

The slow probes (NVML, the docker CLI, ffmpeg -version) run at once in a thread pool.
NVML comes in through a seam: ``detect_nvidia(nvml=...)`` takes any object with
pynvml's functions, so tests can hand in a laptop GPU or an 80 GB card. Everything
else is the real thing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.hardware.snapshot import (
    MIB, PROC_NVIDIA,
    CpuInfo, DiskInfo, DockerInfo, GpuClass, GpuDevice, HardwareSnapshot, MemoryInfo, MpsInfo,
    NativeEnvInfo, NvidiaInfo, ToolInfo, TorchSupport,
)
from infra.hardware.versions import version_tuple

FULL_SUPPORT_MIN_CC = (7, 0)   # current torch and CTranslate2 float16 kernels: Volta and newer
LEGACY_MIN_CC = (5, 0)         # Maxwell and Pascal: older torch builds still run, slowly
SMI_QUERY = "index,name,memory.total,memory.free,compute_cap,driver_version"
TOOL_TIMEOUT_S = 20


def torch_support(compute_capability: str) -> TorchSupport:
    cc = version_tuple(compute_capability + ".0")[:2]
    if cc >= FULL_SUPPORT_MIN_CC:
        return "full"
    return "legacy" if cc >= LEGACY_MIN_CC else "incompatible"


def detect_nvidia(nvml: Any = None) -> NvidiaInfo:
    """NVIDIA GPUs through NVML; nvidia-smi when NVML cannot load; none when neither is there."""
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        return _read_nvml(nvml)
    except Exception as exc:  # noqa: BLE001 - NVML raises its own error family, or fails to load at all
        nvml_error = f"NVML: {exc.__class__.__name__}: {exc}".strip().rstrip(":")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        driver_seen = (PROC_NVIDIA / "version").exists()
        return NvidiaInfo(error=f"{nvml_error}; no nvidia-smi on PATH" if driver_seen else None)
    try:
        query = _run([smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"])
        header = _run([smi])
    except (OSError, subprocess.SubprocessError) as exc:
        return NvidiaInfo(error=f"{nvml_error}; nvidia-smi failed: {exc}")
    return parse_nvidia_smi(query, header)


def _read_nvml(nvml: Any) -> NvidiaInfo:
    nvml.nvmlInit()
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda_int = nvml.nvmlSystemGetCudaDriverVersion_v2()
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
            cc = f"{major}.{minor}"
            gpus.append(GpuDevice(index=index, name=_text(nvml.nvmlDeviceGetName(handle)),
                                  memory_total_bytes=int(memory.total), memory_free_bytes=int(memory.free),
                                  compute_capability=cc, torch_support=torch_support(cc)))
    finally:
        nvml.nvmlShutdown()
    cuda = f"{cuda_int // 1000}.{(cuda_int % 1000) // 10}" if cuda_int else None
    return NvidiaInfo(source="nvml", driver_version=driver, cuda_version=cuda, gpus=gpus)


def parse_nvidia_smi(query: str, header: str) -> NvidiaInfo:
    """`nvidia-smi --query-gpu=... --format=csv,noheader,nounits` lines, and the CUDA version from its banner."""
    gpus, driver = [], None
    for line in query.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6:
            continue
        index, name, total, free, cc, driver = parts
        gpus.append(GpuDevice(index=int(index), name=name, memory_total_bytes=int(float(total) * MIB),
                              memory_free_bytes=int(float(free) * MIB), compute_capability=cc,
                              torch_support=torch_support(cc)))
    match = re.search(r"CUDA Version:\s*([0-9.]+)", header)
    return NvidiaInfo(source="nvidia-smi", driver_version=driver, cuda_version=match.group(1) if match else None,
                      gpus=gpus)


def detect_mps(native_python: Path | None) -> MpsInfo:
    """Apple's Metal backend: macOS on arm64, confirmed by torch where torch can be run."""
    if platform.system() != "Darwin" or platform.machine() != "arm64":
        return MpsInfo()
    python = str(native_python) if native_python and native_python.exists() else None
    if python is None:
        import importlib.util

        try:
            python = sys.executable if importlib.util.find_spec("torch") is not None else None
        except (ImportError, ValueError):
            python = None
    if python is None:
        return MpsInfo(available=True, detail="macOS on arm64 (torch not installed: not confirmed)")
    try:
        out = _run([python, "-c", "import torch; print(torch.backends.mps.is_available())"], timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return MpsInfo(available=True, detail=f"macOS on arm64 (torch check failed: {exc})")
    available = out.strip().endswith("True")
    return MpsInfo(available=available, detail="torch.backends.mps.is_available(): " + str(available))


def tool_version(name: str) -> ToolInfo:
    """Path and version of ffmpeg or ffprobe (`NAME -version`, first line)."""
    path = shutil.which(name)
    if path is None:
        return ToolInfo()
    try:
        first = _run([path, "-hide_banner", "-version"]).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ToolInfo(path=path)
    match = re.search(r"version\s+(\S+)", first)
    return ToolInfo(path=path, version=match.group(1) if match else first.strip())


def detect_docker(engine: Any = None) -> DockerInfo:
    """Engine version, buildx, compose, and whether containers can get the GPU (infra/hardware/enginegpu.py),
    through the one adapter (three CLI calls at once); ``engine`` stands in for it in tests."""
    from infra.errors import EngineError
    from infra.hardware.enginegpu import docker_gpu_facts, nvidia_hook

    if engine is None:
        if shutil.which("docker") is None:
            return DockerInfo(error="docker CLI not found on PATH", nvidia_hook=nvidia_hook())
        from infra.engine import Engine

        engine = Engine()

    def safe(probe: Any) -> tuple[Any, str | None]:
        try:
            return probe(), None
        except EngineError as exc:
            return None, exc.message
        except ImportError as exc:          # a Python without python-on-whales (scripts/gpu-check.sh's may lack it)
            return None, f"the engine adapter cannot load ({exc})"

    with ThreadPoolExecutor(max_workers=3) as pool:
        info_f, buildx_f, compose_f = (pool.submit(safe, p) for p in
                                       (engine.raw_info, engine.buildx_version, engine.compose_version))
    info, error = info_f.result()
    buildx, _ = buildx_f.result()
    compose, _ = compose_f.result()
    return DockerInfo(engine=str(info["ServerVersion"]) if info else None,
                      buildx=".".join(map(str, version_tuple(buildx.split(" ", 1)[-1]))) if buildx else None,
                      compose=".".join(map(str, version_tuple(compose))) if compose else None,
                      error=error, **docker_gpu_facts(info or {}, nvidia_hook()))


def detect_native_env(path: Path) -> NativeEnvInfo:
    """Python and torch of the native env, from its files: torch is never imported."""
    from infra.errors import InfraError
    from infra.stack.nativeenv import inspect_env

    try:
        env = inspect_env(path)
    except InfraError as exc:
        return NativeEnvInfo(path=str(path), error=exc.message)
    return NativeEnvInfo(path=str(path), present=True, python=env.python, torch=env.torch,
                         torch_cuda=env.torch_cuda if env.torch else None)


def classify(nvidia: NvidiaInfo, mps: MpsInfo, env: NativeEnvInfo) -> tuple[GpuClass, str]:
    """cuda, cuda-unavailable, mps or cpu, with the reason in words. Never guessed from a name."""
    if nvidia.gpus:
        gpu = nvidia.best
        if gpu is None:
            g = nvidia.gpus[0]
            return "cpu", (f"{g.name} has compute capability {g.compute_capability}, below "
                           f"{'.'.join(map(str, LEGACY_MIN_CC))}: torch cannot use it")
        what = f"{gpu.name} (driver {nvidia.driver_version}, CUDA {nvidia.cuda_version})"
        if not env.present:
            return "cuda-unavailable", f"{what}, but no native env at {env.path} to run torch with CUDA"
        if env.torch is None:
            return "cuda-unavailable", f"{what}, but the native env has no torch"
        if env.torch_cuda is None:
            return "cuda-unavailable", f"{what}, but torch {env.torch} in the native env is a CPU build"
        driver_major = version_tuple((nvidia.cuda_version or "0") + ".0")[:1]
        if driver_major < version_tuple(env.torch_cuda + ".0")[:1]:
            return "cuda-unavailable", (f"{what}, but torch was built for CUDA {env.torch_cuda}, "
                                        f"newer than the driver supports: update the driver")
        return "cuda", f"{what}; torch {env.torch} built for CUDA {env.torch_cuda}"
    if mps.available:
        return "mps", mps.detail
    why = f" ({nvidia.error})" if nvidia.error else ""
    return "cpu", f"no NVIDIA GPU found{why} and no Apple MPS"


def detect_hardware(workdir: Path, native_env: Path, nvml: Any = None) -> HardwareSnapshot:
    """Everything at once; about a second, most of it the docker CLI."""
    import psutil

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=6) as pool:
        nvidia_f = pool.submit(detect_nvidia, nvml)
        docker_f = pool.submit(detect_docker)
        ffmpeg_f = pool.submit(tool_version, "ffmpeg")
        ffprobe_f = pool.submit(tool_version, "ffprobe")
        env_f = pool.submit(detect_native_env, native_env)
        mps_f = pool.submit(detect_mps, native_env / "bin" / "python")
        logical = psutil.cpu_count() or os.cpu_count() or 1
        cpu = CpuInfo(model=_cpu_model(), arch=platform.machine(), logical_cores=logical,
                      physical_cores=psutil.cpu_count(logical=False) or logical)
        vm = psutil.virtual_memory()
        probe = next(p for p in (workdir / "out", workdir, Path.cwd()) if p.exists())
        disk = DiskInfo(path=str(probe), free_bytes=shutil.disk_usage(probe).free)
        nvidia, mps, env = nvidia_f.result(), mps_f.result(), env_f.result()
        gpu_class, reason = classify(nvidia, mps, env)
        return HardwareSnapshot(
            host=platform.node(), os=f"{platform.system()} {platform.release()}", cpu=cpu,
            memory=MemoryInfo(total_bytes=vm.total, available_bytes=vm.available), disk=disk,
            nvidia=nvidia, mps=mps, ffmpeg=ffmpeg_f.result(), ffprobe=ffprobe_f.result(), docker=docker_f.result(),
            native_env=env, gpu_class=gpu_class, gpu_class_reason=reason, detected_at=time.time(),
            detect_seconds=round(time.perf_counter() - start, 3))


def _cpu_model() -> str:
    if platform.system() == "Darwin":
        try:
            return _run(["sysctl", "-n", "machdep.cpu.brand_string"]).strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            return platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str], timeout: float = TOOL_TIMEOUT_S) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
