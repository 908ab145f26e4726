"""Media facts from one ffprobe call, the audio track a job uses, times on the command line, and clips cut by ffmpeg.

``start_probe`` checks the path and starts ffprobe in the background, so the
caller can load the spec and the hardware cache while ffprobe reads the file.
Only ffprobe reads the file here (its headers, not the samples), so preparing a
three-hour film takes as long as preparing a clip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from infra.errors import BadInputError, OperationError
from infra.hardware.snapshot import Model

PROBE_TIMEOUT_S = 60
CUT_TIMEOUT_S = 3600
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+")
FFMPEG_HINT = "install FFmpeg (apt-get install ffmpeg, or brew install ffmpeg)"


class AudioStream(Model):
    index: int
    codec: str | None
    sample_rate: int | None
    channels: int | None
    language: str | None
    channel_layout: str | None = None
    duration_s: float | None = None      # the stream's own, when the container says it


class VideoStream(Model):
    index: int
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None


class MediaInfo(Model):
    path: str
    size_bytes: int
    format: str | None
    duration_s: float
    bit_rate: int | None
    audio: list[AudioStream]
    video: list[VideoStream]


def parse_time(text: str, flag: str) -> float:
    """'01:02:03.5', '02:03' or '123.5' -> seconds; BadInputError for anything else."""
    *whole, last = text.strip().split(":")
    ok = (len(whole) <= 2 and _SECONDS.fullmatch(last) is not None and all(_WHOLE.fullmatch(p) for p in whole)
          and (not whole or float(last) < 60) and (len(whole) < 2 or int(whole[1]) < 60))
    if not ok:
        raise BadInputError(f"{flag} {text!r} is not a time: use HH:MM:SS, MM:SS or seconds (e.g. 00:01:02.5)")
    total = float(last)
    for power, part in enumerate(reversed(whole), start=1):
        total += int(part) * 60 ** power
    return total


def format_time(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{seconds - whole + whole % 60:06.3f}"


def check_media_path(path: Path) -> Path:
    """The checks that need no ffprobe: exists, is a file, is not empty."""
    shown = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInputError(f"{shown}: no such file") from None
    except OSError as exc:
        raise BadInputError(f"{shown}: cannot be read ({exc.strerror})") from None
    if path.is_dir():
        raise BadInputError(f"{shown}: is a directory, not a media file")
    if st.st_size == 0:
        raise BadInputError(f"{shown}: is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise BadInputError(f"{shown}: is not readable (permissions)")
    return path.resolve()


class MediaProbe:
    """One ffprobe run, started at once; ``result()`` waits for it and judges the file."""

    def __init__(self, path: Path) -> None:
        from infra.jobs.probe import start_probe, take_early

        self.path = check_media_path(path)
        self.shown = str(path)
        proc = take_early(self.path) or start_probe(self.path)
        if proc is None:
            raise OperationError("ffprobe not found on PATH", hint=FFMPEG_HINT)
        self._proc = proc

    def result(self) -> MediaInfo:
        try:
            out, err = self._proc.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            raise OperationError(f"{self.shown}: ffprobe took longer than {PROBE_TIMEOUT_S} s") from None
        if self._proc.returncode != 0:
            last = next((ln.strip() for ln in reversed(err.splitlines()) if ln.strip()), "unknown error")
            last = last.replace(f"file:{self.path}: ", "")
            if "moov atom not found" in err:       # the last line only says 'Invalid data found ...'
                raise BadInputError(f"{self.shown}: not a media file ffprobe can read (moov atom not found)",
                                    hint="an MP4 without its index (moov) was cut short or never finished "
                                         "writing: nothing in it can be decoded")
            raise BadInputError(f"{self.shown}: not a media file ffprobe can read ({last})")
        return media_info(self.path, self.shown, json.loads(out or "{}"))


def media_info(path: Path, shown: str, data: dict) -> MediaInfo:
    """Judge ffprobe's JSON: an audio stream and a duration are required."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    audio = [AudioStream(index=s.get("index", i), codec=s.get("codec_name"), sample_rate=_int(s.get("sample_rate")),
                         channels=_int(s.get("channels")), language=(s.get("tags") or {}).get("language"),
                         channel_layout=s.get("channel_layout"), duration_s=stream_duration(s))
             for i, s in enumerate(streams) if s.get("codec_type") == "audio"]
    video = [VideoStream(index=s.get("index", i), codec=s.get("codec_name"), width=_int(s.get("width")),
                         height=_int(s.get("height")), fps=_rate(s.get("avg_frame_rate")))
             for i, s in enumerate(streams) if s.get("codec_type") == "video"
             and not (s.get("disposition") or {}).get("attached_pic")]
    if not audio:
        kinds = sorted({str(s.get("codec_type")) for s in streams}) or ["none"]
        raise BadInputError(f"{shown}: has no audio stream (streams found: {', '.join(kinds)})")
    duration = _float(fmt.get("duration")) or max((_float(s.get("duration")) or 0.0 for s in streams), default=0.0)
    if not duration:
        raise BadInputError(f"{shown}: ffprobe reports no duration")
    return MediaInfo(path=str(path), size_bytes=int(fmt.get("size") or path.stat().st_size),
                     format=fmt.get("format_name"), duration_s=duration, bit_rate=_int(fmt.get("bit_rate")),
                     audio=audio, video=video)


