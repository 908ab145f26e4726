"""The pipeline's own subtitles pass `infra subs check`: real speech (pyannote.audio's sample.wav, 30 s of a
telephone conversation between two speakers) and the built-in two-voice sample, run natively with Whisper tiny.en.

sample.wav comes out of pyannote.audio's wheel (`pip download --no-deps`, nothing installed), as
bench/quality.py takes it. Two short jobs in one workspace; every .srt and .vtt they write is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from tests.integration.media_fixtures import detected  # noqa: F401

@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, pyannote_sample: dict[str, Path],
         detected) -> dict[str, Path]:  # noqa: F811
    """The job directories of `infra run` on the real speech and on `--sample`, in one fresh workspace."""
    ws = tmp_path_factory.mktemp("ws")
    (ws / ".venv-ml").symlink_to(ml_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    env = {**{k: v for k, v in os.environ.items() if k != "INFRA_FILE"}, "INFRA_CACHE": str(model_cache)}
    out = {}
    for name, media in (("real", [str(pyannote_sample["wav"])]), ("sample", ["--sample"])):
        run = subprocess.run([sys.executable, "-m", "infra", "run", *media, "--mode", "native", "--model", "tiny.en",
                              "--language", "en"], cwd=ws, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        job_id = re.search(r"^job (\d{8}-\d{4}):", run.stdout, re.M).group(1)
        out[name] = ws / (ws / "jobs" / job_id).read_text().strip()
    return out


def check(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra", "subs", "check", str(path), *options],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["real", "sample"])
def test_every_subtitle_file_the_pipeline_writes_passes_the_check(jobs: dict[str, Path], name: str) -> None:
    files = sorted(jobs[name].glob("*.srt")) + sorted(jobs[name].glob("*.vtt"))
    assert [f.name for f in files] == ["subtitles.srt", "subtitles.vtt"]
    for path in files:
        result = check(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].endswith(": passes")
        report = json.loads(check(path, "--json").stdout)
        assert report["passes"] and report["cues"] >= 4 and report["breaches"] == []


@pytest.mark.parametrize("name", ["real", "sample"])
def test_the_speakers_are_named_once_and_the_fast_cues_are_the_notes(jobs: dict[str, Path], name: str) -> None:
    srt = (jobs[name] / "subtitles.srt").read_text()
    vtt = (jobs[name] / "subtitles.vtt").read_text()
    assert re.search(r"^(- )?Speaker 1: ", srt, re.M) and re.search(r"^(- )?Speaker 2: ", srt, re.M)
    assert "<v Speaker 1>" in vtt and "<v Speaker 2>" in vtt and not re.search(r">(- )?Speaker \d: ", vtt)
    record = json.loads((jobs[name] / "results" / "subtitles.json").read_text())["details"]
    notes = json.loads(check(jobs[name] / "subtitles.srt", "--json").stdout)["notes"]
    assert record["fast_cues"] == len(notes)
    assert record["longest_line"] <= 42


def test_with_strict_reading_speed_the_notes_become_the_breaches(jobs: dict[str, Path]) -> None:
    """Real conversation is faster than 17 characters a second in places. Those cues, which the writer gave all the
    time there was, are notes; with --strict-cps they, and nothing else, are breaches (exit 1 when there are any)."""
    path = jobs["real"] / "subtitles.srt"
    notes = json.loads(check(path, "--json").stdout)["notes"]
    result = check(path, "--strict-cps", "--json")
    strict = json.loads(result.stdout)["breaches"]
    assert [(b["cue"], b["rule"]) for b in strict] == [(n["cue"], "max-cps") for n in notes]
    assert result.returncode == (1 if notes else 0)
