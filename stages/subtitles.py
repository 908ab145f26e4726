"""Stage subtitles: ASR words merged with speaker turns, written as subtitles.srt and subtitles.vtt, and each cue's
time, speakers and language in cues.json.

Speakers: each word takes the speaker whose turns overlap it most (else the nearest turn within
NEAREST_TURN_S, else the previous word's).

Text: words become cues of one speaker each; a cue ends at a change of speaker, a pause of MAX_PAUSE_S, a
sentence end once it holds half a line, or where one more word would not fit MAX_LINES lines of MAX_LINE
characters or MAX_CUE_S seconds. A cue is broken into two lines at the word boundary that balances them best,
preferring one after punctuation.

Timing follows the rules `infra subs check` checks (infra/quality/subtitles.py has the same limits): every cue
lasts at least MIN_CUE_S and at most MAX_CUE_S, long enough to read at MAX_CPS characters a second (every
character shown counts, spaces, dashes and the SRT's speaker names included, line breaks not), with at least
MIN_GAP_S between two cues. Times are whole milliseconds, as the files write them. A cue keeps its words'
time when that is enough; else it is held into the gap after it. When the next cue leaves it too little room,
the two become one cue if they fit one (the same speaker: one text; two speakers: a line each, each starting
with a dash, "- "); else the cue starts up to LEAD_IN_S before its first word, and then delays the cues after
it, up to MAX_LAG_S after their words (the delay is caught up in the next pause). Speech too fast for all
of that (more than MAX_CPS characters a second for longer than the delay absorbs) keeps the time it has, at
least MIN_CUE_S: the cue is shown for less than its reading time rather than letting the subtitles drift
further from the speech. Such a cue always ends MIN_GAP_S before the next one starts (it has all the time there
is), so `infra subs check` reports it as a note, a breach only with --strict-cps; the record counts them
(`fast_cues`).

When more than one speaker talks, every SRT cue names its speaker in its text ("Speaker 1: ", after the dash in
a cue of two speakers); WebVTT names the speaker once, as a voice tag (`<v Speaker 1>`), never in the text.
A film in which nobody speaks gets an SRT without cues (an empty file) and a VTT with its header only.

Languages: a word has the language of its asr.json segment (with --language auto, each segment's own); a cue
whose words come from segments of different languages takes the language of most of its words, counted in
characters (stages/_cues.py). The language does not cut cues and is not written into the SRT or the VTT; the
record (results/subtitles.json) counts the cues of each language (`cues_by_language`).
Usage: python3 -m stages.subtitles [JOB_DIR]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from stages import _cues
from stages._jobio import StageContext, main_of

NAME = "subtitles"
SRT_OUTPUT = "subtitles.srt"
VTT_OUTPUT = "subtitles.vtt"
MAX_LINE = 42
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 0.83             # 20 frames at 24 fps
MAX_CPS = 17.0
MIN_GAP_S = 0.083            # between two cues: two frames at 24 fps
LEAD_IN_S = 0.5              # how early a cue may start before its first word, to be read in time
MAX_LAG_S = 1.0              # how late a cue may start after its first word, to give the one before it time
MAX_PAUSE_S = 1.0
NEAREST_TURN_S = 1.0
DASH = "- "
SENTENCE_END = (".", "?", "!", "…", "।")
BREAK_AFTER = (",", ";", ":", *SENTENCE_END)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str
    speaker: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Part:
    """What one speaker says in a cue, and how many characters of it are in each language."""
    speaker: str | None
    text: str
    languages: _cues.Tally = ()


@dataclass(frozen=True)
class Cue:
    """Shown from start to end (seconds); one part, or two of different speakers (a dialogue cue)."""
    start: float
    end: float
    parts: tuple[Part, ...]

    @property
    def speakers(self) -> tuple[str | None, ...]:
        return tuple(p.speaker for p in self.parts)

    @property
    def language(self) -> str | None:
        """The language of most of the cue's characters (stages/_cues.py)."""
        return _cues.majority(_cues.merged(*(p.languages for p in self.parts)))


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
    """The words of asr.json, each in its segment's language (else the file's); a segment without word timestamps
    spreads its words evenly over its time."""
    words = []
    for seg in asr.get("segments", []):
        language = seg.get("language") or asr.get("language")
        if seg.get("words"):
            words += [Word(w["start"], w["end"], w["word"].strip(), None, language) for w in seg["words"]
                      if w["word"].strip()]
            continue
        tokens = seg.get("text", "").split()
        step = (seg["end"] - seg["start"]) / max(1, len(tokens))
        words += [Word(seg["start"] + i * step, seg["start"] + (i + 1) * step, tok, None, language)
                  for i, tok in enumerate(tokens)]
    return words


