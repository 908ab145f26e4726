"""A stage's work in checkpoints, so that a stage killed halfway continues where it stopped.

A stage that works span by span writes each span's result to its own file,
``<folder>/NNNN.json`` in the job directory (e.g. ``asr.parts/0003.json``),
atomically, with a key: a digest of everything the result depends on (the
input files, the settings, the model, the stage's code). On a rerun, a span
whose checkpoint has the key it would be written with now is taken from the
file; any other checkpoint (missing, unreadable, another key) is ignored and
that span is done again. The folder goes once the stage's output is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from stages._jobio import StageContext


def digest_of(*parts: Any) -> str:
    """A hex digest of JSON-able parts (sorted keys, so dicts in any order give the same digest)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path: Path) -> str:
    """A hex digest of a (small) file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_identity(path: Path) -> dict[str, int]:
    """What tells a large file's versions apart without reading it: its size and modification time.

    A stage that rewrites the file (demux writes audio.wav anew) changes both."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Checkpoints:
    """The checkpoints of one stage in ``<job>/<folder>/``, one JSON file per span."""

    def __init__(self, ctx: StageContext, folder: str) -> None:
        self.ctx, self.folder = ctx, folder

    def name(self, index: int) -> str:
        return f"{self.folder}/{index:04d}.json"

    def load(self, index: int, key: str) -> dict[str, Any] | None:
        """The data of span ``index`` when its checkpoint was written with ``key``, else None."""
        try:
            data = json.loads(self.ctx.path(self.name(index)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("data"), dict):
            return None
        return data["data"]

    def save(self, index: int, key: str, data: dict[str, Any]) -> None:
        """Span ``index``'s data with its key, replaced in one rename (a failed write is a StageError line)."""
        self.ctx.write_json(self.name(index), {"key": key, "index": index, "data": data})

    def clear(self) -> None:
        """Remove the folder and every checkpoint in it (the output they made is written)."""
        shutil.rmtree(self.ctx.path(self.folder), ignore_errors=True)
