"""How the asr stage labels speech segments with ``language: auto`` (stages/_languages.py), and its own check of
job.json's language and task."""

from __future__ import annotations

import pytest

from stages import _languages as stage_languages


def seg(start: float, end: float) -> dict[str, float]:
    return {"start": start, "end": end}


def test_short_segments_inherit_the_nearest_detected_language() -> None:
    segments = [seg(0.0, 3.0), seg(3.2, 3.6), seg(5.0, 9.0), seg(12.0, 12.5), seg(20.0, 20.4)]
    detected = {0: ("hi", 0.61), 2: ("en", 0.9)}
    labelled = stage_languages.label(segments, detected)
    assert [row["language"] for row in labelled] == ["hi", "hi", "en", "en", "en"]
    assert labelled[0] == {"start": 0.0, "end": 3.0, "language": "hi", "probability": 0.61, "source": "detected"}
    assert labelled[1]["source"] == "inherited from 0.000 s" and labelled[1]["probability"] is None
    assert labelled[3]["source"] == "inherited from 5.000 s"


def test_on_equal_silence_the_earlier_neighbour_wins() -> None:
    segments = [seg(0.0, 2.0), seg(3.0, 3.5), seg(4.5, 7.0)]
    labelled = stage_languages.label(segments, {0: ("hi", 0.5), 2: ("en", 0.5)})
    assert labelled[1]["language"] == "hi"


def test_a_span_without_a_long_segment_takes_its_first_window_s_language() -> None:
    labelled = stage_languages.label([seg(0.0, 0.5), seg(1.0, 1.4)], {}, fallback=("ur", 0.33))
    assert [(row["language"], row["source"]) for row in labelled] == [("ur", "span's first window")] * 2
    with pytest.raises(ValueError):
        stage_languages.label([seg(0.0, 0.5)], {})


def test_windows_join_one_language_only_and_runs_keep_time_order() -> None:
    labelled = [{"start": 0.0, "end": 2.0, "language": "hi"}, {"start": 2.5, "end": 4.0, "language": "hi"},
                {"start": 4.5, "end": 6.0, "language": "en"}, {"start": 7.0, "end": 9.0, "language": "hi"},
                {"start": 9.5, "end": 40.0, "language": "hi"}]
    windows = stage_languages.language_windows(labelled, 30.0)
    assert windows == [{"start": 0.0, "end": 4.0, "language": "hi"}, {"start": 4.5, "end": 6.0, "language": "en"},
                       {"start": 7.0, "end": 9.0, "language": "hi"}, {"start": 9.5, "end": 40.0, "language": "hi"}]
    assert [(language, len(group)) for language, group in stage_languages.runs(windows)] == [
        ("hi", 1), ("en", 1), ("hi", 2)]
    assert list(stage_languages.speech_by_language(labelled).items()) == [("hi", 36.0), ("en", 1.5)]


def test_segments_in_a_span_are_those_that_start_in_it() -> None:
    speech = [seg(12.0, 14.0), seg(1.0, 2.0), seg(9.5, 10.5)]
    assert stage_languages.segments_in(speech, 0.0, 10.0) == [seg(1.0, 2.0), seg(9.5, 10.5)]


@pytest.mark.parametrize("language, task, model, problem", [
    (None, "transcribe", "tiny.en", None), ("auto", "translate", "base", None),
    ("hi", "transcribe", "tiny.en", "the model tiny.en knows English only and cannot take language hi"),
    ("auto", "transcribe", "tiny.en", "the model tiny.en knows English only and cannot take language auto"),
    (None, "translate", "tiny.en", "the model tiny.en knows English only and cannot translate"),
])
def test_the_stage_checks_job_json_itself(language: str | None, task: str, model: str, problem: str | None) -> None:
    assert stage_languages.language_problem(language, task, model) == problem