def assign_speakers(words: list[Word], turns: list[dict[str, Any]]) -> list[Word]:
    out: list[Word] = []
    for w in words:
        speaker = speaker_at(w.start, w.end, turns)
        if speaker is None and out:
            speaker = out[-1].speaker
        out.append(replace(w, speaker=speaker))
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


def label(speaker: str | None, prefixed: bool) -> str:
    return f"{speaker_label(speaker)}: " if prefixed and speaker else ""


def text_of(group: list[Word], prefixed: bool) -> str:
    return label(group[0].speaker, prefixed) + " ".join(w.text for w in group)


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
    return [Cue(g[0].start, g[-1].end, (Part(g[0].speaker, " ".join(w.text for w in g),
                                             _cues.tally((w.language, w.text) for w in g)),)) for g in groups]


def cue_lines(cue: Cue, prefixed: bool) -> list[str]:
    """The lines as the SRT shows them: one part wrapped after its speaker's name (when prefixed); a dialogue
    cue a line per speaker, each after a dash."""
    if len(cue.parts) == 1:
        return wrap(label(cue.parts[0].speaker, prefixed) + cue.parts[0].text)
    return [DASH + label(p.speaker, prefixed) + p.text for p in cue.parts]


def fits_lines(lines: list[str]) -> bool:
    return len(lines) <= MAX_LINES and all(len(line) <= MAX_LINE for line in lines)


def joined(a: Cue, b: Cue, prefixed: bool) -> Cue | None:
    """a and b as one cue (one text for one speaker, a dialogue cue for two), or None when that breaks a limit."""
    if b.end - a.start > MAX_CUE_S or len(a.parts) != 1 or len(b.parts) != 1:
        return None
    (pa,), (pb,) = a.parts, b.parts
    parts = ((Part(pa.speaker, f"{pa.text} {pb.text}", _cues.merged(pa.languages, pb.languages)),)
             if pa.speaker == pb.speaker else (pa, pb))
    cue = Cue(a.start, b.end, parts)
    return cue if fits_lines(cue_lines(cue, prefixed)) else None


def ms(seconds: float) -> int:
    return round(seconds * 1000)


def reading_ms(cue: Cue, prefixed: bool) -> int:
    """How long the cue must be shown: MIN_CUE_S, and MAX_CPS for every character the SRT shows."""
    chars = sum(len(line) for line in cue_lines(cue, prefixed))
    return min(ms(MAX_CUE_S), max(ms(MIN_CUE_S), math.ceil(chars * 1000 / MAX_CPS)))


def merged_where_crowded(cues: list[Cue], prefixed: bool) -> list[Cue]:
    """A cue that cannot be read before the next one's words start, even starting LEAD_IN_S early, becomes one
    cue with the next when the two fit one."""
    gap, lead = ms(MIN_GAP_S), ms(LEAD_IN_S)
    out: list[Cue] = []
    for cue in cues:
        if out:
            before = out[-1]
            room = ms(cue.start) - gap - ms(before.start) + (lead if len(out) == 1 else min(
                lead, ms(before.start) - ms(out[-2].end) - gap))
            both = joined(before, cue, prefixed) if room < reading_ms(before, prefixed) else None
            if both is not None:
                out[-1] = both
                continue
        out.append(cue)
    return out


def latest_starts(cues: list[Cue], needs: list[int]) -> list[int]:
    """For each cue, the latest start that still leaves every cue after it its reading time, none of them
    starting more than MAX_LAG_S after its words. Where that would need a start more than LEAD_IN_S before the
    cue's words (the speech is too fast), the cue keeps its words' start and is the one short of time: the cues
    before it are not pulled earlier for nothing."""
    gap, lag, lead = ms(MIN_GAP_S), ms(MAX_LAG_S), ms(LEAD_IN_S)
    out = [0] * len(cues)
    later = math.inf
    for i in range(len(cues) - 1, -1, -1):
        first = ms(cues[i].start)
        out[i] = int(min(first + lag, later - gap - needs[i]))
        if out[i] < first - lead:       # too fast here: this cue is the one short of time
            out[i] = first
        later = out[i]
    return out


