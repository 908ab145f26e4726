"""Real films' awkward inputs, the parts that need no media: choosing the audio track, judging a short decode,
reading FFmpeg's progress, and a film with no speech."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from infra.errors import BadInputError
from infra.jobs.media import AudioStream, MediaInfo, choose_audio, stream_duration
from infra.jobs.prepare import JobRequest, check_request
from stages._ffmpeg import last_error_line, progress_seconds, run_ffmpeg, stage_threads
from stages.demux import clock, expected_audio, truncation_warning
from stages.mux import cue_count
from stages.subtitles import make_cues, srt_text, vtt_text


def film(*tracks: tuple[str, int, str | None, str | None]) -> MediaInfo:
    """A film whose audio tracks are (codec, channels, layout, language); stream 0 is the video."""
    audio = [AudioStream(index=i + 1, codec=codec, sample_rate=48000, channels=channels, channel_layout=layout,
                         language=language, duration_s=600.0) for i, (codec, channels, layout, language) in enumerate(tracks)]
    return MediaInfo(path="/films/f.mkv", size_bytes=1, format="matroska", duration_s=600.0, bit_rate=None,
                     audio=audio, video=[])


TWO = film(("aac", 2, "stereo", "eng"), ("ac3", 6, "5.1(side)", "hin"), ("ac3", 6, "5.1(side)", "hin"))


def test_the_first_track_by_default_and_the_record_says_what_and_why() -> None:
    assert choose_audio(TWO, None, None, "f.mkv") == {
        "track": 0, "stream": 1, "codec": "aac", "channels": 2, "channel_layout": "stereo", "language": "eng",
        "duration_s": 600.0, "reason": "the first audio track of 3 (default)"}
    assert choose_audio(film(("aac", 1, "mono", None)), None, None, "f")["reason"] == "the first audio track"


def test_a_track_by_number_or_by_its_language_tag() -> None:
    by_number = choose_audio(TWO, 2, None, "f.mkv")
    assert (by_number["track"], by_number["stream"], by_number["reason"]) == (2, 3, "--audio-track 2")
    by_tag = choose_audio(TWO, None, "HIN", "f.mkv")
    assert (by_tag["track"], by_tag["channels"], by_tag["channel_layout"]) == (1, 6, "5.1(side)")
    assert by_tag["reason"] == "--audio-language HIN (the first of 2 tracks tagged so)"


@pytest.mark.parametrize("track, language, message", [
    (3, None, "f.mkv: no audio track 3 (its audio tracks: 0 aac stereo eng, 1 ac3 5.1(side) hin, "
              "2 ac3 5.1(side) hin)"),
    (None, "tam", "f.mkv: no audio track tagged 'tam' (its audio tracks: 0 aac stereo eng, 1 ac3 5.1(side) hin, "
                  "2 ac3 5.1(side) hin)"),
])
def test_an_unknown_track_or_tag_lists_the_tracks(track: int | None, language: str | None, message: str) -> None:
    with pytest.raises(BadInputError) as caught:
        choose_audio(TWO, track, language, "f.mkv")
    assert caught.value.message == message


def test_an_untagged_track_without_a_layout_is_listed_plainly() -> None:
    with pytest.raises(BadInputError, match=r"its audio tracks: 0 pcm_s16le 2ch untagged\)"):
        choose_audio(film(("pcm_s16le", 2, None, None)), None, "eng", "f.wav")


@pytest.mark.parametrize("track, language, message", [
    (1, "hin", "not both"), (-1, None, "is not a track number"), (None, "x/y", "is not a language tag"),
    (None, "", "is not a language tag"),
])
def test_audio_options_refused_before_the_media_is_read(track: int | None, language: str | None, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        check_request(JobRequest(media=Path("x.mp4"), user="tester", audio_track=track, audio_language=language))


def test_audio_options_that_pass() -> None:
    for track, language in ((0, None), (12, None), (None, "hin"), (None, "en-US"), (None, None)):
        checked = check_request(JobRequest(media=Path("x.mp4"), user="t", audio_track=track, audio_language=language))
        assert (checked.request.audio_track, checked.request.audio_language) == (track, language)


@pytest.mark.parametrize("stream, seconds", [
    ({"duration": "10.600000"}, 10.6), ({"tags": {"DURATION": "00:00:10.600000000"}}, 10.6),
    ({"tags": {"duration": "01:02:03.500000000"}}, 3723.5), ({"duration": "N/A", "tags": {"DURATION": "x"}}, None),
    ({}, None),
])
def test_a_stream_s_duration_from_ffprobe_or_the_matroska_tag(stream: dict, seconds: float | None) -> None:
    assert stream_duration(stream) == seconds


@pytest.mark.parametrize("line, seconds", [("out_time_us=5108438\n", 5.108438), ("out_time_ms=2000000", 2.0),
                                           ("out_time_us=N/A", None), ("out_time=00:00:05.108438", None),
                                           ("progress=end", None), ("out_time_us=-23220", 0.0), ("", None)])
def test_progress_lines(line: str, seconds: float | None) -> None:
    assert progress_seconds(line) == seconds


def test_the_error_line_loses_ffmpeg_s_context_and_file_names() -> None:
    stderr = "[aac @ 0x55fa0df27a00] Input buffer exhausted\n[mov,mp4,m4a @ 0x5a] stream 1, offset 0xd1de: partial file\n"
    assert last_error_line(stderr) == "stream 1, offset 0xd1de: partial file"
    assert last_error_line("file:/m/a.mp4: Invalid data found\n", Path("/m/a.mp4")) == "Invalid data found"


FAKE_FFMPEG = """#!{python}
import os, sys, time
open({pid!r}, "w").write(str(os.getpid()))
for second in (1, 2, 3):
    print(f"frame=0\\nout_time_us={{second * 1000000}}\\nout_time=N/A\\nprogress=continue", flush=True)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
