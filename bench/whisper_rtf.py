"""Real-time factor of faster-whisper on this CPU: the measurement behind the CPU rows of the
recommendation table (docs/HARDWARE.md).

Each model transcribes the same speech clip (made with espeak-ng, about 40 s) with
int8 on the CPU, beam size 5, several times in a worker process that loaded the
model once; the table shows medians. tiny.en is the baseline. The real-time factor
(RTF) is transcription time / audio length: 0.5 means a two-hour film takes an hour.
The larger models' weights are not available offline here, so their RTF is
estimated from base's by parameter count, and for more cores by the speed-up
measured from one thread to two, applied per doubling; the output says so.

Needs an interpreter with faster-whisper 1.2.1 (the native env, `pip install 'infra[ml]'`)
and the weights that `infra bootstrap --model whisper/tiny.en --model whisper/base` fetches.

Usage: .venv/bin/python bench/whisper_rtf.py --python .venv-ml/bin/python --models shared-model-and-cache/whisper
       [--runs N] [--audio CLIP]    (e.g. pyannote.audio's wheel ships sample.wav: 30 s, two real speakers)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table  # noqa: E402

TARGET_RTF = 0.5          # a film in at most half its length
CORES = (2, 4, 8, 16)
PARAMETERS_M = {"tiny.en": 39, "base": 74, "small": 244, "medium": 769, "large-v3": 1550}
TEXT = ("The pipeline turns films into subtitles. First it separates the audio from the video, then it finds the "
        "parts where people speak, then it writes down what they say and who says it. A film of two hours should "
        "take less time than the film itself on a good machine. On a laptop it may take longer, but it must never "
        "fall back to the processor without saying so when a graphics card is present. This sentence makes the "
        "clip a little longer, so that the measurement covers more than half a minute of speech.")

WORKER = r"""
import json, sys, time
from faster_whisper import WhisperModel
model_dir, audio, threads, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
times, text, duration = [], "", 0.0
for _ in range(runs + 1):                      # the first run warms up and is not counted
    start = time.perf_counter()
    segments, info = model.transcribe(audio, beam_size=5, language="en")
    text = " ".join(s.text.strip() for s in segments)
    times.append(time.perf_counter() - start)
    duration = info.duration
print(json.dumps({"times": times[1:], "duration": duration, "text": text}))
"""


def transcribe(python: str, model: Path, audio: Path, threads: int, runs: int) -> dict:
    out = subprocess.run([python, "-c", WORKER, str(model), str(audio), str(threads), str(runs)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", required=True, help="an interpreter with faster-whisper")
    parser.add_argument("--models", type=Path, required=True, help="folder holding tiny.en/ and base/")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--audio", type=Path, help="a real English speech clip to use instead of espeak-ng's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, audio = Path(tmp, "speech.wav"), Path(tmp, "speech16k.wav")
        if args.audio is None:
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(raw), TEXT], check=True)
        subprocess.run(["sox", str(args.audio or raw), "-r", "16000", "-c", "1", str(audio)], check=True)
        tiny = transcribe(args.python, args.models / "tiny.en", audio, 2, args.runs)
        base = transcribe(args.python, args.models / "base", audio, 2, args.runs)
        base_one = transcribe(args.python, args.models / "base", audio, 1, args.runs)
    duration = base["duration"]
    source = args.audio.name if args.audio else "espeak-ng"
    print(f"{args.runs} runs each after a warm-up, {duration:.1f} s of speech ({source}), int8, beam 5, {args.python}")
    print_table([("tiny.en, 2 threads (baseline)", tiny["times"], None), ("base, 2 threads", base["times"], None),
                 ("base, 1 thread", base_one["times"], None)], tiny["times"])
    rtf = statistics.median(base["times"]) / duration
    scaling = statistics.median(base_one["times"]) / statistics.median(base["times"])
    print(f"\nreal-time factor, 2 cores: tiny.en {statistics.median(tiny['times']) / duration:.3f}, base {rtf:.3f}; "
          f"1 -> 2 threads speeds base up {scaling:.2f}x")
    print(f"estimated from base by parameter count (no offline weights for these models), for more cores either "
          f"by the {scaling:.2f}x per doubling measured above or linearly; target RTF {TARGET_RTF}:")
    print(f"  {'model':9} {'scaling':9}" + "".join(f"{c:>6} cores" for c in CORES))
    for name in ("small", "medium", "large-v3"):
        ratio = PARAMETERS_M[name] / PARAMETERS_M["base"]
        for label, factor in (("measured", scaling), ("linear", 2.0)):
            estimates = [rtf * ratio / factor ** math.log2(cores / 2) for cores in CORES]
            enough = next((c for c, e in zip(CORES, estimates) if e <= TARGET_RTF), None)
            print(f"  {name:9} {label:9}" + "".join(f"{e:12.2f}" for e in estimates)
                  + f"   -> RTF <= {TARGET_RTF} from {enough or 'more than ' + str(CORES[-1])} cores")
    print(f"base heard: {base['text'][:100]}...")


if __name__ == "__main__":
    main()
