"""Quality scores of a job's output against references: word error rate and diarization error rate.

Both are small and exact, so the benchmark needs no scoring library:

- WER: words are lower-cased and stripped of punctuation (apostrophes inside a
  word stay: "didn't"), then a word-level edit distance gives substitutions,
  deletions and insertions; WER = (S + D + I) / reference words.
- DER: time is cut into frames (10 ms); in each frame the reference has a set of
  speakers and the hypothesis another. Missed speech is what the hypothesis lacks,
  false alarm what it adds, confusion the reference speakers it gives to the wrong
  hypothesis speaker under the one-to-one mapping of speakers that maximises their
  overlap. DER = (missed + false alarm + confusion) / reference speech, all in
  speaker-seconds. A collar (seconds either side of each reference boundary) can
  be left out of the count, as NIST's scoring does; 0 counts everything.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

FRAME_S = 0.01
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
EXACT_MAPPING_MAX = 7        # speakers on the smaller side up to which every mapping is tried


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
        errors = self.substitutions + self.deletions + self.insertions
        return errors / self.reference_words if self.reference_words else float(errors > 0)


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


def normalize_words(text: str) -> list[str]:
    """'Oh, I didn't know.' -> ['oh', 'i', "didn't", 'know']."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def word_errors(reference: str, hypothesis: str) -> WordErrors:
    """Substitutions, deletions and insertions of the cheapest alignment of the two word sequences."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    # row[j]: (cost, subs, dels, ins) of aligning ref[:i] with hyp[:j]
    row = [(j, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, r in enumerate(ref, start=1):
        new = [(i, 0, i, 0)]
        for j, h in enumerate(hyp, start=1):
            diagonal = row[j - 1]
            same = r == h
            candidates = (
                (diagonal[0] + (not same), diagonal[1] + (not same), diagonal[2], diagonal[3]),
                (row[j][0] + 1, row[j][1], row[j][2] + 1, row[j][3]),
                (new[j - 1][0] + 1, new[j - 1][1], new[j - 1][2], new[j - 1][3] + 1),
            )
            new.append(min(candidates))
        row = new
    _, subs, dels, ins = row[-1]
    return WordErrors(subs, dels, ins, len(ref))


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