sys.stderr.write("x" * 199999 + "\\n" + "the last error\\n")
print("progress=end", flush=True)
sys.exit(int(os.environ.get("FAKE_CODE", "0")))
"""


@pytest.fixture
def fake_ffmpeg(tmp_path: Path) -> tuple[str, Path]:
    """A stand-in ffmpeg: three progress reports on stdout, 200 kB on stderr (more than a pipe holds)."""
    pid = tmp_path / "pid"
    binary = tmp_path / "ffmpeg"
    binary.write_text(FAKE_FFMPEG.format(python=sys.executable, pid=str(pid)))
    binary.chmod(0o755)
    return str(binary), pid


def test_run_ffmpeg_streams_progress_and_keeps_all_of_stderr(fake_ffmpeg: tuple[str, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    binary, _ = fake_ffmpeg
    seen: list[float] = []
    monkeypatch.setenv("FAKE_CODE", "3")
    proc = run_ffmpeg(binary, ["-i", "x"], progress=seen.append)
    assert seen == [1.0, 2.0, 3.0]
    assert proc.returncode == 3 and len(proc.stderr) == 200015
    assert last_error_line(proc.stderr) == "the last error"
    assert proc.args[-5:] == ["-nostats", "-progress", "pipe:1", "-i", "x"]


def test_a_failing_progress_callback_stops_ffmpeg(fake_ffmpeg: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    binary, pid = fake_ffmpeg
    monkeypatch.setenv("FAKE_SLEEP", "30")
    started = time.monotonic()

    def full_disk(seconds: float) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        run_ffmpeg(binary, [], progress=full_disk)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):      # killed and reaped, not left running
        os.kill(int(pid.read_text()), 0)


def test_clock() -> None:
    assert (clock(5108.4), clock(0), clock(59.9996)) == ("01:25:08.400", "00:00:00.000", "00:01:00.000")


@pytest.mark.parametrize("given, expected", [
    ({"duration_s": 11.0, "audio": {"duration_s": 10.6}}, (10.6, True)),
    ({"duration_s": 11.0, "audio": {"duration_s": None}}, (11.0, False)),
    ({"duration_s": 11.0}, (11.0, False)),                                   # a job prepared before input.audio
    ({"duration_s": 2.0, "clipped": True, "start_s": 9.5, "audio": {"duration_s": 10.6}}, (1.1, True)),
    ({"duration_s": 2.0, "clipped": True, "start_s": 1.0, "audio": {"duration_s": 10.6}}, (2.0, True)),
])
def test_how_much_audio_the_input_should_give(given: dict, expected: tuple[float, bool]) -> None:
    seconds, known = expected_audio({"input": given})
    assert (round(seconds, 6), known) == expected


def test_a_short_decode_is_a_warning_with_the_time_where_it_broke() -> None:
    warning = truncation_warning(5.108, 10.6, True, ["Error while decoding", "partial file"])
    assert warning == ("decoding stopped at 00:00:05.108 of 00:00:10.600: the file is truncated or damaged "
                       "(ffmpeg: partial file); the rest of the film has no subtitles")
    assert truncation_warning(5.3, 11.05, False, ["File ended prematurely"]).startswith("decoding stopped at 00:00:05.300")
    assert "(ffmpeg" not in truncation_warning(5.0, 10.6, True, [])


@pytest.mark.parametrize("decoded, expected, known, errors", [
    (10.55, 10.6, True, []),                 # AAC's padding, not a truncation
    (9.7, 10.6, True, ["a damaged frame"]),  # within a second
    (8.0, 11.0, False, []),                  # the container is longer than its audio, and FFmpeg said nothing
])
def test_what_is_not_a_truncation(decoded: float, expected: float, known: bool, errors: list[str]) -> None:
    assert truncation_warning(decoded, expected, known, errors) is None


def test_no_speech_gives_an_srt_without_cues_and_a_vtt_with_its_header() -> None:
    cues, prefixed = make_cues({"segments": []}, {"turns": []})
    assert (cues, prefixed) == ([], False)
    assert srt_text(cues) == "" and vtt_text(cues, prefixed) == "WEBVTT\n\n"
    assert cue_count("") == 0 and cue_count("WEBVTT\n\n") == 0
    assert cue_count("1\n00:00:00,500 --> 00:00:02,000\nHello.\n\n2\n00:00:03,000 --> 00:00:04,000\nBye.\n\n") == 2


@pytest.mark.parametrize("value, threads", [("3", 3), (" 1 ", 1), ("0", None), ("-2", None), ("two", None), ("", None)])
def test_ffmpeg_threads_follow_infra_threads(value: str, threads: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFRA_THREADS", value)
    assert stage_threads() == threads
