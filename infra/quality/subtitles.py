"""Subtitle rules and their check: SRT and WebVTT files read, every cue held against the rules.

The rules (the limits are data, `Rules`; the subtitles stage writes by the same defaults):

- max-line: at most 42 characters a line; max-lines: at most 2 lines a cue;
- max-cps: at most 17 characters a second (every character shown, spaces and speaker names in the text
  included, line breaks not) where the timing allows: a cue that is read faster breaks the rule when it could
  have been held longer, i.e. it ends before the next cue's start less min-gap (or is the last cue) and lasts
  less than max-duration. A fast cue that the next one leaves no more time (speech faster than can be read,
  and the writer already gave it all there was) is a note, not a breach, unless `strict_cps`;
- min-duration and max-duration: a cue lasts at least 0.83 s and at most 7 s;
- min-gap: at least 83 ms (two frames at 24 fps) from a cue's end to the next cue's start (an overlap or a cue
  that starts before the one before it breaks it too);
- dialogue: a cue in which two speakers talk starts each speaker's line with a dash ("- "). A speaker starts a
  line with a voice tag in WebVTT (`<v Name>`), with "Name: " in SRT;
- voice-once: WebVTT names a speaker once, in the voice tag, not again as "Name: " in the text;
- empty: a cue has text.

What is shown is what counts: tags (`<i>`, `<v Name>`, `{\\an8}`) are left out and character references
(`&amp;`) count as one character. Cues are numbered by their place in the file, from 1. Times are whole
milliseconds, as both formats write them, and are compared as such.
A file that is neither SRT nor WebVTT, a timestamp that is broken, or a missing file is bad input
(BadInputError, one line); an empty SRT is a file without cues, which passes.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.errors import BadInputError

SRT_TIME = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d),(\d{3})$")
VTT_TIME = re.compile(r"^(?:(\d{1,3}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")
ARROW = re.compile(r"^(\S+)[ \t]+-->[ \t]+(\S+)(?:[ \t]+.*)?$")
TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")
VOICE = re.compile(r"^<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")
NAME_PREFIX = re.compile(r"^(?:-\s*)?([A-Z][\w.'-]*(?: [\w.'-]+){0,2}):\s")
DASH = "- "
NOTE = "max-cps-boxed"


@dataclass(frozen=True)
class Rules:
    """The limits a cue is held to (seconds and characters)."""
    max_line: int = 42
    max_lines: int = 2
    max_cps: float = 17.0
    min_duration: float = 0.83
    max_duration: float = 7.0
    min_gap: float = 0.083
    strict_cps: bool = False  # a fast cue is a breach even when the next cue leaves it no more time


@dataclass(frozen=True)
class Cue:
    number: int               # the place in the file, from 1
    line: int                 # the line of its timing in the file
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]    # as written (tags and references still in)

    @property
    def shown(self) -> list[str]:
        return [shown_text(line) for line in self.lines]


@dataclass(frozen=True)
class Breach:
    cue: int
    rule: str
    message: str

    def __str__(self) -> str:
        return f"cue {self.cue}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Report:
    path: str
    format: str               # "srt" or "vtt"
    cues: int
    rules: Rules
    breaches: tuple[Breach, ...]
    notes: tuple[Breach, ...] = ()     # fast cues the timing gave no more time (not breaches)

    def as_dict(self) -> dict[str, object]:
        return {"file": self.path, "format": self.format, "cues": self.cues, "rules": asdict(self.rules),
                "breaches": [asdict(b) for b in self.breaches], "notes": [asdict(b) for b in self.notes],
                "passes": not self.breaches}


def shown_text(line: str) -> str:
    return html.unescape(TAG.sub("", line))


def _ms(match: re.Match[str]) -> int:
    hours, minutes, seconds, millis = (int(g or 0) for g in match.groups())
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def _blocks(lines: list[str], first: int) -> list[tuple[int, list[str]]]:
    """Runs of non-blank lines from index ``first``, each with the number (from 1) of its first line."""
    out: list[tuple[int, list[str]]] = []
    for i in range(first, len(lines)):
        if not lines[i].strip():
            continue
        if i > first and lines[i - 1].strip() and out:
            out[-1][1].append(lines[i])
        else:
            out.append((i + 1, [lines[i]]))
    return out


def _times(path: Path, lineno: int, text: str, pattern: re.Pattern[str], kind: str) -> tuple[int, int]:
    arrow = ARROW.match(text.strip())
    start = pattern.match(arrow.group(1)) if arrow else None
    end = pattern.match(arrow.group(2)) if arrow else None
    if start is None or end is None:
        raise BadInputError(f"{path}: line {lineno}: broken {kind} timing {text.strip()[:60]!r}")
    return _ms(start), _ms(end)


def parse_srt(path: Path, text: str) -> list[Cue]:
    cues = []
    for lineno, block in _blocks(text.splitlines(), 0):
        if "-->" in block[0]:          # a cue without its number
            number, timing, body, at = None, block[0], block[1:], lineno
        elif len(block) > 1 and "-->" in block[1]:
            number, timing, body, at = block[0].strip(), block[1], block[2:], lineno + 1
        else:
            raise BadInputError(f"{path}: line {lineno}: not an SRT cue (a number, then a timing "
                                f"'00:00:01,000 --> 00:00:02,500'): {block[0].strip()[:60]!r}")
        if number is not None and not number.lstrip("\ufeff").isdigit():
            raise BadInputError(f"{path}: line {lineno}: an SRT cue number must be digits, not {number[:40]!r}")
        start, end = _times(path, at, timing, SRT_TIME, "SRT")
        cues.append(Cue(len(cues) + 1, at, start, end, tuple(body)))
    return cues


def parse_vtt(path: Path, text: str) -> list[Cue]:
    lines = text.splitlines()
    cues = []
    for lineno, block in _blocks(lines, 1):
        head = block[0].strip()
        if head.startswith(("NOTE", "STYLE", "REGION")) and "-->" not in head:
            continue
        at = 0 if "-->" in block[0] else 1          # an optional cue identifier first
        if at >= len(block) or "-->" not in block[at]:
            raise BadInputError(f"{path}: line {lineno}: not a WebVTT cue (no timing "
                                f"'00:00:01.000 --> 00:00:02.500'): {head[:60]!r}")
        start, end = _times(path, lineno + at, block[at], VTT_TIME, "WebVTT")
        cues.append(Cue(len(cues) + 1, lineno + at, start, end, tuple(block[at + 1:])))
    return cues


def read_subtitles(path: Path) -> tuple[str, list[Cue]]:
    """("srt" or "vtt", the cues) of a file; WebVTT by its header, SRT by its cues. Anything else: BadInputError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory, not a subtitle file") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not an SRT or WebVTT file (not UTF-8 text)") from None
    first = text.split("\n", 1)[0].rstrip("\r")
    if first == "WEBVTT" or first.startswith(("WEBVTT ", "WEBVTT\t")):
        return "vtt", parse_vtt(path, text)
    if path.suffix.lower() == ".vtt":
        raise BadInputError(f"{path}: not a WebVTT file (its first line is not 'WEBVTT')")
    if not text.strip() and path.suffix.lower() != ".srt":
        raise BadInputError(f"{path}: empty, and not named .srt: not an SRT or WebVTT file")
    if text.strip() and not any("-->" in line for line in [ln for ln in text.splitlines() if ln.strip()][:2]):
        raise BadInputError(f"{path}: not an SRT or WebVTT file (no cue timing where the first cue should be)")
    return "srt", parse_srt(path, text)


