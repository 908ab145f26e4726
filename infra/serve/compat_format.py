"""What the whisper-asr-webservice routes read and write, without HTTP: raw PCM as WAV, Whisper's languages, and
the txt, tsv and json answers built from a finished job's asr.json and diarization.json.

- **Raw PCM.** With ``encode=false`` that API takes the upload as 16-bit little-endian mono samples at 16 kHz
  and nothing else (no header). :class:`PcmAsWav` reads such an upload as a WAV file (a 44-byte header, then
  the samples), so the upload is kept and probed like any other film and the pipeline's FFmpeg reads it.
- **Languages.** The codes Whisper knows (infra/spec/languages.py, the one list infra checks languages
  against), with the names Whisper's tokenizer gives them (``/detect-language`` answers with both; a code
  without a name here is named by its code).
- **Speakers.** Each word takes the speaker whose diarization turns overlap it most (else the nearest turn
  within a second, else the word before's), as the subtitles stage does; a segment of asr.json is cut where
  the speaker changes. With more than one speaker, txt and tsv lines start with ``Speaker N:`` (as the
  pipeline's SRT does); json segments and words carry ``speaker`` (``SPEAKER_00``) whatever their number.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from infra.spec.languages import whisper_languages

SAMPLE_RATE = 16_000
SAMPLE_BYTES = 2
WAV_HEADER_BYTES = 44
MAX_WAV_DATA = 0xFFFFFFFF - WAV_HEADER_BYTES
NEAREST_TURN_S = 1.0
OUTPUTS = ("txt", "vtt", "srt", "tsv", "json")

# The names of Whisper's languages, as its tokenizer gives them; which codes Whisper knows is the spec's list.
NAMES: dict[str, str] = dict(pair.replace("_", " ").split(":") for pair in (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese pt:portuguese "
    "tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian id:indonesian hi:hindi fi:finnish "
    "vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish hu:hungarian ta:tamil "
    "no:norwegian th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh "
    "sk:slovak te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani sl:slovenian kn:kannada "
    "et:estonian mk:macedonian br:breton eu:basque is:icelandic hy:armenian ne:nepali mn:mongolian bs:bosnian "
    "kk:kazakh sq:albanian sw:swahili gl:galician mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba "
    "so:somali af:afrikaans oc:occitan ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic "
    "yi:yiddish lo:lao uz:uzbek fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese "
    "sa:sanskrit lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian "
    "ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese").split(" ")
    if pair)
LANGUAGES: dict[str, str] = {code: NAMES.get(code, code) for code in whisper_languages()}
# The first bytes of containers someone may send with encode=false by mistake (raw PCM has no header).
CONTAINER_MAGIC = (b"RIFF", b"ID3", b"fLaC", b"OggS", b"\x1a\x45\xdf\xa3", b"FORM", b"caff")


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte header of a WAV file holding ``data_bytes`` of 16-bit mono PCM at 16 kHz."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, SAMPLE_RATE,
                       SAMPLE_RATE * SAMPLE_BYTES, SAMPLE_BYTES, 8 * SAMPLE_BYTES, b"data", data_bytes)


def looks_like_a_container(head: bytes) -> bool:
    """Whether the upload starts like a media file (WAV, MP3, FLAC, Ogg, Matroska, AIFF, CAF, MP4/MOV)."""
    return head.startswith(CONTAINER_MAGIC) or head[4:8] == b"ftyp"


class PcmAsWav:
    """Raw PCM (``size`` bytes of ``pcm`` from where it stands) read as a WAV file: the header, then the samples."""

    def __init__(self, pcm: BinaryIO, size: int) -> None:
        self._head = wav_header(size)
        self._pcm = pcm
        self._left = size

    def read(self, n: int = -1) -> bytes:
        want = n if n >= 0 else WAV_HEADER_BYTES + self._left
        out, self._head = self._head[:want], self._head[want:]
        want -= len(out)
        if want > 0 and self._left > 0:
            chunk = self._pcm.read(min(want, self._left))
            self._left -= len(chunk)
            out += chunk
        return out


@dataclass
class Segment:
    start: float
    end: float
    text: str
    speaker: str | None
    words: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)      # avg_logprob, no_speech_prob of its ASR segment


def speaker_at(start: float, end: float, turns: list[dict[str, Any]]) -> str | None:
    """The speaker whose turns overlap [start, end] most, else the nearest turn's within NEAREST_TURN_S."""
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn["end"]) - max(start, turn["start"])
        if shared > 0:
            overlap[turn["speaker"]] = overlap.get(turn["speaker"], 0.0) + shared
    if overlap:
        return max(overlap, key=lambda s: overlap[s])
    distance, nearest = min(((max(t["start"] - end, start - t["end"]), t["speaker"]) for t in turns),
                            default=(float("inf"), None))
    return nearest if distance <= NEAREST_TURN_S else None


