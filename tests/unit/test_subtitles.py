"""Subtitle writing: line breaking, cues from words and speakers, timing by the rules, SRT and WebVTT text.

The property tests write subtitles for many generated word timings (seeded, so a failure repeats) and hold the
files to the rules with the checker `infra subs check` uses (infra/quality/subtitles.py).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import stages.subtitles as writer
from infra.quality.subtitles import Rules, check_file, parse_srt, shown_text
from stages import _cues
from stages._jobio import StageContext
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


# -- the language of each cue ---------------------------------------------------------------------------------
def segment(start: float, text: str, language: str | None, step: float = 0.3) -> dict:
    """An asr.json segment with word times (``language`` None: a segment of an older asr.json, without it)."""
    spoken = [{"start": round(start + i * step, 3), "end": round(start + i * step + step * 0.8, 3), "word": " " + w}
              for i, w in enumerate(text.split())]
    seg = {"start": start, "end": spoken[-1]["end"], "text": text, "words": spoken}
    return {**seg, "language": language} if language else seg


ONE_VOICE = {"turns": [{"start": 0.0, "end": 60.0, "speaker": "SPEAKER_00"}]}
CODE_SWITCHED = {"language": "hi", "languages": {"hi": 4.1, "en": 2.2}, "segments": [
    segment(0.0, "मैं कल बाज़ार गया था।", "hi"),
    segment(3.0, "And then we went home.", "en"),
    segment(6.0, "फिर हम घर गए।", "hi")]}


def test_words_from_hindi_and_english_segments_give_cues_labelled_hi_and_en() -> None:
    cues, _, _ = timed_cues(CODE_SWITCHED, ONE_VOICE)
    assert [(c.parts[0].text, c.language) for c in cues] == [
        ("मैं कल बाज़ार गया था।", "hi"), ("And then we went home.", "en"), ("फिर हम घर गए।", "hi")]


def test_a_mixed_cue_takes_the_language_of_most_of_its_characters_not_of_most_words() -> None:
    more_words = {"segments": [segment(0.0, "हाँ जी हाँ", "hi"), segment(0.9, "absolutely wonderful", "en")]}
    (cue,) = timed_cues(more_words, ONE_VOICE)[0]
    assert cue.parts[0].text == "हाँ जी हाँ absolutely wonderful"        # 3 Hindi words of 8 characters, 2 of 20
    assert cue.language == "en"
    more_chars = {"segments": [segment(0.0, "मुझे लगता है कि", "hi"), segment(1.2, "maybe", "en")]}
    (cue,) = timed_cues(more_chars, ONE_VOICE)[0]
    assert cue.language == "hi"


def test_a_tie_goes_to_the_language_heard_first_and_unknown_words_do_not_count() -> None:
    assert _cues.majority(_cues.tally([("en", "abc"), ("hi", "कखग")])) == "en"
    assert _cues.majority(_cues.tally([("hi", "कखग"), ("en", "abc")])) == "hi"
    assert _cues.majority(_cues.tally([(None, "a long word"), ("en", "ok")])) == "en"
    assert _cues.majority(_cues.tally([(None, "words")])) is None
    assert _cues.merged((("hi", 3),), (("en", 5), ("hi", 4))) == (("hi", 7), ("en", 5))


def test_two_cues_joined_into_one_count_the_characters_of_both() -> None:
    """Two speakers too close for two cues share one (a dialogue cue); its language is the longer line's."""
    a = Cue(0.0, 0.3, (Part("A", "Hi.", (("en", 3),)),))
    b = Cue(0.35, 1.2, (Part("B", "नमस्ते दोस्तों।", (("hi", 15),)),))
    (out,), fast = timed([a, b], prefixed=True)
    assert len(out.parts) == 2 and out.language == "hi"
    same = Cue(0.35, 1.2, (Part("A", "नमस्ते दोस्तों।", (("hi", 15),)),))
    (out,), _ = timed([a, same], prefixed=False)
    assert out.parts[0].languages == (("en", 3), ("hi", 15)) and out.language == "hi"


def test_the_language_changes_neither_the_cues_nor_the_text() -> None:
    """The same words without languages give the same SRT and VTT: the language is recorded, never shown."""
    stripped = {"segments": [{k: v for k, v in seg.items() if k != "language"} for seg in CODE_SWITCHED["segments"]]}
    (with_language, p1, _), (without, p2, _) = timed_cues(CODE_SWITCHED, ONE_VOICE), timed_cues(stripped, ONE_VOICE)
    assert srt_text(with_language, p1) == srt_text(without, p2)
    assert vtt_text(with_language, p1) == vtt_text(without, p2)
    assert [c.language for c in without] == [None, None, None]


