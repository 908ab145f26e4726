"""The running stack: torch from the mounted native env in a stage container versus natively, and `infra up`.

Goals (issue: stack): a stage container that imports torch from the mounted environment within 1.2x
of the same import natively; `infra up` of the docker-cpu stack, everything built, under 5 s.
Runs against the repository's own spec (images built, .venv-ml present).
Usage: .venv/bin/python bench/stack.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table, time_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INFRA = [sys.executable, "-m", "infra"]
IMPORT = "import torch, faster_whisper"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = dict(os.environ)
    site = next((REPO / ".venv-ml" / "lib").glob("python3.*/site-packages"))
    native = time_process([str(REPO / ".venv-ml" / "bin" / "python"), "-c", IMPORT], args.runs, cwd=REPO)
    run = ["docker", "run", "--rm", "--network", "none", "-v", f"{site}:/opt/infra/native-site:ro",
           "speech-asr:latest-cpu", "python3", "-c", IMPORT]
    container = time_process(run, args.runs, cwd=REPO)
    empty = time_process(["docker", "run", "--rm", "--network", "none", "speech-asr:latest-cpu", "true"], args.runs)

    def timed(cmd: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    timed([*INFRA, "up", "--mode", "docker-cpu"])          # images current, env checked, facts cached
    already = [timed([*INFRA, "up", "--mode", "docker-cpu"]) for _ in range(args.runs)]
    cold = []
    for _ in range(max(3, args.runs // 2)):
        timed([*INFRA, "down", "--mode", "docker-cpu"])
        cold.append(timed([*INFRA, "up", "--mode", "docker-cpu"]))
    timed([*INFRA, "down", "--mode", "docker-cpu"])
    print(f"{args.runs} runs, medians; `{IMPORT}`")
    print_table([
        ("native import (baseline)", native, None, None),
        ("stage container start + import from the mount", container, None, native),
        ("stage container start alone (`true`)", empty, None, native),
        ("infra up, stack down before (6 workers)", cold, 5.0, None),
        ("infra up, stack already up", already, 5.0, None),
    ])


if __name__ == "__main__":
    main()
