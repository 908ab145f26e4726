"""FFmpeg for the demux and mux stages: run it, keep its last error line, report how far it is, say which version ran.

With a ``progress`` callback, ffmpeg writes its progress (``-progress pipe:1``:
``out_time_us=...`` about twice a second) to a pipe that is read line by line,
while its stderr goes to a temporary file, so neither pipe can fill and stall it
and the error lines are all there at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from stages._jobio import StageError

TIMEOUT_S = 6 * 3600
THREADS_ENV = "INFRA_THREADS"          # the CPU threads the pipeline gives this stage
_CONTEXT = re.compile(r"^\[[^\]]* @ 0x[0-9a-fA-F]+\] ")    # '[aac @ 0x55fa0df27a00] '


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
    """The last line FFmpeg wrote that says something, without the file names and '[codec @ 0x...]' it prefixes."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    line = _CONTEXT.sub("", lines[-1]) if lines else "no message"
    for path in paths:
        line = line.replace(f"file:{path}: ", "").replace(f"{path}: ", "")
    return line


def stage_threads() -> int | None:
    """$INFRA_THREADS when it is a positive number, else None (FFmpeg chooses, as before)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def progress_seconds(line: str) -> float | None:
    """Seconds of output written, from one line of ``-progress`` output ('out_time_us=5108438'); else None."""
    key, _, value = line.strip().partition("=")
    if key not in ("out_time_us", "out_time_ms") or not value.lstrip("-").isdigit():
        return None            # out_time_ms is microseconds too (an old misnomer); N/A before the first frame
    return max(0, int(value)) / 1_000_000


def run_ffmpeg(binary: str, args: list[str],
               progress: Callable[[float], None] | None = None) -> subprocess.CompletedProcess[str]:
    """ffmpeg quietly (errors only), never reading stdin, overwriting its output; the result, not checked.

    ``progress`` is called with the seconds of output written so far, as ffmpeg reports them."""
    cmd = [binary, "-hide_banner", "-nostdin", "-v", "error", "-y"]
    if progress is None:
        try:
            return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise StageError(f"ffmpeg took longer than {TIMEOUT_S} s") from None
    cmd += ["-nostats", "-progress", "pipe:1", *args]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, text=True)
        expired = threading.Event()

        def stop() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(TIMEOUT_S, stop)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                seconds = progress_seconds(line)
                if seconds is not None:
                    progress(seconds)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:          # the callback failed: do not leave ffmpeg running
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if expired.is_set():
            raise StageError(f"ffmpeg took longer than {TIMEOUT_S} s")
        errors.seek(0)
        stderr = errors.read().decode("utf-8", errors="replace")
    return subprocess.CompletedProcess(cmd, code, "", stderr)
