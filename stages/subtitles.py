"""Stage subtitles: ASR words merged with speaker turns, written as subtitles.srt and subtitles.vtt.

Each word takes the speaker whose turns overlap it most (else the nearest turn
within NEAREST_TURN_S, else the previous word's). Words become cues of one
speaker each; a cue ends at a change of speaker, a pause of MAX_PAUSE_S, a
sentence end once it holds half a line, or where one more word would not fit
MAX_LINES lines of MAX_LINE characters or MAX_CUE_S seconds. A cue is broken
into two lines at the word boundary that balances them best, preferring one
after punctuation. Short cues are held longer, up to the next cue, so they can
be read: at least MIN_CUE_S, and long enough for MAX_CPS characters a second.
When more than one speaker talks, every cue starts with its speaker
("Speaker 1: "); WebVTT also names it in a voice tag. A film in which nobody
speaks gets an SRT without cues (an empty file) and a VTT with its header only.
Usage: python3 -m stages.subtitles [JOB_DIR]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages._jobio import StageContext, main_of

NAME = "subtitles"
SRT_OUTPUT = "subtitles.srt"
VTT_OUTPUT = "subtitles.vtt"
MAX_LINE = 42
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 1.0
MAX_CPS = 17.0
MIN_GAP_S = 0.08             # between two cues: two frames at 25 fps
MAX_PAUSE_S = 1.0
NEAREST_TURN_S = 1.0
SENTENCE_END = (".", "?", "!", "…", "।")
BREAK_AFTER = (",", ";", ":", *SENTENCE_END)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    speaker: str | None
    lines: tuple[str, ...]


def speaker_label(speaker: str) -> str:
    """SPEAKER_00 -> 'Speaker 1'; any other name is kept."""
    prefix, _, number = speaker.rpartition("_")
    return f"Speaker {int(number) + 1}" if prefix == "SPEAKER" and number.isdigit() else speaker


def speaker_at(start: float, end: float, turns: list[dict[str, Any]]) -> str | None:
    """The speaker whose turns overlap [start, end] most, else the nearest turn's within NEAREST_TURN_S."""
    overlap: dict[str, float] = {}
    for t in turns:
        shared = min(end, t["end"]) - max(start, t["start"])
        if shared > 0:
            overlap[t["speaker"]] = overlap.get(t["speaker"], 0.0) + shared
    if overlap:
        return max(overlap, key=lambda s: overlap[s])
    distance, nearest = min(((max(t["start"] - end, start - t["end"]), t["speaker"]) for t in turns),
                            default=(float("inf"), None))
    return nearest if distance <= NEAREST_TURN_S else None


def asr_words(asr: dict[str, Any]) -> list[Word]:
    """The words of asr.json; a segment without word timestamps spreads its words evenly over its time."""
    words = []
    for seg in asr.get("segments", []):
        if seg.get("words"):
            words += [Word(w["start"], w["end"], w["word"].strip()) for w in seg["words"] if w["word"].strip()]
            continue
        tokens = seg.get("text", "").split()
        step = (seg["end"] - seg["start"]) / max(1, len(tokens))
        words += [Word(seg["start"] + i * step, seg["start"] + (i + 1) * step, tok) for i, tok in enumerate(tokens)]
    return words


def assign_speakers(words: list[Word], turns: list[dict[str, Any]]) -> list[Word]:
    out: list[Word] = []
    for w in words:
        speaker = speaker_at(w.start, w.end, turns)
        if speaker is None and out:
            speaker = out[-1].speaker
        out.append(Word(w.start, w.end, w.text, speaker))
    return out


def wrap(text: str, width: int = MAX_LINE) -> list[str]:
    """One line if it fits; else the most balanced two-line break (after punctuation if that is nearly as
    balanced); else as many full lines as it takes (a word longer than a line is cut)."""
    if len(text) <= width:
        return [text]
    words = text.split()
    best: tuple[float, list[str]] | None = None
    for i in range(1, len(words)):
        first, second = " ".join(words[:i]), " ".join(words[i:])
        if len(first) <= width and len(second) <= width:
            cost = abs(len(first) - len(second)) - (8 if first.endswith(BREAK_AFTER) else 0)
            if best is None or cost < best[0]:
                best = (cost, [first, second])
    if best is not None:
        return best[1]
    lines: list[str] = []
    for word in words:
        while len(word) > width:
            lines.append(word[:width])
            word = word[width:]
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def text_of(group: list[Word], prefixed: bool) -> str:
    body = " ".join(w.text for w in group)
    return f"{speaker_label(group[0].speaker)}: {body}" if prefixed and group[0].speaker else body


def fits(group: list[Word], prefixed: bool) -> bool:
    """One word always fits; more must make at most MAX_LINES lines and last at most MAX_CUE_S."""
    return len(group) == 1 or (len(wrap(text_of(group, prefixed))) <= MAX_LINES
                               and group[-1].end - group[0].start <= MAX_CUE_S)


