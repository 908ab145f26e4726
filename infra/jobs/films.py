"""The films a command line names: files as they are, folders by their media files.

A folder gives the files whose names end with a media extension (video or audio
containers FFmpeg reads), sorted by name, hidden ones left out, and with
``recursive`` those of its subfolders too; files under the workspace's out/ (the
jobs' own outputs) are never taken from a folder. A path that does not exist, or
a folder without media, is bad input before anything runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.errors import BadInputError

# What a folder's files must end with to be taken as films (any file named on the command line is taken).
MEDIA_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".vob", ".ogv", ".3gp", ".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus", ".wma", ".mka",
})


def expand_inputs(paths: list[Path], recursive: bool = False, outputs: Path | None = None) -> list[Path]:
    """The films named by ``paths``: a file as it is, a folder's media files (by extension, sorted by name;
    hidden ones and anything under ``outputs`` left out). Each film once, in the order given.
    BadInputError (before anything runs) for a path that does not exist or a folder with no media."""
    films: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise BadInputError(f"{path}: no such file or folder")
        found = [path] if not path.is_dir() else folder_media(path, recursive, outputs)
        if not found:
            how = "" if recursive else " (--recursive looks in its subfolders)"
            raise BadInputError(f"{path}: no media files in this folder{how}",
                                hint=f"media files end with one of: {' '.join(sorted(MEDIA_SUFFIXES))}")
        for film in found:
            if film.resolve() not in seen:
                seen.add(film.resolve())
                films.append(film)
    return films


def folder_media(folder: Path, recursive: bool, outputs: Path | None) -> list[Path]:
    """The media files of a folder (and of its subfolders when ``recursive``), sorted by relative name."""
    skip = outputs.resolve() if outputs is not None else None
    found: list[Path] = []
    for here, dirs, files in os.walk(folder):
        if skip is not None and Path(here).resolve().is_relative_to(skip):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found.extend(Path(here) / name for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_SUFFIXES
                     and (Path(here) / name).is_file())
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
