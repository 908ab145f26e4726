"""`infra models push`: models of the shared cache into a registry as OCI artifacts, pinned in models.lock.

Every check runs before the first byte moves: the model ids, their folders, the registry, and
models.lock (a pinned model whose files changed since is refused unless ``update_lock`` says to pin
the new files). Then, model by model: each blob the registry lacks (HEAD) is uploaded, the manifest
goes last, the folder's marker is written and models.lock is replaced whole. A push that is killed
leaves blobs without a manifest; running it again uploads only what is missing and completes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from infra.errors import BadInputError, OperationError
from infra.models.artifacts import (ARTIFACT_TYPE, MANIFEST_TYPE, Artifact, build_artifact, check_model_id, describe,
                                    marker_changes, read_marker, write_marker)
from infra.models.catalogue import FetchEvent
from infra.models.lock import Lock, lock_difference, lock_path, pin_of, read_lock
from infra.models.remote import Registries, cached_models, repository, stack_cache, upload_file

if TYPE_CHECKING:
    from infra.oci.client import RegistryClient
    from infra.spec import Stack

DEFAULT_TAG = "latest"
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class PushedModel:
    model: str
    reference: str          # HOST/.../name:tag
    digest: str
    uploaded: int           # blobs sent (config included)
    uploaded_bytes: int
    present: int            # blobs the registry already had
    lock: str               # "pinned", "re-pinned", "unchanged"


@dataclass(frozen=True)
class _Planned:
    artifact: Artifact
    folder: Path
    repository: str
    verdict: str


def plan_push(stack: Stack, cache: Path, models: list[str] | None, registry: str | None, update_lock: bool,
              tag: str, registries: Registries) -> tuple[Lock, list[_Planned]]:
    """Every check of a push, nothing written: the names, the registry (asked once per repository, so missing
    credentials show before gigabytes are read), then each model's files against models.lock."""
    if not TAG_RE.match(tag):
        raise BadInputError(f"--tag {tag!r} is not a tag (letters, digits, '.', '_', '-'; at most 128)")
    lock = read_lock(lock_path(stack))
    names = list(dict.fromkeys(models or cached_models(cache)))
    if not names:
        raise BadInputError(f"no models in the model cache {cache}", hint="`infra bootstrap` fetches them")
    where = []
    for name in names:
        check_model_id(name)
        folder = cache / name
        if not folder.is_dir():
            raise BadInputError(f"model {name} is not in the model cache ({folder})",
                                hint=f"`infra bootstrap --model {name}` or `infra models pull {name}` puts it there")
        pin = lock.get(name)
        if registry or stack.spec.registry:
            repo = repository(registry or str(stack.spec.registry), stack.spec.project, name)
        elif pin is not None:
            repo = pin.repository
        else:
            raise BadInputError("no registry to push to: the spec names none", hint="pass --registry HOST/NAMESPACE "
                                f"or set registry in {stack.spec_path.name}")
        where.append((name, folder, repo))
    for repo in dict.fromkeys(repo for _, _, repo in where):
        client, path = registries.split(repo)
        client.manifest_digest(path, tag)
    planned = []
    for name, folder, repo in where:
        marker = read_marker(folder)
        artifact = build_artifact(name, describe(name, folder, marker if marker and marker.model == name else None))
        pin = lock.get(name)
        verdict = "pinned" if pin is None else "unchanged" if pin.manifest == artifact.digest else "re-pinned"
        if pin is not None and verdict == "re-pinned" and not update_lock:
            raise BadInputError(f"model {name} differs from {lock.path.name}: {lock_difference(pin, artifact)}",
                                hint=f"`infra models pull {name}` restores the pinned files; "
                                     f"`infra models push --update-lock {name}` pins the cached ones")
        planned.append(_Planned(artifact, folder, repo, verdict))
    return lock, planned


def push_models(stack: Stack, models: list[str] | None = None, registry: str | None = None,
                tag: str = DEFAULT_TAG, update_lock: bool = False,
                emit: Callable[[FetchEvent], None] | None = None, cache: Path | None = None) -> list[PushedModel]:
    """Push the named cached models (all of them when none is named) from ``cache`` (default: the one the
    stack's jobs read); see the module's docstring."""
    cache = cache or stack_cache(stack)
    registries = Registries()
    lock, planned = plan_push(stack, cache, models, registry, update_lock, tag, registries)
    emit = emit or (lambda event: None)
    results = []
    for item in planned:
        artifact = item.artifact
        client, path = registries.split(item.repository)
        emit(FetchEvent(artifact.model, "start", 0, artifact.size))
        uploaded = present = sent = done = 0
        blobs: list[tuple[str, int, Path | bytes]] = [(artifact.config_digest, len(artifact.config), artifact.config)]
        blobs += [(f.digest, f.size, item.folder / f.path) for f in artifact.files]
        for digest, size, source in blobs:
            if client.has_blob(path, digest):
                present += 1
            else:
                upload_file(client, path, digest, size, source)
                uploaded += 1
                sent += size
            if not isinstance(source, bytes):
                done += size
                emit(FetchEvent(artifact.model, "progress", done, artifact.size))
        _put_manifest(client, path, tag, artifact, item.repository)
        marker = read_marker(item.folder)
        if marker is None or marker.manifest != artifact.digest or marker_changes(item.folder, marker):
            write_marker(item.folder, artifact.model, artifact.digest, artifact.files, f"pushed to {item.repository}")
        pin = pin_of(artifact, item.repository, tag)
        if lock.get(artifact.model) != pin:
            lock = lock.with_pin(pin)
            lock.write()
        emit(FetchEvent(artifact.model, "done", artifact.size, artifact.size, detail=f"{uploaded} uploaded"))
        results.append(PushedModel(artifact.model, f"{item.repository}:{tag}", artifact.digest, uploaded, sent,
                                   present, item.verdict))
    return results


def _put_manifest(client: RegistryClient, path: str, tag: str, artifact: Artifact, repo: str) -> None:
    try:
        stored = client.put_manifest(path, tag, artifact.manifest, MANIFEST_TYPE)
    except OperationError as exc:
        why = re.search(r"\((\d{3}\b.*)\)$", exc.message)
        raise OperationError(f"registry {client.host} refused the model artifact {repo}:{tag} (artifact type "
                             f"{ARTIFACT_TYPE}): {why.group(1) if why else exc.message}",
                             hint="push to a registry that stores OCI artifacts (distribution 2.8 or later, zot, "
                                  "Harbor); nothing was pinned") from None
    if stored != artifact.digest:
        raise OperationError(f"registry {client.host} stored the manifest of {repo}:{tag} as {stored[:19]}, not "
                             f"{artifact.digest[:19]}: it rewrote the artifact; nothing was pinned")
