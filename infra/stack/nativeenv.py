"""The native environment: the host virtualenv whose torch the stage containers mount.

Inspection reads files only (pyvenv.cfg, the dist-info folders and their WHEEL
tags, torch/version.py), so it costs milliseconds and never imports torch. The
compatibility check compares those facts with what a probe found in an image:
the Python minor version, OS and architecture, glibc, and distributions
installed on both sides at different versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from collections.abc import Iterator
from pathlib import Path

from infra.engine.protocol import EngineAPI
from infra.errors import BadInputError, OperationError

CREATE_HINT = "create it with `infra env create`"
# Packaging tools live in every venv at whatever version; they are never imported by a stage.
TOOLING = frozenset({"pip", "setuptools", "wheel"})
ARCH_RE = re.compile(r"(x86_64|aarch64|arm64|amd64|i686|ppc64le|s390x|armv7l|universal2|win32)$")
MANYLINUX_ALIASES = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, so 'Faster_Whisper' and 'faster-whisper' compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class NativeEnv:
    path: Path
    python: str
    site_packages: Path

    @cached_property
    def distributions(self) -> dict[str, str]:
        """Installed distributions: canonical name -> version, from the dist-info folder names."""
        found: dict[str, str] = {}
        for meta in self.site_packages.glob("*.dist-info"):
            name, _, version = meta.name[: -len(".dist-info")].partition("-")
            if version:
                found[canonical_name(name)] = version
        return found

    @property
    def torch(self) -> str | None:
        return self.distributions.get("torch")

    @property
    def torch_cuda(self) -> str | None:
        """The CUDA version torch was built for (None: a CPU build), read from torch/version.py."""
        try:
            text = (self.site_packages / "torch" / "version.py").read_text()
        except OSError:
            return None
        match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        return match.group(1) if match else None

    @cached_property
    def wheel_tags(self) -> dict[str, list[str]]:
        """Platform tags of each installed binary wheel: distribution -> tags (from dist-info/WHEEL)."""
        found: dict[str, list[str]] = {}
        for wheel in self.site_packages.glob("*.dist-info/WHEEL"):
            tags = [line.split(":", 1)[1].strip().rsplit("-", 1)[-1]
                    for line in wheel.read_text(errors="replace").splitlines() if line.startswith("Tag:")]
            binary = [t for t in tags if t != "any"]
            if binary:
                found[canonical_name(wheel.parent.name.split("-", 1)[0])] = binary
        return found

    @property
    def platforms(self) -> set[str]:
        """'linux', 'macos' or 'windows' for every OS some installed wheel was built for."""
        kinds = set()
        for tags in self.wheel_tags.values():
            for tag in tags:
                kinds.add("macos" if tag.startswith("macosx") else "windows" if tag.startswith("win") else "linux")
        return kinds

    @property
    def architectures(self) -> set[str]:
        arches = set()
        for tags in self.wheel_tags.values():
            for tag in tags:
                match = ARCH_RE.search(tag)
                if match and match.group(1) != "universal2":
                    arches.add({"amd64": "x86_64", "arm64": "aarch64", "win32": "i686"}.get(match.group(1), match.group(1)))
        return arches

    def glibc_required(self, host_glibc: tuple[int, int] | None = None) -> tuple[tuple[int, int], str]:
        """The newest glibc some wheel needs, and which distribution needs it.

        A wheel with several tags works where any of them does (its oldest glibc);
        a wheel built on this machine (plain linux tag) needs the host's glibc.
        """
        needed, who = (0, 0), ""
        for dist, tags in self.wheel_tags.items():
            versions = [v for v in (_glibc_of(t, host_glibc) for t in tags) if v is not None]
            if versions and min(versions) > needed:
                needed, who = min(versions), dist
        return needed, who

    @property
    def python_minor(self) -> str:
        return ".".join(self.python.split(".")[:2])


def inspect_env(path: Path) -> NativeEnv:
    """Describe the virtualenv at ``path``; BadInputError when it is missing or not a virtualenv."""
    cfg = path / "pyvenv.cfg"
    if not path.exists():
        raise BadInputError(f"native environment {path} does not exist", hint=CREATE_HINT)
    if not cfg.is_file():
        raise BadInputError(f"{path} is not a virtualenv (no pyvenv.cfg)", hint=CREATE_HINT)
    values = {}
    for line in cfg.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    version = values.get("version_info") or values.get("version") or ""
    match = re.match(r"(\d+\.\d+(?:\.\d+)?)", version)
    candidates = sorted((path / "lib").glob("python3.*/site-packages"))
    if not match or not candidates:
        raise BadInputError(f"{path} is a broken virtualenv (no Python version or site-packages)",
                            hint=f"remove it and {CREATE_HINT}")
    python = match.group(1)
    minor = ".".join(python.split(".")[:2])
    site = next((c for c in candidates if c.parent.name == f"python{minor}"), candidates[0])
    return NativeEnv(path=path, python=python, site_packages=site)


def _glibc_of(tag: str, host_glibc: tuple[int, int] | None) -> tuple[int, int] | None:
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if match:
        return int(match.group(1)), int(match.group(2))
    for alias, version in MANYLINUX_ALIASES.items():
        if tag.startswith(alias + "_"):
            return version
    if tag.startswith("linux_"):
        return host_glibc or (0, 0)
    return None


@dataclass(frozen=True)
class ImageFacts:
    """What a probe run inside an image found (see probe_image)."""

    ref: str
    image_id: str
    python: str                       # 3.11.2
    machine: str                      # x86_64
    glibc: tuple[int, int]            # (2, 36)
    distributions: dict[str, str]     # canonical name -> version

    @property
    def python_minor(self) -> str:
        return ".".join(self.python.split(".")[:2])


def check_compatible(env: NativeEnv, image: ImageFacts, host_glibc: tuple[int, int] | None = None) -> list[str]:
    """Every reason the image cannot load the env's packages; empty when it can."""
    problems = []
    if env.python_minor != image.python_minor:
        problems.append(f"Python {image.python_minor} in the image, {env.python_minor} in the environment "
                        f"(compiled packages are built for one minor version)")
    foreign = env.platforms - {"linux"}
    if foreign:
        problems.append(f"the environment holds {'/'.join(sorted(foreign))} packages; a Linux container cannot load them")
    arches = env.architectures - {image.machine}
    if arches:
        problems.append(f"the environment holds {'/'.join(sorted(arches))} packages; the image is {image.machine}")
    needed, who = env.glibc_required(host_glibc)
    if needed > image.glibc:
        problems.append(f"{who} needs glibc {needed[0]}.{needed[1]}; the image has {image.glibc[0]}.{image.glibc[1]}")
    clashes = sorted(
        f"{name} {image.distributions[name]} (image) vs {version} (environment)"
        for name, version in env.distributions.items()
        if name in image.distributions and name not in TOOLING and image.distributions[name] != version
    )
    if clashes:
        problems.append("installed in both at different versions: " + ", ".join(clashes))
    return problems


