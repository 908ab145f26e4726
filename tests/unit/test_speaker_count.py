"""The offline diarizer's rule for the number of speakers (stages/_speakers.py): the largest eigengap
among the eigenvalues that reach a share of the largest (0.4 here, the setting before tuning)."""

from __future__ import annotations

from stages._speakers import count_speakers


def test_two_strong_eigenvalues_make_two_speakers() -> None:
    assert count_speakers([35.2, 21.7, 6.4, 5.3, 3.8], max_speakers=10, min_share=0.4) == 2


def test_a_weak_tail_does_not_split_one_speaker() -> None:
    # the large ratio 6.9 / 3.6 sits below the share of the largest and does not count
    assert count_speakers([18.5, 9.8, 6.9, 3.6, 2.9], max_speakers=10, min_share=0.4) == 1


def test_the_count_stays_within_max_speakers() -> None:
    values = [10.0, 9.9, 9.8, 9.7, 1.0]
    assert count_speakers(values, max_speakers=10, min_share=0.4) == 4
    assert count_speakers(values, max_speakers=2, min_share=0.4) in (1, 2)


def test_degenerate_input_is_one_speaker() -> None:
    assert count_speakers([], 10, 0.4) == 1
    assert count_speakers([1.0], 10, 0.4) == 1
    assert count_speakers([0.0, 0.0, 0.0], 10, 0.4) == 1
