"""Stage mux: subtitled.mp4, a copy of the job's input with subtitles.srt as a soft subtitle track (mov_text).

Video and audio streams are copied when MP4 can hold their codecs and re-encoded
(H.264, AAC) when it cannot; the record says which. The file is written beside
its final name and renamed; a re-encode uses $INFRA_THREADS threads when the
pipeline sets it. A film in which nobody speaks has an SRT without
cues: its copy is written without a subtitle track (FFmpeg cannot read an empty
SRT), and the record says so. Progress (seconds written out of the input's
duration) goes to progress/mux.json.
Usage: python3 -m stages.mux [JOB_DIR]
"""

from __future__ import annotations

import json
import os
from typing import Any

from stages._ffmpeg import ffmpeg_binary, ffmpeg_version, last_error_line, run_ffmpeg, stage_threads
from infra.jobproto import StageProgress, temporary_beside
from stages._jobio import StageContext, StageError, main_of

NAME = "mux"
INPUT = "subtitles.srt"
OUTPUT = "subtitled.mp4"
MP4_VIDEO = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9", "mjpeg", "mpeg2video", "mpeg1video"})
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac", "mp2"})
ISO_639_2 = {"en": "eng", "hi": "hin", "ur": "urd", "bn": "ben", "ta": "tam", "te": "tel", "mr": "mar", "gu": "guj",
             "pa": "pan", "fr": "fra", "de": "deu", "es": "spa", "it": "ita", "ja": "jpn", "zh": "zho", "ru": "rus"}


def codec_choices(media: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """ffmpeg codec arguments for the input's streams, and for each kind, 'copy' or what it is re-encoded to."""
    args: list[str] = []
    chosen: dict[str, str] = {}
    video, audio = media.get("video") or [], media.get("audio") or []
    if video:
        copy = all(v.get("codec") in MP4_VIDEO for v in video)
        chosen["video"] = "copy" if copy else "h264"
        args += ["-c:v", "copy"] if copy else ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"]
    if audio:
        copy = all(a.get("codec") in MP4_AUDIO for a in audio)
        chosen["audio"] = "copy" if copy else "aac"
        args += ["-c:a", "copy"] if copy else ["-c:a", "aac", "-b:a", "160k"]
    return args, chosen


def spoken_language(ctx: StageContext) -> str:
    """The job's language, else the one ASR detected (asr.json, when it is there), else ''."""
    if ctx.config.get("language"):
        return str(ctx.config["language"])
    try:
        return str(json.loads(ctx.path("asr.json").read_text(encoding="utf-8")).get("language") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def cue_count(srt: str) -> int:
    """The cues of an SRT text (lines with a '-->' timing)."""
    return sum(1 for line in srt.splitlines() if "-->" in line)


def mux(ctx: StageContext) -> None:
    (srt,) = ctx.require(INPUT, made_by="subtitles")
    source = ctx.input_media()
    binary = ffmpeg_binary()
    ctx.versions["ffmpeg"] = ffmpeg_version(binary)
    codecs, chosen = codec_choices(ctx.job.get("media") or {})
    language = ISO_639_2.get(spoken_language(ctx), "und")
    cues = cue_count(srt.read_text(encoding="utf-8", errors="replace"))
    inputs, maps, subtitle = ["-i", f"file:{source}"], ["-map", "0:v?", "-map", "0:a?"], []
    if cues:
        inputs += ["-i", f"file:{srt}"]
        maps += ["-map", "1:0"]
        subtitle = ["-c:s", "mov_text", "-metadata:s:s:0", f"language={language}"]
    threads = stage_threads()
    encoder = ["-threads", str(threads)] if threads else []        # the encoders'; copied streams ignore it
    target = ctx.path(OUTPUT)
    partial = temporary_beside(target)
    meter = StageProgress(ctx.job_dir, NAME, float((ctx.job.get("input") or {}).get("duration_s") or 0.0))
    try:
        proc = run_ffmpeg(binary, [*inputs, *maps, *codecs, *subtitle, "-map_metadata", "0", "-movflags", "+faststart",
                                   *encoder, "-f", "mp4", f"file:{partial}"], progress=meter.update)
        if proc.returncode != 0:
            raise StageError(f"ffmpeg cannot mux {source.name} with {srt.name}: "
                             f"{last_error_line(proc.stderr, source, srt, partial)}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    meter.finish()
    ctx.details.update({"input": str(source), "output": OUTPUT, "cues": cues, "subtitle_track": bool(cues),
                        **({"subtitle_language": language} if cues else {"note": "no speech: no subtitle track"}),
                        "threads": threads, **chosen})


if __name__ == "__main__":
    main_of(NAME, mux)
