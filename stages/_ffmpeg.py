"""FFmpeg for the demux and mux stages: run it, keep its last error line, and say which version ran."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stages._jobio import StageError

TIMEOUT_S = 6 * 3600


def ffmpeg_binary() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        raise StageError("ffmpeg not found on PATH (apt-get install ffmpeg)")
    return found


def ffmpeg_version(binary: str) -> str:
    out = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=60).stdout
    words = out.split()
    return words[2] if len(words) > 2 and words[0] == "ffmpeg" else "unknown"


def last_error_line(stderr: str, *paths: Path) -> str:
    """The last line FFmpeg wrote that says something, without the file names it prefixes."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    line = lines[-1] if lines else "no message"
    for path in paths:
        line = line.replace(f"file:{path}: ", "").replace(f"{path}: ", "")
    return line


def run_ffmpeg(binary: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """ffmpeg quietly (errors only), never reading stdin, overwriting its output; the result, not checked."""
    cmd = [binary, "-hide_banner", "-nostdin", "-v", "error", "-y", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise StageError(f"ffmpeg took longer than {TIMEOUT_S} s") from None
