"""Media made for the tests with real tools (espeak-ng, ffmpeg), and a workspace with a warm hardware cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from infra.hardware.detect import detect_hardware
from infra.hardware.snapshot import HardwareSnapshot

SPEECH = "Subtitles for a short film. The pipeline listens, writes down what is said, and who says it."


def ffmpeg(*args: str, timeout: float = 120) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, capture_output=True,
                   timeout=timeout)


def concat_with_pauses(parts: list[tuple[Path, float]], target: Path) -> Path:
    """The clips one after another, each followed by its pause (seconds), as a 16 kHz mono WAV at ``target``."""
    inputs = [arg for part, _ in parts for arg in ("-i", str(part))]
    graph = "".join(f"[{k}:a]aresample=16000,apad=pad_dur={pause}[a{k}];" for k, (_, pause) in enumerate(parts))
    graph += "".join(f"[a{k}]" for k in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[out]"
    ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le",
           str(target))
    return target


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """speech.mp4 (spoken English over a black picture, a few seconds), voice.wav, tone.wav, and files that are not media."""
    root = tmp_path_factory.mktemp("media")
    wav = root / "voice.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), SPEECH], check=True, capture_output=True, timeout=60)
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x36:r=5", "-i", str(wav), "-shortest",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(root / "speech.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=3", str(root / "tone.wav"))
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x36:r=5:d=3", "-c:v", "libx264", "-preset", "ultrafast",
            str(root / "silent.mp4"))
    (root / "notes.mp4").write_text("This is a text file that only pretends to be a film.\n")
    (root / "empty.mp4").touch()
    (root / "folder.mp4").mkdir()
    return {p.stem: p for p in root.iterdir()}


@pytest.fixture(scope="session")
def detected(tmp_path_factory: pytest.TempPathFactory) -> HardwareSnapshot:
    """One real detection of this machine for the whole session."""
    where = tmp_path_factory.mktemp("detect")
    return detect_hardware(where, where / ".venv-ml")


@pytest.fixture
def workspace(project: Path, detected: HardwareSnapshot) -> Path:
    """A project whose hardware cache is fresh, so job preparation takes the fast path."""
    write_cache(project / "out" / "hardware_cache.json", detected, fingerprint())
    return project


def job_dirs(ws: Path) -> list[Path]:
    """Every job directory under out/ (out/YYYY/MM/DD/<user>/<job-id>)."""
    return sorted(p for p in (ws / "out").glob("*/*/*/*/*") if p.is_dir())


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out)

