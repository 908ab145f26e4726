"""Subtitle writing: line breaking, cues from words and speakers, readable timing, SRT and WebVTT text."""

from __future__ import annotations

import pytest

from stages.subtitles import (
    MAX_CUE_S, MAX_LINE, MIN_CUE_S, MIN_GAP_S, Cue, Word, assign_speakers, build_cues, make_cues, readable,
    speaker_at, speaker_label, srt_text, timestamp, vtt_text, wrap,
)


def words_of(text: str, start: float = 0.0, step: float = 0.3, speaker: str | None = "SPEAKER_00") -> list[Word]:
    return [Word(round(start + i * step, 3), round(start + i * step + step * 0.8, 3), w, speaker)
            for i, w in enumerate(text.split())]


def test_wrap_keeps_a_short_text_on_one_line() -> None:
    assert wrap("Oh, hello.") == ["Oh, hello."]
    assert wrap("x" * MAX_LINE) == ["x" * MAX_LINE]


def test_wrap_breaks_into_two_balanced_lines_within_the_limit() -> None:
    text = "the quick brown fox jumps over the lazy dog and runs far away from here"
    lines = wrap(text)
    assert len(lines) == 2 and " ".join(lines) == text
    assert all(len(line) <= MAX_LINE for line in lines)
    assert abs(len(lines[0]) - len(lines[1])) <= 4


def test_wrap_prefers_a_break_after_punctuation_when_it_is_nearly_as_balanced() -> None:
    assert wrap("Oh, I'm originally from Chicago, I'm in New Jersey now") == \
        ["Oh, I'm originally from Chicago,", "I'm in New Jersey now"]


def test_wrap_cuts_what_two_lines_cannot_hold_and_words_longer_than_a_line() -> None:
    lines = wrap("word " * 30)
    assert len(lines) > 2 and all(len(line) <= MAX_LINE for line in lines)
    assert wrap("a" * 100) == ["a" * MAX_LINE, "a" * MAX_LINE, "a" * 16]


def test_timestamps_for_srt_and_vtt() -> None:
    assert timestamp(0, ",") == "00:00:00,000"
    assert timestamp(3723.4567, ",") == "01:02:03,457"
    assert timestamp(59.9996, ".") == "00:01:00.000"


def test_speaker_labels_count_from_one() -> None:
    assert speaker_label("SPEAKER_00") == "Speaker 1"
    assert speaker_label("SPEAKER_11") == "Speaker 12"
    assert speaker_label("Diane") == "Diane"


def test_a_word_takes_the_speaker_it_overlaps_most_else_the_nearest_turn() -> None:
    turns = [{"start": 0.0, "end": 1.0, "speaker": "A"}, {"start": 0.9, "end": 3.0, "speaker": "B"}]
    assert speaker_at(0.2, 0.8, turns) == "A"
    assert speaker_at(0.8, 1.5, turns) == "B"
    assert speaker_at(3.5, 3.9, turns) == "B"
    assert speaker_at(9.0, 9.5, turns) is None


def test_words_outside_every_turn_keep_the_previous_speaker() -> None:
    turns = [{"start": 0.0, "end": 1.0, "speaker": "SPEAKER_01"}]
    words = assign_speakers([Word(0.1, 0.5, "hi"), Word(5.0, 5.4, "there")], turns)
    assert [w.speaker for w in words] == ["SPEAKER_01", "SPEAKER_01"]


def test_a_change_of_speaker_starts_a_new_cue() -> None:
    words = words_of("Hello there.", 0.0, speaker="SPEAKER_00") + words_of("Hi.", 1.0, speaker="SPEAKER_01")
    cues = build_cues(words, prefixed=True)
    assert [c.lines for c in cues] == [("Speaker 1: Hello there.",), ("Speaker 2: Hi.",)]


def test_a_long_pause_starts_a_new_cue() -> None:
    cues = build_cues(words_of("one two", 0.0) + words_of("three four", 5.0), prefixed=False)
    assert [c.lines for c in cues] == [("one two",), ("three four",)]


def test_short_sentences_of_one_speaker_share_a_cue() -> None:
    cues = build_cues(words_of("Oh, hello. I didn't know you were there."), prefixed=False)
    assert [c.lines for c in cues] == [("Oh, hello. I didn't know you were there.",)]