def test_an_older_asr_json_without_segment_languages_takes_the_files_language() -> None:
    older = {"language": "en", "segments": [segment(0.0, "Hello there.", None),
                                            {"start": 3.0, "end": 4.0, "text": "Bye now."}]}      # no word times
    cues, _, _ = timed_cues(older, ONE_VOICE)
    assert [(c.parts[0].text, c.language) for c in cues] == [("Hello there.", "en"), ("Bye now.", "en")]


def run_stage_on(tmp_path: Path, asr: dict, diarization: dict) -> dict:
    (tmp_path / "asr.json").write_text(json.dumps(asr, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "diarization.json").write_text(json.dumps(diarization), encoding="utf-8")
    ctx = StageContext("subtitles", tmp_path, {"stages": [{"name": "subtitles"}]})
    writer.subtitles(ctx)
    return ctx.details


def test_the_stage_writes_each_cues_language_in_cues_json_and_counts_them(tmp_path: Path) -> None:
    two = {"turns": [{"start": 0.0, "end": 2.9, "speaker": "SPEAKER_00"}, {"start": 2.9, "end": 60.0,
                                                                            "speaker": "SPEAKER_01"}]}
    details = run_stage_on(tmp_path, CODE_SWITCHED, two)
    assert details["cues_by_language"] == {"hi": 2, "en": 1} and details["language"] == "hi"
    text = (tmp_path / _cues.CUES_OUTPUT).read_text(encoding="utf-8")
    assert len(text.splitlines()) == 3 + 2                                 # a cue a line
    record = json.loads(text)["cues"]
    shown = parse_srt(tmp_path / "subtitles.srt", (tmp_path / "subtitles.srt").read_text(encoding="utf-8"))
    assert [(round(r["start"] * 1000), round(r["end"] * 1000)) for r in record] == \
        [(c.start_ms, c.end_ms) for c in shown]                            # the SRT's cues, in its order
    assert [(r["speakers"], r["language"]) for r in record] == [
        (["SPEAKER_00"], "hi"), (["SPEAKER_01"], "en"), (["SPEAKER_01"], "hi")]
    for name in ("subtitles.srt", "subtitles.vtt"):
        assert check_file(tmp_path / name).breaches == ()


def test_the_stage_on_an_older_asr_json_and_on_silence(tmp_path: Path) -> None:
    details = run_stage_on(tmp_path, {"segments": [segment(0.0, "Hello there.", None)]}, ONE_VOICE)
    assert details["cues_by_language"] == {} and details["language"] is None
    assert json.loads((tmp_path / _cues.CUES_OUTPUT).read_text())["cues"] == [
        {"start": 0.0, "end": 0.83, "speakers": ["SPEAKER_00"], "language": None}]
    details = run_stage_on(tmp_path, {"language": None, "segments": []}, {"turns": []})
    assert details["cues"] == 0 and details["cues_by_language"] == {}
    assert json.loads((tmp_path / _cues.CUES_OUTPUT).read_text()) == {"cues": []}


@pytest.mark.parametrize("seed", range(6))
def test_generated_code_switching_every_cue_takes_its_characters_majority(seed: int) -> None:
    """Generated speech cut into segments of random languages: each cue's language is recounted from the words
    it shows (the cues hold the words in order), by characters, the first heard on a tie."""
    asr, diarization = generated(seed, 200, 12.0, 2)
    rng = random.Random(seed)
    words, segments, at = asr["segments"][0]["words"], [], 0
    while at < len(words):
        size = rng.choice([1, 2, 3, 5, 8, 13])
        part = words[at:at + size]
        segments.append({"start": part[0]["start"], "end": part[-1]["end"], "text": "", "words": part,
                         "language": rng.choice(["hi", "en", "ur"])})
        at += size
    language_of = [seg["language"] for seg in segments for _ in seg["words"]]
    cues, _, _ = timed_cues({"segments": segments}, diarization)
    at = 0
    for cue in cues:
        count = sum(len(p.text.split()) for p in cue.parts)
        chars: dict[str, int] = {}
        for w, language in zip(words[at:at + count], language_of[at:at + count]):
            chars[language] = chars.get(language, 0) + len(w["word"].strip())
        assert cue.language == max(chars, key=lambda k: chars[k]), (seed, cue, chars)   # max keeps the first
        at += count
    assert at == len(words)
