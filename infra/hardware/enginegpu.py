"""Can the Docker engine give containers an NVIDIA GPU? Three facts, read from `docker info` and this host's PATH:

- the NVIDIA runtime: ``nvidia`` among docker info's ``Runtimes`` (what
  `nvidia-ctk runtime configure --runtime=docker` adds to daemon.json);
- CDI devices: the devices the engine found in its CDI spec folders
  (``DiscoveredDevices``, Engine 28.2 and newer; ``CDISpecDirs`` is empty when CDI is
  off), of which the NVIDIA ones are named ``nvidia.com/gpu=...`` (what
  `nvidia-ctk cdi generate` writes);
- the NVIDIA Container Toolkit's hook, ``nvidia-container-runtime-hook``, on PATH:
  with it an engine on this host serves ``--gpus`` and compose's ``driver: nvidia``
  device requests without the runtime being configured.

`infra hw detect` shows all three; `infra up --mode docker-gpu` and the recommendation's
docker-gpu row need one of them (``require_gpu_engine``), and the refusal names what is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from infra.errors import BadInputError

if TYPE_CHECKING:
    from infra.engine.protocol import EngineAPI
    from infra.hardware.snapshot import DockerInfo

NVIDIA_RUNTIME = "nvidia"
NVIDIA_CDI_PREFIX = "nvidia.com/gpu="
HOOK = "nvidia-container-runtime-hook"
TOOLKIT_HINT = ("install the NVIDIA Container Toolkit and give the engine the GPU: `sudo nvidia-ctk runtime configure "
                "--runtime=docker`, or CDI (`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`); then "
                "restart dockerd, and `infra hw detect --refresh` shows what it found")


def nvidia_hook() -> str | None:
    """Where the NVIDIA Container Toolkit's hook is on PATH, or None."""
    return shutil.which(HOOK)


def docker_gpu_facts(info: Mapping[str, Any], hook: str | None) -> dict[str, Any]:
    """The GPU fields of DockerInfo from `docker info`'s JSON (``raw_info``) and the hook's path."""
    runtimes = sorted(str(name) for name in (info.get("Runtimes") or {}))
    devices = [str(d["ID"]) for d in info.get("DiscoveredDevices") or []
               if isinstance(d, Mapping) and d.get("ID") and str(d.get("Source") or "cdi") == "cdi"]
    return {"runtimes": runtimes, "nvidia_runtime": NVIDIA_RUNTIME in runtimes,
            "cdi_spec_dirs": [str(d) for d in info.get("CDISpecDirs") or []], "cdi_devices": devices,
            "nvidia_hook": hook}


def nvidia_cdi_devices(docker: DockerInfo) -> list[str]:
    return [d for d in docker.cdi_devices if d.startswith(NVIDIA_CDI_PREFIX)]


def gpu_access(docker: DockerInfo) -> bool:
    """Whether containers of this engine can be given an NVIDIA GPU (one of the three facts above)."""
    return docker.nvidia_runtime or bool(nvidia_cdi_devices(docker)) or docker.nvidia_hook is not None


def gpu_access_text(docker: DockerInfo) -> str:
    """The three facts in words, e.g. 'no: no nvidia runtime (runtimes: runc), no NVIDIA CDI devices (...), ...'."""
    runtime = ("nvidia runtime" if docker.nvidia_runtime
               else f"no nvidia runtime (runtimes: {', '.join(docker.runtimes) or 'none'})")
    found = nvidia_cdi_devices(docker)
    if found:
        cdi = f"NVIDIA CDI devices {', '.join(found)}"
    elif docker.cdi_spec_dirs:
        cdi = f"no NVIDIA CDI devices (CDI spec folders: {', '.join(docker.cdi_spec_dirs)})"
    else:
        cdi = "no NVIDIA CDI devices (CDI is off)"
    hook = f"{HOOK} at {docker.nvidia_hook}" if docker.nvidia_hook else f"no {HOOK} on PATH"
    return f"{'yes' if gpu_access(docker) else 'no'}: {runtime}, {cdi}, {hook}"


def require_gpu_engine(engine: EngineAPI) -> None:
    """BadInputError, before anything starts, unless the engine can give containers an NVIDIA GPU."""
    from infra.hardware.snapshot import DockerInfo

    info = engine.raw_info()
    docker = DockerInfo(engine=str(info.get("ServerVersion") or "") or None, **docker_gpu_facts(info, nvidia_hook()))
    if not gpu_access(docker):
        raise BadInputError(f"docker-gpu needs an engine that can give containers an NVIDIA GPU; "
                            f"Docker Engine {docker.engine} cannot ({gpu_access_text(docker).removeprefix('no: ')})",
                            hint=TOOLKIT_HINT)
