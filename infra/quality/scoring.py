"""Quality scores of a job's output against references: word, character and diarization error rates.

All three are small and exact, so the pipeline needs no scoring library (the unit tests check them
against jiwer and pyannote.metrics):

- Normalisation, the same on both sides: Unicode NFC, then casefold (then NFC again, since casefolding
  can leave a decomposed sequence). The invisible joiners that only shape a word's rendering (zero-width
  joiner and non-joiner, word joiner, soft hyphen, byte-order mark) are removed. A word is then a run of
  letters, combining marks and digits of any script (Unicode categories L*, M*, N*), so Devanagari matras,
  viramas and nuktas stay inside their word, accented Latin stays whole, and Hindi and English mix freely.
  One apostrophe (' or U+2019, counted as ') between two word characters stays in the word ("didn't");
  every other character (punctuation and symbols of any script, e.g. the danda U+0964 and double danda
  U+0965, spaces, a zero-width space) only separates words. Numbers are compared as written: "5", "५"
  and "five" differ. Text in a script written without spaces (Chinese, Japanese, Thai) is one word per
  run, so CER is the measure for it.
- WER: a word-level edit distance between the normalised word sequences gives substitutions, deletions
  and insertions; WER = (S + D + I) / reference words.
- CER: the same edit distance over characters of the normalised text, that is its words joined by single
  spaces. A character is one Unicode code point after NFC: a matra or a virama is a character of its own
  (a changed matra is one substitution), and the single spaces between words count as characters, so a
  word split or joined costs one; the text has no space at either end. CER = (S + D + I) / characters of
  the normalised reference. jiwer.cer on the two normalised texts gives the same figure.
- Of equally cheap alignments the one with the fewest substitutions is counted.
- DER: time is cut into frames (10 ms); in each frame the reference has a set of
  speakers and the hypothesis another. Missed speech is what the hypothesis lacks,
  false alarm what it adds, confusion the reference speakers it gives to the wrong
  hypothesis speaker under the one-to-one mapping of speakers that maximises their
  overlap. DER = (missed + false alarm + confusion) / reference speech, all in
  speaker-seconds. A collar (seconds either side of each reference boundary) can
  be left out of the count, as NIST's scoring does; 0 counts everything.
  pyannote.metrics' ``collar`` is the collar's whole width: its collar=0.5 is collar_s=0.25 here.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FRAME_S = 0.01
APOSTROPHES = frozenset("'\u2019")
INVISIBLE = frozenset("\u200c\u200d\u2060\u00ad\ufeff")   # removed: they shape a word, never end it
EXACT_MAPPING_MAX = 7        # speakers on the smaller side up to which every mapping is tried


def _rate(errors: int, length: int) -> float:
    return errors / length if length else float(errors > 0)


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class WordErrors:
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int

    @property
    def wer(self) -> float:
        return _rate(self.substitutions + self.deletions + self.insertions, self.reference_words)


@dataclass(frozen=True)
class DiarizationErrors:
    missed_s: float
    false_alarm_s: float
    confusion_s: float
    reference_s: float

    @property
    def der(self) -> float:
        errors = self.missed_s + self.false_alarm_s + self.confusion_s
        return errors / self.reference_s if self.reference_s else float(errors > 0)


@dataclass(frozen=True)
class CharacterErrors:
    substitutions: int
    deletions: int
    insertions: int
    reference_chars: int

    @property
    def cer(self) -> float:
        return _rate(self.substitutions + self.deletions + self.insertions, self.reference_chars)


def normalize_words(text: str) -> list[str]:
    """'Oh, I didn't know.' -> ['oh', 'i', "didn't", 'know']; 'नमस्ते। दुनिया॥' -> ['नमस्ते', 'दुनिया']."""
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    words: list[str] = []
    word: list[str] = []
    apostrophe = False          # an apostrophe after the word so far, kept only if a word character follows
    for char in text:
        if char in INVISIBLE:
            continue
        if unicodedata.category(char)[0] in "LMN":
            if apostrophe:
                word.append("'")
                apostrophe = False
            word.append(char)
        elif char in APOSTROPHES and word and not apostrophe:
            apostrophe = True
        else:
            if word:
                words.append("".join(word))
            word, apostrophe = [], False
    if word:
        words.append("".join(word))
    return words


def normalize_text(text: str) -> str:
    """The normalised words joined by single spaces: the text CER is counted on."""
    return " ".join(normalize_words(text))


