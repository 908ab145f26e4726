"""The package lock: the exact Debian and Python packages each image installs (``infra.lock`` beside the spec).

`infra lock` (infra/build/lock.py) resolves and writes it; loading the spec reads it
(``Stack.lock``); rendering then installs exactly what it pins (infra/render/dockerfile.py).
Entries are kept per OS base (``bases.<name>`` of infra.yaml), since what apt adds depends on
what the base already holds. Each image's entry carries ``inputs``, a fingerprint of what it
was resolved from, so a lock that no longer matches the spec is refused, never half used
(infra/spec/lockmatch.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from infra.errors import ConfigError
from infra.spec.models import Strict

LOCK_VERSION = 1
LOCK_SUFFIX = ".lock"            # infra.yaml -> infra.lock
HEADER = """\
# {name}: the exact Debian and Python packages every image of {spec} installs.
# Made by `infra lock` (from {spec} and {images}/*/image.yaml); `infra render` and `infra build`
# install what it pins. Do not edit it: after changing an image's apt or pip list, or to take
# newer versions, run `infra lock` again (`infra lock --mode M` for one mode) and commit the result.
"""
APT_VERSION_RE = re.compile(r"^[A-Za-z0-9.+:~-]+$")
PIP_VERSION_RE = re.compile(r"^[A-Za-z0-9.+!_-]+$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def canonical_name(name: str) -> str:
    """A Python distribution's name as pip compares it (PEP 503): lower case, runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


class PipPin(Strict):
    version: str
    sha256: str | None = Field(None, description="Hash of the exact file pip resolved (wheel or sdist)")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not PIP_VERSION_RE.match(v):
            raise ValueError(f"'{v}' is not a version")
        return v

    @field_validator("sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        if v is not None and not SHA256_RE.match(v):
            raise ValueError("not a sha256 hex digest")
        return v


def _pin_from_text(text: str) -> dict[str, str | None]:
    version, _, digest = text.strip().partition(" ")
    digest = digest.strip()
    if digest and not digest.startswith("sha256:"):
        raise ValueError(f"'{text}' is not 'VERSION sha256:HEX'")
    return {"version": version, "sha256": digest.removeprefix("sha256:") or None}


class ImageLock(Strict):
    inputs: str = Field(description="Fingerprint of what the entry was resolved from (infra/spec/lockmatch.py)")
    apt: dict[str, str] = Field(default_factory=dict, description="Debian package -> version, all the image adds")
    pip: dict[str, PipPin] = Field(default_factory=dict, description="Python distribution -> pin, all the image adds")

    @field_validator("apt")
    @classmethod
    def _apt(cls, v: dict[str, str]) -> dict[str, str]:
        for name, version in v.items():
            if not NAME_RE.match(name) or not APT_VERSION_RE.match(version):
                raise ValueError(f"'{name}={version}' is not a Debian package and version")
        return v

    @field_validator("pip", mode="before")
    @classmethod
    def _pip_text(cls, v: object) -> object:
        """A pin as the file writes it, on one line: "VERSION sha256:HEX" (or the version alone)."""
        if not isinstance(v, dict):
            return v
        return {name: _pin_from_text(pin) if isinstance(pin, str) else pin for name, pin in v.items()}

    @field_validator("pip")
    @classmethod
    def _pip(cls, v: dict[str, PipPin]) -> dict[str, PipPin]:
        for name in v:
            if not NAME_RE.match(name) or canonical_name(name) != name:
                raise ValueError(f"'{name}' is not a normalised distribution name")
        return v

    def apt_words(self, requested: Iterable[str]) -> tuple[str, ...]:
        """What apt-get installs: every pinned package as name=version, then any requested package that
        pins nothing because the parent or the base holds it already (installing it again is a no-op)."""
        pinned = tuple(f"{name}={version}" for name, version in sorted(self.apt.items()))
        held = {name.split("=")[0] for name in requested} - set(self.apt)
        return pinned + tuple(sorted(held))

    def pip_lines(self) -> tuple[str, ...]:
        """Requirement-file lines with exact versions, and the hash when the lock has one."""
        return tuple(f"{name}=={pin.version}" + (f" --hash=sha256:{pin.sha256}" if pin.sha256 else "")
                     for name, pin in sorted(self.pip.items()))

    @property
    def pip_hashed(self) -> bool:
        return bool(self.pip) and all(pin.sha256 for pin in self.pip.values())


class BaseLock(Strict):
    ref: str = Field(description="The base image the entries were resolved on")
    images: dict[str, ImageLock] = Field(default_factory=dict)


class Lock(Strict):
    version: Literal[1] = LOCK_VERSION
    bases: dict[str, BaseLock] = Field(default_factory=dict)


def lock_path(spec_path: Path) -> Path:
    """The lock beside a spec: infra.yaml -> infra.lock."""
    return spec_path.with_suffix(LOCK_SUFFIX)


def fingerprint(base_ref: str, python: str, parent: str | None, apt: Iterable[str], pip: Iterable[str]) -> str:
    """What an image's entry was resolved from: the base it starts on, the Python, its parent's fingerprint
    (so a change up the chain reaches every child) and its own apt and pip lines, order aside."""
    data = {"base": base_ref, "python": python, "parent": parent, "apt": sorted(apt), "pip": sorted(pip)}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def read_lock(path: Path, shown: str) -> Lock | None:
    """The lock at ``path``, or None when there is none; ConfigError (exit 2) naming the file when it is unreadable."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{shown}: cannot be read ({exc.__class__.__name__}: {exc})"]) from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError([f"{shown}: {where}invalid YAML"], hint="run `infra lock` to write it again") from None
    if not isinstance(data, dict):
        raise ConfigError([f"{shown}: not a lock (the top level must be a mapping)"],
                          hint="run `infra lock` to write it again")
    try:
        return Lock.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"{shown}: {where}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ConfigError(problems, hint="run `infra lock` to write it again") from None


def dump_lock(lock: Lock, name: str, spec: str, images: str) -> str:
    """The lock as YAML: a comment that says how it was made, then the entries, every name sorted and every pin
    on one line; the same lock gives the same bytes."""
    import yaml

    bases = {}
    for base, entry in sorted(lock.bases.items()):
        listed = {}
        for image, locked in sorted(entry.images.items()):
            item: dict[str, object] = {"inputs": locked.inputs}
            if locked.apt:
                item["apt"] = dict(sorted(locked.apt.items()))
            if locked.pip:
                item["pip"] = {n: p.version + (f" sha256:{p.sha256}" if p.sha256 else "")
                               for n, p in sorted(locked.pip.items())}
            listed[image] = item
        bases[base] = {"ref": entry.ref, "images": listed}
    body = yaml.safe_dump({"version": lock.version, "bases": bases}, sort_keys=False, default_flow_style=False,
                          width=4096, allow_unicode=False)
    return HEADER.format(name=name, spec=spec, images=images) + body
