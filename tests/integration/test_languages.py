"""Languages in the asr stage, run natively in the ML environment on Whisper base (multilingual):

- ``language: auto`` on a clip of Hindi sentences, then English ones, then a short English word: the
  segments of the Hindi part are labelled hi, those of the English part en (and decoded in Latin letters);
  the short word (too short to detect) inherits its neighbour's language;
- killed after its first span's checkpoint, that job resumes and writes the same asr.json, byte for byte;
- ``task: translate`` on Hindi speech gives text in Latin letters and none in Devanagari, also through
  `infra run --language auto --task translate` (the options reach job.json and the stage);
- the stage refuses a language Whisper does not know, and Hindi on tiny.en, in one line, exit 2;
- the list of Whisper's languages that infra carries (infra/spec/whisper_languages.json) is faster-whisper's.

The Hindi is espeak-ng's Hindi voice: synthetic, so these tests check behaviour (which language each
segment gets, what script comes out), not accuracy. The sentences are ones that Whisper base detects as Hindi
when espeak-ng speaks them (several other sentences it hears as Thai or Turkish).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from infra.spec.languages import LANGUAGES_FILE
from tests.integration import native_stages
from tests.integration.native_stages import Stages
from tests.integration.media_fixtures import concat_with_pauses, detected  # noqa: F401

HINDI = ("क्या आप मुझे स्टेशन का रास्ता बता सकते हैं?", "हम कल बाज़ार जाएंगे और सब्ज़ियाँ खरीदेंगे।")
ENGLISH = ("Good morning everyone, the meeting will start in ten minutes.",
           "Please remember to bring your notes and the report.")
SHORT = "Thanks."                        # under a second: inherits the language of the sentence before it
PAUSE_S = 1.2
SWITCH_PAUSE_S = 25.0                    # between the Hindi and the English part: more than a window apart,
SPAN_S = 8.0                             # so the Hindi part is one span and the English part the next
DEVANAGARI = re.compile(r"[\u0900-\u097F]")
LATIN = re.compile(r"[A-Za-z]")


def speak(folder: Path, lines: list[tuple[str, str]], pauses: dict[int, float] | None = None) -> Path:
    """(voice, text) lines spoken by espeak-ng, PAUSE_S apart (or ``pauses[i]`` after line i), as a 16 kHz mono
    WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, (voice, text) in enumerate(lines):
        parts.append(folder / f"line{i}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(parts[-1]), text], check=True,
                       capture_output=True, timeout=60)
    return concat_with_pauses([(part, (pauses or {}).get(k, PAUSE_S)) for k, part in enumerate(parts)],
                              folder / "audio.wav")


def line_times(folder: Path, count: int, pauses: dict[int, float]) -> list[tuple[float, float]]:
    """Where each spoken line lies in audio.wav (seconds)."""
    import wave

    times, at = [], 0.0
    for i in range(count):
        with wave.open(str(folder / f"line{i}.wav")) as w:
            length = w.getnframes() / w.getframerate()
        times.append((at, at + length))
        at += length + pauses.get(i, PAUSE_S)
    return times


def new_job(job_dir: Path, audio: Path, model: str, language: str | None, task: str = "transcribe") -> Path:
    return native_stages.new_job(job_dir, audio, SPAN_S, model, language, task)


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache with Whisper base (and tiny.en), fetched the way `infra bootstrap` does it."""
    from infra.models.catalogue import fetch_models

    cache = tmp_path_factory.mktemp("models")
    for name in ("whisper/base", "whisper/tiny.en"):
        outcome = [e for e in fetch_models([name], cache, None) if e.kind in ("done", "present", "failed")]
        if outcome[-1].kind == "failed":
            pytest.fail(f"cannot fetch {name}: {outcome[-1].detail}")
    return cache


@pytest.fixture(scope="module")
def stages(ml_env: Path, base_cache: Path) -> Stages:
    return Stages(ml_env, base_cache, nice=True)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """Two Hindi sentences, two English ones, then a short English word; the audio and each line's times."""
    folder = tmp_path_factory.mktemp("mixed")
    lines = [("hi", t) for t in HINDI] + [("en-us", t) for t in ENGLISH] + [("en-us", SHORT)]
    pauses = {len(HINDI) - 1: SWITCH_PAUSE_S}
    return speak(folder, lines, pauses), line_times(folder, len(lines), pauses)