def edit_counts(ref: Sequence[str], hyp: Sequence[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the cheapest alignment, fewest substitutions among equals."""
    start = 0
    while start < min(len(ref), len(hyp)) and ref[start] == hyp[start]:
        start += 1
    end = 0
    while end < min(len(ref), len(hyp)) - start and ref[-1 - end] == hyp[-1 - end]:
        end += 1
    ref, hyp = ref[start:len(ref) - end], hyp[start:len(hyp) - end]
    n, m = len(ref), len(hyp)
    # An alignment's key is cost * scale + substitutions, so the smallest key is the cheapest alignment
    # with the fewest substitutions; deletions and insertions follow from cost, substitutions, n and m.
    scale = n + m + 1
    row = [j * scale for j in range(m + 1)]
    for i, r in enumerate(ref, start=1):
        new = [i * scale]
        left = new[0]
        for j, h in enumerate(hyp, start=1):
            diagonal = row[j - 1] if r == h else row[j - 1] + scale + 1
            left = min(diagonal, row[j] + scale, left + scale)
            new.append(left)
        row = new
    cost, subs = divmod(row[-1], scale)
    dels = (cost - subs + n - m) // 2
    return subs, dels, cost - subs - dels


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Substitutions, deletions and insertions of the cheapest alignment of the two word sequences."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    return WordErrors(*edit_counts(ref, hyp), len(ref))


def character_errors(reference: str, hypothesis: str) -> CharacterErrors:
    """Substitutions, deletions and insertions of the cheapest alignment of the two normalised texts."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    return CharacterErrors(*edit_counts(ref, hyp), len(ref))


def read_stm(path: Path) -> str:
    """The transcript of an STM file (file channel speaker start end [<label>] text), in time order."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith(";;"):
            continue
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            raise ValueError(f"{path.name}: not an STM line: {line!r}")
        text = parts[5] if len(parts) > 5 else ""
        if text.startswith("<"):
            text = text.split(">", 1)[1] if ">" in text else ""
        rows.append((float(parts[3]), text.strip()))
    return " ".join(text for _, text in sorted(rows, key=lambda r: r[0]))


def read_rttm(path: Path) -> list[Turn]:
    """The SPEAKER lines of an RTTM file as turns."""
    turns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        if len(parts) < 8:
            raise ValueError(f"{path.name}: not an RTTM SPEAKER line: {line!r}")
        start, duration = float(parts[3]), float(parts[4])
        turns.append(Turn(start, start + duration, parts[7]))
    return turns


def _frames(turns: list[Turn], speakers: list[str], count: int) -> list[set[int]]:
    active: list[set[int]] = [set() for _ in range(count)]
    index = {s: i for i, s in enumerate(speakers)}
    for turn in turns:
        for f in range(max(0, round(turn.start / FRAME_S)), min(count, round(turn.end / FRAME_S))):
            active[f].add(index[turn.speaker])
    return active


def _scored(reference: list[Turn], count: int, collar_s: float) -> list[bool]:
    scored = [True] * count
    if collar_s <= 0:
        return scored
    for turn in reference:
        for edge in (turn.start, turn.end):
            for f in range(max(0, round((edge - collar_s) / FRAME_S)), min(count, round((edge + collar_s) / FRAME_S))):
                scored[f] = False
    return scored


def best_mapping(overlap: list[list[int]]) -> dict[int, int]:
    """Reference index -> hypothesis index, one to one, with the largest total overlap.

    Every mapping is tried when the smaller side has at most EXACT_MAPPING_MAX speakers;
    beyond that, pairs are taken greedily, largest overlap first.
    """
    n_ref = len(overlap)
    n_hyp = len(overlap[0]) if overlap else 0
    if not n_ref or not n_hyp:
        return {}
    if min(n_ref, n_hyp) <= EXACT_MAPPING_MAX:
        best: tuple[int, dict[int, int]] = (-1, {})
        if n_ref <= n_hyp:
            for hyps in itertools.permutations(range(n_hyp), n_ref):
                total = sum(overlap[r][h] for r, h in enumerate(hyps))
                if total > best[0]:
                    best = (total, dict(enumerate(hyps)))
        else:
            for refs in itertools.permutations(range(n_ref), n_hyp):
                total = sum(overlap[r][h] for h, r in enumerate(refs))
                if total > best[0]:
                    best = (total, {r: h for h, r in enumerate(refs)})
        return best[1]
    pairs = sorted(((overlap[r][h], r, h) for r in range(n_ref) for h in range(n_hyp)), reverse=True)
    mapping: dict[int, int] = {}
    for _, r, h in pairs:
        if r not in mapping and h not in mapping.values():
            mapping[r] = h
    return mapping


def diarization_errors(reference: list[Turn], hypothesis: list[Turn], collar_s: float = 0.0) -> DiarizationErrors:
    """Missed speech, false alarm and speaker confusion of ``hypothesis`` against ``reference``."""
    end = max((t.end for t in [*reference, *hypothesis]), default=0.0)
    count = round(end / FRAME_S) + 1
    ref_speakers = sorted({t.speaker for t in reference})
    hyp_speakers = sorted({t.speaker for t in hypothesis})
    ref, hyp = _frames(reference, ref_speakers, count), _frames(hypothesis, hyp_speakers, count)
    scored = _scored(reference, count, collar_s)
    overlap = [[0] * len(hyp_speakers) for _ in ref_speakers]
    for f in range(count):
        if scored[f]:
            for r in ref[f]:
                for h in hyp[f]:
                    overlap[r][h] += 1
    mapping = best_mapping(overlap)
    missed = false_alarm = confusion = total = 0
    for f in range(count):
        if not scored[f]:
            continue
        n_ref, n_hyp = len(ref[f]), len(hyp[f])
        correct = sum(1 for r in ref[f] if mapping.get(r) in hyp[f])
        total += n_ref
        missed += max(0, n_ref - n_hyp)
        false_alarm += max(0, n_hyp - n_ref)
        confusion += min(n_ref, n_hyp) - correct
    return DiarizationErrors(missed * FRAME_S, false_alarm * FRAME_S, confusion * FRAME_S, total * FRAME_S)
