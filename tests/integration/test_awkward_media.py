"""Real films' awkward inputs, on media made here with ffmpeg and espeak-ng and run through the real stages.

Several audio tracks (one of them AC-3 5.1), a file cut in half with `head -c`,
a video without audio, a film with no speech (silence, pink noise, a chord) and a
three-hour file. The demux and mux tests run the real stage programs (FFmpeg and
the standard library) through `infra job run` with a stand-in native environment,
as test_mux_stage.py does; the whole-pipeline tests use the native ML environment
(.venv-ml) and Whisper tiny.en, as test_pipeline_native.py does.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.media_fixtures import SPEECH, detected, job_dirs, media, workspace  # noqa: F401

SOURCE_TONES = {"FL": 700, "FR": 850, "FC": 1000, "LFE": 60, "SL": 1500, "SR": 1700}
STAGES = ["demux", "vad", "asr", "diarize", "subtitles", "mux"]


def ffmpeg(*args: str, timeout: int = 120) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, capture_output=True, timeout=timeout)


def cut_in_half(source: Path, target: Path) -> Path:
    """The first half of the file's bytes, as `head -c` makes it."""
    with target.open("wb") as out:
        subprocess.run(["head", "-c", str(source.stat().st_size // 2), str(source)], stdout=out, check=True)
    return target


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """tracks.mkv (English stereo AAC, then Hindi-tagged AC-3 5.1 with a different tone on each channel),
    half.mp4 and half.mkv (speech, cut in half; the MP4 has its index first), moov_last_half.mp4 (index at the
    end: nothing is left to read), nospeech.mp4 (10 s silence, 10 s pink noise, 10 s of a chord)."""
    root = tmp_path_factory.mktemp("films")
    black = ["-f", "lavfi", "-i", "color=c=black:s=64x36:r=5:d=4"]
    sine = "sine=frequency={}:sample_rate=48000:duration=4"
    six = [arg for name in SOURCE_TONES for arg in ("-f", "lavfi", "-i", sine.format(SOURCE_TONES[name]))]
    join = ("".join(f"[{i + 2}:a]" for i in range(6)) + "join=inputs=6:channel_layout=5.1(side):map="
            + "|".join(f"{i}.0-{name}" for i, name in enumerate(SOURCE_TONES)) + ",volume=0.5[surround]")
    ffmpeg(*black, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4", *six,
           "-filter_complex", f"[1:a]aformat=channel_layouts=stereo[stereo];{join}",
           "-map", "0:v", "-map", "[stereo]", "-map", "[surround]", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a:0", "aac", "-c:a:1", "ac3", "-b:a:1", "384k", "-metadata:s:a:0", "language=eng",
           "-metadata:s:a:1", "language=hin", str(root / "tracks.mkv"))
    voice = root / "voice.wav"
    subprocess.run(["espeak-ng", "-w", str(voice), f"{SPEECH} {SPEECH}"], check=True, capture_output=True)
    picture = ["-f", "lavfi", "-i", "color=c=black:s=64x36:r=5", "-i", str(voice), "-shortest", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac"]
    ffmpeg(*picture, "-movflags", "+faststart", str(root / "whole.mp4"))
    ffmpeg(*picture, str(root / "moov_last.mp4"))
    ffmpeg(*picture, str(root / "whole.mkv"))
    for name in ("whole.mp4", "whole.mkv", "moov_last.mp4"):
        cut_in_half(root / name, root / name.replace("whole", "half").replace("moov_last", "moov_last_half"))
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x36:r=5:d=30",
           "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=10",
           "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:r=16000:d=10",
           "-f", "lavfi", "-i", "aevalsrc=0.2*sin(2*PI*220*t)+0.15*sin(2*PI*277.2*t)+0.15*sin(2*PI*329.6*t):s=16000:d=10",
           "-filter_complex", "[1:a][2:a][3:a]concat=n=3:v=0:a=1[a]", "-map", "0:v", "-map", "[a]",
           "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(root / "nospeech.mp4"))
    return {p.name: p for p in root.iterdir()}


@pytest.fixture
def stand_in_env(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace (the current folder, so its infra.yaml is the spec) with this interpreter as its native
    environment: enough for demux and mux (FFmpeg, stdlib)."""
    (workspace / ".venv-ml" / "bin").mkdir(parents=True)
    (workspace / ".venv-ml" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.chdir(workspace)
    return workspace


def prepare(run_cli, media: Path, *args: str) -> tuple[dict, Path]:
    result = run_cli("job", "prepare", str(media), "--mode", "native", "--language", "en", "--json", *args)
    assert result.code == 0, result.stderr
    job = json.loads(result.stdout)
    return job, Path(job["workspace"]) / job["dir"]


def amplitude(samples: list[float], frequency: float, rate: int = 16000) -> float:
    """The amplitude of one sine in ``samples`` (Goertzel over a whole number of periods)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
    return 2 * math.sqrt(max(power, 0.0)) / len(samples)


def wav_second(path: Path, start_s: float = 1.0) -> list[float]:
    """One second of a 16 kHz mono 16-bit WAV as floats."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        wav.setpos(int(start_s * 16000))
        data = wav.readframes(16000)
    return [int.from_bytes(data[i:i + 2], "little", signed=True) / 32768 for i in range(0, len(data), 2)]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# ---- several audio tracks ----

def test_the_first_track_by_default_and_the_choice_is_recorded(stand_in_env: Path, films: dict[str, Path],
                                                               run_cli) -> None:
    job, _ = prepare(run_cli, films["tracks.mkv"])
    assert job["input"]["audio"] == {"track": 0, "stream": 1, "codec": "aac", "channels": 2,
                                     "channel_layout": "stereo", "language": "eng",
                                     "duration_s": job["media"]["audio"][0]["duration_s"],
                                     "reason": "the first audio track of 2 (default)"}
    assert [a["language"] for a in job["media"]["audio"]] == ["eng", "hin"]


@pytest.mark.parametrize("choice, reason", [(["--audio-track", "1"], "--audio-track 1"),
                                            (["--audio-language", "hin"], "--audio-language hin")])
def test_a_track_by_number_or_by_language(stand_in_env: Path, films: dict[str, Path], run_cli, choice: list[str],
                                          reason: str) -> None:
    job, _ = prepare(run_cli, films["tracks.mkv"], *choice)
    audio = job["input"]["audio"]
    assert (audio["track"], audio["stream"], audio["codec"], audio["channels"], audio["channel_layout"],
            audio["language"], audio["reason"]) == (1, 2, "ac3", 6, "5.1(side)", "hin", reason)


TRACKS = "(its audio tracks: 0 aac stereo eng, 1 ac3 5.1(side) hin)"


@pytest.mark.parametrize("command, args, message", [
    ("prepare", ["--audio-track", "2"], f"tracks.mkv: no audio track 2 {TRACKS}"),
    ("prepare", ["--audio-language", "tam"], f"tracks.mkv: no audio track tagged 'tam' {TRACKS}"),
    ("run", ["--audio-language", "tam"], f"tracks.mkv: no audio track tagged 'tam' {TRACKS}"),
    ("prepare", ["--audio-track", "1", "--audio-language", "hin"], "give --audio-track or --audio-language, not both"),
    ("run", ["--audio-track", "-1"], "--audio-track -1 is not a track number"),
])
def test_an_unknown_track_is_exit_2_with_one_line_listing_the_tracks(stand_in_env: Path, films: dict[str, Path],
                                                                      run_cli, command: str, args: list[str],
                                                                      message: str) -> None:
    argv = ["job", "prepare"] if command == "prepare" else ["run"]
    result = run_cli(*argv, str(films["tracks.mkv"]), "--mode", "native", *args, cwd=stand_in_env)
    assert result.code == 2, (result.stdout, result.stderr)
    [error] = error_lines(result)
    assert message in error and "Traceback" not in result.stderr
    assert job_dirs(stand_in_env) == []


def test_demux_decodes_the_chosen_track(stand_in_env: Path, films: dict[str, Path], run_cli) -> None:
    _, first = prepare(run_cli, films["tracks.mkv"])
    result = run_cli("job", "run", first.name, "--stages", "demux")
    assert result.code == 0, result.stderr
    second = wav_second(first / "audio.wav")
    assert amplitude(second, 440) > 0.05 and amplitude(second, 1000) < 0.001
    record = json.loads((first / "results" / "demux.json").read_text())
    assert (record["details"]["audio_track"], record["details"]["source_channels"]) == (0, 2)


def test_demux_downmixes_5_1_keeping_the_centre_loudest_and_leaving_out_the_lfe(stand_in_env: Path,
                                                                                 films: dict[str, Path],
                                                                                 run_cli) -> None:
    """FFmpeg's matrix for 5.1 to mono (ITU-R BS.775): centre 1, front left and right 0.71, surrounds 0.5, LFE 0."""
    _, job_dir = prepare(run_cli, films["tracks.mkv"], "--audio-language", "hin")
    result = run_cli("job", "run", job_dir.name, "--stages", "demux")
    assert result.code == 0, result.stderr
    second = wav_second(job_dir / "audio.wav")
    level = {name: amplitude(second, hz) for name, hz in SOURCE_TONES.items()}
    assert amplitude(second, 440) < 0.001                     # not the English track
    assert level["FC"] > 0.01                                  # 1/8 (the sine) x 0.5 (volume) x 0.29 (the matrix)
    assert 0.64 < level["FL"] / level["FC"] < 0.78 and 0.64 < level["FR"] / level["FC"] < 0.78
    assert 0.43 < level["SL"] / level["FC"] < 0.57 and 0.43 < level["SR"] / level["FC"] < 0.57
    assert level["LFE"] / level["FC"] < 0.02
    record = json.loads((job_dir / "results" / "demux.json").read_text())
    assert (record["details"]["audio_track"], record["details"]["source_channels"],
            record["details"]["channel_layout"]) == (1, 6, "5.1(side)")


# ---- truncated files, no audio ----

@pytest.mark.parametrize("name", ["half.mp4", "half.mkv"])
def test_a_truncated_file_is_decoded_as_far_as_it_goes_with_a_warning(stand_in_env: Path, films: dict[str, Path],
                                                                      run_cli, name: str) -> None:
    job, job_dir = prepare(run_cli, films[name])
    whole = job["input"]["audio"]["duration_s"]
    assert whole and whole > 9, "ffprobe reads the stream's full length from the headers"
    result = run_cli("job", "run", job["id"], "--stages", "demux")
    assert result.code == 0, result.stderr
    details = json.loads((job_dir / "results" / "demux.json").read_text())["details"]
    decoded = details["decoded_until_s"]
    assert 0.3 * whole < decoded < 0.7 * whole and details["duration_s"] == decoded
    with wave.open(str(job_dir / "audio.wav"), "rb") as wav:
        assert abs(wav.getnframes() / 16000 - decoded) < 0.001
    stamp = f"00:00:{int(decoded):02d}.{round(decoded * 1000) % 1000:03d}"
    assert details["warning"].startswith(f"decoding stopped at {stamp} of 00:00:")
    assert "the file is truncated or damaged (ffmpeg: " in details["warning"]
    data = json.loads((job_dir / "job.json").read_text())
    [entry] = [s for s in data["stages"] if s["name"] == "demux"]
    assert (entry["status"], entry["warning"]) == ("done", details["warning"])
    assert f"demux: warning: {details['warning']}" in (job_dir / "logs" / "demux.log").read_text()


def test_a_whole_file_has_no_warning(stand_in_env: Path, films: dict[str, Path], run_cli) -> None:
    job, job_dir = prepare(run_cli, films["whole.mp4"])
    assert run_cli("job", "run", job["id"], "--stages", "demux").code == 0
    details = json.loads((job_dir / "results" / "demux.json").read_text())["details"]
    assert "warning" not in details and details["ffmpeg_errors"] == 0
    assert abs(details["duration_s"] - details["expected_s"]) < 0.1
    assert "warning" not in [s for s in json.loads((job_dir / "job.json").read_text())["stages"]
                             if s["name"] == "demux"][0]


def test_an_mp4_cut_before_its_index_is_refused_at_prepare(stand_in_env: Path, films: dict[str, Path],
                                                           run_cli) -> None:
    result = run_cli("job", "prepare", str(films["moov_last_half.mp4"]), cwd=stand_in_env)
    assert result.code == 2
    [error] = error_lines(result)
    assert "not a media file ffprobe can read (moov atom not found)" in error
    assert job_dirs(stand_in_env) == []


def test_a_video_without_audio_is_refused_by_run_before_anything_is_made(stand_in_env: Path,
                                                                         media: dict[str, Path], run_cli) -> None:
    result = run_cli("run", str(media["silent"]), "--mode", "native", cwd=stand_in_env)
    assert result.code == 2 and result.stdout == ""
    [error] = error_lines(result)
    assert error == f"error: {media['silent']}: has no audio stream (streams found: video)"
    assert job_dirs(stand_in_env) == [] and not list((stand_in_env / "jobs").glob("2*"))


# ---- progress ----

def test_demux_and_mux_report_progress_up_to_the_input_s_duration(stand_in_env: Path, films: dict[str, Path],
                                                                  run_cli) -> None:
    job, job_dir = prepare(run_cli, films["whole.mp4"])
    (job_dir / "subtitles.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello.\n\n")
    assert run_cli("job", "run", job["id"], "--stages", "demux,mux").code == 0
    for stage in ("demux", "mux"):
        progress = json.loads((job_dir / "progress" / f"{stage}.json").read_text())
        assert progress["stage"] == stage and progress["total_s"] == round(job["input"]["duration_s"], 3)
        assert progress["done_s"] == progress["total_s"] and progress["eta_s"] == 0


def test_run_ffmpeg_reports_progress_while_it_runs(tmp_path: Path) -> None:
    from stages._ffmpeg import ffmpeg_binary, run_ffmpeg

    seen: list[tuple[float, float]] = []
    started = time.monotonic()
    proc = run_ffmpeg(ffmpeg_binary(), ["-re", "-f", "lavfi", "-i", "sine=duration=2.5", "-f", "null", "-"],
                      progress=lambda s: seen.append((round(time.monotonic() - started, 2), s)))
    assert proc.returncode == 0, proc.stderr
    done = [s for _, s in seen]
    assert done == sorted(done) and abs(done[-1] - 2.5) < 0.1
    assert len([t for t, s in seen if s < 2.0]) >= 2, f"reports while it ran, not only at the end: {seen}"


# ---- a three-hour film ----

def test_a_three_hour_film_prepares_from_its_headers_and_demuxes_in_bounded_memory(stand_in_env: Path,
                                                                                    run_cli) -> None:
    """Three hours of 8 kHz mono AAC (a minute looped with -c copy): prepare reads only the headers; the demux
    stage streams to audio.wav (345 MB), so neither it nor its FFmpeg holds the audio."""
    minute, film = stand_in_env / "minute.m4a", stand_in_env / "three-hours.m4a"
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.1:r=8000:d=60", "-c:a", "aac", "-b:a", "16k",
           str(minute))
    ffmpeg("-stream_loop", "179", "-i", str(minute), "-c", "copy", str(film))
    clock = time.monotonic()
    job, job_dir = prepare(run_cli, film)
    assert time.monotonic() - clock < 10
    assert 10799 < job["input"]["duration_s"] < 10810     # AAC pads each looped minute a little
    peak = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", "stages.demux", str(job_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert peak.returncode == 0, peak.stderr
    peak_mb = float(peak.stdout.split()[-1])
    with wave.open(str(job_dir / "audio.wav"), "rb") as wav:
        assert abs(wav.getnframes() / 16000 - job["input"]["duration_s"]) < 1
    size_mb = (job_dir / "audio.wav").stat().st_size / 2**20
    assert size_mb > 300 and peak_mb < 200, f"demux peak RSS {peak_mb:.0f} MB for a {size_mb:.0f} MB WAV"
    (job_dir / "audio.wav").unlink()


PEAK = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
sys.exit(code)
"""


# ---- the whole pipeline, natively ----


@pytest.fixture
def native(workspace: Path, ml_env: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (workspace / ".venv-ml").symlink_to(ml_env)
    monkeypatch.setenv("INFRA_CACHE", str(model_cache))
    monkeypatch.chdir(workspace)
    return workspace


def test_a_film_without_speech_gets_empty_subtitles_and_a_video_without_a_subtitle_track(native: Path,
                                                                                       films: dict[str, Path],
                                                                                       run_cli) -> None:
    result = run_cli("run", str(films["nospeech.mp4"]), "--mode", "native", "--model", "tiny.en", "--language", "en",
                     cwd=native)
    assert result.code == 0, result.stdout + result.stderr
    [job_dir] = job_dirs(native)
    data = json.loads((job_dir / "job.json").read_text())
    assert data["status"] == "done" and [s["status"] for s in data["stages"]] == ["done"] * len(STAGES)
    assert json.loads((job_dir / "vad.json").read_text())["segments"] == []
    assert (job_dir / "subtitles.srt").read_text() == ""
    assert (job_dir / "subtitles.vtt").read_text() == "WEBVTT\n\n"
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type:format=duration", "-of", "json",
                            str(job_dir / "subtitled.mp4")], capture_output=True, text=True, check=True)
    shown = json.loads(probe.stdout)
    assert [s["codec_type"] for s in shown["streams"]] == ["video", "audio"]
    assert abs(float(shown["format"]["duration"]) - 30) < 0.2
    mux = json.loads((job_dir / "results" / "mux.json").read_text())["details"]
    assert (mux["cues"], mux["subtitle_track"], mux["note"]) == (0, False, "no speech: no subtitle track")
    subtitles = json.loads((job_dir / "results" / "subtitles.json").read_text())["details"]
    assert subtitles["cues"] == 0 and "no cues" in subtitles["note"]


def test_a_truncated_film_is_subtitled_up_to_where_it_breaks(native: Path, films: dict[str, Path], run_cli) -> None:
    result = run_cli("run", str(films["half.mp4"]), "--mode", "native", "--model", "tiny.en", "--language", "en",
                     cwd=native)
    assert result.code == 0, result.stdout + result.stderr
    [job_dir] = job_dirs(native)
    data = json.loads((job_dir / "job.json").read_text())
    assert data["status"] == "done"
    demux = [s for s in data["stages"] if s["name"] == "demux"][0]
    assert demux["warning"].startswith("decoding stopped at 00:00:0")
    decoded = json.loads((job_dir / "results" / "demux.json").read_text())["details"]["decoded_until_s"]
    srt = (job_dir / "subtitles.srt").read_text()
    assert "short film" in srt and "pipeline" in srt
    last_end = srt.strip().splitlines()
    ends = [line.split(" --> ")[1] for line in last_end if " --> " in line]
    h, m, s = ends[-1].replace(",", ".").split(":")
    assert int(h) * 3600 + int(m) * 60 + float(s) <= decoded + 1.5
    assert os.path.getsize(job_dir / "subtitled.mp4") > 0