def labelled_segments(asr: dict[str, Any], diarization: dict[str, Any]) -> list[Segment]:
    """asr.json's segments with speakers, a segment cut where its words change speaker."""
    turns = diarization.get("turns", [])
    out: list[Segment] = []
    last: str | None = None
    for seg in asr.get("segments", []):
        scores = {k: seg[k] for k in ("avg_logprob", "no_speech_prob") if k in seg}
        words = [w for w in seg.get("words") or [] if str(w.get("word", "")).strip()]
        if not words:
            last = speaker_at(seg["start"], seg["end"], turns) or last
            out.append(Segment(seg["start"], seg["end"], seg.get("text", "").strip(), last, [], scores))
            continue
        runs: list[tuple[str | None, list[dict[str, Any]]]] = []
        for word in words:
            last = speaker_at(word["start"], word["end"], turns) or last
            if runs and runs[-1][0] == last:
                runs[-1][1].append({**word, "speaker": last})
            else:
                runs.append((last, [{**word, "speaker": last}]))
        whole = len(runs) == 1
        for speaker, run in runs:
            text = seg.get("text", "").strip() if whole else " ".join(w["word"].strip() for w in run)
            start, end = (seg["start"], seg["end"]) if whole else (run[0]["start"], run[-1]["end"])
            out.append(Segment(start, end, text, speaker, run, scores))
    return out


def speaker_label(speaker: str) -> str:
    """SPEAKER_00 -> 'Speaker 1' (the pipeline's subtitles say the same); any other name is kept."""
    prefix, _, number = speaker.rpartition("_")
    return f"Speaker {int(number) + 1}" if prefix == "SPEAKER" and number.isdigit() else speaker


def _line(seg: Segment, prefixed: bool) -> str:
    return f"{speaker_label(seg.speaker)}: {seg.text}" if prefixed and seg.speaker else seg.text


def _prefixed(segments: list[Segment]) -> bool:
    return len({s.speaker for s in segments if s.speaker}) > 1


def txt_text(segments: list[Segment]) -> str:
    """One line a segment."""
    prefixed = _prefixed(segments)
    return "".join(_line(s, prefixed) + "\n" for s in segments)


def tsv_text(segments: list[Segment]) -> str:
    """start, end (integer milliseconds) and text, tab-separated, under a header line."""
    prefixed = _prefixed(segments)
    rows = [f"{round(1000 * s.start)}\t{round(1000 * s.end)}\t{_line(s, prefixed).replace(chr(9), ' ')}\n"
            for s in segments]
    return "start\tend\ttext\n" + "".join(rows)


def json_text(segments: list[Segment], language: str | None, word_timestamps: bool) -> str:
    """text, segments (id, start, end, text, speaker, scores; words with word_timestamps) and language."""
    listed = []
    for i, seg in enumerate(segments):
        item: dict[str, Any] = {"id": i, "start": seg.start, "end": seg.end, "text": seg.text, "speaker": seg.speaker,
                                **seg.scores}
        if word_timestamps:
            item["words"] = [{k: w[k] for k in ("word", "start", "end", "probability", "speaker") if k in w}
                             for w in seg.words]
        listed.append(item)
    return json.dumps({"text": " ".join(s.text for s in segments), "segments": listed, "language": language},
                      ensure_ascii=False)


def built_output(output: str, asr: dict[str, Any], diarization: dict[str, Any], word_timestamps: bool) -> str:
    """The txt, tsv or json answer for a job's asr.json and diarization.json."""
    segments = labelled_segments(asr, diarization)
    if output == "txt":
        return txt_text(segments)
    if output == "tsv":
        return tsv_text(segments)
    if output == "json":
        return json_text(segments, asr.get("language"), word_timestamps)
    raise ValueError(f"{output} is not built from asr.json")
