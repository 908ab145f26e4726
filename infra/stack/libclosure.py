"""The GPU library check: before a docker-gpu stage starts, every library its GPU packages load must resolve.

For each image that runs a GPU stage, one throw-away container of it runs
infra/stack/elfscan.py with the native environment mounted where compose and
the container runner mount it and LD_LIBRARY_PATH as the rendered files set it
for GPU services (both from infra/render/paths.py): the libraries that torch,
ctranslate2 (and torchaudio, onnxruntime-gpu when there) link or open at run
time, and what those load in turn, each found where the dynamic loader would
find it. No GPU is needed: nothing is loaded. Only the driver's libraries
(libcuda.so.1, libnvidia-*), which the NVIDIA container runtime injects, may
come from the host. Results are cached by image id, environment and library
path (.infra/cache/gpu-libraries/).

`infra up`, `infra deploy` and the container runner make this check through
readiness.check_native_env; `infra doctor` shows it as a line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from infra.engine.protocol import EngineAPI
from infra.errors import BadInputError, InfraError, OperationError
from infra.render import paths
from infra.spec import Stack
from infra.stack import elfscan
from infra.stack.cudaenv import CUDA_TORCH, disagreement, env_facts, fix_for
from infra.stack.nativeenv import NativeEnv, inspect_env

PACKAGES = ["torch", "torchaudio", "ctranslate2", "onnxruntime"]
# Which NVIDIA wheel ships a library (by its name's stem); the wheel's suffix is the CUDA major.
WHEELS = {"libcublas": "cublas", "libcublasLt": "cublas", "libnvblas": "cublas", "libcudart": "cuda-runtime",
          "libnvrtc": "cuda-nvrtc", "libnvrtc-builtins": "cuda-nvrtc", "libcufft": "cufft", "libcufftw": "cufft",
          "libcurand": "curand", "libcusolver": "cusolver", "libcusolverMg": "cusolver", "libcusparse": "cusparse",
          "libcusparseLt": "cusparselt", "libnccl": "nccl", "libnvJitLink": "nvjitlink", "libnvToolsExt": "nvtx",
          "libcupti": "cuda-cupti", "libcufile": "cufile", "libnvshmem_host": "nvshmem"}
KEEP_SUFFIX = {"cudnn", "cusparselt", "nccl", "nvshmem"}    # CUDA 13 dropped the -cu13 suffix of the others


def gpu_stage_images(stack: Stack, mode: str, images: list[str] | None = None) -> dict[str, list[str]]:
    """Image -> the GPU stages it runs in ``mode`` (only images in ``images``, when given)."""
    from infra.render.compose import compose_stages

    if not stack.spec.modes[mode].gpu:  # type: ignore[index]
        return {}
    found: dict[str, list[str]] = {}
    for name in compose_stages(stack, mode):  # type: ignore[arg-type]
        stage = stack.spec.stages[name]
        if stage.gpu and (images is None or stage.image in images):
            found.setdefault(stage.image, []).append(name)
    return found


def container_library_path(env: NativeEnv) -> str:
    """LD_LIBRARY_PATH of a GPU stage's container: the env's NVIDIA folders where the env is mounted."""
    return paths.library_path(paths.NATIVE_SITE, paths.nvidia_library_dirs(env.site_packages))


def probe(engine: EngineAPI, stack: Stack, ref: str, env: NativeEnv, cache_dir: Path | None) -> dict[str, Any]:
    """Run elfscan in a container of ``ref`` with the env mounted; its JSON answer (cached)."""
    source = Path(elfscan.__file__).read_text(encoding="utf-8")
    library_path = container_library_path(env)
    image_id = engine.inspect_image(ref).id
    key = hashlib.sha256(json.dumps([image_id, library_path, sorted(env.distributions.items()), PACKAGES,
                                     hashlib.sha256(source.encode()).hexdigest()]).encode()).hexdigest()
    cached = cache_dir / f"{key}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        return json.loads(cached.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "probe.log"
        code = engine.run_to_log(
            ref, ["python3", "-c", source, json.dumps(PACKAGES)], log,
            name=f"{stack.spec.project}-gpu-libraries-{os.getpid()}-{key[:8]}",
            mounts=[(str(env.site_packages.resolve()), paths.NATIVE_SITE, True)],
            env={"LD_LIBRARY_PATH": library_path} if library_path else {}, workdir="/",
            labels={"io.infra.project": stack.spec.project})
        text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if code == 0 and lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise OperationError(f"the GPU library check could not run in {ref} (exit {code})",
                             hint="\n".join(lines[-10:]) or None)
    if cached is not None:
        from infra.jobproto import write_text_atomic

        write_text_atomic(cached, json.dumps(result, sort_keys=True))
    return result


def provider(library: str, cuda_major: int | None) -> str:
    """The pip distribution that ships ``library`` (nvidia-cublas-cu12 for libcublas.so.12)."""
    stem = elfscan.stem(library)
    wheel = "cudnn" if stem.startswith("libcudnn") else WHEELS.get(stem)
    if wheel is None:
        return "no NVIDIA wheel: a system library the image lacks"
    majors = elfscan.cuda_majors([library])[0]
    major = majors[0] if majors else cuda_major
    if major is None:
        return f"nvidia-{wheel}-cu<CUDA major>"
    return f"nvidia-{wheel}-cu{major}" if major <= 12 or wheel in KEEP_SUFFIX else f"nvidia-{wheel} {major}.*"


def owner(path: str) -> str:
    """The package a library file belongs to: ctranslate2 for .../site-packages/ctranslate2.libs/libctranslate2.so."""
    match = re.search(r"(?:site-packages|native-site)/([^/]+)(?:/([^/]+))?", os.path.normpath(path))
    if not match:
        return os.path.basename(path)
    top = match.group(1).removesuffix(".libs")
    return f"nvidia/{match.group(2)}" if top == "nvidia" and match.group(2) else top


def refusal(stages: list[str], ref: str, env: NativeEnv, result: dict[str, Any], cuda_major: int | None,
            mix: str | None = None) -> BadInputError:
    """One line: the library, who loads it, the wheel that provides it, the fix."""
    first = result["missing"][0]
    lib, wheel = first["library"], provider(first["library"], cuda_major)
    how = "links" if first["how"] == "needed" else "opens at run time"
    more = len(result["missing"]) - 1
    others = f" (and {more} more: {', '.join(m['library'] for m in result['missing'][1:4])})" if more else ""
    major = cuda_major if cuda_major in CUDA_TORCH else max(CUDA_TORCH)
    fix = (f"`infra env create --target cuda` (torch {CUDA_TORCH[major]} with the CUDA {major} libraries)"
           if mix or env.torch_cuda is None else f"pip install {wheel.split()[0]} into {env.path}")
    why = f" (the environment mixes CUDA majors: {mix})" if mix else ""
    return BadInputError(
        f"{', '.join(stages)} ({ref}) cannot load {lib}{others}, which {owner(first['needed_by'])} {how}: neither the "
        f"image nor the native environment {env.path} has it on the library path{why}; it comes from {wheel}; "
        f"fix: {fix}",
        hint="`infra env create --target cuda --path DIR` makes a CUDA environment whose parts agree; "
             "point native_env.path at it (docs/HARDWARE.md, the CUDA environment)")


def check_gpu_libraries(stack: Stack, mode: str, images: list[str] | None = None, engine: EngineAPI | None = None,
                        env: NativeEnv | None = None) -> dict[str, dict[str, Any]]:
    """Refuse (BadInputError) unless every GPU stage image of ``mode`` resolves its GPU libraries with the env
    mounted; the probe's answers by image. Nothing to check outside GPU modes or under the baked policy."""
    targets = gpu_stage_images(stack, mode, images)
    if not targets or stack.spec.native_env.torch != "mounted":
        return {}
    from infra.engine import Engine

    engine = engine or Engine()
    env = env or inspect_env(stack.workdir / stack.spec.native_env.path)
    facts = env_facts(env)
    problem = disagreement(facts)
    others = sorted({m for name, need in facts.needs.items() if name != "torch" for m in need["cuda"]})
    cache = stack.workdir / ".infra" / "cache" / "gpu-libraries"
    answers = {}
    for image, stages in sorted(targets.items()):
        ref = stack.image_ref(image, mode)  # type: ignore[arg-type]
        result = probe(engine, stack, ref, env, cache)
        if result["missing"]:
            raise refusal(stages, ref, env, result, others[0] if len(others) == 1 else None, problem)
        answers[image] = {**result, "stages": stages, "ref": ref}
    if problem:        # every library is there, but two CUDA stacks in one environment is one too many
        raise BadInputError(f"the native environment {env.path} mixes CUDA majors: {problem}", hint=fix_for(facts))
    return answers


