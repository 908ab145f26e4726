"""Films coming in: a path a request names, confined to the workspace, or an upload, kept only when it is media.

- :func:`confined` resolves the path (relative to the workspace, or absolute), following links first, and
  refuses anything that then lies outside the workspace, the workspace itself, files it must never hand
  out (the secrets file), and names the filesystem cannot take (a NUL byte, a name too long, a loop of links).
- :func:`save_upload` streams the upload to a temporary file beside where it will be kept, never past the
  size limit, hashing it on the way; ffprobe must read it as media before it gets its name,
  ``<sha256[:16]>/<name>``, so the same bytes uploaded twice are one file. What is refused leaves nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from infra.errors import BadInputError

CHUNK = 1 << 20
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
NAME_MAX = 120


class NotFoundError(BadInputError):
    """An unknown job id, result or file: HTTP 404."""


class TooLargeError(BadInputError):
    """An upload over the limit: HTTP 413."""


def confined(root: Path, path: str, never: Iterable[Path] = ()) -> Path:
    """The file ``path`` names inside ``root`` (relative to it, or absolute within it), links resolved."""
    root = root.resolve()
    try:
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
        inside = resolved != root and root in resolved.parents
        found = inside and resolved not in {p.resolve() for p in never} and resolved.is_file()
    except (OSError, ValueError, RuntimeError):      # a NUL byte, a name too long, a loop of links
        raise BadInputError(f"{path!r}: not a path to a file in the workspace") from None
    if not inside:
        raise BadInputError(f"{path}: not inside the workspace")
    if not found:
        raise NotFoundError(f"{path}: no such file in the workspace")
    return resolved


def upload_name(filename: str) -> str:
    """An upload's file name as it is kept: its last part, plain characters only, at most NAME_MAX of them
    (the extension kept)."""
    name = SAFE_NAME.sub("_", (filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]).strip(" .") or "upload"
    if len(name) > NAME_MAX:
        stem, dot, suffix = name.rpartition(".")
        suffix = f".{suffix[:16]}" if dot and stem else ""
        name = (stem if suffix else name)[:NAME_MAX - len(suffix)].rstrip(" .") + suffix
    return name


def save_upload(folder: Path, stream: BinaryIO, filename: str, limit: int) -> Path:
    """Stream an upload into ``folder``/<sha256[:16]>/<name>; the same bytes give the same file."""
    name = upload_name(filename)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle = tempfile.NamedTemporaryFile(prefix=".upload-", dir=folder, delete=False)   # noqa: SIM115
    tmp = handle.name
    try:
        with handle as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"{name}: larger than the upload limit of {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise BadInputError(f"{name}: the upload is empty")
        probe(Path(tmp), name)
        os.chmod(tmp, 0o644)       # the temporary file's 0600 would hide it from the stack's workers (uid 10001)
        target = folder / digest.hexdigest()[:16] / name
        target.parent.mkdir(exist_ok=True)
        if not target.is_file():
            os.replace(tmp, target)
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def probe(path: Path, name: str) -> None:
    """Refuse what is not media before it gets a name in the workspace (nothing of it is kept)."""
    from infra.jobs.media import MediaProbe

    try:
        MediaProbe(path).result()
    except BadInputError as exc:
        raise BadInputError(exc.message.replace(str(path), name), exc.hint) from None
