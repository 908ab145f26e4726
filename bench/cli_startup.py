"""Start-up of the CLI as whole processes: `infra --help` and `infra config validate`.

Goal (issue: foundation): each under 0.3 s on the 2-core test machine. The
baseline is a bare `python -c pass` from the same interpreter, measured in the
same run, so the ratio says how much infra adds to Python's own start-up.

Usage: .venv/bin/python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import print_table, time_process  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    infra = shutil.which("infra", path=str(Path(sys.executable).parent)) or "infra"
    with tempfile.TemporaryDirectory() as tmp:  # outside the repo: the built-in spec is used
        baseline = time_process([sys.executable, "-c", "pass"], args.runs, cwd=Path(tmp))
        rows = [
            ("python -c pass (baseline)", baseline, None),
            ("infra --help", time_process([infra, "--help"], args.runs, cwd=Path(tmp)), 0.3),
            ("infra config validate", time_process([infra, "config", "validate"], args.runs, cwd=Path(tmp)), 0.3),
        ]
    print(f"{args.runs} runs each, {sys.executable}")
    print_table(rows, baseline)


if __name__ == "__main__":
    main()
