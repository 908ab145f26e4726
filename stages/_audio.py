"""The job's audio: the 16 kHz mono 16-bit PCM WAV that demux writes, read into a float32 array."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

from stages._jobio import StageInputError

SAMPLE_RATE = 16000
AUDIO_FILE = "audio.wav"


def read_wav(path: Path) -> Any:
    """Samples in [-1, 1) as a 1-D float32 numpy array; the file must be 16 kHz, mono, 16-bit PCM."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise StageInputError(f"missing input {path.name}: run stage demux first") from None
    except (wave.Error, EOFError) as exc:
        raise StageInputError(f"{path.name} is not a PCM WAV file ({exc}): run stage demux again") from None
    if (rate, channels, width) != (SAMPLE_RATE, 1, 2):
        raise StageInputError(f"{path.name} is {rate} Hz, {channels} channel(s), {8 * width}-bit; "
                              f"the stages need {SAMPLE_RATE} Hz mono 16-bit: run stage demux again")
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def duration_s(samples: Any) -> float:
    return round(len(samples) / SAMPLE_RATE, 3)
