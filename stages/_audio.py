"""The job's audio: the 16 kHz mono 16-bit PCM WAV that demux writes, read whole or a span at a time.

A film of three hours is 173 million samples (690 MB as float32): stages that
work through it read it span by span (``read_wav_span``, ``wav_spans``), so
their memory does not grow with the film's length.
"""

from __future__ import annotations

import wave
from pathlib import Path
from collections.abc import Iterator
from typing import Any

from stages._jobio import StageInputError

SAMPLE_RATE = 16000
AUDIO_FILE = "audio.wav"


def _open(path: Path) -> wave.Wave_read:
    """The WAV opened for reading, checked to be 16 kHz mono 16-bit; the caller closes it."""
    try:
        wav = wave.open(str(path), "rb")
    except FileNotFoundError:
        raise StageInputError(f"missing input {path.name}: run stage demux first") from None
    except (wave.Error, EOFError) as exc:
        raise StageInputError(f"{path.name} is not a PCM WAV file ({exc}): run stage demux again") from None
    rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        wav.close()
        raise StageInputError(f"{path.name} is {rate} Hz, {channels} channel(s), {8 * width}-bit; "
                              f"the stages need {SAMPLE_RATE} Hz mono 16-bit: run stage demux again")
    return wav


def _samples(frames: bytes) -> Any:
    import numpy as np

    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def read_wav(path: Path) -> Any:
    """Samples in [-1, 1) as a 1-D float32 numpy array; the file must be 16 kHz, mono, 16-bit PCM."""
    with _open(path) as wav:
        return _samples(wav.readframes(wav.getnframes()))


def wav_duration_s(path: Path) -> float:
    """The WAV's length in seconds, from its header (reads no samples)."""
    with _open(path) as wav:
        return round(wav.getnframes() / SAMPLE_RATE, 3)


def read_wav_span(path: Path, start_s: float, end_s: float) -> Any:
    """The samples from ``start_s`` to ``end_s`` (clipped to the file) as float32; only that span is read."""
    with _open(path) as wav:
        total = wav.getnframes()
        first = min(total, max(0, round(start_s * SAMPLE_RATE)))
        last = min(total, max(first, round(end_s * SAMPLE_RATE)))
        wav.setpos(first)
        return _samples(wav.readframes(last - first))


def wav_spans(path: Path, span_s: float) -> Iterator[tuple[float, Any]]:
    """(start second, samples) of consecutive spans of ``span_s`` seconds (the last may be shorter)."""
    with _open(path) as wav:
        size = max(1, round(span_s * SAMPLE_RATE))
        position = 0
        while True:
            frames = wav.readframes(size)
            if not frames:
                return
            yield position / SAMPLE_RATE, _samples(frames)
            position += len(frames) // 2


def duration_s(samples: Any) -> float:
    return round(len(samples) / SAMPLE_RATE, 3)
