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


def print_table(rows: list[tuple], baseline: list[float] | None = None) -> None:
    """One row per measurement: median, spread, the goal, and the ratio to a baseline's median.

    A row is (name, samples, goal) measured against ``baseline``, or
    (name, samples, goal, own_baseline) to compare it with a baseline of its own.
    """
    print(f"{'measurement':48} {'median':>9} {'min':>9} {'max':>9} {'goal':>8} {'x baseline':>11}")
    for row in rows:
        name, samples, goal = row[:3]
        reference = row[3] if len(row) > 3 else baseline
        base = statistics.median(reference) if reference else None
        med = statistics.median(samples)
        ratio = f"{med / base:10.2f}x" if base else ""
        goal_text = f"<{goal:.2f}s" if goal else ""
        verdict = "" if goal is None else ("  ok" if med < goal else "  MISSED")
        print(f"{name:48} {med:8.3f}s {min(samples):8.3f}s {max(samples):8.3f}s {goal_text:>8} {ratio:>11}{verdict}")


def time_interleaved(cmds: Sequence[Sequence[str]], runs: int, cwd: Path | None = None) -> list[list[float]]:
    """``runs`` rounds, each running every command once, so load from other work falls on all of them alike."""
    for cmd in cmds:  # warm the file cache and the .pyc files
        time_process(cmd, 0, cwd=cwd, warmup=2)
    samples: list[list[float]] = [[] for _ in cmds]
    for _ in range(runs):
        for i, cmd in enumerate(cmds):
            samples[i] += time_process(cmd, 1, cwd=cwd, warmup=0)
    return samples
