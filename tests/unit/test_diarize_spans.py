"""The diarize stage's settings for long films (stages/diarize.py): span_s from job.json, checked before any audio
is read, and INFRA_THREADS. (The span-wise embedding and the kill-and-resume run are in
tests/integration/test_long_diarize.py: they need the native ML environment.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages._jobio import StageInputError, run_stage
from stages.diarize import DEFAULT_SPAN_S, NAME, diarize, span_seconds, speech_source, thread_count


def test_span_s_defaults_to_five_minutes_and_takes_a_positive_number() -> None:
    assert span_seconds({}) == DEFAULT_SPAN_S == 300
    assert span_seconds({"span_s": None}) == 300
    assert span_seconds({"span_s": 20}) == 20.0
    assert span_seconds({"span_s": "45.5"}) == 45.5


@pytest.mark.parametrize("value", [0, -5, "soon", [], float("inf"), float("nan")])
def test_a_span_s_that_is_no_length_is_bad_input(value: object) -> None:
    with pytest.raises(StageInputError, match="config span_s is .*: it must be a positive number of seconds"):
        span_seconds({"span_s": value})


def test_infra_threads_is_the_stage_s_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFRA_THREADS", raising=False)
    assert thread_count() is None
    monkeypatch.setenv("INFRA_THREADS", " 3 ")
    assert thread_count() == 3
    for other in ("0", "-1", "two", "1.5", ""):          # torch's default, as the other stages do
        monkeypatch.setenv("INFRA_THREADS", other)
        assert thread_count() is None


def test_the_stage_refuses_a_bad_span_s_in_one_line_before_it_reads_the_audio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("INFRA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "audio.wav").write_bytes(b"not read")
    (tmp_path / "job.json").write_text(json.dumps({"id": "j", "config": {"span_s": -1},
                                                   "stages": [{"name": NAME, "status": "pending"}]}))
    assert run_stage(NAME, diarize, [str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["diarize: job.json config span_s is -1: it must be a positive number of seconds"]
    record = json.loads((tmp_path / "results" / "diarize.json").read_text())
    assert record["status"] == "failed" and not (tmp_path / "diarize.parts").exists()


def test_speech_comes_from_webrtc_unless_the_job_asks_for_the_model() -> None:
    assert speech_source({}) == speech_source({"diarize_speech": None}) == "webrtc"
    assert speech_source({"diarize_speech": "model"}) == "model"
    with pytest.raises(StageInputError, match="diarize_speech is 'pyannote': expected webrtc or model"):
        speech_source({"diarize_speech": "pyannote"})