def timed(cues: list[Cue], prefixed: bool) -> tuple[list[Cue], int]:
    """Display times that follow the rules (the module's docstring says how), and the number of cues shown for
    less than their reading time because the speech was too fast."""
    gap, lead, longest, shortest = ms(MIN_GAP_S), ms(LEAD_IN_S), ms(MAX_CUE_S), ms(MIN_CUE_S)
    cues = merged_where_crowded(cues, prefixed)
    needs = [reading_ms(c, prefixed) for c in cues]
    latest = latest_starts(cues, needs)
    out, fast, prev_end = [], 0, -gap
    for i, (cue, need) in enumerate(zip(cues, needs)):
        first, last = ms(cue.start), ms(cue.end)
        unhurried = ms(cues[i + 1].start) - gap - need if i + 1 < len(cues) else first  # leaves the next on time
        start = max(prev_end + gap, first - lead, min(first, unhurried, latest[i]))
        end = min(max(last, start + need), start + longest)
        if i + 1 < len(cues):
            on_time = min(ms(cues[i + 1].start), latest[i + 1]) - gap     # the next cue's own start, if it can
            if end > on_time:
                end = max(on_time, start + need)
            end = min(end, latest[i + 1] - gap)
        end = max(end, start + shortest)
        fast += end - start < need
        out.append(replace(cue, start=start / 1000, end=end / 1000))
        prev_end = end
    return out, fast


def timestamp(seconds: float, separator: str) -> str:
    t = max(0, round(seconds * 1000))
    return f"{t // 3_600_000:02d}:{t // 60_000 % 60:02d}:{t // 1000 % 60:02d}{separator}{t % 1000:03d}"


def srt_text(cues: list[Cue], prefixed: bool = False) -> str:
    return "".join(f"{i}\n{timestamp(c.start, ',')} --> {timestamp(c.end, ',')}\n" + "\n".join(cue_lines(c, prefixed))
                   + "\n\n" for i, c in enumerate(cues, start=1))


def vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_lines(cue: Cue, prefixed: bool) -> list[str]:
    """The speaker (when prefixed) as a voice tag, never in the text: on the first line of a one-speaker cue,
    on each line of a dialogue cue (closed there, as the next line is another voice's)."""
    def voice(speaker: str | None) -> str:
        return f"<v {vtt_escape(speaker_label(speaker))}>" if prefixed and speaker else ""

    if len(cue.parts) == 1:
        lines = [vtt_escape(line) for line in wrap(cue.parts[0].text)]
        return [voice(cue.parts[0].speaker) + lines[0], *lines[1:]]
    return [voice(p.speaker) + DASH + vtt_escape(p.text) + ("</v>" if voice(p.speaker) else "") for p in cue.parts]


def vtt_text(cues: list[Cue], prefixed: bool) -> str:
    return "WEBVTT\n\n" + "".join(f"{timestamp(c.start, '.')} --> {timestamp(c.end, '.')}\n"
                                   + "\n".join(vtt_lines(c, prefixed)) + "\n\n" for c in cues)


def timed_cues(asr: dict[str, Any], diarization: dict[str, Any]) -> tuple[list[Cue], bool, int]:
    """The cues of a job, whether they name speakers (more than one speaker), and how many are too fast to read."""
    words = assign_speakers(asr_words(asr), diarization.get("turns", []))
    prefixed = len({w.speaker for w in words if w.speaker}) > 1
    cues, fast = timed(build_cues(words, prefixed), prefixed)
    return cues, prefixed, fast


def make_cues(asr: dict[str, Any], diarization: dict[str, Any]) -> tuple[list[Cue], bool]:
    """The cues of a job and whether they name speakers."""
    cues, prefixed, _ = timed_cues(asr, diarization)
    return cues, prefixed


def subtitles(ctx: StageContext) -> None:
    asr = ctx.read_json("asr.json", made_by="asr")
    diarization = ctx.read_json("diarization.json", made_by="diarize")
    cues, prefixed, fast = timed_cues(asr, diarization)
    ctx.write_text(SRT_OUTPUT, srt_text(cues, prefixed))
    ctx.write_text(VTT_OUTPUT, vtt_text(cues, prefixed))
    ctx.write_text(_cues.CUES_OUTPUT, _cues.cues_text([_cues.cue_record(c.start, c.end, c.speakers, c.language)
                                                       for c in cues]))
    ctx.details.update({"cues": len(cues), "speakers": len({s for c in cues for s in c.speakers if s}),
                        "prefixed": prefixed, "dialogue_cues": sum(len(c.parts) > 1 for c in cues),
                        "fast_cues": fast, "language": asr.get("language"),
                        "cues_by_language": _cues.cues_by_language(c.language for c in cues),
                        "diarization_backend": diarization.get("backend"),
                        "longest_line": max((len(line) for c in cues for line in cue_lines(c, prefixed)), default=0)})
    if not cues:
        ctx.details["note"] = "no speech: the SRT and the VTT have no cues"


if __name__ == "__main__":
    main_of(NAME, subtitles)
