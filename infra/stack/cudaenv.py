"""The CUDA native environment: torch and the NVIDIA library wheels chosen so that every GPU package finds the
CUDA and cuDNN majors it was built for, inside the environment, and the lock that records what came of it.

What each package needs is read from its own files (infra/stack/elfscan.py):
torch from torch/version.py and the libraries it links, ctranslate2 (under
faster-whisper) from the CUDA libraries its binary opens at run time
(libcublas.so.12 in 4.x), onnxruntime from its CUDA provider when the GPU
build is installed (the stages run Silero on the CPU provider, so the plain
build is what the `ml` extra asks for). What the environment provides is read
from the NVIDIA wheels' folders (site-packages/nvidia/*/lib).

Before anything is written, `plan_cuda` asks pip (a dry run that reads
metadata only) what the `ml` extra resolves to with a torch candidate, and
scans the binary wheel of every other GPU package; a torch whose CUDA major
differs from theirs is replaced by the torch of ``CUDA_TORCH`` for their major
(or refused when the user named it).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import BadInputError, OperationError
from infra.render.paths import nvidia_library_dirs
from infra.stack import elfscan
from infra.stack.nativeenv import NativeEnv, canonical_name, find_python, inspect_env, ml_requirements

LOCK_FILE = "infra-env.lock.json"
LOCK_KIND = "infra.native-env-lock"
# Packages whose compiled files load CUDA (import name, distribution).
GPU_PACKAGES = (("torch", "torch"), ("torchaudio", "torchaudio"), ("ctranslate2", "ctranslate2"),
                ("onnxruntime", "onnxruntime-gpu"))
# The torch chosen for each CUDA major when the spec's torch links another: PyPI's torch 2.9.1 is a CUDA 12.8
# build (torch 2.11 and later are CUDA 13), and torchaudio 2.9 pairs with it (pyannote.audio; silero-vad's
# audio extra asks for torchaudio < 2.10).
CUDA_TORCH = {12: "2.9.1"}
WHEEL_MAJOR = re.compile(r"^nvidia-.+-cu([0-9]+)$")
UNSUFFIXED = {"nvidia-cuda-runtime", "nvidia-cublas", "nvidia-cuda-nvrtc", "cuda-toolkit"}   # CUDA 13's names


def torch_requirement(version: str) -> str:
    """torch at ``version`` as a CUDA build: a local +cpu wheel (pip ranks it above the plain one) is excluded."""
    return f"torch=={version},!={version}+cpu"


# -- what an environment holds ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CudaFacts:
    needs: dict[str, dict[str, Any]]          # package -> {version, cuda: [majors], cudnn: [majors]}
    provided_cuda: list[int]                  # majors of the NVIDIA libraries in the env
    provided_cudnn: list[int]
    library_dirs: tuple[str, ...]             # nvidia/*/lib, relative to site-packages
    torch_cuda: str | None                    # torch/version.py's cuda ("12.8"), None for a CPU build

    def as_dict(self) -> dict[str, Any]:
        return {"packages": self.needs, "provided": {"cuda": self.provided_cuda, "cudnn": self.provided_cudnn},
                "library_dirs": list(self.library_dirs), "torch_cuda": self.torch_cuda}


def env_facts(env: NativeEnv) -> CudaFacts:
    """The CUDA majors the env's GPU packages need and those its NVIDIA libraries provide (files only)."""
    site = env.site_packages
    needs: dict[str, dict[str, Any]] = {}
    for module, dist in GPU_PACKAGES:
        folder = site / module
        if not folder.is_dir():
            continue
        version = env.distributions.get(dist) or env.distributions.get(canonical_name(module))
        if module == "torch":
            cuda = [int(env.torch_cuda.split(".")[0])] if env.torch_cuda else []
            cudnn = [int(m) for m in re.findall(r"nvidia-cudnn-cu[0-9]+==([0-9]+)", _requires(site, "torch"))]
            needs[module] = {"version": version, "cuda": cuda, "cudnn": sorted(set(cudnn))}
        else:
            found = elfscan.package_needs(str(folder))
            if found["cuda"] or found["cudnn"]:
                needs[module] = {"version": version, "cuda": found["cuda"], "cudnn": found["cudnn"]}
    dirs = nvidia_library_dirs(site)
    names = sorted({p.name for d in dirs for p in (site / d).iterdir()})
    cuda, cudnn = elfscan.cuda_majors(names)
    return CudaFacts(needs, cuda, cudnn, dirs, env.torch_cuda)


