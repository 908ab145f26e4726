"""The VAD fallback's lower threshold, chosen on the development set turned down (never on the other sets).

Silero's main values were chosen on the development set at its own level (bench/diarization.py: threshold 0.2,
100 ms minimum speech, silence and padding). The fallback (stages/vad.py ``choose_speech``) takes a lower
threshold when a file that is not silent gets too little speech, and a quiet file's speech goes to ASR whole
when even that finds too little. Its threshold has to be under the main one. This script turns every
development clip down by each level (as 16-bit samples, as audio.wav holds them), runs the stage's own pass
(Silero and the loudness measure, stages/vad.py ``silero_pass``), the rule at the main threshold and
``choose_speech`` with each candidate lower threshold, and scores missed + false-alarm speech against the
reference turns (10 ms frames, pooled over clips and levels). The values in stages/vad.py before this change
are the first row.

The fallback must also keep noise out: a file at a usual level in which nobody speaks must send nothing to
ASR (Whisper writes "You" on pink noise). Each candidate runs the same way over --noise-seeds clips of 6 s of
pink noise (FFmpeg's anoisesrc, amplitude 0.3, seeded: the film of noise in tests/integration/test_quiet_speech.py);
the lower threshold chosen is the one with the least development-set error among those that find speech in
none of them.

Usage: .venv-ml/bin/python bench/vad_fallback.py [--cache DIR] [--levels 0 35 40 ...]
                                                 [--candidates 0.05 0.1 0.15 0.18] [--noise-seeds 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from infra.quality.scoring import read_rttm  # noqa: E402
from stages._audio import read_wav  # noqa: E402
from stages.vad import SAMPLE_RATE, SpeechTracker, choose_speech, silero_pass  # noqa: E402

CHUNK_S = 30.0
MAIN = {"threshold": 0.2, "min_speech_ms": 100, "min_silence_ms": 100, "speech_pad_ms": 100}   # chosen on dev
BEFORE = ({"threshold": 0.5, "min_speech_ms": 250, "min_silence_ms": 300, "speech_pad_ms": 200}, 0.2)


def segments(probabilities: np.ndarray, samples: int, params: dict) -> list[dict[str, float]]:
    tracker = SpeechTracker(CHUNK_S, **params)
    tracker.feed(probabilities)
    return [{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in tracker.finish(samples)]


def errors(found: list[dict[str, float]], reference: list, frames: int) -> tuple[int, int, int]:
    ref, hyp = np.zeros(frames, bool), np.zeros(frames, bool)
    for t in reference:
        ref[round(t.start * 100):round(t.end * 100)] = True
    for s in found:
        hyp[round(s["start"] * 100):round(s["end"] * 100)] = True
    return int((ref & ~hyp).sum()), int((hyp & ~ref).sum()), int(ref.sum())


def noise(seed: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"anoisesrc=c=pink:a=0.3:r=48000:seed={seed}",
                          "-t", "6", "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


def kept_speech(audio: np.ndarray, params: dict, lower: float) -> list[dict[str, float]]:
    """What the stage hands on for ``audio``: the rule at the main threshold, then choose_speech's fallback."""
    probabilities, read, loudness = silero_pass([audio])
    summary = loudness.summary()
    found = segments(probabilities, read, params)
    low = dict(params, threshold=lower)
    kept, _, _ = choose_speech(found, lambda: segments(probabilities, read, low), summary["sounding_s"],
                               summary["loud_dbfs"], read / SAMPLE_RATE, CHUNK_S)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    parser.add_argument("--levels", type=float, nargs="+", default=[0, 35, 40, 42, 44, 46, 48, 50])
    parser.add_argument("--candidates", type=float, nargs="+", default=[0.05, 0.1, 0.15, 0.18])
    parser.add_argument("--noise-seeds", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.cache / "speechsets" / "v1"
    dev = [i for i in json.loads((root / "manifest.json").read_text())["items"] if i["split"] == "dev"]
    configs = {f"before: {BEFORE[0]['threshold']}, fallback {BEFORE[1]}": BEFORE,
               **{f"{MAIN['threshold']}, fallback {c}": (MAIN, c) for c in args.candidates}}
    totals = {name: {level: np.zeros(3) for level in args.levels} for name in configs}
    taken = {name: {level: {} for level in args.levels} for name in configs}
    for item in dev:
        clean = read_wav(root / item["wav"])
        reference = read_rttm(root / item["rttm"])
        for level in args.levels:
            quiet = np.round(clean * 32767 * 10 ** (-level / 20)).clip(-32768, 32767).astype(np.float32) / 32768
            probabilities, read, loudness = silero_pass([quiet])
            summary = loudness.summary()
            duration = read / SAMPLE_RATE
            for name, (params, lower) in configs.items():
                found = segments(probabilities, read, params)
                low = dict(params, threshold=lower)
                kept, fallback, _ = choose_speech(found, lambda low=low: segments(probabilities, read, low),
                                                  summary["sounding_s"], summary["loud_dbfs"], duration, CHUNK_S)
                totals[name][level] += errors(kept, reference, read // 160)
                key = "threshold" if fallback and fallback.startswith("threshold") else (fallback or "none")
                taken[name][level][key] = taken[name][level].get(key, 0) + 1
        print(f"{item['id']} done", file=sys.stderr, flush=True)
    print(f"\ndevelopment set, {len(dev)} clips, each turned down by every level; missed + false alarm "
          "(fallbacks taken: lower threshold / whole file)")
    print("| settings | " + " | ".join(f"{level:g} dB" for level in args.levels) + " | all levels |")
    print("|---" * (len(args.levels) + 2) + "|")
    figures = {}
    for name in configs:
        cells = []
        for level in args.levels:
            missed, false, ref = totals[name][level]
            t = taken[name][level]
            cells.append(f"{(missed + false) / ref:.1%} ({t.get('threshold', 0)}/{t.get('whole file', 0)})")
        whole = sum(totals[name].values())
        figures[name] = {"by_level": {str(k): (v[0] + v[1]) / v[2] for k, v in totals[name].items()},
                         "all": (whole[0] + whole[1]) / whole[2], "missed": whole[0] / whole[2],
                         "false_alarm": whole[1] / whole[2]}
        print(f"| {name} | " + " | ".join(cells) + f" | {figures[name]['all']:.1%} |")
    clips = [noise(seed) for seed in range(1, args.noise_seeds + 1)]
    noisy = {name: sum(bool(kept_speech(c, params, lower)) for c in clips) for name, (params, lower) in configs.items()}
    print(f"\n| settings | dev error, all levels | pink-noise clips with speech (of {len(clips)}) |\n|---|---|---|")
    for name in configs:
        print(f"| {name} | {figures[name]['all']:.1%} | {noisy[name]} |")
    quiet = [c for c in args.candidates if noisy[f"{MAIN['threshold']}, fallback {c}"] == 0]
    best = min(quiet, key=lambda c: figures[f"{MAIN['threshold']}, fallback {c}"]["all"]) if quiet else None
    print(f"\nlower threshold chosen: {best if best is not None else 'none keeps the noise out'}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "noise": noisy, "chosen": best}, indent=1))


if __name__ == "__main__":
    main()