@pytest.fixture(scope="module")
def vad_done(tmp_path_factory: pytest.TempPathFactory, stages: Stages, mixed) -> Path:
    job = new_job(tmp_path_factory.mktemp("vad") / "job", mixed[0], "base", "auto")
    done = stages.run("vad", job)
    assert done.returncode == 0, done.stderr
    return job


@pytest.fixture(scope="module")
def auto_done(tmp_path_factory: pytest.TempPathFactory, stages: Stages, vad_done: Path) -> Path:
    job = tmp_path_factory.mktemp("auto") / "job"
    shutil.copytree(vad_done, job)
    done = stages.run("asr", job)
    assert done.returncode == 0, done.stderr
    return job


def overlap(segment: dict, start: float, end: float) -> float:
    return max(0.0, min(segment["end"], end) - max(segment["start"], start))


def test_auto_labels_each_segment_with_its_language_and_decodes_it_so(auto_done: Path, mixed) -> None:
    asr = json.loads((auto_done / "asr.json").read_text())
    times = mixed[1]
    hindi_part, english_part = (times[0][0], times[1][1]), (times[2][0], times[4][1])
    segments = asr["segments"]
    assert segments and all(s["language"] in ("hi", "en") for s in segments), segments
    hindi = [s for s in segments if overlap(s, *hindi_part) > overlap(s, *english_part)]
    english = [s for s in segments if s not in hindi]
    assert hindi and english
    assert {s["language"] for s in hindi} == {"hi"} and {s["language"] for s in english} == {"en"}
    assert all(LATIN.search(s["text"]) and not DEVANAGARI.search(s["text"]) for s in english), english
    assert set(asr["languages"]) == {"hi", "en"} and asr["language"] in ("hi", "en")
    # the short word: too short to detect, it takes the language of the nearest segment (English)
    short = [d for d in asr["detections"] if overlap(d, *times[4]) > 0 and d["end"] - d["start"] < 1.0]
    assert short and short[0]["language"] == "en" and short[0]["source"].startswith("inherited from"), \
        asr["detections"]
    detected = [d for d in asr["detections"] if d["source"] == "detected"]
    assert {d["language"] for d in detected if overlap(d, *hindi_part)} == {"hi"}
    assert {d["language"] for d in detected if overlap(d, *english_part)} == {"en"}
    assert len(asr["spans"]) == 2 and asr["spans"][0]["end"] < english_part[0]
    record = json.loads((auto_done / "results" / "asr.json").read_text())
    assert set(record["details"]["languages"]) == {"hi", "en"}