def refusal(env: NativeEnv, image: ImageFacts, problems: list[str]) -> BadInputError:
    """One error for every problem, with the two ways out."""
    return BadInputError(
        f"{image.ref} cannot load the native environment {env.path}: " + "; ".join(problems),
        hint="rebuild the image to match the environment (python and packages in infra.yaml, then `infra build`), "
             "or set native_env.torch: baked so the image carries its own packages",
    )


PROBE = (
    "import importlib.metadata as m, json, platform, sys\n"
    "dists = {d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}\n"
    "print(json.dumps({'python': platform.python_version(), 'machine': platform.machine(),\n"
    "                  'libc': platform.libc_ver(), 'dists': dists}))\n"
)


def probe_image(engine: EngineAPI, ref: str, cache_dir: Path | None = None) -> ImageFacts:
    """Facts about an image from a probe container; cached by image id, which fixes its content."""
    import json

    image_id = engine.inspect_image(ref).id
    cached = cache_dir / f"{image_id.removeprefix('sha256:')}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        raw = json.loads(cached.read_text())
    else:
        raw = json.loads(engine.run_python(ref, PROBE).strip().splitlines()[-1])
        if cached is not None:
            from infra.jobproto import write_text_atomic

            cached.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(cached, json.dumps(raw, sort_keys=True))
    libc = raw.get("libc") or ["", ""]
    match = re.match(r"(\d+)\.(\d+)", libc[1] or "")
    return ImageFacts(
        ref=ref, image_id=image_id, python=raw["python"], machine=raw["machine"],
        glibc=(int(match.group(1)), int(match.group(2))) if libc[0] == "glibc" and match else (0, 0),
        distributions={canonical_name(k): v for k, v in raw["dists"].items()},
    )


