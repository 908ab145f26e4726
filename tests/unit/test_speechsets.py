"""bench/speechsets.py: the pieces it cuts from real conversations, the mixtures it makes from them, and the
refusal of a speaker heard in two sets (the real build downloads packages; these parts do not)."""

from __future__ import annotations

import numpy as np

from bench import speechsets as ss


def test_solo_pieces_leave_out_other_speakers_and_short_stretches() -> None:
    turns = [(0.0, 5.0, "A"), (4.0, 4.5, "B"), (6.0, 6.5, "A"), (7.0, 9.0, "B")]
    pieces = ss.solo_pieces(turns)
    assert pieces == {"A": [(0.0, 4.0)], "B": [(7.0, 9.0)]}      # 4.5-5.0 and 6.0-6.5 are too short


def test_rttm_turns_keep_the_annotated_part_of_one_recording() -> None:
    text = ("SPEAKER x 1 1.0 2.0 <NA> <NA> A <NA> <NA>\nSPEAKER y 1 0.0 1.0 <NA> <NA> B <NA> <NA>\n"
            "SPEAKER x 1 29.0 3.0 <NA> <NA> C <NA> <NA>\nSPEAKER x 1 31.0 1.0 <NA> <NA> A <NA> <NA>\n")
    assert ss.rttm_turns(text, "x", 30.0) == [(1.0, 3.0, "A"), (29.0, 30.0, "C")]


def pool() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    return {name: [rng.standard_normal(int(6 * ss.RATE)).astype(np.float32) * 0.1] for name in "ABCD"}


def test_a_mixture_is_the_same_from_the_same_seed_and_its_reference_is_where_the_pieces_went() -> None:
    one = ss.mixture(np.random.default_rng(3), pool(), ["A", "B", "C"])
    two = ss.mixture(np.random.default_rng(3), pool(), ["A", "B", "C"])
    assert np.array_equal(one[0], two[0]) and one[1] == two[1]
    audio, turns = one
    assert ss.MIX_LENGTH_S[0] <= len(audio) / ss.RATE <= ss.MIX_LENGTH_S[1] + ss.MAX_TURN_S + 1
    assert {who for *_, who in turns} == {"A", "B", "C"}
    assert all(a[2] != b[2] for a, b in zip(turns, turns[1:]))            # never the same speaker twice in a row
    assert all(ss.MIN_TURN_S - 0.01 <= end - start <= ss.MAX_TURN_S + 0.01 for start, end, _ in turns)
    overlaps = [b[0] - a[1] for a, b in zip(turns, turns[1:]) if b[0] < a[1]]
    assert overlaps and all(-ss.MAX_OVERLAP_S - 0.01 <= o < 0 for o in overlaps)
    inside = [audio[int(s * ss.RATE):int(e * ss.RATE)] for s, e, _ in turns]
    assert all(np.abs(x).max() > 0 for x in inside)
    silent = np.ones(len(audio), bool)
    for s, e, _ in turns:
        silent[int(s * ss.RATE):int(e * ss.RATE)] = False
    assert np.abs(audio[silent]).max() == 0                                # nothing outside the reference turns


def test_a_speaker_in_two_sets_is_found() -> None:
    items = [{"split": "dev", "turns": [(0, 1, "A"), (1, 2, "B")]}, {"split": "validation", "turns": [(0, 1, "C")]},
             {"split": "final", "turns": [(0, 1, "D")]}]
    assert ss.shared_speakers(items) == set()
    items.append({"split": "validation", "turns": [(0, 1, "B")]})
    assert ss.shared_speakers(items) == {"B"}
    items.append({"split": "final", "turns": [(0, 1, "C")]})            # validation and final share C
    assert ss.shared_speakers(items) == {"B", "C"}


def test_trimming_cuts_only_the_quiet_ends() -> None:
    loud = np.sin(np.arange(16000) / 5).astype(np.float32)
    audio = np.concatenate([np.zeros(8000, np.float32), loud, np.zeros(4000, np.float32)])
    out = ss.trimmed(audio)
    assert len(out) == 16000 and np.array_equal(out, audio[8000:24000])