def _requires(site: Path, dist: str) -> str:
    for meta in site.glob(f"{dist}-*.dist-info/METADATA"):
        return "\n".join(line for line in meta.read_text(errors="replace").splitlines()
                         if line.startswith("Requires-Dist:")).replace(" ", "")
    return ""


def disagreement(facts: CudaFacts) -> str | None:
    """Why the env's GPU packages cannot share one CUDA (None when they can). A CPU torch needs no CUDA: then
    there is nothing to disagree with, and the env is a CPU environment."""
    if facts.torch_cuda is None and not facts.provided_cuda:
        return None
    majors: dict[int, list[str]] = {}
    for name, need in sorted(facts.needs.items()):
        for major in need["cuda"]:
            majors.setdefault(major, []).append(f"{name} {need['version']}")
    if len(majors) > 1:
        parts = [f"{' and '.join(who)} need{'s' if len(who) == 1 else ''} CUDA {m}"
                 for m, who in sorted(majors.items())]
        return "; ".join(parts)
    return None


def fix_for(facts: CudaFacts) -> str:
    """How to get an environment that agrees."""
    others = sorted({m for n, need in facts.needs.items() if n != "torch" for m in need["cuda"]})
    if len(others) == 1 and others[0] in CUDA_TORCH:
        return (f"`infra env create --target cuda` builds one with torch {CUDA_TORCH[others[0]]} "
                f"(CUDA {others[0]}) and the CUDA {others[0]} libraries")
    return "install packages built for one CUDA major"


def describe(facts: CudaFacts) -> str:
    """One line for `infra env show`."""
    needs = ", ".join(f"{name} CUDA {'/'.join(map(str, need['cuda'])) or '-'}"
                      + (f" cuDNN {'/'.join(map(str, need['cudnn']))}" if need["cudnn"] else "")
                      for name, need in sorted(facts.needs.items()) if need["cuda"] or need["cudnn"])
    if facts.torch_cuda is None and not facts.provided_cuda:
        return f"CUDA: none (a CPU environment{'; on a GPU ' + needs if needs else ''})"
    provided = (f"CUDA {'/'.join(map(str, facts.provided_cuda)) or 'none'}, "
                f"cuDNN {'/'.join(map(str, facts.provided_cudnn)) or 'none'} in {len(facts.library_dirs)} folders")
    problem = disagreement(facts)
    return f"CUDA: {needs}; provided: {provided}" + (f"; DISAGREE: {problem}" if problem else "")


# -- the lock -----------------------------------------------------------------------------------------------------

def write_lock(env: NativeEnv, target: str) -> Path:
    """Record what the env holds: pip freeze and the CUDA facts, in <env>/infra-env.lock.json."""
    from infra.jobproto import write_text_atomic

    freeze = subprocess.run([str(env.path / "bin" / "python"), "-m", "pip", "freeze", "--all",
                             "--disable-pip-version-check"], capture_output=True, text=True)
    if freeze.returncode != 0:
        raise OperationError("pip freeze failed in the new environment", hint=freeze.stderr.strip()[-500:])
    facts = env_facts(inspect_env(env.path))
    lock = {"kind": LOCK_KIND, "schema": 1, "target": target, "python": env.python,
            "torch": env.torch, "cuda": facts.as_dict(),
            "freeze": sorted(line for line in freeze.stdout.splitlines() if line.strip())}
    path = env.path / LOCK_FILE
    write_text_atomic(path, json.dumps(lock, indent=1, sort_keys=True) + "\n")
    return path


