"""A model folder of the shared cache as an OCI artifact, and the marker that makes checking it cheap.

The artifact of a model (e.g. ``whisper/base``) is an OCI image manifest with its own types:

- ``artifactType`` :data:`ARTIFACT_TYPE`;
- a small JSON config (:data:`CONFIG_TYPE`): the model id and each file's path, size and mode;
- one layer per file (:data:`FILE_TYPE`), its path inside the model folder in the annotation
  ``org.opencontainers.image.title``.

Everything in it follows from the files alone (sorted paths, no timestamps, modes reduced to 0644 or
0755), so the manifest digest names a model's content wherever it is computed or stored.

The marker, ``.infra-model.json`` in the model folder, is written when a model is pushed or pulled:
the manifest digest and, per file, its digest, size, mode and mtime_ns. A folder whose files still
have those sizes and mtimes is taken to hold those digests without reading gigabytes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import BadInputError, OperationError
from infra.jobproto import write_text_atomic

ARTIFACT_TYPE = "application/vnd.infra.model.v1"
CONFIG_TYPE = "application/vnd.infra.model.config.v1+json"
FILE_TYPE = "application/vnd.infra.model.file.v1"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
MODEL_ANNOTATION = "dev.infra.model"
MARKER = ".infra-model.json"
COMPLETE = ".complete"                     # the catalogue's own marker (infra/models/catalogue.py)
NOT_CONTENT = (MARKER, COMPLETE)           # top-level files that describe a model rather than belong to it
MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
SCHEMA = 1


@dataclass(frozen=True)
class ModelFile:
    path: str          # inside the model folder, '/'-separated
    size: int
    mode: int          # 0o644 or 0o755
    digest: str        # sha256:...
    mtime_ns: int = 0  # on this machine (the marker's), not part of the artifact


@dataclass(frozen=True)
class Artifact:
    model: str
    files: tuple[ModelFile, ...]
    config: bytes
    manifest: bytes

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


def check_model_id(model: str) -> str:
    if not MODEL_RE.match(model) or ".." in model:
        raise BadInputError(f"{model!r} is not a model id (KIND/NAME as in the cache, e.g. whisper/base)")
    return model


def repository_name(model: str) -> str:
    """The last part of a model's repository: its id with '/' as '-', lower-case (whisper/tiny.en -> whisper-tiny.en)."""
    return re.sub(r"[^a-z0-9._-]", "-", model.lower().replace("/", "-"))


def plain_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def content_files(folder: Path) -> list[tuple[str, os.stat_result]]:
    """The files of a model folder (sorted, the markers left out), each with its stat; plain files only."""
    found: list[tuple[str, os.stat_result]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel in NOT_CONTENT:
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                raise BadInputError(f"{path} is not a plain file (a link or a device): a model artifact holds "
                                    "plain files only")
            found.append((rel, info))
    return sorted(found)


def describe(model: str, folder: Path, marker: Marker | None = None) -> list[ModelFile]:
    """Each file of the folder with its digest: the marker's when size and mtime still match, else read now."""
    known = marker.files if marker is not None else {}
    out = []
    for rel, info in content_files(folder):
        seen = known.get(rel)
        if seen is not None and seen.size == info.st_size and seen.mtime_ns == info.st_mtime_ns:
            digest = seen.digest
        else:
            digest = file_sha256(folder / rel)
        out.append(ModelFile(rel, info.st_size, plain_mode(info.st_mode), digest, info.st_mtime_ns))
    if not out:
        raise BadInputError(f"model {model}: {folder} holds no files")
    return out


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def build_artifact(model: str, files: list[ModelFile] | tuple[ModelFile, ...]) -> Artifact:
    files = tuple(sorted(files, key=lambda f: f.path))
    config = _dumps({"schema": SCHEMA, "model": model,
                     "files": [{"path": f.path, "size": f.size, "mode": f"{f.mode:04o}"} for f in files]})
    manifest = _dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": FILE_TYPE, "digest": f.digest, "size": f.size, "annotations": {TITLE: f.path}}
                   for f in files],
        "annotations": {MODEL_ANNOTATION: model},
    })
    return Artifact(model, files, config, manifest)


# -- reading an artifact back ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class RemoteArtifact:
    """A model artifact as a registry gave it: the config's descriptor and the files (modes from the config)."""

    model: str
    config_digest: str
    config_size: int
    layers: tuple[Layer, ...]


