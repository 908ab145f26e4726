"""A whisper-asr-webservice client against a real `infra serve` (uvicorn on a free port, a token in the
environment) over a native workspace with Whisper tiny.en (INFRA_SERVE_MODEL) in native mode (INFRA_SERVE_MODE).

The client makes the calls Bazarr's Whisper provider makes (custom_libs/subliminal_patch/providers/whisperai.py):
requests, a ``Subliminal/...`` User-Agent, the film's audio decoded by FFmpeg to raw 16 kHz mono s16le PCM, POSTed
as the multipart field ``audio_file`` (requests names the file after the field) to ``{endpoint}/asr`` with
``task``, ``language``, ``output=srt``, ``encode=false`` and ``video_file``, and to ``{endpoint}/detect-language``
with ``encode=false``. Its endpoint carries the token as a password (``http://bazarr:TOKEN@host:port``), which
requests sends as HTTP Basic auth. Three jobs run in all: the two-voice dialogue (then asked for in every other
format, which is the same job), the language of its first 30 s, and a film uploaded as it is (encode=true).
"""

from __future__ import annotations

import json
import re
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.jobs.sample import DIALOGUE, spoken_dialogue
from infra.quality.scoring import word_errors
from infra.serve.compat_format import LANGUAGES
from tests.integration.media_fixtures import SPEECH, detected, media  # noqa: F401
from tests.integration.serve_process import Server, native_workspace, serve_env, start_server

TOKEN = "compat-token-test-only-41d9"
VIDEO = "/media/tv/The Keys/Season 1/The Keys - S01E01 - Last Train.mkv"
CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)\n((?:.+\n)+)")
USER_AGENT = "Subliminal/2.1.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path,
           detected) -> Iterator[Server]:  # noqa: F811
    ws = native_workspace(tmp_path_factory.mktemp("compat") / "ws", ml_env, detected)
    env = serve_env(model_cache, INFRA_SERVE_TOKEN=TOKEN, INFRA_SERVE_MODEL="tiny.en", INFRA_SERVE_MODE="native")
    running = start_server(ws, env, token=TOKEN)
    yield running
    running.stop()