def test_auto_killed_after_its_first_checkpoint_resumes_to_the_same_bytes(
        tmp_path: Path, stages: Stages, vad_done: Path, auto_done: Path) -> None:
    job = tmp_path / "job"
    shutil.copytree(vad_done, job)
    proc = subprocess.Popen(stages.command("asr", job), cwd=job, env=stages.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if (job / "asr.parts" / "0000.json").is_file():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the stage ended before it could be killed after one checkpoint"
    assert not (job / "asr.json").exists()
    done = stages.run("asr", job)
    assert done.returncode == 0, done.stderr
    assert (job / "asr.json").read_bytes() == (auto_done / "asr.json").read_bytes()
    details = json.loads((job / "results" / "asr.json").read_text())["details"]
    assert details["spans_resumed"] >= 1 and details["spans_transcribed"] >= 1


def test_translate_gives_latin_text_of_hindi_speech(tmp_path: Path, stages: Stages) -> None:
    audio = speak(tmp_path / "speech", [("hi", t) for t in HINDI])
    job = new_job(tmp_path / "job", audio, "base", "hi", task="translate")
    for stage in ("vad", "asr"):
        done = stages.run(stage, job)
        assert done.returncode == 0, done.stderr
    asr = json.loads((job / "asr.json").read_text())
    assert asr["task"] == "translate" and asr["segments"]
    text = " ".join(s["text"] for s in asr["segments"])
    assert LATIN.search(text) and not DEVANAGARI.search(text), text
    assert {s["language"] for s in asr["segments"]} == {"hi"}


def test_infra_run_takes_auto_and_translate_to_the_stage(tmp_path: Path, ml_env: Path, base_cache: Path,
                                                         detected) -> None:  # noqa: F811
    """`infra run FILE --language auto --task translate --model base` (demux, vad, asr) in a fresh workspace."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".venv-ml").symlink_to(ml_env)
    write_cache(ws / "out" / "hardware_cache.json", detected, fingerprint())
    audio = speak(tmp_path / "speech", [("hi", t) for t in HINDI])
    env = {**{k: v for k, v in os.environ.items() if k != "INFRA_FILE"}, "INFRA_CACHE": str(base_cache)}
    done = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "infra", "run", str(audio), "--mode", "native",
                           "--workflow", "transcribe", "--model", "base", "--language", "auto", "--task", "translate"],
                          cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = re.search(r"^job (\d{8}-\d{4}):", done.stdout, re.M).group(1)
    job_dir = ws / (ws / "jobs" / job_id).read_text().strip()
    config = json.loads((job_dir / "job.json").read_text())["config"]
    assert (config["language"], config["task"], config["whisper_model"]) == ("auto", "translate", "base")
    asr = json.loads((job_dir / "asr.json").read_text())
    assert asr["languages"] and asr["segments"] and all(s["language"] for s in asr["segments"])
    text = " ".join(s["text"] for s in asr["segments"])
    assert LATIN.search(text) and not DEVANAGARI.search(text), text


@pytest.mark.parametrize("model, language, task, message", [
    ("base", "xx", "transcribe", "config.language 'xx' is not a language Whisper knows"),
    ("tiny.en", "hi", "transcribe", "the model tiny.en knows English only and cannot take language hi"),
    ("tiny.en", None, "translate", "the model tiny.en knows English only and cannot translate"),
])
def test_the_stage_refuses_what_whisper_cannot_do_in_one_line(tmp_path: Path, stages: Stages, vad_done: Path,
                                                              model: str, language: str, task: str,
                                                              message: str) -> None:
    job = tmp_path / "job"
    shutil.copytree(vad_done, job)
    data = json.loads((job / "job.json").read_text())
    data["config"].update(whisper_model=model, language=language, task=task)
    (job / "job.json").write_text(json.dumps(data))
    done = stages.run("asr", job)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"asr: {message}"], done.stderr
    assert not (job / "asr.json").exists()


def test_the_language_list_is_faster_whispers(ml_env: Path, update_golden: bool) -> None:
    """infra carries faster-whisper's language codes (its own venv has no faster-whisper); they must agree."""
    probe = subprocess.run([str(ml_env / "bin" / "python"), "-c",
                            "import json, faster_whisper; from faster_whisper.tokenizer import _LANGUAGE_CODES; "
                            "print(json.dumps([faster_whisper.__version__, list(_LANGUAGE_CODES)]))"],
                           check=True, capture_output=True, text=True, timeout=120)
    version, codes = json.loads(probe.stdout)
    carried = json.loads(LANGUAGES_FILE.read_text(encoding="utf-8"))
    if update_golden:
        carried.update(faster_whisper=version, codes=codes)
        text = json.dumps(carried, indent=1)
        LANGUAGES_FILE.write_text(re.sub(r"\[\n(.*?)\n \]", lambda m: "[" + " ".join(
            line.strip() for line in m.group(1).splitlines()) + "]", text, flags=re.S) + "\n", encoding="utf-8")
        carried = json.loads(LANGUAGES_FILE.read_text(encoding="utf-8"))
    assert carried["codes"] == codes, "run this test with --update-golden to take faster-whisper's list"
    assert "hi" in codes and "en" in codes and len(codes) == len(set(codes))