def parse_manifest(model: str, body: bytes, where: str) -> RemoteArtifact:
    """The descriptors of a model artifact's manifest; OperationError naming ``where`` when it is not one."""
    def bad(why: str) -> OperationError:
        return OperationError(f"{where} is not a model artifact infra can read ({why})")

    try:
        data = json.loads(body)
    except ValueError:
        raise bad("its manifest is not JSON") from None
    if not isinstance(data, dict):
        raise bad("its manifest is not a JSON object")
    config = data.get("config") or {}
    if data.get("artifactType", config.get("mediaType")) != ARTIFACT_TYPE and config.get("mediaType") != CONFIG_TYPE:
        raise bad(f"artifact type {data.get('artifactType') or config.get('mediaType')!r}, not {ARTIFACT_TYPE}")
    if data.get("annotations", {}).get(MODEL_ANNOTATION) not in (None, model):
        raise bad(f"it holds model {data['annotations'][MODEL_ANNOTATION]}, not {model}")
    layers: list[Layer] = []
    for entry in data.get("layers") or []:
        path = str((entry.get("annotations") or {}).get(TITLE, ""))
        if not safe_path(path):
            raise bad(f"a file is named {path!r}, not a plain path inside the model folder")
        layers.append(Layer(path, _digest(entry.get("digest"), bad), _size(entry.get("size"), bad)))
    if not layers:
        raise bad("it has no files")
    if len({la.path for la in layers}) != len(layers):
        raise bad("two layers carry the same file name")
    return RemoteArtifact(model, _digest(config.get("digest"), bad), _size(config.get("size"), bad), tuple(layers))


def parse_config(remote: RemoteArtifact, body: bytes, where: str) -> dict[str, int]:
    """The mode of each file, once the config agrees with the manifest (same model, paths and sizes)."""
    try:
        data = json.loads(body)
        files = {str(f["path"]): (int(f["size"]), int(str(f["mode"]), 8)) for f in data["files"]}
        model = data["model"]
    except (ValueError, KeyError, TypeError):
        raise OperationError(f"{where}: the model config is not what infra writes") from None
    if model != remote.model:
        raise OperationError(f"{where}: its config names model {model}, not {remote.model}")
    if files.keys() != {la.path for la in remote.layers} or any(files[la.path][0] != la.size for la in remote.layers):
        raise OperationError(f"{where}: its config and its manifest list different files")
    return {path: plain_mode(mode) for path, (_, mode) in files.items()}


def safe_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and path not in NOT_CONTENT and all(p and p not in (".", "..") for p in parts) \
        and "\\" not in path and "\0" not in path


def _digest(value: Any, bad: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise bad(f"digest {value!r} is not a sha256 digest")
    return value


def _size(value: Any, bad: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad(f"size {value!r} is not a byte count")
    return value


# -- the marker -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    model: str
    manifest: str
    files: dict[str, ModelFile]
    source: str = ""


def write_marker(folder: Path, model: str, manifest: str, files: tuple[ModelFile, ...] | list[ModelFile],
                 source: str) -> Marker:
    """Record a model's manifest digest and its files' digests with their sizes and mtimes as they are now."""
    recorded = {}
    for f in files:
        info = (folder / f.path).stat()
        recorded[f.path] = ModelFile(f.path, info.st_size, f.mode, f.digest, info.st_mtime_ns)
    marker = Marker(model, manifest, recorded, source)
    write_text_atomic(folder / MARKER, json.dumps({
        "schema": SCHEMA, "model": model, "manifest": manifest, "source": source,
        "files": {p: {"digest": f.digest, "size": f.size, "mode": f"{f.mode:04o}", "mtime_ns": f.mtime_ns}
                  for p, f in recorded.items()},
    }, indent=2, sort_keys=True) + "\n")
    return marker


def read_marker(folder: Path) -> Marker | None:
    """The folder's marker, or None when there is none (or it cannot be read: then it proves nothing)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        files = {p: ModelFile(p, int(f["size"]), int(f["mode"], 8), str(f["digest"]), int(f["mtime_ns"]))
                 for p, f in data["files"].items()}
        return Marker(str(data["model"]), str(data["manifest"]), files, str(data.get("source", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def marker_changes(folder: Path, marker: Marker) -> str | None:
    """What differs between the folder and its marker (a file added, missing, or with another size or
    mtime), by stat alone; None when nothing does."""
    try:
        present = dict(content_files(folder))
    except (OSError, BadInputError) as exc:
        return str(exc)
    for path, recorded in sorted(marker.files.items()):
        info = present.pop(path, None)
        if info is None:
            return f"{path} is missing"
        if info.st_size != recorded.size or info.st_mtime_ns != recorded.mtime_ns:
            return f"{path} changed (size or modification time)"
    if present:
        return f"{min(present)} was added"
    return None