def read_lock(env: NativeEnv) -> dict[str, Any] | None:
    try:
        data = json.loads((env.path / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == LOCK_KIND else None


# -- the plan: what to install, decided before anything is written ------------------------------------------------

@dataclass
class Plan:
    torch: str
    cuda: int
    requirements: list[str]
    resolved: dict[str, str]                          # distribution -> version
    notes: list[str] = field(default_factory=list)


def resolve(python: str, requirements: list[str]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """pip's answer for ``requirements`` without installing (metadata only): versions and each one's report entry."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--disable-pip-version-check", "--report", str(report), *requirements],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")] or proc.stderr.splitlines()[-3:]
            text = " ".join(lines)
            if "No matching distribution" in text or "ResolutionImpossible" in text or "conflict" in text:
                raise BadInputError(f"pip finds no set of packages for {' '.join(requirements)}: {text}")
            raise OperationError("pip could not resolve the environment's packages", hint=text[-800:])
        entries = json.loads(report.read_text())["install"]
    items = {canonical_name(e["metadata"]["name"]): e for e in entries}
    return {n: e["metadata"]["version"] for n, e in items.items()}, items


def wheel_cuda_major(name: str, version: str) -> int | None:
    """The CUDA major of an NVIDIA wheel (nvidia-cublas-cu12 -> 12; CUDA 13's nvidia-cublas 13.1 -> 13)."""
    match = WHEEL_MAJOR.match(name)
    if match:
        return int(match.group(1))
    if name in UNSUFFIXED:
        return int(version.split(".")[0])
    return None


def binary_needs(python: str, dist: str, version: str) -> dict[str, Any]:
    """The CUDA majors a package's wheel asks for, from the wheel's own shared objects (downloaded, no deps)."""
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                               "-d", tmp, f"{dist}=={version}"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OperationError(f"pip could not fetch {dist} {version} to read what it links",
                                 hint=proc.stderr.strip()[-800:])
        unpacked = Path(tmp) / "unpacked"
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if re.search(r"\.so(\.[0-9]+)*$", member):
                        archive.extract(member, unpacked)
        return elfscan.package_needs(str(unpacked))


def plan_cuda(python: str, torch_version: str, explicit: bool, with_ml: bool = True) -> Iterator[str | Plan]:
    """Choose torch and the NVIDIA wheels for a CUDA environment; yields progress lines, then the Plan.

    ``explicit``: the user named the torch version, so a torch that cannot agree is refused, not replaced.
    ``with_ml``: the `ml` extra too (else torch alone)."""
    yield f"asking the index for torch {torch_version}'s CUDA build (metadata only)"
    try:
        torch_major = _torch_major(resolve(python, ["--no-deps", torch_requirement(torch_version)])[1].get("torch"))
    except BadInputError:
        torch_major = None
    newest = CUDA_TORCH[max(CUDA_TORCH)]
    if torch_major is None and explicit:
        raise BadInputError(f"torch {torch_version} has no CUDA build on the index",
                            hint=f"name a torch with one, e.g. --torch-version {newest}")
    others = ml_requirements() if with_ml else []
    candidate = torch_version if torch_major else newest
    yield f"resolving {'the `ml` extra with ' if with_ml else ''}torch {candidate}"
    versions, entries = resolve(python, [*others, torch_requirement(candidate)])
    need: dict[str, list[int]] = {}
    for module, dist in GPU_PACKAGES:
        if dist in versions and module not in ("torch", "torchaudio"):      # torchaudio follows torch
            yield f"reading what {dist} {versions[dist]} links"
            found = binary_needs(python, dist, versions[dist])
            if found["cuda"]:
                need[f"{dist} {versions[dist]}"] = found["cuda"]
    majors = sorted({m for ms in need.values() for m in ms})
    if len(majors) > 1:
        raise BadInputError("the GPU packages need different CUDA majors: "
                            + ", ".join(f"{who} CUDA {'/'.join(map(str, ms))}" for who, ms in sorted(need.items())),
                            hint="pin versions built for one CUDA major in the `ml` extra")
    target = majors[0] if majors else (torch_major or max(CUDA_TORCH))
    who = ", ".join(need) or "the environment"
    chosen, notes = torch_version, []
    if torch_major != target:
        if explicit:
            raise BadInputError(f"torch {torch_version} is a CUDA {torch_major} build and {who} needs CUDA {target}: "
                                f"one environment cannot give both",
                                hint=f"--torch-version {CUDA_TORCH[target]} (CUDA {target})" if target in CUDA_TORCH
                                else f"pin a {who.split()[0]} built for CUDA {torch_major}")
        if target not in CUDA_TORCH:
            raise BadInputError(f"{who} needs CUDA {target}, and infra knows no torch build for it",
                                hint="name one with --torch-version")
        chosen = CUDA_TORCH[target]
        notes.append(f"torch {torch_version} on the index is "
                     + (f"a CUDA {torch_major} build" if torch_major else "not a CUDA build")
                     + f" and {who} needs CUDA {target}: using torch {chosen}")
        yield notes[-1]
    if chosen != candidate:
        versions, entries = resolve(python, [*others, torch_requirement(chosen)])
    if _torch_major(entries.get("torch")) != target:
        raise OperationError(f"torch {chosen} did not resolve to a CUDA {target} build",
                             hint=f"pip chose torch {versions.get('torch')}")
    wrong = sorted(f"{n} {v}" for n, v in versions.items() if wheel_cuda_major(n, v) not in (None, target))
    if wrong:
        raise BadInputError(f"these packages are built for another CUDA major than {target}: {', '.join(wrong)}",
                            hint=f"pin them in the `ml` extra to their CUDA {target} builds")
    yield Plan(torch=chosen, cuda=target, requirements=[*others, torch_requirement(chosen)],
               resolved=versions, notes=notes)


def _torch_major(entry: dict[str, Any] | None) -> int | None:
    """The CUDA major of a resolved torch, from the NVIDIA wheels it requires; None for a CPU build."""
    if entry is None or "+cpu" in entry["metadata"]["version"]:
        return None
    for requirement in entry["metadata"].get("requires_dist") or []:
        name = canonical_name(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
        pinned = re.search(r"(?:==|>=|~=|<=)\s*([0-9]+)", requirement)
        major = wheel_cuda_major(name, pinned.group(1) if pinned else "0")
        if major:
            return major
    return None


def create_cuda_env(path: Path, python_minor: str, torch_version: str, explicit: bool,
                    with_ml: bool = True) -> Iterator[str]:
    """Plan first (refusals leave nothing behind), then make the venv, install, check that it agrees, lock it."""
    interpreter = find_python(python_minor)
    if (path / "pyvenv.cfg").is_file():
        existing = inspect_env(path)
        if existing.python_minor != python_minor:
            raise BadInputError(f"{path} holds Python {existing.python_minor}; the images run {python_minor}",
                                hint=f"remove {path} and run `infra env create` again")
        interpreter = str(path / "bin" / "python")
    plan: Plan | None = None
    for item in plan_cuda(interpreter, torch_version, explicit, with_ml):
        if isinstance(item, Plan):
            plan = item
        else:
            yield item
    assert plan is not None
    if not (path / "pyvenv.cfg").is_file():
        yield f"creating {path} with {interpreter}"
        _run([interpreter, "-m", "venv", str(path)], "python -m venv")
    yield (f"installing torch {plan.torch} (CUDA {plan.cuda}){' and the `ml` extra' if with_ml else ''}: "
           f"{len(plan.resolved)} distributions")
    _run([str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *plan.requirements],
         "pip install")
    env = inspect_env(path)
    facts = env_facts(env)
    problem = disagreement(facts)
    if problem or plan.cuda not in facts.provided_cuda:
        raise OperationError(f"the new environment {path} does not agree: "
                             f"{problem or f'no CUDA {plan.cuda} libraries in it'}",
                             hint="remove it and run `infra env create --target cuda` again")
    yield f"wrote {write_lock(env, 'cuda')}"


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise OperationError(f"{what} failed (exit {proc.returncode})", hint=tail)
