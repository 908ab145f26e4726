"""Stage programs run natively in the ML environment, as the native runner runs them, on a job directory of
two stages (vad, asr) made here: what the long-audio and language tests share."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO


def new_job(job_dir: Path, audio: Path, span_s: float, model: str = "tiny.en", language: str | None = None,
            task: str = "transcribe") -> Path:
    """A job directory with audio.wav and a job.json of two stages, vad and asr (with no language, the stage
    detects it, so a resumed run takes it from the first span's checkpoint)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(audio, job_dir / "audio.wav")
    config = {"language": language, "task": task, "whisper_model": model, "compute_type": "int8", "batch_size": 1,
              "chunk_length_s": 30, "span_s": span_s}
    stages = [{"name": "vad", "after": [], "device": "cpu", "status": "pending"},
              {"name": "asr", "after": ["vad"], "device": "cpu", "status": "pending"}]
    (job_dir / "job.json").write_text(json.dumps({"schema": 1, "id": job_dir.name, "status": "prepared",
                                                  "input": {"file": "audio.wav"}, "config": config,
                                                  "stages": stages}))
    return job_dir


class Stages:
    """Runs a stage program natively in the ML environment (``nice``: at a lower priority)."""

    def __init__(self, ml_env: Path, model_cache: Path, nice: bool = False) -> None:
        self.python = str(ml_env / "bin" / "python")
        self.nice = nice
        self.env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
                    "PYTHONPATH": str(REPO), "INFRA_CACHE": str(model_cache), "PYTHONUNBUFFERED": "1"}

    def command(self, name: str, job_dir: Path) -> list[str]:
        return [*(["nice", "-n", "10"] if self.nice else []), self.python, "-m", f"stages.{name}", str(job_dir)]

    def start(self, name: str, job_dir: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(name, job_dir), cwd=job_dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, name: str, job_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(name, job_dir), check=False, cwd=job_dir, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
