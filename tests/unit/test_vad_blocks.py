"""The VAD's rule from Silero's window probabilities to speech segments (stages/vad.py SpeechTracker), fed block by
block: the segments do not depend on where the blocks end, and a segment that crosses a block's end is one segment.

(The same rule against faster-whisper's own on real speech, with the model, is in
tests/integration/test_long_asr.py.)"""

from __future__ import annotations

import pytest

from stages.vad import (MIN_SILENCE_MS, MIN_SPEECH_MS, SAMPLE_RATE, SPEECH_PAD_MS, THRESHOLD, WINDOW, SpeechTracker,
                        as_float32)

PAD = 1600                     # 100 ms of padding (SPEECH_PAD_MS), in samples; a window (WINDOW) is 32 ms


def probabilities(*runs: tuple[int, float]) -> list[float]:
    """A probability per window: (how many windows, probability), one after the other."""
    return [p for count, p in runs for _ in range(count)]


def segments(probs: list[float], block: int | None = None, max_speech_s: float = 30.0) -> list[tuple[int, int]]:
    tracker = SpeechTracker(max_speech_s)
    step = block or len(probs)
    for i in range(0, len(probs), step):
        tracker.feed(probs[i:i + step])
    return tracker.finish(len(probs) * WINDOW)


def test_the_values_are_the_ones_chosen_on_the_development_set() -> None:
    assert (THRESHOLD, MIN_SPEECH_MS, MIN_SILENCE_MS, SPEECH_PAD_MS) == (0.2, 100, 100, 100)
    assert PAD == SAMPLE_RATE * SPEECH_PAD_MS // 1000


def test_speech_between_silences_is_one_padded_segment() -> None:
    probs = probabilities((100, 0.01), (60, 0.9), (100, 0.01))
    assert segments(probs) == [(100 * WINDOW - PAD, 160 * WINDOW + PAD)]


def test_speech_starts_at_the_threshold_and_ends_under_it_less_0_15() -> None:
    # 0.2 (as the model's float32 gives it) starts speech; 0.1 (over 0.05) keeps it going; 0.19 never starts it
    start = as_float32(0.2)
    assert segments(probabilities((50, 0.0), (10, start), (30, 0.1), (50, 0.0))) == [
        (50 * WINDOW - PAD, 90 * WINDOW + PAD)]
    assert segments(probabilities((50, 0.0), (40, 0.19), (50, 0.0))) == []


def test_a_short_dip_does_not_split_speech_and_a_long_pause_does() -> None:
    # 100 ms of silence ends speech (min_silence_ms): 4 windows (128 ms, the last one 96 ms after the first) do
    # not, 30 windows (960 ms) do
    probs = probabilities((50, 0.0), (40, 0.8), (4, 0.01), (40, 0.8), (30, 0.01), (40, 0.8), (50, 0.0))
    assert segments(probs) == [(50 * WINDOW - PAD, 134 * WINDOW + PAD), (164 * WINDOW - PAD, 204 * WINDOW + PAD)]


def test_a_pause_shorter_than_two_pads_is_shared_out() -> None:
    # 6 windows (192 ms): speech ends, but the gap is under 200 ms, so each side gets half of it
    probs = probabilities((50, 0.0), (85, 0.8), (6, 0.01), (40, 0.8), (50, 0.0))
    half = 6 * WINDOW // 2
    assert segments(probs) == [(50 * WINDOW - PAD, 135 * WINDOW + half), (141 * WINDOW - half, 181 * WINDOW + PAD)]


def test_speech_shorter_than_the_minimum_is_dropped() -> None:
    probs = probabilities((50, 0.0), (3, 0.9), (50, 0.0), (20, 0.9), (50, 0.0))       # 96 ms, then 640 ms
    assert segments(probs) == [(103 * WINDOW - PAD, 123 * WINDOW + PAD)]


def test_speech_over_the_maximum_is_cut_into_segments_no_longer_than_it() -> None:
    # 3 s maximum, 6.4 s of speech without a pause: cut where it reaches the maximum
    probs = probabilities((20, 0.0), (200, 0.9), (20, 0.0))
    found = segments(probs, max_speech_s=3.0)
    assert len(found) == 3 and all(b - a <= 3.0 * SAMPLE_RATE for a, b in found)
    assert found[0][0] == 20 * WINDOW - PAD and found[-1][1] == 220 * WINDOW + PAD
    assert all(a[1] <= b[0] for a, b in zip(found, found[1:]))


def test_speech_at_the_end_runs_to_the_last_sample() -> None:
    probs = probabilities((30, 0.0), (40, 0.9))
    assert segments(probs) == [(30 * WINDOW - PAD, 70 * WINDOW)]


@pytest.mark.parametrize("block", [1, 7, 64, 101])
def test_blocks_give_the_segments_of_one_pass(block: int) -> None:
    """Every block size gives the whole-file segments, with speech crossing many block ends."""
    probs = probabilities((20, 0.0), (62, 0.9), (6, 0.2), (62, 0.9), (9, 0.1), (3, 0.6), (40, 0.95), (30, 0.0),
                          (120, 0.7), (11, 0.3), (25, 0.8), (60, 0.0), (7, 0.9), (40, 0.0))
    whole = segments(probs)
    assert len(whole) >= 2
    assert segments(probs, block) == whole
    crossing = [s for s in whole if s[0] // (block * WINDOW) != s[1] // (block * WINDOW)]
    assert crossing, "some segment crosses a block's end and is still one segment"
    assert segments(probs, block, max_speech_s=2.0) == segments(probs, max_speech_s=2.0)
