"""The mux stage on audio-only input: PCM cannot go into MP4 as it is, so it is re-encoded to AAC.

Like test_job_run_errors.py, this runs the real stage (FFmpeg and the standard
library) through `infra job run` with a stand-in native environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.media_fixtures import detected, media, workspace  # noqa: F401

SRT = "1\n00:00:00,500 --> 00:00:02,000\nSpeaker 1: Hello there.\n\n"


def test_mux_re_encodes_pcm_audio_and_adds_the_subtitle_track(workspace: Path, media: dict[str, Path],
                                                              run_cli) -> None:
    (workspace / ".venv-ml" / "bin").mkdir(parents=True)
    (workspace / ".venv-ml" / "bin" / "python").symlink_to(sys.executable)
    prepared = run_cli("job", "prepare", str(media["voice"]), "--mode", "native", "--language", "en", "--json",
                       cwd=workspace)
    assert prepared.code == 0, prepared.stderr
    job = json.loads(prepared.stdout)
    job_dir = workspace / job["dir"]
    (job_dir / "subtitles.srt").write_text(SRT)
    result = run_cli("job", "run", job["id"], "--stages", "mux")
    assert result.code == 0, result.stderr
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name:stream_tags=language",
                            "-of", "json", str(job_dir / "subtitled.mp4")], capture_output=True, text=True, check=True)
    streams = [(s["codec_type"], s["codec_name"], s.get("tags", {}).get("language"))
               for s in json.loads(probe.stdout)["streams"]]
    assert streams == [("audio", "aac", "und"), ("subtitle", "mov_text", "eng")]
    record = json.loads((job_dir / "results" / "mux.json").read_text())
    assert record["details"]["audio"] == "aac" and "video" not in record["details"]
    text = subprocess.run(["ffmpeg", "-v", "error", "-i", str(job_dir / "subtitled.mp4"), "-map", "0:s:0", "-f", "srt", "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "Speaker 1: Hello there." in text
