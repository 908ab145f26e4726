"""The offline diarizer's steps after k-means (stages/_speakers.py): small clusters join their nearest speaker,
and a Viterbi pass over the windows in time order removes lone changes of speaker inside a turn."""

from __future__ import annotations

import numpy as np

from stages import _speakers as sp


def voices(pattern: str, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """Unit embeddings of two voices (0.6 alike) in the order of ``pattern`` ('a'/'b'), with some noise."""
    rng = np.random.default_rng(seed)
    a = np.zeros(sp.EMBEDDING_SIZE)
    a[0] = 1.0
    b = np.zeros(sp.EMBEDDING_SIZE)
    b[0], b[1] = 0.6, 0.8
    emb = np.stack([a if c == "a" else b for c in pattern])
    emb += rng.standard_normal(emb.shape) * noise
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_a_lone_window_given_to_the_other_speaker_inside_a_turn_goes_back() -> None:
    pattern = "a" * 15 + "b" * 15
    emb = voices(pattern)
    labels = np.array([0] * 15 + [1] * 15)
    labels[7] = 1                                             # k-means' slip: one window of a's turn given to b
    emb[7] = (emb[7] + emb[20]) / np.linalg.norm(emb[7] + emb[20])   # a window over a breath, half like b
    fixed = sp.resegment(emb, labels, penalty=0.3)
    assert fixed.tolist() == [0] * 15 + [1] * 15
    assert sp.resegment(emb, labels, penalty=0.0).tolist() == labels.tolist()     # 0: no resegmentation


def test_resegmentation_keeps_real_changes_of_speaker() -> None:
    pattern = "aaaaaaaabbbbbbbbaaaaaaaabbbbbbbb"
    emb = voices(pattern, seed=1)
    labels = np.array([0 if c == "a" else 1 for c in pattern])
    assert sp.resegment(emb, labels, penalty=0.3).tolist() == labels.tolist()


def test_a_cluster_of_too_few_windows_joins_the_speaker_it_is_nearest_to() -> None:
    emb = voices("a" * 10 + "b" * 10 + "a" * 2, seed=2)
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    assert sp.absorb_small(emb, labels, 4).tolist() == [0] * 10 + [1] * 10 + [0] * 2
    assert sp.absorb_small(emb, labels, 0).tolist() == labels.tolist()
    assert sp.absorb_small(emb, np.zeros(3, dtype=int), 10).tolist() == [0, 0, 0]    # one speaker stays


def test_today_s_settings_are_the_ones_before_tuning() -> None:
    """bench/diarization.py compares the tuned diarizer with these; they are what the backend ran before."""
    assert sp.TODAY == sp.Settings(vad_aggressiveness=2, min_pause_s=0.3, min_speech_s=0.2, min_speech_share=0.5,
                                   row_keep=0.3, eigen_min_share=0.4, merge_similarity=0.75, min_cluster_windows=0,
                                   switch_penalty=0.0)


def test_the_speech_mask_follows_the_settings() -> None:
    decisions = np.array([1] * 10 + [0] * 2 + [1] * 10 + [0] * 15 + [1] * 2 + [0] * 15, dtype=bool)   # 30 ms frames
    samples = len(decisions) * 480
    today = sp.speech_of(decisions, samples, 1.0, sp.TODAY)     # the 60 ms pause filled, the 60 ms burst dropped
    assert today.mask[:66].all() and not today.mask[66:].any()
    raw = sp.speech_of(decisions, samples, 1.0, sp.Settings(**{**sp.TODAY.__dict__, "min_pause_s": 0.0,
                                                                 "min_speech_s": 0.0}))
    assert not raw.mask[30:36].any() and raw.mask[111:117].all() and raw.mask.sum() == 3 * 22
