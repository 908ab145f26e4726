"""Stacks to render in tests: the default spec as shipped (without its lock), a variant with torch baked,
a CA bundle and a registry, the default spec with a made-up lock, and the default spec with the service 'serve'
in the stack, so that every branch of the templates has a golden file."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

from infra.spec import Stack, load_stack
from infra.spec.lock import BaseLock, ImageLock, Lock, PipPin, canonical_name
from infra.spec.lockmatch import image_inputs
from infra.render import default_layout, render_mode
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
MODES = ("native", "docker-cpu", "docker-gpu")


def default_stack() -> Stack:
    """The shipped spec as rendered without a lock (the repository's own infra.lock is left out)."""
    return dataclasses.replace(load_stack(REPO / "infra.yaml"), lock=None)


def baked_stack() -> Stack:
    stack = default_stack()
    spec = stack.spec
    spec = spec.model_copy(update={
        "registry": "registry.example.com/speech",
        "native_env": spec.native_env.model_copy(update={"torch": "baked"}),
        "secrets": spec.secrets.model_copy(update={"ca_bundle": "config/ca-bundle.pem"}),
    })
    return dataclasses.replace(stack, spec=spec)


def locked_stack() -> Stack:
    """The shipped spec with a lock made up here, so its goldens change only when the spec or the templates do:
    each apt package pinned with one dependency, each pip package pinned with one dependency and a hash, except
    in the diarization image, whose pins carry none (no --require-hashes)."""
    stack = default_stack()
    bases: dict[str, BaseLock] = {}
    for mode in stack.spec.modes:
        base = stack.spec.modes[mode].base
        images = dict(bases[base].images) if base in bases else {}
        for name in stack.images_for_mode(mode):
            image = stack.images[name]
            apt = {p.split("=")[0]: "1.0-1" for p in image.apt}
            apt |= {f"lib{p.split('=')[0]}0": "1.0-1+b1" for p in image.apt}
            pip = {}
            for requirement in image.pip:
                dist = canonical_name(re.split(r"[<>=!~\[]", requirement)[0])
                for pinned in (dist, f"{dist}-support"):
                    digest = None if name == "diarization" else hashlib.sha256(pinned.encode()).hexdigest()
                    pip[pinned] = PipPin(version="1.0.0", sha256=digest)
            images[name] = ImageLock(inputs=image_inputs(stack, mode, name), apt=apt, pip=pip)
        bases[base] = BaseLock(ref=stack.base_ref(mode), images=images)
    return dataclasses.replace(stack, lock=Lock(bases=bases))


def serve_stack() -> Stack:
    """The shipped spec with `infra serve` in the stack, on another port and only on one address."""
    stack = default_stack()
    serve = stack.spec.serve.model_copy(update={"enabled": True, "port": 9123, "address": "192.0.2.10"})
    return dataclasses.replace(stack, spec=stack.spec.model_copy(update={"serve": serve}))


def fleet_stack() -> Stack:
    """The shipped spec for a fleet: a registry, the native env delivered as an image (tests/fleet_env holds a
    fixed lock, so the image's tag is fixed) and a memory reservation on asr."""
    stack = default_stack()
    env = stack.spec.native_env.model_copy(update={"delivery": "image", "path": str(REPO / "tests" / "fleet_env")})
    stages = dict(stack.spec.stages)
    stages["asr"] = stages["asr"].model_copy(update={"memory": "3G"})
    spec = stack.spec.model_copy(update={"native_env": env, "registry": "registry.example.com/speech",
                                         "stages": stages})
    return dataclasses.replace(stack, spec=spec)


CASES = {"default": default_stack, "baked": baked_stack, "locked": locked_stack, "serve": serve_stack,
         "fleet": fleet_stack}


# The NVIDIA library folders of a CUDA 12 environment (torch 2.9.1 with the `ml` extra, made by
# `infra env create --target cuda`), so that the goldens do not depend on the environment this machine has.
CUDA_ENV_LIBS = tuple(f"nvidia/{name}/lib" for name in (
    "cublas", "cuda_cupti", "cuda_nvrtc", "cuda_runtime", "cudnn", "cufft", "cufile", "curand", "cusolver",
    "cusparse", "cusparselt", "nccl", "nvjitlink", "nvshmem", "nvtx"))


def render(stack: Stack, mode: str, out: Path | None = None) -> dict[str, str]:
    layout = default_layout(stack, mode, out)  # type: ignore[arg-type]
    if stack.spec.native_env.torch == "mounted":
        layout = dataclasses.replace(layout, native_libs=CUDA_ENV_LIBS)
    return render_mode(stack, mode, layout)  # type: ignore[arg-type]
