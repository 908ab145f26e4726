"""The ASR stage's spans and checkpoints (stages/asr.py, stages/_checkpoints.py), without the model.

Spans group the speech windows, cut in the silence between two windows, and tile the film; a checkpoint
counts only with the key it was written with; with the language detected, later spans count only when
the first span's checkpoint does and names the same language."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages._checkpoints import Checkpoints, digest_of
from stages._jobio import StageContext, StageInputError
from stages.asr import Span, cut_between, group_spans, resumable, span_length_s


def windows(*pairs: tuple[float, float]) -> list[dict[str, float]]:
    return [{"start": a, "end": b} for a, b in pairs]


def test_windows_are_grouped_into_spans_that_tile_the_film() -> None:
    found = group_spans(windows((1.0, 8.0), (9.5, 18.0), (21.2, 29.0), (30.0, 40.0), (52.0, 55.5)), 20.0, 60.0)
    assert [len(s.windows) for s in found] == [2, 2, 1]
    assert [(s.start, s.end) for s in found] == [(0.0, 19.6), (19.6, 46.0), (46.0, 60.0)]
    assert all(w["start"] >= s.start and w["end"] <= s.end for s in found for w in s.windows)
    assert [s.index for s in found] == [0, 1, 2]


def test_a_window_longer_than_a_span_is_a_span_of_its_own() -> None:
    found = group_spans(windows((0.5, 30.0), (30.0, 58.2), (61.0, 62.0)), 20.0, 70.0)
    assert [len(s.windows) for s in found] == [1, 1, 1]
    assert found[1].start == 30.0 and found[-1].end == 70.0


def test_a_short_film_is_one_span_of_all_its_audio() -> None:
    (only,) = group_spans(windows((0.2, 5.0), (7.0, 23.3)), 300.0, 24.138)
    assert (only.start, only.end) == (0.0, 24.138)
    assert only.local_windows() == windows((0.2, 5.0), (7.0, 23.3))


def test_no_speech_is_no_span() -> None:
    assert group_spans([], 300.0, 3600.0) == []


def test_the_cut_is_in_the_middle_of_the_silence_on_a_10_ms_frame() -> None:
    assert cut_between(10.0, 11.0) == 10.5
    assert cut_between(10.004, 10.031) == 10.01
    assert cut_between(30.005, 30.005) == 30.0
    span = Span(1, 19.6, 48.0, windows((21.2, 29.0)))
    assert span.local_windows() == windows((1.6, 9.4)) and span.length == pytest.approx(28.4)


@pytest.mark.parametrize("value", ["ten", 0, -5, [3]])
def test_span_s_must_be_a_positive_number(value: object) -> None:
    with pytest.raises(StageInputError, match="config.span_s"):
        span_length_s({"span_s": value})


def test_span_s_defaults_to_five_minutes() -> None:
    assert span_length_s({}) == 300.0 and span_length_s({"span_s": "20"}) == 20.0


@pytest.fixture
def parts(tmp_path: Path) -> Checkpoints:
    ctx = StageContext("asr", tmp_path, {"stages": [{"name": "asr"}]})
    return Checkpoints(ctx, "asr.parts")


def test_a_checkpoint_counts_only_with_its_key(parts: Checkpoints, tmp_path: Path) -> None:
    parts.save(3, "k1", {"segments": [], "language": "en"})
    assert (tmp_path / "asr.parts" / "0003.json").is_file()
    assert parts.load(3, "k1") == {"segments": [], "language": "en"}
    assert parts.load(3, "k2") is None and parts.load(4, "k1") is None
    (tmp_path / "asr.parts" / "0003.json").write_text('{"key": "k1", "da')          # cut short
    assert parts.load(3, "k1") is None
    parts.clear()
    assert not (tmp_path / "asr.parts").exists()


def test_no_temporary_file_stays_beside_a_checkpoint(parts: Checkpoints, tmp_path: Path) -> None:
    for i in range(3):
        parts.save(i, "k", {"segments": [{"text": "x" * 1000}]})
    assert sorted(p.name for p in (tmp_path / "asr.parts").iterdir()) == ["0000.json", "0001.json", "0002.json"]


def test_the_digest_follows_every_setting() -> None:
    assert digest_of({"a": 1, "b": 2}) == digest_of({"b": 2, "a": 1})
    assert digest_of({"a": 1}, 0.0, 20.0) != digest_of({"a": 1}, 0.0, 20.5)
    assert digest_of({"language": None}) != digest_of({"language": "en"})


def spans_of(count: int) -> list[Span]:
    return [Span(i, 10.0 * i, 10.0 * (i + 1), windows((10.0 * i + 1, 10.0 * i + 9))) for i in range(count)]


def test_resume_takes_the_spans_with_a_valid_checkpoint(parts: Checkpoints) -> None:
    spans, keys = spans_of(4), ["a", "b", "c", "d"]
    parts.save(0, "a", {"segments": [], "language": "en"})
    parts.save(1, "stale", {"segments": [], "language": "en"})
    parts.save(2, "c", {"segments": [], "language": "en"})
    assert sorted(resumable(parts, spans, keys, detect=False)) == [0, 2]


def test_with_detection_later_spans_need_the_first_span_and_its_language(parts: Checkpoints) -> None:
    spans, keys = spans_of(3), ["a", "b", "c"]
    parts.save(1, "b", {"segments": [], "language": "en"})
    parts.save(2, "c", {"segments": [], "language": "de"})
    assert resumable(parts, spans, keys, detect=True) == {}                 # the first span must be detected again
    parts.save(0, "a", {"segments": [], "language": "en"})
    assert sorted(resumable(parts, spans, keys, detect=True)) == [0, 1]      # span 2 was decoded as German


def test_a_checkpoint_without_segments_does_not_count(parts: Checkpoints, tmp_path: Path) -> None:
    (tmp_path / "asr.parts").mkdir()
    (tmp_path / "asr.parts" / "0000.json").write_text(json.dumps({"key": "a", "data": {"language": "en"}}))
    assert resumable(parts, spans_of(1), ["a"], detect=False) == {}
