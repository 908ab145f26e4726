"""Stage demux: the job's input (its clip when it has one) to audio.wav, 16 kHz mono 16-bit PCM.

FFmpeg decodes the first audio stream and resamples it; the WAV is written beside
its final name and renamed, so audio.wav is either whole or absent.
Usage: python3 -m stages.demux [JOB_DIR]
"""

from __future__ import annotations

import os
import wave

from stages._audio import AUDIO_FILE, SAMPLE_RATE
from stages._ffmpeg import ffmpeg_binary, ffmpeg_version, last_error_line, run_ffmpeg
from infra.jobproto import temporary_beside
from stages._jobio import StageContext, StageInputError, main_of

NAME = "demux"


def demux(ctx: StageContext) -> None:
    source = ctx.input_media()
    binary = ffmpeg_binary()
    ctx.versions["ffmpeg"] = ffmpeg_version(binary)
    target = ctx.path(AUDIO_FILE)
    partial = temporary_beside(target)
    try:
        proc = run_ffmpeg(binary, ["-i", f"file:{source}", "-map", "0:a:0", "-vn", "-sn", "-dn",
                                   "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav",
                                   f"file:{partial}"])
        if proc.returncode != 0:
            raise StageInputError(f"ffmpeg cannot decode {source.name}: {last_error_line(proc.stderr, source)}")
        with wave.open(str(partial), "rb") as wav:
            frames = wav.getnframes()
        if frames == 0:
            raise StageInputError(f"ffmpeg decoded no audio from {source.name}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    ctx.details.update({"input": str(source), "output": AUDIO_FILE, "sample_rate": SAMPLE_RATE,
                        "duration_s": round(frames / SAMPLE_RATE, 3)})


if __name__ == "__main__":
    main_of(NAME, demux)
