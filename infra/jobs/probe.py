"""Starting ffprobe, light enough to run before the CLI framework loads.

`infra job prepare` spends most of its time importing typer and pydantic on one
core while the other idles, and ffprobe spends most of its own loading its
libraries. ``start_early`` runs the one ffprobe call a prepare needs before any
of that, and ``MediaProbe`` takes the running process if it is for the same
file. This module imports nothing beyond the standard library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

_early: dict[str, subprocess.Popen[str]] = {}


def start_probe(path: Path) -> subprocess.Popen[str] | None:
    """ffprobe's JSON for ``path`` (format and streams), running in the background; None without ffprobe."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    cmd = [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-i", f"file:{path}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def start_early(media: str) -> None:
    """Probe ``media`` now if it is a regular file; the command decides later whether to use the result."""
    key = os.path.realpath(media)
    if key not in _early and os.path.isfile(key):
        proc = start_probe(Path(key))
        if proc is not None:
            _early[key] = proc


def take_early(path: Path) -> subprocess.Popen[str] | None:
    return _early.pop(os.path.realpath(path), None)


def discard_early() -> None:
    """End the early probes nobody took (the command failed before it needed them)."""
    while _early:
        _, proc = _early.popitem()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
