"""Stage demux: the job's input (its clip when it has one) to audio.wav, 16 kHz mono 16-bit PCM.

FFmpeg decodes the job's audio track (``input.audio.track`` in job.json, chosen
when the job was prepared; the first when absent) and resamples it, streaming
to the WAV, so memory does not grow with the film. The WAV is written beside
its final name and renamed, so audio.wav is either whole or absent.

Several channels become one with FFmpeg's own downmix matrix: for 5.1 that is
the ITU-R BS.775 weighting (centre 1, front left/right 0.71, surrounds 0.5, LFE
left out, scaled down together so nothing clips), so the dialogue in the centre
channel keeps the largest share.

A file that ends early (truncated, a download cut short) is decoded as far as
it goes: when the audio stops more than TOLERANCE_S before where the stream
(or, when FFmpeg also reports errors, the container) says it ends, the stage
still succeeds and records a warning with the time where decoding broke, in its
result and in its job.json entry. Progress (seconds of audio written out of the
input's duration) goes to progress/demux.json.
Usage: python3 -m stages.demux [JOB_DIR]
"""

from __future__ import annotations

import os
import sys
import wave
from typing import Any

from stages._audio import AUDIO_FILE, SAMPLE_RATE
from stages._ffmpeg import ffmpeg_binary, ffmpeg_version, last_error_line, run_ffmpeg
from infra.jobproto import StageProgress, temporary_beside, update_stage_entry
from stages._jobio import StageContext, StageInputError, main_of

NAME = "demux"
TOLERANCE_S = 1.0


def clock(seconds: float) -> str:
    """5108.4 -> '01:25:08.400'."""
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def expected_audio(job: dict[str, Any]) -> tuple[float, bool]:
    """How many seconds of audio the input should give, and whether that is the audio stream's own length
    (else it is the container's, which may be longer than its audio)."""
    given = job.get("input") or {}
    total = float(given.get("duration_s") or 0.0)
    stream = (given.get("audio") or {}).get("duration_s")
    if not stream:
        return total, False
    if given.get("clipped"):
        return min(total, max(0.0, float(stream) - float(given.get("start_s") or 0.0))), True
    return float(stream), True


def truncation_warning(decoded_s: float, expected_s: float, stream_known: bool, errors: list[str]) -> str | None:
    """The warning for audio that stops early, or None: more than TOLERANCE_S short of the stream's length,
    or of the container's when FFmpeg reported errors too."""
    if expected_s - decoded_s <= TOLERANCE_S or not (stream_known or errors):
        return None
    why = f" (ffmpeg: {errors[-1]})" if errors else ""
    return (f"decoding stopped at {clock(decoded_s)} of {clock(expected_s)}: the file is truncated or damaged{why}; "
            f"the rest of the film has no subtitles")


def demux(ctx: StageContext) -> None:
    source = ctx.input_media()
    binary = ffmpeg_binary()
    ctx.versions["ffmpeg"] = ffmpeg_version(binary)
    audio = (ctx.job.get("input") or {}).get("audio") or {}
    track = int(audio.get("track") or 0)
    expected_s, stream_known = expected_audio(ctx.job)
    update_stage_entry(ctx.job_dir, NAME, warning=None)
    target = ctx.path(AUDIO_FILE)
    partial = temporary_beside(target)
    meter = StageProgress(ctx.job_dir, NAME, float((ctx.job.get("input") or {}).get("duration_s") or expected_s))
    try:
        proc = run_ffmpeg(binary, ["-i", f"file:{source}", "-map", f"0:a:{track}", "-vn", "-sn", "-dn",
                                   "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "wav",
                                   f"file:{partial}"], progress=meter.update)
        if proc.returncode != 0:
            raise StageInputError(f"ffmpeg cannot decode {source.name}: {last_error_line(proc.stderr, source)}")
        with wave.open(str(partial), "rb") as wav:
            frames = wav.getnframes()
        if frames == 0:
            raise StageInputError(f"ffmpeg decoded no audio from {source.name}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    meter.finish()
    decoded_s = round(frames / SAMPLE_RATE, 3)
    errors = [last_error_line(line, source) for line in proc.stderr.splitlines() if line.strip()]
    warning = truncation_warning(decoded_s, expected_s, stream_known, errors)
    ctx.details.update({"input": str(source), "output": AUDIO_FILE, "sample_rate": SAMPLE_RATE,
                        "duration_s": decoded_s, "expected_s": round(expected_s, 3), "audio_track": track,
                        "source_codec": audio.get("codec"), "source_channels": audio.get("channels"),
                        "channel_layout": audio.get("channel_layout"), "ffmpeg_errors": len(errors)})
    if warning:
        ctx.details.update({"warning": warning, "decoded_until_s": decoded_s})
        update_stage_entry(ctx.job_dir, NAME, warning=warning)
        print(f"{NAME}: warning: {warning}", file=sys.stderr)


if __name__ == "__main__":
    main_of(NAME, demux)
