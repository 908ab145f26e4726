"""Put rendered files on disk, or compare them with what is there (``--check``).

A file whose bytes are already right is left alone (its mtime too), so a
second render changes nothing. A changed file is written to a temporary file
beside it and renamed over the old one, so a reader never sees half a file.
Dockerfiles of images that left the spec are removed from the output's
``dockerfiles/`` folder, which infra owns; nothing else in the folder is touched.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from infra.jobproto import write_text_atomic
from infra.errors import OperationError
from infra.render.paths import DOCKERFILES


@dataclass
class WriteResult:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _stale(out: Path, files: dict[str, str]) -> list[str]:
    folder = out / DOCKERFILES
    if not folder.is_dir():
        return []
    return sorted(f"{DOCKERFILES}/{p.name}" for p in folder.glob("*.Dockerfile")
                  if f"{DOCKERFILES}/{p.name}" not in files)


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""


def write_files(out: Path, files: dict[str, str]) -> WriteResult:
    """Write ``files`` (relative name -> text) under ``out``."""
    result = WriteResult()
    try:
        for rel, text in files.items():
            path = out / rel
            if _read(path) == text:
                result.unchanged.append(rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, text)
            result.written.append(rel)
        for rel in _stale(out, files):
            (out / rel).unlink()
            result.removed.append(rel)
    except OSError as exc:
        raise OperationError(f"cannot write {out}: {exc.strerror or exc}",
                             hint="check that the output folder is writable, or choose another with --out") from None
    return result


def diff_files(out: Path, files: dict[str, str], shown: str) -> str:
    """A unified diff from what is under ``out`` to what the spec renders; empty when they agree.

    ``shown`` is how the output folder is named in the diff headers.
    """
    chunks: list[str] = []
    for rel, text in files.items():
        current = _read(out / rel)
        if current == text:
            continue
        before = (current or "").splitlines(keepends=True)
        after = text.splitlines(keepends=True)
        old_name = f"{shown}/{rel}" if current is not None else "/dev/null"
        chunks.extend(_ensure_newlines(difflib.unified_diff(before, after, old_name, f"{shown}/{rel} (rendered)")))
    for rel in _stale(out, files):
        before = (_read(out / rel) or "").splitlines(keepends=True)
        chunks.extend(_ensure_newlines(difflib.unified_diff(before, [], f"{shown}/{rel}", "/dev/null")))
    return "".join(chunks)


def _ensure_newlines(lines) -> list[str]:  # noqa: ANN001 - an iterator of str
    return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines]
