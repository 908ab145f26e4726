"""The same job natively and in docker-cpu: each stage's wall time and real-time factor, and the whole run.

Goals (issue: pipeline): ASR in its container within 5% of native; the whole run in docker-cpu within
1.5x native. The job is pyannote.audio's 30 s sample.wav (fetched as bench/quality.py does), Whisper base,
int8, language en. Runs alternate native and docker-cpu, each a forced rerun of every stage.

Usage: INFRA_CA_BUNDLE=... .venv/bin/python bench/modes.py [--runs 5] [--model base]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import sample_files  # noqa: E402
from timing import print_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INFRA = [sys.executable, "-m", "infra"]
STAGES = ("demux", "vad", "asr", "diarize", "subtitles", "mux")


def infra(*args: str, cwd: Path) -> str:
    proc = subprocess.run([*INFRA, *args], cwd=cwd, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        sys.exit(f"infra {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="base")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "infra" / "bench")
    args = parser.parse_args()
    files = sample_files(args.cache)
    with tempfile.TemporaryDirectory(prefix="infra-modes-") as tmp:
        work = Path(tmp)
        (work / ".venv-ml").symlink_to(REPO / ".venv-ml")
        infra("bootstrap", "--model", f"whisper/{args.model}", cwd=work)
        infra("build", "--mode", "docker-cpu", cwd=work)
        job = json.loads(infra("job", "prepare", str(files["wav"]), "--model", args.model, "--language", "en",
                               "--json", cwd=work))
        job_dir = work / job["dir"]
        duration = job["input"]["duration_s"]
        walls: dict[str, dict[str, list[float]]] = {m: {s: [] for s in STAGES} for m in ("native", "docker-cpu")}
        totals: dict[str, list[float]] = {"native": [], "docker-cpu": []}
        srt: dict[str, str] = {}
        for mode in ("native", "docker-cpu"):            # a first untimed run each: caches (numba, page cache)
            infra("job", "run", job["id"], "--mode", mode, "--force", cwd=work)
        for _ in range(args.runs):
            for mode in ("native", "docker-cpu"):
                start = time.perf_counter()
                infra("job", "run", job["id"], "--mode", mode, "--force", cwd=work)
                totals[mode].append(time.perf_counter() - start)
                data = json.loads((job_dir / "job.json").read_text())
                for stage in data["stages"]:
                    walls[mode][stage["name"]].append(stage["wall_s"])
                srt[mode] = (job_dir / "subtitles.srt").read_text()
    print(f"pyannote sample.wav ({duration:.1f} s), Whisper {args.model} int8, {args.runs} runs each, medians; "
          f"RTF = wall seconds / audio seconds")
    rows = []
    for stage in STAGES:
        rows.append((f"{stage}, native (baseline)", walls["native"][stage], None, None))
        rows.append((f"{stage}, docker-cpu", walls["docker-cpu"][stage], None, walls["native"][stage]))
    rows.append(("whole job run, native (baseline)", totals["native"], None, None))
    rows.append(("whole job run, docker-cpu", totals["docker-cpu"], None, totals["native"]))
    print_table(rows)
    for stage in STAGES:
        n, d = statistics.median(walls["native"][stage]), statistics.median(walls["docker-cpu"][stage])
        print(f"RTF {stage:10} native {n / duration:.3f}  docker-cpu {d / duration:.3f}")
    print("same subtitles natively and in docker-cpu:", srt["native"] == srt["docker-cpu"])


if __name__ == "__main__":
    main()