def phrases(words: list[Word]) -> list[list[Word]]:
    """Runs of words of one speaker, cut at pauses of MAX_PAUSE_S and after sentence ends."""
    out: list[list[Word]] = []
    for word in words:
        last = out[-1][-1] if out else None
        if (last is None or word.speaker != last.speaker or word.start - last.end > MAX_PAUSE_S
                or last.text.endswith(SENTENCE_END)):
            out.append([word])
        else:
            out[-1].append(word)
    return out


def split_to_fit(group: list[Word], prefixed: bool) -> list[list[Word]]:
    """A phrase as few, balanced pieces that fit: halve it where the two sides are most even in length,
    preferring a break after punctuation, until every piece fits."""
    if fits(group, prefixed):
        return [group]
    lengths = [len(w.text) + 1 for w in group]
    total = sum(lengths)
    best, cut = float("inf"), 1
    for i in range(1, len(group)):
        left = sum(lengths[:i])
        cost = abs(total - 2 * left) - (MAX_LINE // 2 if group[i - 1].text.endswith(BREAK_AFTER) else 0)
        if cost < best:
            best, cut = cost, i
    return split_to_fit(group[:cut], prefixed) + split_to_fit(group[cut:], prefixed)


def build_cues(words: list[Word], prefixed: bool) -> list[Cue]:
    """Words -> cues of one speaker that fit the limits; times are the words' own.

    Each phrase is split until its pieces fit; then a piece that ends a phrase takes in
    the next phrase of the same speaker when the two fit together (short sentences share a cue)."""
    groups: list[list[Word]] = []
    phrase_end = False
    for phrase in phrases(words):
        pieces = split_to_fit(phrase, prefixed)
        first = pieces[0]
        if (groups and phrase_end and first[0].speaker == groups[-1][-1].speaker
                and first[0].start - groups[-1][-1].end <= MAX_PAUSE_S and fits(groups[-1] + first, prefixed)):
            groups[-1] = groups[-1] + first
            pieces = pieces[1:]
        groups += pieces
        phrase_end = True
    return [Cue(g[0].start, g[-1].end, g[0].speaker, tuple(wrap(text_of(g, prefixed)))) for g in groups]


def readable(cues: list[Cue]) -> list[Cue]:
    """Hold each cue long enough to read (MIN_CUE_S, MAX_CPS) without reaching the next; never overlap."""
    out = []
    for i, cue in enumerate(cues):
        chars = sum(len(line) for line in cue.lines)
        want = min(MAX_CUE_S, max(MIN_CUE_S, chars / MAX_CPS))
        next_start = cues[i + 1].start if i + 1 < len(cues) else float("inf")
        end = min(max(cue.end, cue.start + want), next_start - MIN_GAP_S)
        if end <= cue.start:         # the next cue starts at once: share the time up to it
            end = cue.start + max(0.001, (next_start - cue.start) / 2)
        out.append(Cue(cue.start, round(end, 3), cue.speaker, cue.lines))
    return out


def timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{separator}{ms % 1000:03d}"


def srt_text(cues: list[Cue]) -> str:
    return "".join(f"{i}\n{timestamp(c.start, ',')} --> {timestamp(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
                   for i, c in enumerate(cues, start=1))


def vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_text(cues: list[Cue], prefixed: bool) -> str:
    out = ["WEBVTT\n\n"]
    for c in cues:
        lines = [vtt_escape(line) for line in c.lines]
        if prefixed and c.speaker:
            lines[0] = f"<v {vtt_escape(speaker_label(c.speaker))}>{lines[0]}"
        out.append(f"{timestamp(c.start, '.')} --> {timestamp(c.end, '.')}\n" + "\n".join(lines) + "\n\n")
    return "".join(out)


def make_cues(asr: dict[str, Any], diarization: dict[str, Any]) -> tuple[list[Cue], bool]:
    """The cues of a job, and whether they carry speaker prefixes (more than one speaker)."""
    words = assign_speakers(asr_words(asr), diarization.get("turns", []))
    prefixed = len({w.speaker for w in words if w.speaker}) > 1
    return readable(build_cues(words, prefixed)), prefixed


def subtitles(ctx: StageContext) -> None:
    asr = ctx.read_json("asr.json", made_by="asr")
    diarization = ctx.read_json("diarization.json", made_by="diarize")
    cues, prefixed = make_cues(asr, diarization)
    ctx.write_text(SRT_OUTPUT, srt_text(cues))
    ctx.write_text(VTT_OUTPUT, vtt_text(cues, prefixed))
    ctx.details.update({"cues": len(cues), "speakers": len({c.speaker for c in cues if c.speaker}),
                        "prefixed": prefixed, "language": asr.get("language"),
                        "diarization_backend": diarization.get("backend"),
                        "longest_line": max((len(line) for c in cues for line in c.lines), default=0)})
    if not cues:
        ctx.details["note"] = "no speech: the SRT and the VTT have no cues"


if __name__ == "__main__":
    main_of(NAME, subtitles)