def bazarr_pcm(path: Path) -> bytes:
    """The audio as Bazarr's provider decodes it (ffmpeg-python's command line for its arguments)."""
    return subprocess.run(["ffmpeg", "-nostdin", "-threads", "0", "-i", str(path), "-af", "aresample=async=1",
                           "-acodec", "pcm_s16le", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
                          capture_output=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The built-in sample's dialogue (espeak-ng, two voices taking turns), as Bazarr would send it."""
    return bazarr_pcm(spoken_dialogue(tmp_path_factory.mktemp("dialogue")))


class Bazarr:
    """The provider's HTTP calls, with its endpoint setting."""

    def __init__(self, server: Server, password: str = TOKEN) -> None:
        self.endpoint = f"http://bazarr:{password}@127.0.0.1:{server.port}/".rstrip("/")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["User-Agent"] = USER_AGENT

    def asr(self, pcm: bytes, task: str = "transcribe", language: str | None = "en", output: str = "srt",
            video_file: str | None = VIDEO, **extra: str) -> requests.Response:
        return self.session.post(f"{self.endpoint}/asr", params={"task": task, "language": language, "output": output,
                                                                  "encode": "false", "video_file": video_file, **extra},
                                 files={"audio_file": pcm}, timeout=(15, 600))

    def detect_language(self, pcm: bytes) -> requests.Response:
        return self.session.post(f"{self.endpoint}/detect-language", params={"encode": "false", "video_file": None},
                                 files={"audio_file": pcm}, timeout=(15, 600))


def uploads(server: Server) -> list[Path]:
    return sorted(p for p in (server.ws / "in" / "uploads").rglob("*") if p.is_file())


def test_bad_input_gets_a_4xx_json_error_keeps_nothing_and_the_service_stays_up(server: Server, dialogue: bytes,
                                                                               media: dict) -> None:  # noqa: F811
    bazarr = Bazarr(server)
    before = uploads(server)
    not_media = bazarr.session.post(f"{bazarr.endpoint}/asr", params={"output": "srt"},
                                    files={"audio_file": ("notes.mp4", media["notes"].read_bytes())}, timeout=60)
    assert not_media.status_code == 400 and not_media.json()["error"].startswith("notes.mp4: ")
    unknown = bazarr.asr(dialogue, language="xx")
    assert unknown.status_code == 400 and "not a language Whisper knows" in unknown.json()["error"]
    translate = bazarr.asr(dialogue, task="translate", language="de")      # Bazarr: German audio, English subtitles
    assert translate.status_code == 400 and "tiny.en knows English only" in translate.json()["error"]
    odd = bazarr.asr(dialogue[:-1])
    assert odd.status_code == 400 and "not whole samples" in odd.json()["error"]
    for wrong in (Bazarr(server, "not-the-token"), Bazarr(server, "")):
        refused = wrong.asr(dialogue)
        assert refused.status_code == 401 and refused.json()["error"].startswith("a valid token is required")
    assert uploads(server) == before
    assert server.healthy()


def test_bazarrs_asr_call_gets_subtitles_that_name_both_speakers(server: Server, dialogue: bytes) -> None:
    answer = Bazarr(server).asr(dialogue)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert answer.headers["asr-engine"] == "faster_whisper"
    assert answer.headers["content-disposition"] == 'attachment; filename="audio_file.srt"'
    cues = CUE.findall(answer.text)
    assert len(cues) >= 4 and [int(c[0]) for c in cues] == list(range(1, len(cues) + 1))
    texts = [text.strip().splitlines() for *_, text in cues]
    speakers = [t[0].split(":")[0] for t in texts]
    assert set(speakers) == {"Speaker 1", "Speaker 2"} and speakers[0] == "Speaker 1"
    heard = " ".join(" ".join(t) for t in texts).replace("Speaker 1: ", "").replace("Speaker 2: ", "")
    assert word_errors(" ".join(line for *_, line in DIALOGUE), heard).wer < 0.35
    # the pipeline's own SRT, from a job named after the video, run natively with tiny.en in English
    job = server.get(f"/api/jobs/{answer.headers['infra-job']}").json()
    assert (job["status"], job["name"], job["mode"], job["language"]) == ("done", "The Keys - S01E01 - Last Train",
                                                                          "native", "en")
    assert server.get(f"/api/jobs/{job['id']}/srt").text == answer.text
    # the PCM was kept as a WAV holding exactly those samples
    (kept,) = [p for p in uploads(server) if p.name == "audio_file.wav"]
    assert kept.stat().st_mode & 0o777 == 0o644                 # the stack's workers (another uid) read it too
    with wave.open(str(kept)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.readframes(w.getnframes()) == dialogue


def test_the_same_audio_in_the_other_formats_is_the_same_job_with_its_speakers(server: Server, dialogue: bytes) -> None:
    bazarr = Bazarr(server)
    first = bazarr.asr(dialogue).headers["infra-job"]
    answer = bazarr.asr(dialogue, output="json", word_timestamps="true", vad_filter="false", initial_prompt="Trains.")
    assert answer.status_code == 200 and answer.headers["infra-job"] == first
    assert answer.headers["infra-ignored"] == "initial_prompt, vad_filter"
    assert answer.headers["content-disposition"] == 'attachment; filename="audio_file.json"'
    data = json.loads(answer.text)
    assert data["language"] == "en" and {s["speaker"] for s in data["segments"]} == {"SPEAKER_00", "SPEAKER_01"}
    assert all(w["speaker"] and w["start"] <= w["end"] for s in data["segments"] for w in s["words"])
    txt = bazarr.asr(dialogue, output="txt").text.splitlines()
    assert txt[0].startswith("Speaker 1: ") and any(line.startswith("Speaker 2: ") for line in txt)
    tsv = bazarr.asr(dialogue, output="tsv").text.splitlines()
    assert tsv[0] == "start\tend\ttext" and len(tsv) == len(txt) + 1
    vtt = bazarr.asr(dialogue, output="vtt")
    assert vtt.text.startswith("WEBVTT\n\n") and "<v Speaker 2>" in vtt.text
    assert vtt.text == server.get(f"/api/jobs/{first}/vtt").text
    assert len(server.get("/api/jobs").json()) == 1


def test_bazarrs_detect_language_call_hears_the_first_30_seconds(server: Server, dialogue: bytes) -> None:
    silence = b"\x00\x00" * 16000 * 15
    answer = Bazarr(server).detect_language(dialogue + silence)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["detected_language"], result["language_code"]) == ("english", "en")
    assert 0.5 <= result["confidence"] <= 1.0
    job = server.get(f"/api/jobs/{answer.headers['infra-job']}").json()
    assert job["status"] == "done" and job["duration_s"] == pytest.approx(30.0, abs=0.01)
    assert job["language"] is None                              # left to Whisper's detection


def test_a_film_uploaded_as_it_is_gets_webvtt(server: Server, media: dict) -> None:  # noqa: F811
    with open(media["speech"], "rb") as film:
        answer = server.session.post(f"{server.url}/asr", params={"output": "vtt", "language": "en"},
                               files={"audio_file": ("speech.mp4", film)}, headers=server.headers(), timeout=600)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == 'attachment; filename="speech.mp4.vtt"'
    assert answer.text.startswith("WEBVTT\n\n") and " --> " in answer.text
    assert "Speaker" not in answer.text                         # one voice: no labels
    heard = " ".join(line for line in answer.text.splitlines()[2:] if line and " --> " not in line)
    assert word_errors(SPEECH, heard).wer < 0.5                 # tiny.en hears espeak-ng roughly


def test_the_language_table_is_the_one_faster_whisper_knows(ml_env: Path) -> None:
    codes = subprocess.run([str(ml_env / "bin" / "python"), "-c",
                            "from faster_whisper.tokenizer import _LANGUAGE_CODES; print(' '.join(_LANGUAGE_CODES))"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert sorted(codes) == sorted(LANGUAGES)
