"""Stage runners: how one stage program runs on one job, natively or in its stage image.

The pipeline hands a runner a ``StageCall`` (the stage, its command from the
spec, the job directory, its log file and the environment it needs) and gets an
exit code back; everything else (order, resume, job.json) is the pipeline's.
The container runner (infra/jobs/containers.py) runs the same command with
``docker run`` of the stage's image, the workspace and the native environment
mounted.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infra.errors import BadInputError
from infra.resources import stage_search_path

PYTHON_NAMES = frozenset({"python", "python3"})
STOP_WAIT_S = 10


@dataclass(frozen=True)
class StageCall:
    stage: str
    command: tuple[str, ...]          # the spec's command, e.g. (python3, -m, stages.asr); the job dir is appended
    job_dir: Path
    log: Path                         # the runner appends the stage's stdout and stderr here
    image: str
    device: str
    env: dict[str, str] = field(default_factory=dict)


class StageRunner(Protocol):
    name: str

    def check(self) -> None:
        """Raise BadInputError when this runner cannot run stages at all (before any stage starts)."""

    def run(self, call: StageCall) -> int:
        """Run the stage to its end; returns its exit code (negative: killed by that signal)."""

    def stop(self, call: StageCall) -> None:
        """Stop the stage that ``run`` is running for ``call`` (from another thread); its ``run`` then returns."""


class NativeRunner:
    """Each stage as a subprocess of the native environment's Python, with infra's stages package on its path."""

    name = "native"

    def __init__(self, env_path: Path) -> None:
        self.env_path = env_path
        self.python = env_path / "bin" / "python"
        self.procs: dict[str, subprocess.Popen[Any]] = {}

    def check(self) -> None:
        from infra.stack.nativeenv import CREATE_HINT

        if not self.python.exists():
            raise BadInputError(f"native environment {self.env_path} not found (no bin/python)",
                                hint=f"{CREATE_HINT}, or set native_env.path in the spec")

    def command(self, call: StageCall) -> list[str]:
        first, *rest = call.command
        return [str(self.python) if first in PYTHON_NAMES else first, *rest, str(call.job_dir)]

    def environment(self, call: StageCall) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(call.env)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in stage_search_path())
        env["PYTHONUNBUFFERED"] = "1"
        if call.device.startswith("cuda"):
            folders = self.library_path()
            if folders:
                env["LD_LIBRARY_PATH"] = os.pathsep.join([folders, *filter(None, [env.get("LD_LIBRARY_PATH")])])
        return env

    def library_path(self) -> str:
        """The env's NVIDIA library folders (site-packages/nvidia/*/lib that exist): a stage on CUDA loads its
        CUDA libraries from there (ctranslate2 finds libcublas only on the path)."""
        from infra.render.paths import library_path, nvidia_library_dirs

        site = next(iter(sorted((self.env_path / "lib").glob("python3.*/site-packages"))), None)
        return library_path(str(site), nvidia_library_dirs(site)) if site is not None else ""

    def run(self, call: StageCall) -> int:
        with open(call.log, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(self.command(call), cwd=call.job_dir, env=self.environment(call),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.procs[call.stage] = proc
            try:
                return proc.wait()
            except BaseException:                # Ctrl-C or a kill of infra: stop the stage too
                stop(proc)
                raise
            finally:
                self.procs.pop(call.stage, None)

    def stop(self, call: StageCall) -> None:
        proc = self.procs.get(call.stage)
        if proc is not None and proc.poll() is None:
            stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the stage's process group, then SIGKILL it if it has not ended after STOP_WAIT_S."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
