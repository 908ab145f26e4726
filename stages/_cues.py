"""The language of each subtitle cue, and the per-cue record the subtitles stage writes (cues.json).

A word has the language of the asr.json segment it comes from (``segments[].language``; asr.json of older
jobs has none there, and then the file's top-level ``language`` counts for every word, else none is known).
A cue keeps, for each language, the number of characters of its words in that language; its language is the
one with the most characters (the majority of its text, not of its words or of its time), the language heard
first in the cue on a tie, and none when no word's language is known.

cues.json lists every cue of subtitles.srt, in the same order (the SRT's cue numbers count from 1), one a
line: its start and end in seconds as the SRT shows them, its speakers (diarization's names, SPEAKER_00;
two in a dialogue cue, none without diarization) and its language (a Whisper code such as hi, or null).

Standard library only: this runs in the subtitles stage's slim image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

CUES_OUTPUT = "cues.json"

Tally = tuple[tuple[str, int], ...]     # (language, characters), in the order the languages are first heard


def tally(words: Iterable[tuple[str | None, str]]) -> Tally:
    """The characters of each language among ``words`` ((language, text) pairs); unknown languages count none."""
    chars: dict[str, int] = {}
    for language, text in words:
        if language:
            chars[language] = chars.get(language, 0) + len(text)
    return tuple(chars.items())


def merged(*tallies: Tally) -> Tally:
    """The tallies added up, the languages still in the order first heard."""
    chars: dict[str, int] = {}
    for counted in tallies:
        for language, n in counted:
            chars[language] = chars.get(language, 0) + n
    return tuple(chars.items())


def majority(counted: Tally) -> str | None:
    """The language with the most characters; on a tie the one heard first; None when none is known."""
    best: tuple[str, int] | None = None
    for language, chars in counted:
        if best is None or chars > best[1]:
            best = (language, chars)
    return best[0] if best else None


def cue_record(start: float, end: float, speakers: Sequence[str | None], language: str | None) -> dict[str, Any]:
    return {"start": round(start, 3), "end": round(end, 3), "speakers": [s for s in speakers if s],
            "language": language}


def cues_text(records: list[dict[str, Any]]) -> str:
    """cues.json: ``{"cues": [...]}``, a cue a line (the file stays small and readable for a long film)."""
    if not records:
        return '{"cues": []}\n'
    lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in records)
    return '{"cues": [\n' + lines + "\n]}\n"


def cues_by_language(languages: Iterable[str | None]) -> dict[str, int]:
    """How many cues each language has, by code; cues without a language are not counted."""
    counts: dict[str, int] = {}
    for language in languages:
        if language:
            counts[language] = counts.get(language, 0) + 1
    return dict(sorted(counts.items()))