def test_every_cue_fits_two_lines_and_the_longest_duration() -> None:
    text = ("Well there is not that much difference at least you know they all call me a Yankee down here so "
            "what can I say and then we talked about the weather in Texas and in New Jersey for a long time")
    cues = build_cues(words_of(text, step=0.25), prefixed=True)
    assert len(cues) > 2
    assert " ".join(" ".join(c.lines).removeprefix("Speaker 1: ") for c in cues) == text
    for cue in cues:
        assert len(cue.lines) <= 2 and all(len(line) <= MAX_LINE for line in cue.lines)
        assert cue.end - cue.start <= MAX_CUE_S
        assert cue.lines[0].startswith("Speaker 1: ")


def test_a_long_phrase_is_split_evenly_not_into_an_orphan_word() -> None:
    text = "Good evening, the last train to the coast leaves at nine and I have our tickets"
    cues = build_cues(words_of(text), prefixed=True)
    sizes = [len(" ".join(c.lines)) for c in cues]
    assert len(cues) == 2 and min(sizes) >= 25, sizes


def test_short_cues_are_held_long_enough_to_read_without_overlapping_the_next() -> None:
    cues = [Cue(0.0, 0.3, None, ("Hi.",)), Cue(0.5, 0.9, None, ("A longer line that takes time to read",)),
            Cue(5.0, 5.2, None, ("Bye.",))]
    out = readable(cues)
    assert out[0].end == pytest.approx(0.5 - MIN_GAP_S)
    assert out[1].end == pytest.approx(0.5 + len("A longer line that takes time to read") / 17.0, abs=0.01)
    assert out[2].end == pytest.approx(5.0 + MIN_CUE_S)
    assert all(a.end <= b.start for a, b in zip(out, out[1:]))
    assert [c.start for c in out] == [0.0, 0.5, 5.0]


def test_readable_never_shortens_a_cue() -> None:
    cue = Cue(1.0, 6.5, None, ("x",))
    assert readable([cue])[0].end == 6.5


def test_srt_text() -> None:
    cues = [Cue(0.0, 1.5, "SPEAKER_00", ("Speaker 1: Hello?",)),
            Cue(2.0, 4.25, "SPEAKER_01", ("Speaker 2: Oh, hello.", "I didn't know you were there."))]
    assert srt_text(cues) == ("1\n00:00:00,000 --> 00:00:01,500\nSpeaker 1: Hello?\n\n"
                              "2\n00:00:02,000 --> 00:00:04,250\nSpeaker 2: Oh, hello.\nI didn't know you were there.\n\n")


def test_vtt_text_has_the_header_voice_tags_and_escapes() -> None:
    cues = [Cue(0.0, 1.5, "SPEAKER_00", ("Speaker 1: Fish & chips <now>",))]
    assert vtt_text(cues, prefixed=True) == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n"
                                             "<v Speaker 1>Speaker 1: Fish &amp; chips &lt;now&gt;\n\n")
    assert "<v " not in vtt_text(cues, prefixed=False)


def test_make_cues_prefixes_speakers_only_when_more_than_one_speaks() -> None:
    asr = {"segments": [{"start": 0.0, "end": 2.0, "text": "Hello there.",
                         "words": [{"start": 0.0, "end": 0.5, "word": " Hello"}, {"start": 0.6, "end": 1.0, "word": " there."}]},
                        {"start": 1.5, "end": 2.0, "text": "Hi.", "words": []}]}
    one = {"turns": [{"start": 0.0, "end": 5.0, "speaker": "SPEAKER_00"}]}
    two = {"turns": [{"start": 0.0, "end": 1.2, "speaker": "SPEAKER_00"}, {"start": 1.3, "end": 5.0, "speaker": "SPEAKER_01"}]}
    cues, prefixed = make_cues(asr, one)
    assert not prefixed and [c.lines for c in cues] == [("Hello there. Hi.",)]
    cues, prefixed = make_cues(asr, two)
    assert prefixed and [c.lines for c in cues] == [("Speaker 1: Hello there.",), ("Speaker 2: Hi.",)]
    assert cues[1].start == 1.5            # a segment without word times spreads its words over its own time