def stream_duration(stream: dict) -> float | None:
    """A stream's duration: ffprobe's field (MP4), else the DURATION tag Matroska muxers write ('01:02:03.5')."""
    seconds = _float(stream.get("duration"))
    if seconds:
        return seconds
    tags = {str(k).upper(): v for k, v in (stream.get("tags") or {}).items()}
    hours, _, rest = str(tags.get("DURATION") or "").partition(":")
    minutes, _, secs = rest.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and _float(secs) is not None):
        return None
    return round(int(hours) * 3600 + int(minutes) * 60 + float(secs), 6) or None


def describe_track(number: int, stream: AudioStream) -> str:
    """'1 ac3 5.1(side) hin': the track number among the audio streams, codec, channels and language tag."""
    layout = stream.channel_layout or (f"{stream.channels}ch" if stream.channels else "?ch")
    return f"{number} {stream.codec or '?'} {layout} {stream.language or 'untagged'}"


def choose_audio(media: MediaInfo, track: int | None, language: str | None, shown: str) -> dict:
    """The audio track a job decodes: --audio-track N (0-based among the audio streams), else the first tagged
    --audio-language, else the first; what it is and why it was chosen. BadInputError lists the tracks."""
    listing = ", ".join(describe_track(n, s) for n, s in enumerate(media.audio))
    if track is not None:
        if track >= len(media.audio):
            raise BadInputError(f"{shown}: no audio track {track} (its audio tracks: {listing})",
                                hint="--audio-track counts the audio tracks from 0")
        number, reason = track, f"--audio-track {track}"
    elif language is not None:
        tagged = [n for n, s in enumerate(media.audio) if (s.language or "").lower() == language.lower()]
        if not tagged:
            raise BadInputError(f"{shown}: no audio track tagged {language!r} (its audio tracks: {listing})",
                                hint="--audio-language takes the tag as listed, or choose with --audio-track N")
        number = tagged[0]
        reason = f"--audio-language {language}" + (f" (the first of {len(tagged)} tracks tagged so)"
                                                   if len(tagged) > 1 else "")
    else:
        number = 0
        reason = "the first audio track" + (f" of {len(media.audio)} (default)" if len(media.audio) > 1 else "")
    stream = media.audio[number]
    return {"track": number, "stream": stream.index, "codec": stream.codec, "channels": stream.channels,
            "channel_layout": stream.channel_layout, "language": stream.language,
            "duration_s": stream.duration_s, "reason": reason}


def check_range(start: float | None, end: float | None, duration: float | None = None) -> None:
    """--start and --end come together, in order, inside the media (when its duration is known)."""
    if start is None and end is None:
        return
    if start is None:
        raise BadInputError("--end needs --start (give both to cut a clip, or neither)")
    if end is None:
        raise BadInputError("--start needs --end (give both to cut a clip, or neither)")
    if end <= start:
        raise BadInputError(f"--end {format_time(end)} is not after --start {format_time(start)}")
    if duration is not None and end > duration:
        raise BadInputError(f"--end {format_time(end)} is past the end of the media ({format_time(duration)})")


def cut_clip(source: Path, target: Path, start: float, end: float) -> None:
    """Copy the streams between start and end (no re-encoding; video starts at the keyframe at or before start)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise OperationError("ffmpeg not found on PATH", hint=FFMPEG_HINT)
    cmd = [ffmpeg, "-v", "error", "-nostdin", "-y", "-ss", f"{start:.3f}", "-i", f"file:{source}",
           "-t", f"{end - start:.3f}", "-map", "0", "-c", "copy", f"file:{target}"]
    try:
        subprocess.run(cmd, capture_output=True, text=True, timeout=CUT_TIMEOUT_S, check=True)
    except subprocess.CalledProcessError as exc:
        last = next((ln for ln in reversed(exc.stderr.splitlines()) if ln.strip()), f"exit code {exc.returncode}")
        raise OperationError(f"ffmpeg could not cut {source.name}: {last.strip()}") from None
    except subprocess.TimeoutExpired:
        raise OperationError(f"ffmpeg took longer than {CUT_TIMEOUT_S} s to cut {source.name}") from None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _rate(value: object) -> float | None:
    num, _, den = str(value or "").partition("/")
    n, d = _float(num), _float(den or "1")
    return round(n / d, 3) if n and d else None
