"""`infra models pull` and `infra bootstrap --from-registry`: model artifacts from a registry into the cache.

A model is fetched by digest: models.lock's when the project has one (a model it does not pin is
refused), else the digest its tag resolves to now. Every lookup runs before anything is written.
Then each model goes into a staging folder inside the cache, ``.pull-<name>-<digest>/``: a blob already
there (published only once verified) is kept, an interrupted one resumes from its ``.partial`` file
(RegistryClient.download: Range, then sha256), a file of the old folder that has the right digest is
linked rather than fetched. Only when every file is verified are the markers written and the folder
renamed into place, so nothing in the cache looks complete that is not. A model whose folder's
marker already names the digest, unchanged by stat, is skipped.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import BadInputError, OperationError
from infra.jobproto import write_text_atomic
from infra.models.artifacts import (COMPLETE, ModelFile, RemoteArtifact, check_model_id, file_sha256, marker_changes,
                                    parse_config, parse_manifest, read_marker, repository_name, write_marker)
from infra.models.catalogue import FetchEvent
from infra.models.lock import lock_path, read_lock
from infra.models.remote import Registries, fetch_small_blob, repository, stack_cache

if TYPE_CHECKING:
    from infra.oci.client import RegistryClient
    from infra.spec import Stack

DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class PullPlan:
    model: str
    repository: str
    digest: str
    remote: RemoteArtifact
    client: RegistryClient
    path: str               # the repository inside the registry

    @property
    def size(self) -> int:
        return sum(la.size for la in self.remote.layers)


@dataclass(frozen=True)
class PulledModel:
    model: str
    reference: str          # HOST/...@sha256:...
    status: str             # "pulled" or "present"
    fetched_bytes: int
    reused: int             # files kept from an earlier, interrupted pull or from the old folder


def plan_pull(stack: Stack, cache: Path, models: list[str] | None, registry: str | None,
              tag: str = DEFAULT_TAG) -> list[PullPlan]:
    """Resolve every model to a manifest digest and read its manifest; nothing is written."""
    lock = read_lock(lock_path(stack))
    names = list(dict.fromkeys(models or sorted(lock.pins)))
    if not names:
        raise BadInputError(f"nothing to pull: no {lock.path.name} beside the spec and no model named",
                            hint="name the models (e.g. infra models pull whisper/base)")
    registries = Registries()
    plans = []
    for name in names:
        check_model_id(name)
        pin = lock.get(name)
        if lock.exists and pin is None:
            pinned = ", ".join(sorted(lock.pins)) or "nothing"
            raise BadInputError(f"model {name} is not in {lock.path} (it pins {pinned})",
                                hint=f"`infra models push {name}` where the model is, then commit {lock.path.name}")
        base = registry or (None if pin else stack.spec.registry)
        if base:
            repo = repository(base, stack.spec.project, name)
        elif pin is not None:
            repo = pin.repository
        else:
            raise BadInputError("no registry to pull from: the spec names none",
                                hint=f"pass --registry HOST/NAMESPACE or set registry in {stack.spec_path.name}")
        reference = pin.manifest if pin else tag
        client, path = registries.split(repo)
        shown = f"{repo}{'@' if pin else ':'}{reference}"
        digest = client.manifest_digest(path, reference)
        if digest is None:
            raise BadInputError(f"model {name} is not in the registry: {shown} does not exist",
                                hint=f"`infra models push {name}` where the model is")
        body, _, digest = client.fetch_manifest(path, digest if pin is None else reference)
        if pin is not None and digest != pin.manifest:
            raise OperationError(f"{shown}: the registry sent a manifest whose digest is {digest[:19]}")
        plans.append(PullPlan(name, repo, digest, parse_manifest(name, body, shown), client, path))
    return plans


def pull_models(stack: Stack, models: list[str] | None = None, registry: str | None = None,
                tag: str = DEFAULT_TAG, emit: Callable[[FetchEvent], None] | None = None,
                cache: Path | None = None) -> list[PulledModel]:
    """Pull the named models (every model models.lock pins when none is named) into ``cache`` (default: the
    one the stack's jobs read); stops at the first failure."""
    cache = cache or stack_cache(stack)
    return [pull_one(plan, cache, emit) for plan in plan_pull(stack, cache, models, registry, tag)]


def is_present(folder: Path, digest: str) -> bool:
    marker = read_marker(folder)
    return marker is not None and marker.manifest == digest and marker_changes(folder, marker) is None


def pull_one(plan: PullPlan, cache: Path, emit: Callable[[FetchEvent], None] | None = None) -> PulledModel:
    emit = emit or (lambda event: None)
    target = cache / plan.model
    reference = f"{plan.repository}@{plan.digest}"
    with _exclusive(cache / f".pull-{repository_name(plan.model)}.lock"):
        if is_present(target, plan.digest):
            emit(FetchEvent(plan.model, "present", plan.size, plan.size, detail=f"already in {target}"))
            return PulledModel(plan.model, reference, "present", 0, 0)
        emit(FetchEvent(plan.model, "start", 0, plan.size))
        where = f"{plan.repository}@{plan.digest[:19]}"
        config = fetch_small_blob(plan.client, plan.path, plan.remote.config_digest, plan.remote.config_size)
        modes = parse_config(plan.remote, config, where)
        staging = cache / f".pull-{repository_name(plan.model)}-{plan.digest.removeprefix('sha256:')[:16]}"
        staging.mkdir(parents=True, exist_ok=True)
        fetched = reused = done = 0
        for layer in plan.remote.layers:
            dest = staging / layer.path
            if _kept(dest, layer.size) or _linked(target / layer.path, dest, layer.digest, layer.size):
                reused += 1
            else:
                got = [0]

                def progress(n: int, start: int = done, got: list[int] = got) -> None:
                    got[0] += n
                    emit(FetchEvent(plan.model, "progress", start + got[0], plan.size))

                plan.client.download(plan.path, layer.digest, layer.size, dest, progress)
                fetched += layer.size
            done += layer.size
            emit(FetchEvent(plan.model, "progress", done, plan.size))
        files = _settle(staging, plan, modes)
        write_text_atomic(staging / COMPLETE, json.dumps({"model": plan.model, "source": f"registry {reference}"}) + "\n")
        write_marker(staging, plan.model, plan.digest, files, f"pulled from {reference}")
        _swap(staging, target)
    emit(FetchEvent(plan.model, "done", plan.size, plan.size, detail=f"from {plan.repository}"))
    return PulledModel(plan.model, reference, "pulled", fetched, reused)


def _kept(dest: Path, size: int) -> bool:
    """A file an earlier pull left in the staging folder: download() publishes a blob only once verified."""
    try:
        return dest.stat().st_size == size
    except FileNotFoundError:
        return False


def _linked(old: Path, dest: Path, digest: str, size: int) -> bool:
    """The old folder's copy of a file, when it has the right digest: linked (or copied) into staging."""
    try:
        if old.stat().st_size != size or file_sha256(old) != digest:
            return False
    except OSError:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(old, dest)
    except OSError:
        shutil.copy2(old, dest)
    return True


def _settle(staging: Path, plan: PullPlan, modes: dict[str, int]) -> list[ModelFile]:
    """The staging folder holds exactly the artifact's files, with their modes; anything else goes."""
    wanted = {la.path for la in plan.remote.layers}
    for root, dirs, names in os.walk(staging, topdown=False):
        for name in names:
            path = Path(root) / name
            if path.relative_to(staging).as_posix() not in wanted:
                path.unlink()
        for name in dirs:
            with_files = Path(root) / name
            if not any(with_files.iterdir()):
                with_files.rmdir()
    files = []
    for layer in plan.remote.layers:
        path = staging / layer.path
        if path.stat().st_size != layer.size:
            raise OperationError(f"{path}: {path.stat().st_size} bytes, the artifact says {layer.size}")
        os.chmod(path, modes[layer.path])
        files.append(ModelFile(layer.path, layer.size, modes[layer.path], layer.digest))
    return files


def _swap(staging: Path, target: Path) -> None:
    """Put the staging folder where the model belongs; an old folder is moved aside first, then removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, old)
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One pull of a model at a time per cache (a second waits, then finds it present): a POSIX record lock
    on a small file beside the staging folder (jobs keep their own locks, in the job protocol)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
