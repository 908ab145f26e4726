"""The built-in sample for `infra run --sample`: a short video with two speakers, made on first use.

Made from pyannote.audio's bundled ``sample.wav`` (30 s, two real speakers) when
pyannote.audio is installed here or in the native environment; otherwise from
espeak-ng speech in two voices. FFmpeg puts the audio under a plain picture as an
MP4 in the workspace's ``in/sample/``; later runs reuse it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from infra.errors import OperationError
from infra.workspace import Workspace

SAMPLE_DIR = "sample"
SAMPLE_FILE = "sample.mp4"
PYANNOTE_SAMPLE = Path("pyannote") / "audio" / "sample" / "sample.wav"
TIMEOUT_S = 120
# (espeak-ng voice, pitch, words a minute, line): two voices taking turns
DIALOGUE = (
    ("en-us+m3", 35, 150, "Good evening. The last train to the coast leaves at nine, and I have our tickets."),
    ("en-gb+f4", 75, 160, "Then we should hurry. I still have to pack my bag and find the house keys."),
    ("en-us+m3", 35, 150, "Your keys are on the table by the door, next to the red umbrella."),
    ("en-gb+f4", 75, 160, "Thank you. Let us leave before the rain starts again."),
)
PAUSE_S = 0.6


def pyannote_sample(native_env: Path | None) -> Path | None:
    """pyannote.audio's sample.wav, from this interpreter's packages or the native environment's."""
    try:
        spec = importlib.util.find_spec("pyannote.audio")
    except (ImportError, ValueError):
        spec = None
    roots = [Path(p).parent.parent for p in (spec.submodule_search_locations or [])] if spec else []
    if native_env is not None:
        roots += sorted(native_env.glob("lib/python3*/site-packages"))
    return next((r / PYANNOTE_SAMPLE for r in roots if (r / PYANNOTE_SAMPLE).is_file()), None)


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise OperationError(f"{name} not found on PATH: the sample needs it", hint=hint)
    return found


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise OperationError(f"{what} took longer than {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), f"exit code {proc.returncode}")
        raise OperationError(f"{what} failed: {last.strip()}")


def spoken_dialogue(folder: Path) -> Path:
    """The dialogue spoken by espeak-ng in two voices, joined with pauses into one WAV."""
    espeak = _tool("espeak-ng", "apt-get install espeak-ng (or install pyannote.audio, whose sample is used instead)")
    ffmpeg = _tool("ffmpeg", "apt-get install ffmpeg")
    parts = []
    for i, (voice, pitch, speed, line) in enumerate(DIALOGUE):
        part = folder / f"line{i}.wav"
        _run([espeak, "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(part), line], "espeak-ng")
        parts.append(part)
    inputs = [arg for part in parts for arg in ("-i", str(part))]
    padded = "".join(f"[{i}:a]apad=pad_dur={PAUSE_S}[a{i}];" for i in range(len(parts)))
    joined = "".join(f"[a{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[out]"
    target = folder / "dialogue.wav"
    _run([ffmpeg, "-v", "error", "-nostdin", "-y", *inputs, "-filter_complex", padded + joined, "-map", "[out]",
          str(target)], "ffmpeg (joining the sample's lines)")
    return target


def sample_media(ws: Workspace, native_env: Path | None = None) -> tuple[Path, bool]:
    """The sample video (made now when it is not there yet), and whether it was made by this call."""
    target = ws.root / "in" / SAMPLE_DIR / SAMPLE_FILE
    if target.is_file() and target.stat().st_size > 0:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = _tool("ffmpeg", "apt-get install ffmpeg")
    with tempfile.TemporaryDirectory(prefix=".sample-", dir=target.parent) as tmp:
        audio = pyannote_sample(native_env) or spoken_dialogue(Path(tmp))
        partial = Path(tmp) / SAMPLE_FILE
        _run([ffmpeg, "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "color=c=0x1d2b3a:s=640x360:r=25",
              "-i", str(audio), "-shortest", "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
              "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-metadata", f"comment=infra sample from {audio.name}",
              str(partial)], "ffmpeg (making the sample video)")
        os.replace(partial, target)
    return target, True
