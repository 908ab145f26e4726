"""What ``--language auto`` costs: the asr stage on one clip with the language detected once (the default), given
(hi), and detected for each speech segment (auto), Whisper base on the CPU.

The clip is espeak-ng speech: Hindi sentences, then English ones, ``--rounds`` times over (0.8 s pauses), so it
has as many speech segments as sentences. vad runs once; then each round runs asr once per setting, in a
rotated order, natively in the ML environment (.venv-ml), and takes the stage's own seconds from its result
record. Printed: the median per setting and the median of auto's ratio to the default within each round, with
the segments detected. ``--batch`` runs the batched pipeline (faster-whisper's BatchedInferencePipeline) too.

Usage: .venv/bin/python bench/asr_languages.py [--rounds 3] [--repeat 3] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from infra.models.catalogue import fetch_models  # noqa: E402

HINDI = ("क्या आप मुझे स्टेशन का रास्ता बता सकते हैं?", "हम कल बाज़ार जाएंगे और सब्ज़ियाँ खरीदेंगे।")
ENGLISH = ("Good morning everyone, the meeting will start in ten minutes.",
           "Please remember to bring your notes and the report.")
CACHE = Path.home() / ".cache" / "infra" / "bench-models"
PAUSE_S = 0.8


def clip(folder: Path, repeat: int) -> Path:
    lines = [("hi", t) for t in HINDI] + [("en-us", t) for t in ENGLISH]
    parts = []
    for i, (voice, text) in enumerate(lines * repeat):
        parts.append(folder / f"line{i}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(parts[-1]), text], check=True,
                       capture_output=True)
    inputs = [arg for part in parts for arg in ("-i", str(part))]
    graph = "".join(f"[{k}:a]aresample=16000,apad=pad_dur={PAUSE_S}[a{k}];" for k in range(len(parts)))
    graph += "".join(f"[a{k}]" for k in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[out]"
    target = folder / "audio.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *inputs, "-filter_complex", graph, "-map", "[out]",
                    "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", str(target)], check=True, capture_output=True)
    return target


def job(folder: Path, audio: Path, language: str | None, batch_size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(audio, folder / "audio.wav")
    config = {"language": language, "task": "transcribe", "whisper_model": "base", "compute_type": "int8",
              "batch_size": batch_size, "chunk_length_s": 30, "span_s": 300}
    stages = [{"name": n, "after": a, "device": "cpu", "status": "pending"} for n, a in (("vad", []), ("asr", ["vad"]))]
    (folder / "job.json").write_text(json.dumps({"schema": 1, "id": folder.name, "status": "prepared",
                                                 "input": {"file": "audio.wav"}, "config": config, "stages": stages}))
    return folder


def run(stage: str, folder: Path) -> dict:
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
           "PYTHONPATH": str(REPO), "INFRA_CACHE": str(CACHE)}
    done = subprocess.run([str(REPO / ".venv-ml" / "bin" / "python"), "-m", f"stages.{stage}", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{stage} failed: {done.stderr.strip()[-400:]}")
    return json.loads((folder / "results" / f"{stage}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="times the four sentences are spoken")
    parser.add_argument("--batch", type=int, default=0, help="also time auto with this batch size")
    args = parser.parse_args()
    outcome = [e for e in fetch_models(["whisper/base"], CACHE, None) if e.kind in ("done", "present", "failed")]
    if outcome[-1].kind == "failed":
        sys.exit(f"cannot fetch whisper/base: {outcome[-1].detail}")
    settings = {"detect once": (None, 1), "hi": ("hi", 1), "auto": ("auto", 1)}
    if args.batch > 1:
        settings[f"auto, batch {args.batch}"] = ("auto", args.batch)
    with tempfile.TemporaryDirectory(prefix="asr-languages-") as tmp:
        root = Path(tmp)
        audio = clip(root, args.repeat)
        base = job(root / "vad", audio, None, 1)
        vad = run("vad", base)
        seconds: dict[str, list[float]] = {name: [] for name in settings}
        ratios, detail = [], {}
        for r in range(args.rounds):
            names = list(settings)[r % len(settings):] + list(settings)[:r % len(settings)]
            for name in names:
                folder = root / f"r{r}-{name.replace(' ', '_').replace(',', '')}"
                shutil.copytree(base, folder)
                data = json.loads((folder / "job.json").read_text())
                data["config"]["language"], data["config"]["batch_size"] = settings[name]
                (folder / "job.json").write_text(json.dumps(data))
                record = run("asr", folder)
                seconds[name].append(record["seconds"])
                if name == "auto":
                    asr = json.loads((folder / "asr.json").read_text())
                    detail = {"languages": asr["languages"],
                              "detected": sum(d["source"] == "detected" for d in asr["detections"]),
                              "segments": len(asr["detections"])}
            ratios.append(seconds["auto"][-1] / seconds["detect once"][-1])
    print(f"clip: {vad['details'].get('audio_s', '?')} s of audio, vad segments: {vad['details'].get('segments')}")
    for name, values in seconds.items():
        print(f"asr, {name:<16} median {statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"auto / detect once, within each round: median {statistics.median(ratios):.2f} "
          f"({', '.join(f'{v:.2f}' for v in ratios)})")
    print(f"auto detected {detail.get('detected')} of {detail.get('segments')} segments: {detail.get('languages')}")


if __name__ == "__main__":
    main()
