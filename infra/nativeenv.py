"""The native environment: the host virtualenv whose torch the stage containers mount.

Inspection reads files only (pyvenv.cfg and the dist-info folders), so it costs
milliseconds and never imports torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from infra.errors import BadInputError

CREATE_HINT = "create it with `python3 -m venv .venv-ml && .venv-ml/bin/pip install 'infra[ml]'`"


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
