"""WER and DER (infra/quality/scoring.py), and the RTTM the diarize stage writes read back by the scorer."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.quality.scoring import (
    Turn, best_mapping, diarization_errors, normalize_words, read_rttm, read_stm, word_errors,
)
from stages.diarize import renamed_by_first_speech, rttm_lines


def test_words_are_lower_cased_without_punctuation_but_keep_inner_apostrophes() -> None:
    assert normalize_words("Oh, I didn’t know. HELLO?! 'quoted'") == ["oh", "i", "didn't", "know", "hello", "quoted"]


@pytest.mark.parametrize(("ref", "hyp", "counts"), [
    ("hello there", "Hello, there!", (0, 0, 0)),
    ("the cat sat", "the bat sat", (1, 0, 0)),
    ("the cat sat down", "the cat down", (0, 1, 0)),
    ("the cat", "the fat cat", (0, 0, 1)),
    ("a b c d", "", (0, 4, 0)),
    ("", "a", (0, 0, 1)),
])
def test_word_errors_count_substitutions_deletions_insertions(ref: str, hyp: str, counts: tuple) -> None:
    errors = word_errors(ref, hyp)
    assert (errors.substitutions, errors.deletions, errors.insertions) == counts


def test_wer_is_errors_over_reference_words() -> None:
    assert word_errors("one two three four", "one too three").wer == pytest.approx(0.5)
    assert word_errors("", "").wer == 0.0


def test_read_stm_orders_by_time_and_drops_labels(tmp_path: Path) -> None:
    stm = tmp_path / "ref.stm"
    stm.write_text(";; comment\nf 1 B 2.0 3.0 <o,f0,male> world\nf 1 A 0.0 1.0 Hello,\n")
    assert read_stm(stm) == "Hello, world"


def test_identical_diarizations_score_zero_whatever_the_speaker_names() -> None:
    ref = [Turn(0, 2, "a"), Turn(2, 5, "b"), Turn(6, 7, "a")]
    hyp = [Turn(0, 2, "S1"), Turn(2, 5, "S0"), Turn(6, 7, "S1")]
    d = diarization_errors(ref, hyp)
    assert d.der == pytest.approx(0.0) and d.reference_s == pytest.approx(6.0)


def test_missed_false_alarm_and_confusion() -> None:
    ref = [Turn(0, 4, "a"), Turn(4, 8, "b")]
    hyp = [Turn(1, 4, "x"), Turn(4, 6, "x"), Turn(6, 9, "y")]
    d = diarization_errors(ref, hyp)
    assert d.missed_s == pytest.approx(1.0)          # 0-1 s
    assert d.false_alarm_s == pytest.approx(1.0)     # 8-9 s
    assert d.confusion_s == pytest.approx(2.0)       # 4-6 s: b given to x, which maps to a
    assert d.der == pytest.approx(4.0 / 8.0)


def test_overlapped_speech_counts_each_speaker() -> None:
    ref = [Turn(0, 2, "a"), Turn(1, 2, "b")]
    hyp = [Turn(0, 2, "x")]
    d = diarization_errors(ref, hyp)
    assert d.reference_s == pytest.approx(3.0) and d.missed_s == pytest.approx(1.0) and d.confusion_s == 0


def test_a_collar_leaves_out_the_time_around_reference_boundaries() -> None:
    ref = [Turn(0, 4, "a"), Turn(4, 8, "b")]
    hyp = [Turn(0, 4.2, "x"), Turn(4.2, 8, "y")]
    assert diarization_errors(ref, hyp).confusion_s == pytest.approx(0.2)
    assert diarization_errors(ref, hyp, collar_s=0.25).der == pytest.approx(0.0)


def test_best_mapping_maximises_the_total_overlap() -> None:
    # greedy would take (0, 0) = 5 first and end at 5 + 1; the best is 4 + 4
    assert best_mapping([[5, 4], [4, 1]]) == {0: 1, 1: 0}
    assert best_mapping([[1, 9, 0]]) == {0: 1}
    assert best_mapping([[3], [7]]) == {1: 0}


def test_rttm_written_by_diarize_reads_back_as_the_same_turns(tmp_path: Path) -> None:
    turns = renamed_by_first_speech([{"start": 2.5, "end": 4.0, "speaker": "7"}, {"start": 0.0, "end": 2.0, "speaker": "3"}])
    assert [t["speaker"] for t in turns] == ["SPEAKER_00", "SPEAKER_01"]
    text = rttm_lines(turns, "20260101-0001")
    assert text.splitlines()[0] == "SPEAKER 20260101-0001 1 0.000 2.000 <NA> <NA> SPEAKER_00 <NA> <NA>"
    path = tmp_path / "x.rttm"
    path.write_text(text)
    assert read_rttm(path) == [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.5, 4.0, "SPEAKER_01")]


def test_rttm_file_ids_have_no_spaces() -> None:
    assert rttm_lines([{"start": 0, "end": 1, "speaker": "S"}], "my film.mp4").split()[1] == "my_film.mp4"