def speaker_lines(cue: Cue, fmt: str) -> list[tuple[str, str]]:
    """(speaker, the line as shown) for each line that starts a speaker's words."""
    out = []
    for line in cue.lines:
        if fmt == "vtt":
            voice = VOICE.match(line.strip())
            if voice:
                out.append((voice.group(1).strip(), shown_text(line).strip()))
        else:
            name = NAME_PREFIX.match(shown_text(line).strip())
            if name:
                out.append((name.group(1), shown_text(line).strip()))
    return out


def check_cue(cue: Cue, following: Cue | None, fmt: str, rules: Rules) -> list[Breach]:
    shown = cue.shown
    chars = sum(len(line) for line in shown)
    duration = cue.end_ms - cue.start_ms
    out: list[Breach] = []

    def breach(rule: str, message: str) -> None:
        out.append(Breach(cue.number, rule, message))

    if not "".join(shown).strip():
        breach("empty", "no text")
    for i, line in enumerate(shown, start=1):
        if len(line) > rules.max_line:
            breach("max-line", f"line {i} has {len(line)} characters (at most {rules.max_line})")
    if len(shown) > rules.max_lines:
        breach("max-lines", f"{len(shown)} lines (at most {rules.max_lines})")
    if duration < round(rules.min_duration * 1000):
        breach("min-duration", f"lasts {duration / 1000:.3f} s (at least {rules.min_duration:g} s)")
    if duration > round(rules.max_duration * 1000):
        breach("max-duration", f"lasts {duration / 1000:.3f} s (at most {rules.max_duration:g} s)")
    gap = following.start_ms - cue.end_ms if following is not None else math.inf
    if duration > 0 and chars * 1000 > rules.max_cps * duration or duration <= 0 < chars:
        cps = chars * 1000 / duration if duration > 0 else math.inf
        held = gap <= round(rules.min_gap * 1000) or duration >= round(rules.max_duration * 1000)
        breach("max-cps" if rules.strict_cps or not held else NOTE,
               f"{chars} characters in {duration / 1000:.3f} s: {cps:.1f} a second (at most {rules.max_cps:g})"
               + (", and the next cue leaves it no more time" if held else ", and it could be held longer"))
    if following is not None:
        if gap < round(rules.min_gap * 1000):
            breach("min-gap", f"cue {following.number} starts {gap / 1000:.3f} s after it ends "
                              f"(at least {rules.min_gap:g} s)")
    speakers = speaker_lines(cue, fmt)
    if len({name for name, _ in speakers}) > 1 and not all(line.startswith(DASH) for _, line in speakers):
        breach("dialogue", "two speakers, not each line after a dash ('- ')")
    if fmt == "vtt":
        for name, line in speakers:
            if line.removeprefix(DASH).lower().startswith(name.lower() + ":"):
                breach("voice-once", f"names {name} twice (the voice tag and '{name}:' in the text)")
    return out


def check_cues(cues: list[Cue], fmt: str, rules: Rules = Rules()) -> list[Breach]:
    """Every breach and note, in cue order (notes are rule 'max-cps-boxed')."""
    return [b for i, cue in enumerate(cues) for b in check_cue(cue, cues[i + 1] if i + 1 < len(cues) else None,
                                                                fmt, rules)]


def check_file(path: Path, rules: Rules = Rules()) -> Report:
    """Every breach of ``rules`` in an SRT or WebVTT file, and the notes, in cue order."""
    fmt, cues = read_subtitles(path)
    found = check_cues(cues, fmt, rules)
    return Report(str(path), fmt, len(cues), rules, tuple(b for b in found if b.rule != NOTE),
                  tuple(b for b in found if b.rule == NOTE))
