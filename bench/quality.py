"""Quality and speed of the real pipeline on pyannote.audio's sample (30 s, two speakers), natively.

- WER and CER of each Whisper model (tiny.en and base by default) against the
  bundled reference transcript sample.stm (both normalised alike: NFC, casefold,
  punctuation dropped; CER over the characters of the normalised words joined by
  single spaces);
- DER of the diarization backend that ran (offline: resemblyzer) against
  sample.rttm, with no collar and with a 0.25 s collar;
- real-time factor (RTF = seconds / audio seconds) of each stage: the stage's
  own work ("work", from its result record) and the whole process as the
  pipeline sees it ("wall": interpreter start, imports and model loading
  included), medians of --runs forced reruns of the same job.

The sample files come from pyannote.audio's wheel, fetched with
`pip download --no-deps pyannote.audio==4.0.7` (nothing is installed) into --cache.
The native env must exist and the models must be in --model-cache (default:
$INFRA_CACHE, else the repository's shared-model-and-cache/, where `infra
bootstrap --model whisper/tiny.en --model whisper/base` run in the repository
puts them). Scores use infra/quality/scoring.py.

Usage: .venv/bin/python bench/quality.py [--runs 5] [--models tiny.en base] [--native-env .venv-ml]
                                         [--cache ~/.cache/infra/bench] [--model-cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from infra.quality.scoring import (  # noqa: E402
    character_errors, diarization_errors, read_rttm, read_stm, word_errors,
)

PYANNOTE = "pyannote.audio==4.0.7"
SAMPLE_FILES = ("sample.wav", "sample.rttm", "sample.stm")
INFRA = [sys.executable, "-m", "infra"]


def sample_files(cache: Path) -> dict[str, Path]:
    """sample.wav, .rttm and .stm out of pyannote.audio's wheel (downloaded once into ``cache``)."""
    folder = cache / "pyannote-sample"
    if not all((folder / f).is_file() for f in SAMPLE_FILES):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "--disable-pip-version-check", "-d", str(cache), PYANNOTE], check=True, stderr=subprocess.DEVNULL)
        wheel = next(cache.glob("pyannote_audio-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in SAMPLE_FILES:
                (folder / name).write_bytes(zf.read(f"pyannote/audio/sample/{name}"))
    return {Path(f).suffix[1:]: folder / f for f in SAMPLE_FILES}


def infra(*args: str, cwd: Path) -> str:
    proc = subprocess.run([*INFRA, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"infra {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def job_dir(work: Path, job_id: str) -> Path:
    return work / (work / "jobs" / job_id).read_text().strip()


def hypothesis_text(asr: dict) -> str:
    return " ".join(seg["text"] for seg in asr["segments"])


def measure(work: Path, wav: Path, model: str, runs: int) -> dict:
    """Prepare one job with ``model``, run it ``runs`` times (forced), collect per-stage times and the outputs."""
    job_id = infra("job", "prepare", str(wav), "--mode", "native", "--model", model, cwd=work).split()[0]
    folder = job_dir(work, job_id)
    stages: dict[str, dict[str, list[float]]] = {}
    totals = []
    for _ in range(runs):
        start = time.perf_counter()
        infra("job", "run", job_id, "--force", cwd=work)
        totals.append(time.perf_counter() - start)
        for entry in json.loads((folder / "job.json").read_text())["stages"]:
            times = stages.setdefault(entry["name"], {"work": [], "wall": []})
            times["work"].append(entry["seconds"])
            times["wall"].append(entry["wall_s"])
    asr = json.loads((folder / "asr.json").read_text())
    diarization = json.loads((folder / "diarization.json").read_text())
    return {"job": job_id, "stages": stages, "totals": totals, "asr": asr, "diarization": diarization,
            "turns": read_rttm(folder / "diarization.rttm"), "duration": asr["duration_s"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["tiny.en", "base"])
    parser.add_argument("--native-env", type=Path, default=REPO / ".venv-ml")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    parser.add_argument("--model-cache", type=Path, default=Path(os.environ.get("INFRA_CACHE") or
                                                                  REPO / "shared-model-and-cache"))
    args = parser.parse_args()
    os.environ["INFRA_CACHE"] = str(args.model_cache.resolve())
    files = sample_files(args.cache)
    reference_text, reference_turns = read_stm(files["stm"]), read_rttm(files["rttm"])
    with tempfile.TemporaryDirectory(prefix="infra-quality-") as tmp:
        work = Path(tmp)
        (work / ".venv-ml").symlink_to(args.native_env.resolve())
        results = {m: measure(work, files["wav"], m, args.runs) for m in args.models}
    load = os.getloadavg()[0]
    print(f"pyannote.audio sample.wav ({next(iter(results.values()))['duration']:.1f} s, 2 speakers), native, "
          f"{args.runs} forced runs per model, medians; load average {load:.1f}\n")
    print("| model | language | WER | substitutions | deletions | insertions | reference words "
          "| CER | reference characters |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, r in results.items():
        errors = word_errors(reference_text, hypothesis_text(r["asr"]))
        chars = character_errors(reference_text, hypothesis_text(r["asr"]))
        print(f"| {model} | {r['asr']['language']} | {errors.wer:.1%} | {errors.substitutions} | {errors.deletions} | "
              f"{errors.insertions} | {errors.reference_words} | {chars.cer:.1%} | {chars.reference_chars} |")
    first = next(iter(results.values()))
    print(f"\n| diarization backend | speakers found | collar | DER | missed | false alarm | confusion |")
    print("|---|---|---|---|---|---|---|")
    for collar in (0.0, 0.25):
        d = diarization_errors(reference_turns, first["turns"], collar)
        print(f"| {first['diarization']['backend']} | {len(first['diarization']['speakers'])} | {collar:g} s | "
              f"{d.der:.1%} | {d.missed_s / d.reference_s:.1%} | {d.false_alarm_s / d.reference_s:.1%} | "
              f"{d.confusion_s / d.reference_s:.1%} |")
    print("\n| stage | model | work median | wall median | RTF (work) | RTF (wall) |")
    print("|---|---|---|---|---|---|")
    for model, r in results.items():
        for stage, times in r["stages"].items():
            work_s, wall_s = statistics.median(times["work"]), statistics.median(times["wall"])
            print(f"| {stage} | {model} | {work_s:.2f} s | {wall_s:.2f} s | {work_s / r['duration']:.3f} | "
                  f"{wall_s / r['duration']:.3f} |")
        total = statistics.median(r["totals"])
        print(f"| whole `infra job run` | {model} | | {total:.2f} s | | {total / r['duration']:.3f} |")
    for model, r in results.items():
        print(f"\n{model} heard: {hypothesis_text(r['asr'])}")


if __name__ == "__main__":
    main()
