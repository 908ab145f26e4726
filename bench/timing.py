"""Shared helpers for the benchmarks: repeated whole-process timings, medians, a table."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def time_process(cmd: Sequence[str], runs: int, cwd: Path | None = None, warmup: int = 2,
                 env: dict[str, str] | None = None) -> list[float]:
    """Wall seconds of ``runs`` executions of ``cmd`` (after ``warmup`` untimed ones); fails loudly."""
    for _ in range(warmup):
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def print_table(rows: list[tuple[str, list[float], float | None]], baseline: list[float] | None = None) -> None:
    """One row per measurement: median, spread, the goal, and the ratio to the baseline's median."""
    base = statistics.median(baseline) if baseline else None
    print(f"{'measurement':42} {'median':>9} {'min':>9} {'max':>9} {'goal':>8} {'x baseline':>11}")
    for name, samples, goal in rows:
        med = statistics.median(samples)
        ratio = f"{med / base:10.2f}x" if base else ""
        goal_text = f"<{goal:.2f}s" if goal else ""
        verdict = "" if goal is None else ("  ok" if med < goal else "  MISSED")
        print(f"{name:42} {med:8.3f}s {min(samples):8.3f}s {max(samples):8.3f}s {goal_text:>8} {ratio:>11}{verdict}")
