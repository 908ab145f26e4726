"""Subtitle writing: line breaking, cues from words and speakers, timing by the rules, SRT and WebVTT text.

The property tests write subtitles for many generated word timings (seeded, so a failure repeats) and hold the
files to the rules with the checker `infra subs check` uses (infra/quality/subtitles.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import stages.subtitles as writer
from infra.quality.subtitles import Rules, check_file, parse_srt, shown_text
from stages.subtitles import (
    LEAD_IN_S, MAX_CPS, MAX_CUE_S, MAX_LAG_S, MAX_LINE, MIN_CUE_S, MIN_GAP_S, Cue, Part, Word, assign_speakers,
    build_cues, cue_lines, speaker_at, speaker_label, srt_text, timed, timed_cues, timestamp, vtt_text, wrap,
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


def lines_of(cues: list[Cue], prefixed: bool) -> list[tuple[str, ...]]:
    return [tuple(cue_lines(c, prefixed)) for c in cues]


def one(start: float, end: float, text: str, speaker: str | None = None) -> Cue:
    return Cue(start, end, (Part(speaker, text),))


def test_a_change_of_speaker_starts_a_new_cue() -> None:
    words = words_of("Hello there.", 0.0, speaker="SPEAKER_00") + words_of("Hi.", 1.0, speaker="SPEAKER_01")
    assert lines_of(build_cues(words, prefixed=True), True) == [("Speaker 1: Hello there.",), ("Speaker 2: Hi.",)]


def test_a_long_pause_starts_a_new_cue() -> None:
    cues = build_cues(words_of("one two", 0.0) + words_of("three four", 5.0), prefixed=False)
    assert lines_of(cues, False) == [("one two",), ("three four",)]


def test_short_sentences_of_one_speaker_share_a_cue() -> None:
    cues = build_cues(words_of("Oh, hello. I didn't know you were there."), prefixed=False)
    assert lines_of(cues, False) == [("Oh, hello. I didn't know you were there.",)]


def test_every_cue_fits_two_lines_and_the_longest_duration() -> None:
    text = ("Well there is not that much difference at least you know they all call me a Yankee down here so "
            "what can I say and then we talked about the weather in Texas and in New Jersey for a long time")
    cues = build_cues(words_of(text, step=0.25), prefixed=True)
    assert len(cues) > 2
    assert " ".join(c.parts[0].text for c in cues) == text
    for cue in cues:
        lines = cue_lines(cue, True)
        assert len(lines) <= 2 and all(len(line) <= MAX_LINE for line in lines)
        assert cue.end - cue.start <= MAX_CUE_S
        assert lines[0].startswith("Speaker 1: ")


def test_a_long_phrase_is_split_evenly_not_into_an_orphan_word() -> None:
    text = "Good evening, the last train to the coast leaves at nine and I have our tickets"
    cues = build_cues(words_of(text), prefixed=True)
    sizes = [len(" ".join(cue_lines(c, True))) for c in cues]
    assert len(cues) == 2 and min(sizes) >= 25, sizes


def test_a_cue_is_held_into_the_gap_after_it_to_be_read_and_never_shortened() -> None:
    text = "A longer line that takes time to read"
    out, fast = timed([one(0.5, 0.9, text), one(6.0, 6.2, "Bye."), one(9.0, 16.5, "x")], prefixed=False)
    assert fast == 0
    assert out[0].start == 0.5 and out[0].end == pytest.approx(0.5 + len(text) / MAX_CPS, abs=0.001)
    assert out[1].end == pytest.approx(6.0 + MIN_CUE_S)                # a short cue lasts MIN_CUE_S
    assert out[2].end == pytest.approx(9.0 + MAX_CUE_S)               # and none more than MAX_CUE_S


def test_a_cue_ends_two_frames_before_the_next_when_it_has_its_reading_time() -> None:
    out, fast = timed([one(0.0, 1.5, "Hi."), one(1.55, 3.0, "Then we should hurry.")], prefixed=False)
    assert fast == 0 and out[0].end == pytest.approx(1.55 - MIN_GAP_S) and out[1].start == 1.55


def test_a_crowded_cue_starts_early_and_delays_the_next_within_their_limits() -> None:
    text = "I still have to pack my bag and the keys."          # 41 characters: 2.412 s to read
    out, fast = timed([one(1.0, 1.6, text, "A"), one(2.6, 3.5, "Hurry up then.", "B")], prefixed=False)
    assert fast == 0
    assert out[0].start == pytest.approx(1.0 - LEAD_IN_S)
    assert out[0].end - out[0].start == pytest.approx(2.412)
    assert out[1].start == pytest.approx(out[0].end + MIN_GAP_S) and out[1].start - 2.6 <= MAX_LAG_S


def test_speech_too_fast_to_read_keeps_its_time_and_is_counted() -> None:
    """Four long cues one second apart: no start or delay within the limits gives them their reading time."""
    texts = ["The last train to the coast leaves at nine", "and I have the tickets for both of us here",
             "so pack your bag and find the house keys", "they are on the table next to the umbrella"]
    out, fast = timed([one(float(i), i + 0.9, t, "AB"[i % 2]) for i, t in enumerate(texts)], prefixed=False)
    assert len(out) == 4
    assert fast >= 1
    for i, cue in enumerate(out):
        assert float(i) - LEAD_IN_S <= cue.start <= i + MAX_LAG_S           # never far from the speech
        assert cue.end - cue.start >= MIN_CUE_S
    assert all(b.start - a.end >= MIN_GAP_S - 1e-9 for a, b in zip(out, out[1:]))


def test_two_speakers_too_close_for_two_cues_share_one_with_dashes() -> None:
    cues = build_cues(words_of("Hi.", 0.0, speaker="SPEAKER_00") + words_of("Hello you.", 0.35, speaker="SPEAKER_01")
                      + words_of("Later on we will talk about the train.", 5.0, speaker="SPEAKER_00"), prefixed=True)
    out, fast = timed(cues, prefixed=True)
    assert fast == 0 and len(out) == 2
    assert cue_lines(out[0], True) == ["- Speaker 1: Hi.", "- Speaker 2: Hello you."]
    srt = srt_text(out, prefixed=True)
    assert "\n- Speaker 1: Hi.\n- Speaker 2: Hello you.\n" in srt
    vtt = vtt_text(out, prefixed=True)
    assert "\n<v Speaker 1>- Hi.</v>\n<v Speaker 2>- Hello you.</v>\n" in vtt


def test_srt_text() -> None:
    cues = [one(0.0, 1.5, "Hello?", "SPEAKER_00"),
            one(2.0, 4.25, "Oh, hello. I didn't know you were there, really.", "SPEAKER_01")]
    assert srt_text(cues, prefixed=True) == (
        "1\n00:00:00,000 --> 00:00:01,500\nSpeaker 1: Hello?\n\n"
        "2\n00:00:02,000 --> 00:00:04,250\nSpeaker 2: Oh, hello. I didn't\nknow you were there, really.\n\n")
    assert srt_text(cues[:1], prefixed=False) == "1\n00:00:00,000 --> 00:00:01,500\nHello?\n\n"


def test_vtt_names_the_speaker_once_in_a_voice_tag_and_escapes() -> None:
    cues = [one(0.0, 1.5, "Fish & chips <now>", "SPEAKER_00")]
    assert vtt_text(cues, prefixed=True) == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n"
                                             "<v Speaker 1>Fish &amp; chips &lt;now&gt;\n\n")
    assert vtt_text(cues, prefixed=False) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nFish &amp; chips &lt;now&gt;\n\n"


def test_make_cues_names_speakers_only_when_more_than_one_speaks() -> None:
    asr = {"segments": [{"start": 0.0, "end": 2.0, "text": "Hello there.",
                         "words": [{"start": 0.0, "end": 0.5, "word": " Hello"}, {"start": 0.6, "end": 1.0, "word": " there."}]},
                        {"start": 1.5, "end": 2.0, "text": "Hi.", "words": []}]}
    one_voice = {"turns": [{"start": 0.0, "end": 5.0, "speaker": "SPEAKER_00"}]}
    two = {"turns": [{"start": 0.0, "end": 1.2, "speaker": "SPEAKER_00"}, {"start": 1.3, "end": 5.0, "speaker": "SPEAKER_01"}]}
    cues, prefixed, fast = timed_cues(asr, one_voice)
    assert not prefixed and lines_of(cues, False) == [("Hello there. Hi.",)] and fast == 0
    cues, prefixed, fast = timed_cues(asr, two)
    assert prefixed and lines_of(cues, True) == [("Speaker 1: Hello there.",), ("Speaker 2: Hi.",)]
    assert cues[1].start == 1.5            # a segment without word times spreads its words over its own time


def test_the_writer_s_limits_are_the_checker_s_rules() -> None:
    rules = Rules()
    limits = (writer.MAX_LINE, writer.MAX_LINES, writer.MAX_CPS, writer.MIN_CUE_S, writer.MAX_CUE_S, writer.MIN_GAP_S)
    assert limits == (rules.max_line, rules.max_lines, rules.max_cps, rules.min_duration, rules.max_duration,
                      rules.min_gap)


LETTERS = "abcdefghijklmnopqrstuvwxyzअआइकखगघ"


def generated(seed: int, words: int, cps: float, speakers: int) -> tuple[dict, dict]:
    """asr.json and diarization.json of ``words`` words spoken at about ``cps`` characters a second, with pauses
    from none to seconds and changes of speaker at some of them."""
    rng = random.Random(seed)
    t, spoken, turns, speaker = rng.uniform(0, 3), [], [], 0
    for _ in range(words):
        word = "".join(rng.choice(LETTERS) for _ in range(rng.choice([1, 2, 3, 4, 5, 7, 9, 12]))) + \
            rng.choice(["", "", "", ",", ".", "?"])
        if rng.random() < 0.2:
            t += rng.choice([0.0, 0.03, 0.1, 0.3, 0.7, 1.5, 4.0])
            speaker = rng.randrange(speakers) if rng.random() < 0.6 else speaker
        length = (len(word) + 1) / cps * rng.uniform(0.6, 1.4)
        spoken.append({"start": round(t, 3), "end": round(t + length * 0.9, 3), "word": " " + word})
        turns.append({"start": round(t, 3), "end": round(t + length, 3), "speaker": f"SPEAKER_{speaker:02d}"})
        t += length
    return {"segments": [{"start": 0.0, "end": t, "text": "", "words": spoken}]}, {"turns": turns}


@pytest.mark.parametrize("cps", [6.0, 12.0, 17.0, 24.0])
@pytest.mark.parametrize("speakers", [1, 2, 4])
def test_generated_speech_gives_files_that_pass_the_check(cps: float, speakers: int, tmp_path: Path) -> None:
    for seed in range(12):
        asr, diarization = generated(seed, 150, cps, speakers)
        cues, prefixed, fast = timed_cues(asr, diarization)
        srt, vtt = tmp_path / "s.srt", tmp_path / "s.vtt"
        srt.write_text(srt_text(cues, prefixed))
        vtt.write_text(vtt_text(cues, prefixed))
        for path in (srt, vtt):
            report = check_file(path)
            assert report.breaches == (), (seed, [str(b) for b in report.breaches])
            assert report.cues == len(cues)
        notes = check_file(srt).notes
        assert len(notes) == fast, (seed, fast, [str(n) for n in notes])       # the fast cues are the notes
        if cps <= 12.0:
            assert fast == 0, seed                                         # speech that can be read is
        said = [w["word"].strip() for w in asr["segments"][0]["words"]]
        shown = [shown_text(line) for c in parse_srt(srt, srt.read_text()) for line in c.lines]
        words = " ".join(shown).replace("- ", " ").split()
        assert [w for w in words if not w.startswith("Speaker") and not w[:-1].isdigit()] == said, seed
        first_word = iter(sorted(w["start"] for w in asr["segments"][0]["words"]))
        for cue in cues:                                                   # near its words: the lead, the lag
            first = next(first_word)
            assert first - LEAD_IN_S - 1e-9 <= cue.start <= first + MAX_LAG_S + 1e-9, (seed, cue)
            for _ in range(sum(len(p.text.split()) for p in cue.parts) - 1):
                next(first_word)
