"""The build plan: which images a mode needs, in what order, and which are stale.

Each image gets a content hash over everything that decides its bytes: the
rendered Dockerfile, every file of its build context that survives
.dockerignore, the files of its other named contexts, the build args, its base
reference and its parent's hash. The hash is stored on the image as a label; an
image whose label matches is up to date and BuildKit is not called at all.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from infra.resources import data_root, package_root

if TYPE_CHECKING:
    from infra.build.remote import RemoteImage

HASH_LABEL = "io.infra.content-hash"
PARENT_LABEL = "io.infra.parent-digest"


@dataclass(frozen=True)
class BuildTarget:
    """Everything one image build needs; made from the rendered output of a mode."""

    name: str
    ref: str                                 # the tag the image gets, e.g. speech-asr:latest-cpu
    dockerfile: Path                         # the rendered Dockerfile on disk
    context: Path                            # its build context folder
    parent: str | None = None                # another target, wired as a named context of this name
    base: str | None = None                  # the image a root target starts FROM
    local_contexts: Mapping[str, Path] = field(default_factory=dict)   # other named contexts (e.g. stages)
    context_globs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # the files a named context gives
    args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedImage:
    target: BuildTarget
    content_hash: str
    up_to_date: bool


class DockerIgnore:
    """The .dockerignore rules of a context: globs with ** and ! exceptions; the last matching rule wins."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            self.rules.append((negate, re.compile(_glob_to_regex(pattern))))

    @classmethod
    def for_context(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text().splitlines() if path.is_file() else [])

    def excluded(self, rel: str) -> bool:
        result = False
        for negate, regex in self.rules:
            if regex.match(rel):
                result = not negate
        return result


def _glob_to_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.find("]", i)
            if end == -1:
                out, i = out + re.escape(c), i + 1
            else:
                out, i = out + pattern[i:end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return out + "(?:/.*)?$"   # a matched folder excludes everything under it


def context_files(context: Path) -> list[str]:
    """Files of a build context that BuildKit will see, relative and sorted."""
    ignore = DockerIgnore.for_context(context)
    found = []
    for folder, dirs, files in os.walk(context):
        rel_folder = os.path.relpath(folder, context)
        rel_folder = "" if rel_folder == "." else rel_folder + "/"
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            rel = rel_folder + name
            if not ignore.excluded(rel) and not name.endswith(".pyc"):
                found.append(rel)
    return sorted(found)


def _hash_tree(digest: hashlib._Hash, label: str, root: Path, globs: tuple[str, ...] = ()) -> None:
    from fnmatch import fnmatch

    for rel in context_files(root):
        if globs and not any(fnmatch(rel, g) for g in globs):
            continue
        path = root / rel
        digest.update(f"{label}:{rel}:{'x' if os.access(path, os.X_OK) else '-'}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def content_hash(target: BuildTarget, parent_hash: str | None) -> str:
    digest = hashlib.sha256()
    digest.update(b"dockerfile\0" + target.dockerfile.read_bytes() + b"\0")
    _hash_tree(digest, "context", target.context)
    for name, path in sorted(target.local_contexts.items()):
        _hash_tree(digest, f"named:{name}", path, target.context_globs.get(name, ()))
    for key, value in sorted({**target.args, **{f"label:{k}": v for k, v in target.labels.items()}}.items()):
        digest.update(f"arg:{key}={value}\0".encode())
    digest.update(f"base:{target.base or ''}\0parent:{parent_hash or ''}\0".encode())
    return digest.hexdigest()


@dataclass
class Plan:
    images: dict[str, PlannedImage]
    remote: dict[str, RemoteImage] = field(default_factory=dict)   # stale here, but in the registry by content hash

    @cached_property
    def order(self) -> list[str]:
        from graphlib import TopologicalSorter

        graph = {n: {p.target.parent} if p.target.parent in self.images else set() for n, p in self.images.items()}
        return list(TopologicalSorter(graph).static_order())

    def children(self, name: str) -> list[str]:
        return [n for n, p in self.images.items() if p.target.parent == name]


def plan_images(targets: Mapping[str, BuildTarget], existing_hash: callable) -> Plan:  # type: ignore[valid-type]
    """Hash every target (parents first) and compare with ``existing_hash(ref)``, the label of the local image."""
    from graphlib import TopologicalSorter

    graph = {n: {t.parent} if t.parent in targets else set() for n, t in targets.items()}
    hashes: dict[str, str] = {}
    planned: dict[str, PlannedImage] = {}
    for name in TopologicalSorter(graph).static_order():
        target = targets[name]
        h = content_hash(target, hashes.get(target.parent) if target.parent else None)
        hashes[name] = h
        planned[name] = PlannedImage(target, h, existing_hash(target.ref) == h)
    return Plan(planned)


def targets_for_mode(stack, mode: str, out: Path) -> dict[str, BuildTarget]:  # noqa: ANN001 - Stack
    """The build targets of ``mode`` whose Dockerfiles were rendered into ``out``."""
    from infra.render import paths
    from infra.render.dockerfile import code_images, stage_sources, wheelhouse_images

    stages_dir = _stages_dir()
    with_code = code_images(stack, mode)
    with_wheels = wheelhouse_images(stack, mode)
    wheelhouse = stack.spec.native_env.wheelhouse
    targets = {}
    for name in stack.images_for_mode(mode):
        image = stack.images[name]
        targets[name] = BuildTarget(
            name=name,
            ref=stack.image_ref(name, mode),
            dockerfile=out / paths.DOCKERFILES / f"{name}.Dockerfile",
            context=stack.images_dir / name,
            parent=image.parent,
            base=stack.base_ref(mode) if image.parent is None else None,
            local_contexts={
                **({paths.STAGES_CONTEXT: stages_dir, paths.PROTOCOL_CONTEXT: package_root()} if name in with_code else {}),
                **({paths.WHEELHOUSE_CONTEXT: stack.workdir / wheelhouse} if wheelhouse and name in with_wheels else {}),
            },
            context_globs={paths.STAGES_CONTEXT: stage_sources(stack, mode, name),
                           paths.PROTOCOL_CONTEXT: paths.PROTOCOL_FILES}
            if name in with_code and not image.infra else {},          # an image with infra takes all of both
        )
    return targets


def _stages_dir() -> Path:
    return data_root() / "stages"
