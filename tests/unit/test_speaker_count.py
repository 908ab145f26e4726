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


def voices(counts: list[int], spread: float = 0.15, seed: int = 7):
    """Unit vectors around one random direction per voice, ``counts[i]`` windows of voice i, in that order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(counts), 256))
    emb = np.concatenate([c + spread * np.linalg.norm(c) / 16 * rng.normal(size=(n, 256))
                          for c, n in zip(centres, counts)])
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_linkage_finds_each_voice_and_a_stray_window_joins_its_nearest() -> None:
    from stages._clustering import linkage_clusters

    emb = voices([40, 30, 20, 1])
    labels = linkage_clusters(emb, similarity=0.6, min_share=0.1, max_speakers=10)
    assert [len(set(labels[a:b].tolist())) for a, b in ((0, 40), (40, 70), (70, 90))] == [1, 1, 1]
    assert len(set(labels.tolist())) == 3                      # the single stray window is nobody's own speaker
    assert linkage_clusters(emb, similarity=0.6, min_share=0.0, max_speakers=2).max() == 1
    assert set(linkage_clusters(voices([25]), similarity=0.6, min_share=0.1, max_speakers=10).tolist()) == {0}


def test_linkage_settings_count_by_linkage() -> None:
    import numpy as np

    from stages._speakers import LINKAGE, cluster

    labels = cluster(voices([60, 40, 30, 20]), 10, LINKAGE)
    assert labels.max() == 3 and labels[0] == 0 and np.all(labels[:60] == 0)


def test_the_stage_takes_the_larger_of_the_two_counts(monkeypatch) -> None:
    import numpy as np

    import stages._speakers as sp

    emb = voices([60, 40, 30, 20])
    assert sp.TUNED.linkage_when_more and sp.TODAY.linkage_similarity == 0.0
    monkeypatch.setattr(sp, "count_speakers", lambda values, most, share: 2)      # the eigengap under-counts
    assert sp.cluster(emb, 10, sp.TUNED).max() == 3                                 # linkage's four win
    assert sp.cluster(emb, 10, sp.TODAY).max() == 1
    monkeypatch.setattr(sp, "linkage_clusters", lambda *args: np.zeros(len(emb), dtype=int))  # linkage hears one
    monkeypatch.setattr(sp, "count_speakers", lambda values, most, share: 4)
    assert sp.cluster(emb, 10, sp.TUNED).max() == 3                                 # the eigengap's four win
