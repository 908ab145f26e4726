"""Fingerprints that say whether a film was already subtitled the same way: media, stage code, models, run key.

- ``media_digest``: the sha256 of a media file's bytes. The first call reads the
  file; the answer is kept in the workspace (``out/.media-hashes/<dev>-<inode>.json``,
  replaced atomically) with the file's size and mtime_ns, and a later call whose
  file has the same device, inode, size and mtime_ns takes it from there without
  reading the film again.
- ``stage_code_digest``: the sha256 of the stage programs that ship with infra
  (every file under ``stages/`` but caches, by relative name and content) and of
  the job protocol (``infra/jobproto.py``), which the stages import.
- ``model_digest``: the models a job reads from the shared cache (the Whisper
  model's folder and pyannote's folder), by each file's relative name, size and
  mtime_ns: a model fetched again or replaced changes it, without reading gigabytes.
- ``run_key``: one sha256 over all of it and the job's settings (see RunSettings).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from infra.jobproto import write_json_atomic

HASH_CACHE_DIR = ".media-hashes"
READ_BLOCK = 1 << 20
PYANNOTE_DIR = "pyannote"
WHISPER_DIR = "whisper"


@dataclass(frozen=True)
class MediaDigest:
    sha256: str
    cached: bool        # taken from the workspace's cache without reading the file


@dataclass(frozen=True)
class RunSettings:
    """What decides a job's subtitles besides the media, the stage code and the models."""

    workflow: str
    whisper_model: str
    compute_type: str
    language: str | None          # None: detect
    task: str
    start_s: float | None         # the clip, or None for the whole film
    end_s: float | None
    audio_track: int | None = None        # the audio track asked for (None and None: the first)
    audio_language: str | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def hash_cache_entry(cache_dir: Path, st: os.stat_result) -> Path:
    """Where the digest of the file with this stat is kept: one small JSON file per device and inode."""
    return cache_dir / f"{st.st_dev}-{st.st_ino}.json"


def media_digest(path: Path, cache_dir: Path) -> MediaDigest:
    """The sha256 of ``path``'s bytes, from ``cache_dir`` when the file's device, inode, size and mtime_ns
    match what was recorded, else read now and recorded. An unreadable cache entry is ignored."""
    st = path.stat()
    entry = hash_cache_entry(cache_dir, st)
    try:
        known = json.loads(entry.read_text(encoding="utf-8"))
        if known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("sha256"):
            return MediaDigest(str(known["sha256"]), cached=True)
    except (OSError, ValueError, AttributeError):
        pass
    sha = file_sha256(path)
    try:
        write_json_atomic(entry, {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha})
    except OSError:
        pass                             # a read-only workspace: the digest is still right, only not kept
    return MediaDigest(sha, cached=False)


def tree_files(root: Path) -> list[Path]:
    """Every file under ``root`` (links followed), sorted by relative name; none when it is not a folder."""
    if not root.is_dir():
        return []
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found.extend(Path(folder) / name for name in files if not name.endswith((".pyc", ".pyo")))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@cache
def stage_code_digest() -> str:
    """The sha256 of the stage programs infra ships and of the job protocol they import (once per process)."""
    from infra.resources import data_root, package_root

    stages = data_root() / "stages"
    digest = hashlib.sha256()
    named = [(f"stages/{p.relative_to(stages).as_posix()}", p) for p in tree_files(stages)]
    for name, path in [*named, ("infra/jobproto.py", package_root() / "jobproto.py")]:
        digest.update(f"{name}\0{len(name)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def model_digest(cache_root: Path, whisper_model: str) -> str:
    """The sha256 of the cached models a job reads (whisper/<model>/ and pyannote/): names, sizes, mtime_ns.
    A model that is not there counts as absent, so fetching it later changes the digest."""
    digest = hashlib.sha256()
    for folder in (cache_root / WHISPER_DIR / whisper_model, cache_root / PYANNOTE_DIR):
        rel_folder = folder.relative_to(cache_root).as_posix()
        files = tree_files(folder)
        digest.update(f"{rel_folder}\0{len(files) if files else 'absent'}\n".encode())
        for path in files:
            try:
                st = path.stat()
            except OSError:              # a dangling link
                continue
            digest.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def run_key(media_sha256: str, settings: RunSettings, code_digest: str, models_digest: str) -> str:
    """The run key: a film subtitled with the same key needs no second run (hex, 32 characters)."""
    parts = {"media": media_sha256, "settings": asdict(settings), "code": code_digest, "models": models_digest}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
