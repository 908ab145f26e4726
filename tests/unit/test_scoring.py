"""WER, CER and DER (infra/quality/scoring.py) in any script, against jiwer and pyannote.metrics, and the
RTTM the diarize stage writes read back by the scorer."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import jiwer
import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from infra.quality.scoring import (
    Turn, best_mapping, character_errors, diarization_errors, normalize_text, normalize_words, read_rttm, read_stm,
    word_errors,
)
from stages.diarize import renamed_by_first_speech, rttm_lines

HINDI = [
    "मैं कल बाज़ार जाऊँगा।",
    "क्या आप मेरी मदद कर सकते हैं?",
    "यह फ़िल्म बहुत अच्छी थी, पर अंत थोड़ा लंबा था।",
    "उसने कहा कि वह आज रात नहीं आएगा॥",
    "हम सब साथ में खाना खाएँगे और फिर घूमने चलेंगे।",
    "बारिश के बाद सड़कें पानी से भर गईं।",
    "मुझे पता नहीं था कि ट्रेन दस बजे छूटती है।",
    "दादी ने बच्चों को एक पुरानी कहानी सुनाई।",
]
ENGLISH_AND_LATIN = [
    "Oh, I didn't know you were coming tonight!",
    "The café on the corner serves crème brûlée and naïve little pastries.",
    "Señor Muñoz llegó a la estación a las ocho.",
    "Ich weiß nicht, ob die Straße heute gesperrt ist.",
    "Where's the station? It's two streets down, past the bank.",
]
MIXED = [
    "मुझे यह movie बहुत पसंद आई, it's really good!",
    "कल office में meeting है, so please जल्दी आना।",
    "Bhai, tension मत लो; everything will be fine यार।",
    "उसका phone switch off था and I couldn't reach him.",
]
SENTENCES = HINDI + ENGLISH_AND_LATIN + MIXED


def test_words_are_lower_cased_without_punctuation_but_keep_inner_apostrophes() -> None:
    assert normalize_words("Oh, I didn’t know. HELLO?! 'quoted'") == ["oh", "i", "didn't", "know", "hello", "quoted"]
    assert normalize_words("rock 'n' roll, a''b") == ["rock", "n", "roll", "a", "b"]


def test_devanagari_words_keep_their_matras_viramas_and_nuktas_and_lose_the_danda() -> None:
    assert normalize_words("उसने कहा कि वह नहीं आएगा॥") == ["उसने", "कहा", "कि", "वह", "नहीं", "आएगा"]
    assert normalize_words("नमस्ते। दुनिया") == ["नमस्ते", "दुनिया"]          # virama (U+094D) inside
    assert normalize_words("मैं कल बाज़ार जाऊँगा।") == ["मैं", "कल", "बाज़ार", "जाऊँगा"]
    # a nukta letter written precomposed (U+0958) or as letter + nukta is the same word after NFC
    assert word_errors("\u0958\u093e\u0928\u0942\u0928", "\u0915\u093c\u093e\u0928\u0942\u0928").wer == 0
    # joiners shape a conjunct, they do not end the word
    assert normalize_words("क्\u200dष क्\u200cष") == ["क्ष", "क्ष"]


def test_accented_latin_is_not_split_and_both_sides_are_normalised_alike() -> None:
    assert normalize_words("Café crème à la FRANÇAISE; naïve résumé") == [
        "café", "crème", "à", "la", "française", "naïve", "résumé"]
    decomposed = unicodedata.normalize("NFD", "Café crème à la française")
    assert word_errors("Café crème à la française", decomposed).wer == 0
    assert word_errors("Die Straße", "die STRASSE").wer == 0            # casefold
    assert character_errors("Señor Muñoz!", "senor munoz").substitutions == 2


def test_mixed_script_text_splits_into_words_of_both_scripts() -> None:
    assert normalize_words("मुझे यह movie बहुत पसंद आई, it's great!") == [
        "मुझे", "यह", "movie", "बहुत", "पसंद", "आई", "it's", "great"]
    assert normalize_words("«Hola», ¿qué tal? 东京。١٢٣، done") == ["hola", "qué", "tal", "东京", "١٢٣", "done"]


def test_an_entirely_wrong_hindi_transcript_scores_high_and_a_right_one_zero() -> None:
    reference = "मैं कल बाज़ार जाऊँगा। क्या आप मेरी मदद कर सकते हैं?"
    wrong = "तुम आज घर पर रहोगे, हम सब खाना खाएँगे।"
    assert word_errors(reference, wrong).wer == 1.0
    assert character_errors(reference, wrong).cer > 0.6
    assert word_errors(reference, "मैं कल बाज़ार जाऊँगा क्या आप मेरी मदद कर सकते हैं").wer == 0
    assert character_errors(reference, "मैं कल बाज़ार जाऊँगा॥ क्या आप मेरी मदद कर सकते हैं").cer == 0


def test_a_changed_matra_is_one_substitution_not_a_split() -> None:
    words = word_errors("उसने कहा कि वह आएगा", "उसने कहा की वह आएगा")
    assert (words.substitutions, words.deletions, words.insertions, words.reference_words) == (1, 0, 0, 5)
    chars = character_errors("उसने कहा कि वह आएगा", "उसने कहा की वह आएगा")
    assert (chars.substitutions, chars.deletions, chars.insertions) == (1, 0, 0)
    assert chars.reference_chars == len("उसने कहा कि वह आएगा")


def test_cer_counts_code_points_of_the_normalised_text_and_the_spaces_between_words() -> None:
    assert normalize_text("  Hello,   World! ") == "hello world"
    assert character_errors("Hello, World!", "hello world").cer == 0
    split = character_errors("ab cd", "abcd")                        # a joined word costs its space
    assert (split.deletions, split.reference_chars, split.cer) == (1, 5, pytest.approx(0.2))
    assert character_errors("abc", "abd").cer == pytest.approx(1 / 3)
    assert character_errors("", "").cer == 0.0 and character_errors("", "a").cer == 1.0


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


def _perturbed(rng: random.Random, items: list[str], pool: str | list[str]) -> list[str]:
    out = list(items)
    for _ in range(rng.randint(0, 4)):
        op = rng.choice("sdi")
        if op == "s" and out:
            out[rng.randrange(len(out))] = rng.choice(pool)
        elif op == "d" and out:
            del out[rng.randrange(len(out))]
        else:
            out.insert(rng.randint(0, len(out)), rng.choice(pool))
    return out


def _pairs() -> list[tuple[str, str]]:
    """The sentences against hand-made hypotheses and seeded random word and character edits of them."""
    rng = random.Random(14)
    pairs = [(s, s) for s in SENTENCES] + [(a, b) for a, b in zip(SENTENCES, reversed(SENTENCES))]
    words = [w for s in SENTENCES for w in normalize_words(s)]
    letters = "".join(sorted(set("".join(words))))
    for s in SENTENCES:
        for _ in range(6):
            pairs.append((s, " ".join(_perturbed(rng, s.split(), words))))
            pairs.append((s, "".join(_perturbed(rng, list(s), letters))))
    return pairs


def test_wer_and_cer_agree_with_jiwer_on_the_same_normalised_strings() -> None:
    pairs = _pairs()
    assert len(pairs) > 200
    changed = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalize_text(reference), normalize_text(hypothesis)
        words, chars = word_errors(reference, hypothesis), character_errors(reference, hypothesis)
        theirs_w, theirs_c = jiwer.process_words(ref, hyp), jiwer.process_characters(ref, hyp)
        assert words.wer == pytest.approx(theirs_w.wer), (ref, hyp)
        assert words.reference_words == theirs_w.hits + theirs_w.substitutions + theirs_w.deletions
        assert chars.cer == pytest.approx(theirs_c.cer), (ref, hyp)
        assert chars.reference_chars == theirs_c.hits + theirs_c.substitutions + theirs_c.deletions
        # equally cheap alignments may split their errors differently; the total is the same
        assert (chars.substitutions + chars.deletions + chars.insertions ==
                theirs_c.substitutions + theirs_c.deletions + theirs_c.insertions)
        changed += words.wer > 0
    assert changed > len(pairs) // 2


def _annotation(turns: list[Turn]) -> Annotation:
    annotation = Annotation(uri="clip")
    for i, turn in enumerate(turns):
        annotation[Segment(turn.start, turn.end), f"t{i}"] = turn.speaker
    return annotation


def _random_turns(rng: random.Random, speakers: str) -> list[Turn]:
    """Turns on the 10 ms grid over about 30 s; some overlap the turn before, never one of their own speaker."""
    turns: list[Turn] = []
    t = settled = rng.randint(0, 100) / 100
    while t < 30:
        speaker = rng.choice(speakers)
        start = t
        if turns and speaker != turns[-1].speaker and rng.random() < 0.3:
            start = max(settled, t - rng.randint(1, 60) / 100)
        turn = Turn(round(start, 2), round(start + rng.randint(20, 400) / 100, 2), speaker)
        settled = max(settled, turns[-1].end) if turns else settled
        turns.append(turn)
        t = round(turn.end + rng.randint(0, 150) / 100, 2)
    return turns


def _diarization_pairs() -> list[tuple[list[Turn], list[Turn]]]:
    rng = random.Random(14)
    pairs = [
        ([Turn(0, 2, "a"), Turn(2, 5, "b"), Turn(6, 7, "a")], [Turn(0, 2, "S1"), Turn(2, 5, "S0"), Turn(6, 7, "S1")]),
        ([Turn(0, 4, "a"), Turn(4, 8, "b")], [Turn(1, 4, "x"), Turn(4, 6, "x"), Turn(6, 9, "y")]),
        ([Turn(0, 2, "a"), Turn(1, 2, "b")], [Turn(0, 2, "x")]),
        ([Turn(0, 4, "a"), Turn(4, 8, "b")], [Turn(0, 4.2, "x"), Turn(4.2, 8, "y")]),
        ([Turn(0, 3, "a"), Turn(3, 6, "b"), Turn(6, 9, "c")], [Turn(0, 9, "x")]),
        ([Turn(0, 9, "a")], [Turn(0, 3, "x"), Turn(3, 6, "y"), Turn(6, 9, "z")]),
    ]
    for ref_speakers, hyp_speakers in [("ab", "xy"), ("abc", "xy"), ("abcd", "wxyz"), ("ab", "vwxyz"), ("abcd", "x")]:
        for _ in range(3):
            pairs.append((_random_turns(rng, ref_speakers), _random_turns(rng, hyp_speakers)))
    return pairs


@pytest.mark.parametrize("collar_s", [0.0, 0.25])
def test_der_agrees_with_pyannote_metrics(collar_s: float) -> None:
    metric = DiarizationErrorRate(collar=2 * collar_s)      # pyannote's collar is the whole width
    for reference, hypothesis in _diarization_pairs():
        end = max(t.end for t in [*reference, *hypothesis])
        theirs = metric(_annotation(reference), _annotation(hypothesis), uem=Timeline([Segment(0, end)]),
                        detailed=True)
        ours = diarization_errors(reference, hypothesis, collar_s)
        assert ours.reference_s == pytest.approx(theirs["total"], abs=1e-6)
        assert ours.missed_s == pytest.approx(theirs["missed detection"], abs=1e-6)
        assert ours.false_alarm_s == pytest.approx(theirs["false alarm"], abs=1e-6)
        assert ours.confusion_s == pytest.approx(theirs["confusion"], abs=1e-6)
        assert ours.der == pytest.approx(theirs["diarization error rate"], abs=1e-6)
