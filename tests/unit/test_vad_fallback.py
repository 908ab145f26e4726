"""The VAD's fallback for quiet speech (stages/vad.py): the loudness it measures and the decision it takes.

(The same on real speech made quiet, with the model and Whisper, is in tests/integration/test_quiet_speech.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages._loudness import FRAME, Loudness
from stages.vad import (FALLBACK_THRESHOLD, MIN_SOUND_S, MIN_SPEECH_SHARE, QUIET_DBFS, QUIET_MIN_SPEECH_SHARE,
                        SAMPLE_RATE, SILENCE_DBFS, THRESHOLD, choose_speech, speech_s, too_little, track)

QUIET = QUIET_DBFS - 10                # the louder parts' level of a quiet file
USUAL = -20.0                          # and of a file at a usual level
SOUNDING = 100.0                       # seconds of sound in the file
LITTLE = MIN_SPEECH_SHARE * SOUNDING / 2   # seconds of speech that are too little for it
ENOUGH = MIN_SPEECH_SHARE * SOUNDING       # and that are not


def seg(start: float, end: float) -> dict[str, float]:
    return {"start": start, "end": end}


class Lower:
    """The lower threshold's answer, and whether it was asked for."""

    def __init__(self, *segments: dict[str, float]) -> None:
        self.segments, self.asked = list(segments), 0

    def __call__(self) -> list[dict[str, float]]:
        self.asked += 1
        return self.segments


def sine(seconds: float, dbfs: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (10 ** (dbfs / 20) * math.sqrt(2) * np.sin(2 * math.pi * hz * t)).astype(np.float32)


def measured(samples: np.ndarray, block: int) -> Loudness:
    loudness = Loudness(SILENCE_DBFS)
    for i in range(0, len(samples), block):
        loudness.feed(samples[i:i + block])
    return loudness


def test_the_thresholds_are_ordered() -> None:
    assert 0 < FALLBACK_THRESHOLD < THRESHOLD < 1
    assert (FALLBACK_THRESHOLD, THRESHOLD) == (0.18, 0.2)      # chosen on the development set (docs/BENCHMARKS.md)
    assert SILENCE_DBFS < QUIET_DBFS < 0 and MIN_SOUND_S > 0
    assert 0 < MIN_SPEECH_SHARE < QUIET_MIN_SPEECH_SHARE < 1


def test_a_silent_file_never_has_too_little_speech() -> None:
    for quiet in (False, True):
        assert not too_little(0.0, 0.0, quiet)
        assert not too_little(0.0, MIN_SOUND_S - 0.1, quiet)
        assert too_little(0.0, MIN_SOUND_S, quiet)


def test_too_little_is_a_share_of_the_sounding_time() -> None:
    assert too_little(MIN_SPEECH_SHARE * 100 - 0.5, 100.0)
    assert not too_little(MIN_SPEECH_SHARE * 100, 100.0)
    assert not too_little(80.0, 100.0)


def test_enough_speech_stands_and_the_lower_threshold_is_not_tried() -> None:
    lower = Lower(seg(0.0, 90.0))
    for level, enough in ((USUAL, ENOUGH), (QUIET, QUIET_MIN_SPEECH_SHARE * SOUNDING)):
        found = [seg(0.0, enough)]
        assert choose_speech(found, lower, SOUNDING, level, duration_s=120.0, max_s=30.0) == (found, None, False)
    assert lower.asked == 0


def test_a_quiet_file_needs_the_higher_share() -> None:
    """Speech between the two shares is enough at a usual level and too little in a quiet file."""
    between = (MIN_SPEECH_SHARE + QUIET_MIN_SPEECH_SHARE) / 2 * SOUNDING
    assert not too_little(between, SOUNDING) and too_little(between, SOUNDING, quiet=True)
    lower = Lower(seg(0.0, QUIET_MIN_SPEECH_SHARE * SOUNDING))
    assert choose_speech([seg(0.0, between)], lower, SOUNDING, QUIET, duration_s=120.0, max_s=30.0) == (
        lower.segments, f"threshold {FALLBACK_THRESHOLD}", True)


def test_too_little_speech_at_a_usual_level_takes_the_lower_threshold_when_it_finds_more() -> None:
    found, lower = [seg(0.0, LITTLE)], Lower(seg(0.0, LITTLE + 1.0))
    assert choose_speech(found, lower, SOUNDING, USUAL, duration_s=120.0, max_s=30.0) == (
        lower.segments, f"threshold {FALLBACK_THRESHOLD}", True)
    assert lower.asked == 1


def test_too_little_speech_at_a_usual_level_stands_when_the_lower_threshold_finds_no_more() -> None:
    found = [seg(0.0, LITTLE)]
    for lower in (Lower(), Lower(seg(0.0, LITTLE / 2))):
        assert choose_speech(found, lower, SOUNDING, USUAL, duration_s=120.0, max_s=30.0) == (found, None, True)


def test_a_quiet_file_takes_the_lower_threshold_when_it_finds_enough() -> None:
    lower = Lower(seg(0.0, QUIET_MIN_SPEECH_SHARE * SOUNDING))
    assert choose_speech([seg(0.0, LITTLE)], lower, SOUNDING, QUIET, duration_s=120.0, max_s=30.0) == (
        lower.segments, f"threshold {FALLBACK_THRESHOLD}", True)


def test_a_quiet_file_whose_speech_is_still_under_its_share_after_the_lower_threshold_goes_whole() -> None:
    lower = Lower(seg(0.0, QUIET_MIN_SPEECH_SHARE * SOUNDING - 1.0))
    windows, fallback, tried = choose_speech([seg(0.0, LITTLE)], lower, SOUNDING, QUIET, duration_s=120.0,
                                             max_s=30.0)
    assert (fallback, tried) == ("whole file", True)
    assert windows == [seg(0.0, 30.0), seg(30.0, 60.0), seg(60.0, 90.0), seg(90.0, 120.0)]


def test_no_speech_at_either_threshold_in_a_quiet_file_hands_over_the_whole_file_in_windows() -> None:
    windows, fallback, tried = choose_speech([], Lower(), 12.0, QUIET, duration_s=95.5, max_s=30.0)
    assert (fallback, tried) == ("whole file", True)
    assert windows[0]["start"] == 0.0 and windows[-1]["end"] == 95.5 and len(windows) == 4
    assert all(0 < w["end"] - w["start"] <= 30.0 for w in windows)
    assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:]))
    assert speech_s(windows) == pytest.approx(95.5, abs=0.01)


