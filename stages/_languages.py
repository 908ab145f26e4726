"""The language of each speech segment, for asr with ``language: auto`` (films that switch languages).

Whisper's own language detection (faster-whisper's ``WhisperModel.detect_language``: one pass of the encoder
over the segment's audio, padded to 30 s, and the language token the decoder finds likeliest) runs on each
speech segment that vad found and that lasts ``MIN_DETECT_S`` at least. A shorter segment is too little speech
to tell one language from another, so it inherits the language of the nearest detected segment of the same
span (the one with the least silence between them; the earlier one on a tie). A span with no segment that
long is detected once, on its first window, and all its segments take that. Neighbouring segments of one
language are then joined into windows of at most one chunk, as for a single language, and each run of windows
of one language is decoded with that language (and the job's task: translate into English, or transcribe).

Everything here is decided inside one span, from that span's audio only, so a span's checkpoint holds its
languages and a resumed run gives the same asr.json as an uninterrupted one.
"""

from __future__ import annotations

import itertools
from typing import Any

AUTO = "auto"
MIN_DETECT_S = 1.0
ENGLISH_ONLY_SUFFIX = ".en"


def known_languages() -> tuple[str, ...]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return tuple(_LANGUAGE_CODES)


def language_problem(language: str | None, task: str, model: str) -> str | None:
    """Why Whisper cannot run this job's language and task with ``model`` (None: it can). infra refuses the same
    before a job starts (infra/spec/languages.py); this is the stage's own check of job.json."""
    if model.endswith(ENGLISH_ONLY_SUFFIX) and (language not in (None, "en") or task == "translate"):
        wanted = "translate" if task == "translate" and language in (None, "en") else f"take language {language}"
        return f"the model {model} knows English only and cannot {wanted}"
    if language not in (None, AUTO) and language not in known_languages():
        return f"config.language {language!r} is not a language Whisper knows"
    return None


def segments_in(segments: list[dict[str, float]], start: float, end: float) -> list[dict[str, float]]:
    """The speech segments that start in [start, end), by start time."""
    return sorted((s for s in segments if start <= s["start"] < end), key=lambda s: s["start"])


def gap(a: dict[str, float], b: dict[str, float]) -> float:
    """The silence between two segments (0 when they touch or overlap)."""
    return max(0.0, b["start"] - a["end"], a["start"] - b["end"])


def label(segments: list[dict[str, float]], detected: dict[int, tuple[str, float]],
          fallback: tuple[str, float] | None = None) -> list[dict[str, Any]]:
    """Each segment with its language: detected (``detected``: index -> language and probability), else the
    nearest detected segment's, else ``fallback`` (the span's first window, detected)."""
    labelled = []
    for i, seg in enumerate(segments):
        row: dict[str, Any] = {"start": seg["start"], "end": seg["end"]}
        if i in detected:
            language, probability = detected[i]
            row.update(language=language, probability=round(probability, 4), source="detected")
        elif detected:
            nearest = min(detected, key=lambda j: (gap(seg, segments[j]), j > i, abs(j - i)))
            row.update(language=detected[nearest][0], probability=None,
                       source=f"inherited from {segments[nearest]['start']:.3f} s")
        elif fallback is not None:
            row.update(language=fallback[0], probability=round(fallback[1], 4), source="span's first window")
        else:
            raise ValueError("a segment without a language: nothing detected and no fallback")
        labelled.append(row)
    return labelled


def language_windows(labelled: list[dict[str, Any]], max_s: float) -> list[dict[str, Any]]:
    """Neighbouring segments of one language joined into windows that span at most ``max_s`` seconds each."""
    windows: list[dict[str, Any]] = []
    for seg in labelled:
        last = windows[-1] if windows else None
        if last and last["language"] == seg["language"] and seg["end"] - last["start"] <= max_s:
            last["end"] = max(last["end"], seg["end"])
        else:
            windows.append({"start": seg["start"], "end": seg["end"], "language": seg["language"]})
    return windows


def runs(windows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive windows of one language: (language, its windows), in time order."""
    return [(language, list(group)) for language, group in itertools.groupby(windows, key=lambda w: w["language"])]


def speech_by_language(labelled: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of speech per language, most first (ties by code)."""
    seconds: dict[str, float] = {}
    for row in labelled:
        seconds[row["language"]] = seconds.get(row["language"], 0.0) + row["end"] - row["start"]
    return {k: round(v, 3) for k, v in sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))}
