"""The ASR stage's settings that decide its bytes: numpy's BLAS on one thread, whatever the shell says."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

PIN = """
import os, sys
sys.path.insert(0, {repo!r})
if {numpy_first!r}:
    sys.modules["numpy"] = object()          # as if numpy were loaded already
import stages.asr as asr
print(asr.pin_blas_threads(), os.environ.get("OPENBLAS_NUM_THREADS"))
"""


def pinned(numpy_first: bool) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "3"}
    return subprocess.run([sys.executable, "-c", PIN.format(repo=str(REPO), numpy_first=numpy_first)], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_stage_gives_numpy_s_blas_one_thread_over_what_the_shell_set() -> None:
    assert pinned(numpy_first=False) == "1 1"


def test_too_late_to_pin_is_said_not_pretended() -> None:
    assert pinned(numpy_first=True) == "None 4"
