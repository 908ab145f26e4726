"""`infra render` of all three modes as whole processes.

Goal (issue: render): rendering all three modes under 0.5 s on the 2-core test
machine. Baseline: a bare `python -c pass` from the same interpreter, in the
same run; `infra config validate` is shown too, since render loads and
validates the same spec first, so the difference between the two is the
rendering itself. Runs in a temporary copy of the project, so the repository's
.infra/out is not touched.

Usage: .venv/bin/python bench/render.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table, time_process  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    infra = shutil.which("infra", path=str(Path(sys.executable).parent)) or "infra"
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copy(REPO / "infra.yaml", project / "infra.yaml")
        shutil.copytree(REPO / "images", project / "images")
        commands = [
            ("python -c pass (baseline)", [sys.executable, "-c", "pass"], None),
            ("infra config validate", [infra, "config", "validate"], None),
            # sh and rm add a few milliseconds to this row
            ("infra render, empty output folder", ["sh", "-c", f"rm -rf .infra && exec {infra} render"], 0.5),
            ("infra render, nothing changed", [infra, "render"], 0.5),
            ("infra render --check", [infra, "render", "--check"], 0.5),
        ]
        for _, cmd, _ in commands:  # warm the file cache and the .pyc files
            time_process(cmd, 0, cwd=project, warmup=2)
        samples: list[list[float]] = [[] for _ in commands]
        for _ in range(args.runs):  # interleaved, so that load from other work hits every row alike
            for i, (_, cmd, _) in enumerate(commands):
                samples[i] += time_process(cmd, 1, cwd=project, warmup=0)
        files = sum(1 for p in (project / ".infra" / "out").rglob("*") if p.is_file())
    rows = [(name, s, goal) for (name, _, goal), s in zip(commands, samples)]
    print(f"{args.runs} runs each, interleaved, {sys.executable}; {files} files rendered per run")
    print_table(rows, rows[0][1])


if __name__ == "__main__":
    main()
