"""What the VAD stage's loudness measure costs beside Silero (stages/_loudness.py, stages/vad.py).

A WAV of real speech (pyannote.audio's sample.wav, 30 s, repeated to --minutes)
is read 32 s at a time, as the stage reads it, three ways: Silero alone
(``silero_probabilities``), the loudness measure alone (``Loudness.feed``), and
both in the one pass the stage makes (``silero_pass``). Each is run --runs
times; the table shows medians and the loudness measure's share of the stage's
pass. Reading the file is in every figure.

Needs the native env (onnxruntime, faster-whisper's Silero ONNX file, numpy).
Usage: .venv-ml/bin/python bench/vad_loudness.py --audio sample.wav [--minutes 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stages._audio import wav_spans  # noqa: E402
from stages._loudness import Loudness  # noqa: E402
from stages.vad import BLOCK_S, SILENCE_DBFS, silero_pass, silero_probabilities, silero_session  # noqa: E402


def long_wav(source: Path, minutes: float, folder: Path) -> Path:
    """``source`` repeated to ``minutes``, 16 kHz mono 16-bit, by FFmpeg."""
    out = folder / "long.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i", str(source),
                    "-t", str(minutes * 60), "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(out)], check=True)
    return out


def timed(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav = long_wav(args.audio, args.minutes, Path(tmp))

        def blocks():
            return (b for _, b in wav_spans(wav, BLOCK_S))

        def silero() -> None:
            for _ in silero_probabilities(blocks(), silero_session()):
                pass

        def loudness() -> None:
            measure = Loudness(SILENCE_DBFS)
            for block in blocks():
                measure.feed(block)
            measure.summary()

        def stage() -> None:
            silero_pass(blocks())[2].summary()

        figures = {"silero": timed(silero, args.runs), "loudness": timed(loudness, args.runs),
                   "silero_pass": timed(stage, args.runs)}
    audio_s = args.minutes * 60
    print(f"{args.minutes:g} min of speech, 32 s blocks, medians of {args.runs} runs")
    for name, seconds in figures.items():
        print(f"  {name:12} {seconds:7.3f} s  RTF {seconds / audio_s:.5f}")
    print(f"  loudness alone / silero alone: {figures['loudness'] / figures['silero']:.3f}; "
          f"silero_pass / silero alone: {figures['silero_pass'] / figures['silero']:.3f}")


if __name__ == "__main__":
    main()
