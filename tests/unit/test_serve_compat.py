"""The whisper-asr-webservice routes (infra/serve/compat.py, compat_format.py): parameters mapped to a job's
options, raw PCM read as WAV, the txt/tsv/json answers, and the HTTP layer's refusals (through starlette's
TestClient over a real JobService on a copy of the default spec; nothing here runs a job). A real client's
call against a real `infra serve`, with real jobs, is tests/integration/test_serve_compat.py."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from infra.errors import BadInputError
from infra.jobs.prepare import check_name
from infra.serve.app import create_app
from infra.serve.compat import (AsrParams, Defaults, answer_headers, defaults_from_env, ignored, job_language,
                                job_name, job_options)
from infra.serve.compat_format import (LANGUAGES, NAMES, PcmAsWav, built_output, labelled_segments,
                                       looks_like_a_container, wav_header)
from infra.serve.service import JobService
from infra.spec import load_stack
from infra.spec.languages import whisper_languages

TOKEN = "compat-token-test-only-2b7e"
TINY_EN = Defaults(model="tiny.en")
# Two speakers: SPEAKER_00 says the first segment and the start of the second, SPEAKER_01 the rest.
ASR = {"language": "en", "segments": [
    {"start": 0.0, "end": 2.0, "text": "Good evening.", "avg_logprob": -0.2, "no_speech_prob": 0.01,
     "words": [{"start": 0.0, "end": 0.8, "word": "Good", "probability": 0.9},
               {"start": 0.9, "end": 1.9, "word": "evening.", "probability": 0.8}]},
    {"start": 2.5, "end": 6.0, "text": "Hello there. Then we should hurry.", "avg_logprob": -0.3,
     "no_speech_prob": 0.02,
     "words": [{"start": 2.5, "end": 2.9, "word": "Hello", "probability": 0.9},
               {"start": 3.0, "end": 3.4, "word": "there.", "probability": 0.9},
               {"start": 4.0, "end": 4.4, "word": "Then", "probability": 0.9},
               {"start": 4.5, "end": 4.7, "word": "we", "probability": 0.9},
               {"start": 4.8, "end": 5.2, "word": "should", "probability": 0.9},
               {"start": 5.3, "end": 6.0, "word": "hurry.", "probability": 0.7}]}]}
TURNS = {"turns": [{"start": 0.0, "end": 3.5, "speaker": "SPEAKER_00"},
                   {"start": 3.8, "end": 6.2, "speaker": "SPEAKER_01"}]}


# -- raw PCM as WAV -----------------------------------------------------------------------------------------
def test_raw_pcm_reads_as_a_wav_file_that_python_wave_opens() -> None:
    pcm = bytes(range(256)) * 125                           # 32000 bytes: one second of 16-bit samples
    stream = io.BytesIO(pcm + b"never read")                # what follows the size is not read
    wav = PcmAsWav(stream, len(pcm))
    data = b"".join(iter(lambda: wav.read(7000), b""))
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
        assert w.readframes(16000) == pcm
    assert len(wav_header(0)) == 44


def test_a_read_of_everything_returns_the_header_and_the_samples_at_once() -> None:
    wav = PcmAsWav(io.BytesIO(b"\x01\x00" * 10), 20)
    assert len(wav.read()) == 64 and wav.read() == b"" and wav.read(5) == b""


@pytest.mark.parametrize(("head", "container"), [
    (b"RIFF\x24\x00\x00\x00WAVE", True), (b"\x00\x00\x00\x20ftypisom", True), (b"\x1a\x45\xdf\xa3\x01\x00", True),
    (b"ID3\x04\x00", True), (b"OggS\x00\x02", True), (b"fLaC\x00\x00", True),
    (b"\x00\x00\x01\x00\xff\xff\x10\x00", False), (b"\x12\x34" * 6, False)])
def test_media_containers_are_told_from_raw_pcm(head: bytes, container: bool) -> None:
    assert looks_like_a_container(head) is container


# -- parameters ---------------------------------------------------------------------------------------------
def test_whispers_hundred_languages_with_their_names() -> None:
    assert len(LANGUAGES) == 100
    assert (LANGUAGES["en"], LANGUAGES["ht"], LANGUAGES["haw"], LANGUAGES["yue"]) == \
        ("english", "haitian creole", "hawaiian", "cantonese")


def test_the_codes_are_the_specs_and_every_one_has_a_name() -> None:
    """The routes know the languages infra checks jobs against (infra/spec/languages.py), no other list."""
    assert tuple(LANGUAGES) == whisper_languages()
    assert set(NAMES) == set(whisper_languages())                   # no code named by its code, no name left over
    assert all(name and name.islower() and name != code for code, name in LANGUAGES.items())


def test_an_english_only_model_is_the_specs_english_only() -> None:
    assert Defaults("tiny.en").english_only and Defaults("whisper/base.en").english_only
    assert not Defaults("base").english_only and not Defaults("large-v3").english_only
    assert not Defaults().english_only                                 # no model set: the recommendation


def test_the_language_is_checked_against_whisper_and_the_model() -> None:
    assert job_language(None, "transcribe", Defaults()) is None
    assert job_language("", "transcribe", Defaults()) is None
    assert job_language("DE", "translate", Defaults(model="small")) == "de"
    assert job_language("en", "translate", TINY_EN) == "en"          # English audio: its translation is its transcript
    for language, task, why in (("xx", "transcribe", "not a language Whisper knows"),
                                ("auto", "transcribe", "not a language Whisper knows"),
                                ("de", "transcribe", "knows English only"),
                                (None, "translate", "cannot translate"),
                                ("fr", "translate", "knows English only")):
        with pytest.raises(BadInputError, match=why):
            job_language(language, task, TINY_EN)


def test_the_job_is_named_after_the_video_else_the_upload_and_the_name_is_a_valid_one() -> None:
    assert job_name("/tv/Show/Season 1/Show - S01E02 - The Keys.mkv", "audio_file") == "Show - S01E02 - The Keys"
    assert job_name(r"D:\Films\Amélie (2001).mkv", None) == "Am_lie _2001"
    assert job_name(None, "audio_file") == "audio_file"
    assert job_name("", "~~~.wav") is None and job_name(None, None) is None
    for name in ("Show - S01E02 - The Keys", "Am_lie _2001", "audio_file", job_name("x" * 300 + ".mkv", None)):
        assert check_name(name) == name


def test_job_options_carry_the_task_the_language_and_the_services_model_and_mode() -> None:
    options = job_options(AsrParams(task="translate", language="en", output="srt", encode=False,
                                    video_file="/m/Film.mkv"), Defaults("tiny.en", "native"), "audio_file")
    assert (options.task, options.language, options.model, options.mode, options.name) == \
        ("translate", "en", "tiny.en", "native", "Film")


def test_the_parameters_the_pipeline_does_not_follow_are_named() -> None:
    given = {"initial_prompt", "vad_filter", "diarize", "min_speakers", "word_timestamps"}
    params = AsrParams(initial_prompt="Names: Ada.", vad_filter=False, diarize=False, min_speakers=2,
                       word_timestamps=True)
    assert ignored(params, given) == ["initial_prompt", "vad_filter", "diarize", "min_speakers"]
    assert ignored(AsrParams(vad_filter=True, diarize=True, initial_prompt=""), {"vad_filter", "diarize"}) == []
    assert ignored(AsrParams(), set()) == []                          # defaults the client did not set


def test_the_answer_names_the_engine_and_the_upload_as_an_attachment() -> None:
    headers = answer_headers("my film.mkv", "srt", "20260101-0001", [])
    assert headers == {"Asr-Engine": "faster_whisper", "Infra-Job": "20260101-0001",
                       "Content-Disposition": 'attachment; filename="my%20film.mkv.srt"'}
    assert answer_headers("audio_file", "txt", "x", ["diarize"])["Infra-Ignored"] == "diarize"


def test_the_services_model_and_mode_come_from_the_environment_and_are_checked() -> None:
    assert defaults_from_env({}) == Defaults(None, None)
    assert defaults_from_env({"INFRA_SERVE_MODEL": "tiny.en", "INFRA_SERVE_MODE": "native"}) == \
        Defaults("tiny.en", "native")
    with pytest.raises(BadInputError, match="INFRA_SERVE_MODEL/INFRA_SERVE_MODE: --model 'huge'"):
        defaults_from_env({"INFRA_SERVE_MODEL": "huge"})
    with pytest.raises(BadInputError, match="--mode 'gpu' is not a mode"):
        defaults_from_env({"INFRA_SERVE_MODE": "gpu"})


# -- the answers built from asr.json and diarization.json ---------------------------------------------------
def test_a_segment_is_cut_where_the_speaker_changes() -> None:
    segments = labelled_segments(ASR, TURNS)
    assert [(s.speaker, s.text, s.start, s.end) for s in segments] == [
        ("SPEAKER_00", "Good evening.", 0.0, 2.0), ("SPEAKER_00", "Hello there.", 2.5, 3.4),
        ("SPEAKER_01", "Then we should hurry.", 4.0, 6.0)]


def test_txt_and_tsv_label_the_speakers_when_there_are_two() -> None:
    assert built_output("txt", ASR, TURNS, False) == \
        "Speaker 1: Good evening.\nSpeaker 1: Hello there.\nSpeaker 2: Then we should hurry.\n"
    assert built_output("tsv", ASR, TURNS, False).splitlines() == [
        "start\tend\ttext", "0\t2000\tSpeaker 1: Good evening.", "2500\t3400\tSpeaker 1: Hello there.",
        "4000\t6000\tSpeaker 2: Then we should hurry."]
    one = {"turns": [{"start": 0.0, "end": 6.0, "speaker": "SPEAKER_00"}]}
    assert built_output("txt", ASR, one, False) == "Good evening.\nHello there. Then we should hurry.\n"


def test_json_carries_speakers_scores_and_words_only_when_asked() -> None:
    plain = json.loads(built_output("json", ASR, TURNS, False))
    assert plain["language"] == "en" and plain["text"] == "Good evening. Hello there. Then we should hurry."
    assert plain["segments"][2] == {"id": 2, "start": 4.0, "end": 6.0, "text": "Then we should hurry.",
                                    "speaker": "SPEAKER_01", "avg_logprob": -0.3, "no_speech_prob": 0.02}
    words = json.loads(built_output("json", ASR, TURNS, True))["segments"][1]["words"]
    assert words == [{"word": "Hello", "start": 2.5, "end": 2.9, "probability": 0.9, "speaker": "SPEAKER_00"},
                     {"word": "there.", "start": 3.0, "end": 3.4, "probability": 0.9, "speaker": "SPEAKER_00"}]


def test_no_speech_gives_empty_answers() -> None:
    empty = {"language": "en", "segments": []}
    assert built_output("txt", empty, {"turns": []}, False) == ""
    assert built_output("tsv", empty, {"turns": []}, False) == "start\tend\ttext\n"
    assert json.loads(built_output("json", empty, {"turns": []}, True))["segments"] == []


# -- the HTTP layer -----------------------------------------------------------------------------------------
@pytest.fixture
def service(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobService]:
    monkeypatch.setenv("INFRA_SERVE_MODEL", "tiny.en")
    running = JobService(load_stack(project / "infra.yaml"))
    yield running
    running.close()


@pytest.fixture
def client(service: JobService) -> TestClient:
    return TestClient(create_app(service, TOKEN))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


PCM = b"\x00\x01" * 800


def test_the_routes_ask_for_the_token_as_a_bearer_or_as_basic_auths_password(client: TestClient) -> None:
    files = {"audio_file": ("audio_file", PCM)}
    for headers in ({}, {"Authorization": "Bearer nope"}, basic("infra", "nope"), {"Authorization": "Basic %%%"}):
        answer = client.post("/asr", params={"encode": "false"}, files=files, headers=headers)
        assert answer.status_code == 401 and "token" in answer.json()["error"], headers
    # past the token check, a bad language is refused before anything is kept or run
    for headers in (basic("bazarr", TOKEN), {"Authorization": f"Bearer {TOKEN}"}):
        answer = client.post("/asr", params={"encode": "false", "language": "xx"}, files=files, headers=headers)
        assert answer.status_code == 400 and "not a language Whisper knows" in answer.json()["error"]
    answer = client.post("/detect-language", params={"encode": "false"}, files=files)
    assert answer.status_code == 401


@pytest.mark.parametrize(("params", "body", "status", "says"), [
    ({"output": "docx"}, PCM, 400, "output"),
    ({"task": "summarize"}, PCM, 400, "task"),
    ({"language": "de"}, PCM, 400, "knows English only"),
    ({"task": "translate"}, PCM, 400, "cannot translate"),
    ({"min_speakers": "0"}, PCM, 400, "min_speakers"),
    ({"encode": "maybe"}, PCM, 400, "encode"),
    ({"encode": "false"}, b"", 400, "empty"),
    ({"encode": "false"}, PCM + b"\x00", 400, "not whole samples"),
    ({"encode": "false"}, b"RIFF\x24\x00\x00\x00WAVEfmt " + PCM, 400, "but this is a media file"),
    ({"encode": "true"}, b"Just some text, not a film.\n" * 10, 400, "audio_file")])
def test_bad_requests_get_a_4xx_json_error_and_leave_nothing(client: TestClient, service: JobService, params: dict,
                                                               body: bytes, status: int, says: str) -> None:
    answer = client.post("/asr", params=params, files={"audio_file": ("audio_file", body)},
                         headers=basic("infra", TOKEN))
    assert answer.status_code == status and says in answer.json()["error"], answer.text
    uploads = service.ws.root / "in" / "uploads"
    assert not uploads.exists() or not [p for p in uploads.rglob("*") if p.is_file()]
    assert not list(service.ws.jobs.glob("*")) if service.ws.jobs.exists() else True


def test_detect_language_refuses_what_ffmpeg_cannot_decode_and_keeps_nothing(client: TestClient,
                                                                              service: JobService) -> None:
    answer = client.post("/detect-language", files={"audio_file": ("notes.mkv", b"plain text\n" * 50)},
                         headers=basic("infra", TOKEN))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("notes.mkv: not media with an audio stream that FFmpeg can decode")
    assert not [p for p in (service.ws.root / "in" / "uploads").rglob("*")]


def test_the_routes_are_in_the_schema_with_the_original_parameters(service: JobService) -> None:
    app = create_app(service, TOKEN)
    routes = {(r.path, tuple(sorted(r.methods))) for r in app.routes if hasattr(r, "methods")}
    assert ("/asr", ("POST",)) in routes and ("/detect-language", ("POST",)) in routes
    asr = next(r for r in app.routes if getattr(r, "path", "") == "/asr")
    names = {p.alias for p in asr.dependant.query_params}
    assert {"encode", "task", "language", "initial_prompt", "vad_filter", "word_timestamps", "diarize",
            "min_speakers", "max_speakers", "output", "video_file"} <= names
    assert [p.alias for p in asr.dependant.body_params] == ["audio_file"]


def test_a_mode_the_spec_does_not_define_stops_the_service_at_its_start(project: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec without docker-gpu (the mode, and the images' lists of modes) and INFRA_SERVE_MODE=docker-gpu."""
    spec = project / "infra.yaml"
    gpu = "  docker-gpu:\n    base: bookworm\n    gpu: true\n"
    assert gpu in spec.read_text()
    spec.write_text(spec.read_text().replace(gpu, ""))
    for image in (project / "images").glob("*/image.yaml"):
        text = image.read_text()
        listed = "modes:" in text            # base and ffmpeg list none: every mode of the spec
        image.write_text(text.replace(", docker-gpu]", "]") if listed else text + "modes: [native, docker-cpu]\n")
    monkeypatch.setenv("INFRA_SERVE_MODE", "docker-gpu")
    running = JobService(load_stack(spec))
    try:
        with pytest.raises(BadInputError, match="INFRA_SERVE_MODEL/INFRA_SERVE_MODE: .*docker-gpu"):
            create_app(running, TOKEN)
    finally:
        running.close()