def host_glibc() -> tuple[int, int] | None:
    import platform

    name, version = platform.libc_ver()
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if name == "glibc" and match else None


def check_mount(engine: EngineAPI, env: NativeEnv, refs: list[str], cache_dir: Path | None = None) -> None:
    """Refuse (BadInputError) unless every image in ``refs`` can load the env; run before any container starts."""
    for ref in refs:
        facts = probe_image(engine, ref, cache_dir)
        problems = check_compatible(env, facts, host_glibc())
        if problems:
            raise refusal(env, facts, problems)


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def ml_requirements() -> list[str]:
    """The `ml` extra of infra's own metadata, without torch (installed first, for the right build)."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("infra") or []
    except PackageNotFoundError:
        raise BadInputError("infra is not installed as a package, so its `ml` extra is unknown",
                            hint="pip install -e . (or the wheel) first") from None
    out = []
    for req in reqs:
        spec, _, marker = req.partition(";")
        if "extra" in marker and '"ml"' in marker.replace("'", '"'):
            name = re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0]
            if canonical_name(name) != "torch":
                out.append(spec.strip())
    return out


def find_python(minor: str) -> str:
    """An interpreter of the images' Python minor version: the running one, or pythonX.Y on PATH."""
    import shutil
    import sys

    if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return sys.executable
    found = shutil.which(f"python{minor}")
    if found is None:
        raise BadInputError(f"the native environment needs Python {minor} (the images' Python), "
                            f"and no python{minor} is on PATH",
                            hint=f"install Python {minor}, or change `python` in infra.yaml and rebuild the images")
    return found


def create_env(path: Path, python_minor: str, torch_version: str, cuda: bool,
               torch_index: str | None = None, with_ml: bool = True) -> Iterator[str]:
    """Make (or complete) the native environment: a virtualenv with torch for the hardware, then (``with_ml``)
    the `ml` extra's packages with torch held at its version. Yields progress lines; idempotent."""
    if (path / "pyvenv.cfg").is_file():
        env = inspect_env(path)
        if env.python_minor != python_minor:
            raise BadInputError(f"{path} holds Python {env.python_minor}; the images run {python_minor}",
                                hint=f"remove {path} and run `infra env create` again")
        yield f"using the existing environment {path} (Python {env.python})"
    else:
        interpreter = find_python(python_minor)
        yield f"creating {path} with {interpreter}"
        _run([interpreter, "-m", "venv", str(path)], "python -m venv")
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--retries", "1"]
    if cuda:
        torch = [f"torch=={torch_version}"] + (["--index-url", torch_index] if torch_index else [])
        yield f"installing torch {torch_version} (CUDA build) from {torch_index or 'PyPI'}"
    else:
        torch = [f"torch=={torch_version}+cpu", "--extra-index-url", torch_index or TORCH_CPU_INDEX]
        yield f"installing torch {torch_version} (CPU build)"
    _run([*pip, *torch], "pip install torch")
    if not with_ml:
        return
    held = inspect_env(path).torch or torch_version
    packages = ml_requirements()
    yield f"installing {', '.join(packages)}"
    _run([*pip, *packages, f"torch=={held}"], "pip install (ml extra)")


def _run(cmd: list[str], what: str) -> None:
    import subprocess

    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise OperationError(f"{what} failed (exit {proc.returncode})", hint=tail)
