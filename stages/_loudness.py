"""How loud the job's audio is, measured as it is read: cheap enough to run beside the VAD on a whole film.

The audio is cut into frames of 100 ms; each frame's level is its RMS in dBFS
(20·log10 of the RMS against full scale, 1.0: a full-scale sine is -3 dBFS).
A frame under the silence level is silence. ``Loudness`` is fed the blocks the
stage reads, in order; frames that cross a block's end are counted once, so the
figures do not depend on the block size. It keeps one number per sounding frame
(10 a second, 432 KB for three hours), for the level of the louder parts.
"""

from __future__ import annotations

import math
from typing import Any

from stages._audio import SAMPLE_RATE

FRAME = SAMPLE_RATE // 10              # samples per frame (100 ms)
LOUD_PERCENTILE = 95                   # the louder parts' level: this percentile of the sounding frames' levels


def dbfs(level: float) -> float | None:
    """A level (RMS or peak, against full scale) in dBFS, to 0.1 dB; None for digital silence."""
    return round(20 * math.log10(level), 1) if level > 0 else None


class Loudness:
    """The RMS of the whole audio, its peak, the time in frames at or over ``silence_dbfs`` (sounding) and the
    level of its louder parts (the 95th percentile of the sounding frames' levels, which a click does not move)."""

    def __init__(self, silence_dbfs: float) -> None:
        import numpy as np

        self.floor = 10 ** (silence_dbfs / 10)          # a frame's mean square at the silence level
        self.silence_dbfs = silence_dbfs
        self.rest = np.zeros(0, np.float64)
        self.squares, self.samples, self.peak = 0.0, 0, 0.0
        self.loud_frames: list[Any] = []                # the mean squares of sounding frames, block by block

    def feed(self, block: Any) -> None:
        import numpy as np

        squared = np.asarray(block, np.float64) ** 2
        if not len(squared):
            return
        self.squares += float(squared.sum())
        self.samples += len(squared)
        self.peak = max(self.peak, float(np.sqrt(squared.max())))
        frames = np.concatenate([self.rest, squared])
        whole = len(frames) // FRAME * FRAME
        power = frames[:whole].reshape(-1, FRAME).mean(axis=1)
        self.loud_frames.append(power[power >= self.floor].astype(np.float32))
        self.rest = frames[whole:]

    @property
    def sounding_s(self) -> float:
        return round(sum(len(f) for f in self.loud_frames) * FRAME / SAMPLE_RATE, 1)

    @property
    def loud_dbfs(self) -> float | None:
        """The level of the louder parts in dBFS; None when no frame sounds."""
        import numpy as np

        sounding = np.concatenate(self.loud_frames) if self.loud_frames else np.zeros(0, np.float32)
        return dbfs(float(np.percentile(sounding, LOUD_PERCENTILE)) ** 0.5) if len(sounding) else None

    def summary(self) -> dict[str, Any]:
        """The figures to record: levels in dBFS (None for digital silence), sounding seconds, the silence level."""
        rms = (self.squares / self.samples) ** 0.5 if self.samples else 0.0
        return {"rms_dbfs": dbfs(rms), "peak_dbfs": dbfs(self.peak), "loud_dbfs": self.loud_dbfs,
                "sounding_s": self.sounding_s, "silence_dbfs": self.silence_dbfs}