def test_no_speech_at_either_threshold_in_a_file_at_a_usual_level_is_no_speech() -> None:
    """Music or noise: the lower threshold is tried, and the whole file does not go to ASR."""
    lower = Lower()
    assert choose_speech([], lower, 60.0, USUAL, duration_s=60.0, max_s=30.0) == ([], None, True)
    assert lower.asked == 1
    assert choose_speech([], Lower(), 60.0, QUIET_DBFS, duration_s=60.0, max_s=30.0) == ([], None, True)


def test_a_silent_file_gets_no_speech_and_no_fallback() -> None:
    lower = Lower(seg(0.0, 1.0))
    assert choose_speech([], lower, 0.0, None, duration_s=60.0, max_s=30.0) == ([], None, False)
    assert choose_speech([], lower, MIN_SOUND_S / 2, QUIET, duration_s=60.0, max_s=30.0) == ([], None, False)
    assert lower.asked == 0


def test_digital_silence_has_no_level_and_no_sound() -> None:
    summary = measured(np.zeros(5 * SAMPLE_RATE, np.float32), 4000).summary()
    assert summary == {"rms_dbfs": None, "peak_dbfs": None, "loud_dbfs": None, "sounding_s": 0.0,
                       "silence_dbfs": SILENCE_DBFS}


def test_a_sine_measures_its_level_and_sounds_above_the_silence_level_only() -> None:
    loud = measured(sine(2.0, -20.0), 3000).summary()
    assert loud["rms_dbfs"] == pytest.approx(-20.0, abs=0.1)
    assert loud["peak_dbfs"] == pytest.approx(-17.0, abs=0.1)           # a sine's peak is 3 dB over its RMS
    assert loud["loud_dbfs"] == pytest.approx(-20.0, abs=0.1)
    assert loud["sounding_s"] == 2.0
    assert measured(sine(2.0, SILENCE_DBFS - 3), 3000).sounding_s == 0.0
    assert measured(sine(2.0, SILENCE_DBFS + 3), 3000).sounding_s == 2.0


@pytest.mark.parametrize("block", [1, 999, FRAME, 7 * FRAME + 13, 10 * SAMPLE_RATE])
def test_the_loudness_does_not_depend_on_the_blocks(block: int) -> None:
    """Quiet, then a tone for 1.25 s, then silence: the same figures whatever the blocks (frames cross them)."""
    samples = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), sine(1.25, -40.0),
                              np.zeros(SAMPLE_RATE, np.float32)])
    whole = measured(samples, len(samples)).summary()
    assert measured(samples, block).summary() == whole
    assert whole["sounding_s"] in (1.2, 1.3)


def test_the_lower_threshold_runs_the_same_rule_on_the_same_probabilities() -> None:
    from stages.vad import WINDOW

    between = (FALLBACK_THRESHOLD + THRESHOLD) / 2            # heard at the lower threshold only
    probabilities = np.array([0.0] * 50 + [between] * 60 + [0.0] * 50 + [0.99] * 40 + [0.0] * 50, np.float32)
    samples = len(probabilities) * WINDOW
    usual = track(probabilities, samples, 30.0)
    lower = track(probabilities, samples, 30.0, FALLBACK_THRESHOLD)
    assert len(usual) == 1 and len(lower) == 2
    assert lower[1] == usual[0]
    assert speech_s(lower) > speech_s(usual)


def test_the_louder_parts_level_ignores_a_click_and_the_silence() -> None:
    """A quiet tone with one loud 100 ms click and long silence: the louder parts are the tone's level."""
    samples = np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), sine(4.0, -60.0),
                              sine(0.1, -6.0), sine(4.0, -60.0)])
    summary = measured(samples, 5000).summary()
    assert summary["loud_dbfs"] == pytest.approx(-60.0, abs=0.2)
    assert summary["peak_dbfs"] == pytest.approx(-3.0, abs=0.1)
    assert summary["sounding_s"] == pytest.approx(8.1, abs=0.1)
