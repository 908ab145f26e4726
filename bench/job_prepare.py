"""Job preparation and hardware detection as whole processes, on a 30 s clip.

Goals (issue: hardware, bootstrap and jobs), on the 2-core test machine:
`infra job prepare` with a warm hardware cache under 0.3 s and at least 15 times
faster than the old scripts' 5 s best case; `infra hw detect` from the cache
under 0.1 s; a fresh detection (`--refresh`) under 1.5 s. Baselines measured in
the same run: a bare `python -c pass`, the one ffprobe call that prepare makes,
and `infra config validate` (the CLI's own start-up plus loading the spec).

Usage: .venv/bin/python bench/job_prepare.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table, time_interleaved  # noqa: E402

OLD_BEST_CASE_S = 5.0  # the shell scripts' prepare-job.sh, best case (issue text)
CLIP_S = 30


def make_clip(path: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "color=c=black:s=320x180:r=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(CLIP_S),
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    infra = shutil.which("infra", path=str(Path(sys.executable).parent)) or "infra"
    with tempfile.TemporaryDirectory() as tmp:  # outside the repo: the built-in spec, workspace = tmp
        cwd = Path(tmp)
        clip = cwd / "clip.mp4"
        make_clip(clip)
        subprocess.run([infra, "hw", "detect", "--refresh"], cwd=cwd, check=True, capture_output=True)  # warm cache
        ffprobe = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(clip)]
        commands = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"], None),
            ("ffprobe on the clip (baseline)", ffprobe, None),
            ("infra config validate (baseline)", [infra, "config", "validate"], None),
            ("infra job prepare, 30 s clip, warm cache", [infra, "job", "prepare", str(clip)], 0.3),
            ("infra hw detect, from the cache", [infra, "hw", "detect"], 0.1),
            ("infra hw detect --json, from the cache", [infra, "hw", "detect", "--json"], 0.1),
            ("infra hw detect --refresh (fresh detection)", [infra, "hw", "detect", "--refresh"], 1.5),
        ]
        load_before = os.getloadavg()[0]
        samples = time_interleaved([cmd for _, cmd, _ in commands], args.runs, cwd=cwd)
        load_after = os.getloadavg()[0]
    rows = [(name, s, goal) for (name, _, goal), s in zip(commands, samples)]
    print(f"{args.runs} runs each, interleaved, {sys.executable}; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print_table(rows, rows[0][1])
    prepare = samples[3]
    speedup = OLD_BEST_CASE_S / statistics.median(prepare)
    print(f"job prepare vs the old {OLD_BEST_CASE_S:.0f} s best case: {speedup:.1f}x faster (goal: at least 15x)"
          + ("  ok" if speedup >= 15 else "  MISSED"))


if __name__ == "__main__":
    main()