def doctor_lines(stack: Stack, engine: EngineAPI) -> list[tuple[str, str, str]]:
    """(status, detail, hint) for each GPU mode of the spec, for `infra doctor`: warn where it cannot be checked
    yet, fail where a CUDA environment misses a library (a CPU environment only warns: it is not meant for GPUs)."""
    lines = []
    for mode, settings in stack.spec.modes.items():
        targets = gpu_stage_images(stack, mode)
        if not settings.gpu or not targets or stack.spec.native_env.torch != "mounted":
            continue
        try:
            env = inspect_env(stack.workdir / stack.spec.native_env.path)
        except InfraError:
            continue                                   # the native env line says so
        refs = [stack.image_ref(i, mode) for i in targets]  # type: ignore[arg-type]
        try:
            absent = [r for r, info in engine.inspect_images(refs).items() if info is None]
            if absent:
                lines.append(("warn", f"{mode}: not built yet ({', '.join(sorted(absent))}); checked once they are",
                              f"`infra build --mode {mode}`"))
                continue
            answers = check_gpu_libraries(stack, mode, engine=engine, env=env)
        except BadInputError as exc:
            cuda = env.torch_cuda is not None or bool(env_facts(env).provided_cuda)
            lines.append(("fail" if cuda else "warn", f"{mode}: {exc.message}", exc.hint or ""))
            continue
        except InfraError as exc:
            lines.append(("warn", f"{mode}: {exc.message}", exc.hint or "see `infra doctor` once the engine answers"))
            continue
        host = sorted({h for a in answers.values() for h in a["host"] if re.search(r"[.]so[.][0-9]", h)})
        objects = sum(a["objects"] for a in answers.values())
        stages = sorted(s for a in answers.values() for s in a["stages"])
        lines.append(("ok", f"{mode}: {', '.join(stages)} resolve every library they load ({objects} files) with "
                            f"{env.path} mounted; from the host: {', '.join(host) or 'none'}",
                      ""))
    return lines
