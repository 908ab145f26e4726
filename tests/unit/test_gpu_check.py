"""scripts/gpu-check.sh on this machine, which has no GPU: it says so and exits 3; what it needs and lacks (a Python,
nvidia-ml-py, infra's pydantic, wheels) is one line and exit 2; and its report for a GPU that NVML describes (an H200
answered by a stand-in NVML), with infra's real recommendation for it."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.hardware.cache import fingerprint
from infra.hardware.snapshot import NativeEnvInfo
from tests.conftest import REPO
from tests.hardware_data import FakeCard, FakeNVML

SCRIPT = REPO / "scripts" / "gpu-check.sh"
H200 = FakeCard("NVIDIA H200", 143771 / 1024, (9, 0))


def gpu_check_module() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_no_nvidia_gpu_is_said_in_one_line_and_exit_3(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    done = run_script("--python", sys.executable, "--json", str(report_file))
    report = json.loads(report_file.read_text())
    lines = done.stdout.splitlines()
    if fingerprint().gpu_count:                                       # a machine with a GPU: NVML must describe it
        assert lines[0].startswith("nvml            ok ") and done.returncode in (0, 1, 2), done.stdout
        return
    assert done.returncode == 3 and done.stderr == "", done.stderr
    assert lines == ["nvml            no-gpu   no NVIDIA GPU (NVML cannot start: NVMLError_LibraryNotFound: "
                     "NVML Shared Library Not Found)", "gpu-check: 1 no-gpu; exit 3"]
    assert report["exit_code"] == 3 and [c["status"] for c in report["checks"]] == ["no-gpu"]
    assert report["python"] == sys.executable

    as_json = run_script("--python", sys.executable, "--json", "-")
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["checks"][0]["status"] == "no-gpu"
    assert as_json.stderr.splitlines()[-1] == "gpu-check: 1 no-gpu; exit 3"


def test_what_is_missing_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_script("--python", str(tmp_path / "nowhere" / "python3"))
    assert (done.returncode, done.stderr) == (2, f"gpu-check: no Python 3.11 or newer at "
                                                 f"'{tmp_path / 'nowhere' / 'python3'}' (give one with --python PY)\n")

    (tmp_path / "empty").mkdir()
    done = run_script("--python", sys.executable, "--wheels", str(tmp_path / "empty"))
    assert (done.returncode, done.stderr) == (2, f"gpu-check: no wheels (*.whl) in {tmp_path / 'empty'}\n")

    bare = tmp_path / "bare"                   # a Python with nothing installed: no nvidia-ml-py, no pydantic
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = run_script("--python", str(bare / "bin" / "python"), env={"PYTHONPATH": ""})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (f"nvml            missing  nvidia-ml-py is not installed for "
                                           f"{bare / 'bin' / 'python'} (pip install nvidia-ml-py, or --wheels DIR)")

    nvml_only = tmp_path / "nvml-only"         # nvidia-ml-py, but not what infra's detection imports
    nvml_only.mkdir()
    import pynvml

    shutil.copy(pynvml.__file__, nvml_only / "pynvml.py")
    done = run_script("--python", str(bare / "bin" / "python"), env={"PYTHONPATH": str(nvml_only)})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[0] == (
        "nvml            missing  infra's detection cannot be imported (ModuleNotFoundError: No module named "
        "'pydantic'): infra needs pydantic and psutil (pip install pydantic psutil, or --wheels DIR)")


def test_the_report_for_a_gpu_that_nvml_describes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An H200 as NVML describes it (driver 580, CUDA 13.0) and this Python as an environment with a CUDA 13
    torch: infra's real recommendation for the card; the torch and faster-whisper checks run as child processes
    of this Python, which has neither (missing, exit 2)."""
    gpu_check = gpu_check_module()
    cuda_torch = NativeEnvInfo(path=sys.prefix, present=True, python="3.12.3", torch="2.11.0+cu130",
                               torch_cuda="13.0")
    monkeypatch.setattr(gpu_check, "this_environment", lambda: cuda_torch)
    lines: list[str] = []
    args = argparse.Namespace(model=str(tmp_path / "no-model"), clip=None, compute_type="float16", device="cuda",
                              timeout=120.0)
    report = gpu_check.run_checks(args, lines.append, nvml=FakeNVML([H200], driver="580.159.03", cuda=13000))
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["nvml", "recommendation", "torch", "faster-whisper"]

    nvml = checks["nvml"]
    assert nvml["status"] == "ok" and nvml["detail"] == ("NVIDIA H200, 150.8 GB, compute 9.0; driver 580.159.03, "
                                                         "CUDA 13.0")
    assert nvml["figures"]["gpus"][0]["torch_support"] == "full" and nvml["figures"]["source"] == "nvml"

    rec = checks["recommendation"]
    assert rec["status"] == "ok", rec
    assert (rec["figures"]["gpu_class"], rec["figures"]["whisper_model"], rec["figures"]["compute_type"],
            rec["figures"]["batch_size"]) == ("cuda", "large-v3", "float16", 32)
    assert rec["figures"]["devices"] == {"demux": "cpu", "vad": "cuda", "asr": "cuda", "diarize": "cuda",
                                         "subtitles": "cpu", "mux": "cpu"}
    assert rec["figures"]["mode"] in ("native", "docker-gpu")      # docker-gpu only with an engine that has GPUs

    assert checks["torch"]["status"] == "missing" and "torch is not installed for" in checks["torch"]["detail"]
    assert checks["faster-whisper"]["status"] == "missing"
    assert checks["faster-whisper"]["detail"].startswith(f"no CTranslate2 Whisper model in {tmp_path / 'no-model'}")
    assert gpu_check.exit_code(report) == 2
    assert lines[0].startswith("nvml            ok       NVIDIA H200")

    old_driver = gpu_check.run_checks(args, lines.append, nvml=FakeNVML([H200], cuda=12040))
    rec = {c["name"]: c for c in old_driver["checks"]}["recommendation"]
    assert rec["status"] == "failed" and "update the driver" in rec["detail"]
    assert gpu_check.exit_code(old_driver) == 1
