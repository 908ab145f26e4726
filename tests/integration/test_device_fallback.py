"""A job asked for cuda on this machine, which has no GPU: the stages fail with the line that says why, and with
--allow-cpu-fallback the same run goes on on the CPU and every stage records the device it really used.

The workspace's hardware cache says the machine has an NVIDIA card with a CUDA torch (a cache is trusted while the
host's fingerprint holds, and it holds: the cache is the planning's only source), so `infra run` plans vad, asr and
diarize on cuda. Then the real stages meet the real libraries: CTranslate2 4.8.5 sees no CUDA device, and the native
environment's torch is a CPU build. Whisper tiny.en on the built-in sample, natively (tests/conftest.py makes the
environment, tests/integration/conftest.py fetches the model).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.hardware.cache import fingerprint, write_cache
from infra.hardware.snapshot import HardwareSnapshot, NvidiaInfo
from tests.hardware_data import gpu
from tests.integration.media_fixtures import detected  # noqa: F401

ASR_WHY = "ctranslate2 4.8.5 sees no CUDA device (get_cuda_device_count() is 0)"
TORCH_WHY = re.compile(r"torch\.cuda\.is_available\(\) is False: torch 2\.13\.0\+cpu is a CPU build "
                       r"\(torch\.version\.cuda is None\)")
FALLBACK_HINT = "run the job with --allow-cpu-fallback (infra run, infra job prepare) to let it use the CPU instead"


def claims_a_gpu(real: HardwareSnapshot) -> HardwareSnapshot:
    """This machine as detected, but with an RTX 4090 and a CUDA torch: what a cache written on a GPU host says."""
    card = gpu(25.77, "8.9", name="NVIDIA GeForce RTX 4090")
    env = real.native_env.model_copy(update={"present": True, "torch": "2.13.0+cu128", "torch_cuda": "12.8"})
    return real.model_copy(update={
        "nvidia": NvidiaInfo(source="nvml", driver_version="570.86.15", cuda_version="12.8", gpus=[card]),
        "native_env": env, "gpu_class": "cuda", "gpu_class_reason": "NVIDIA GeForce RTX 4090 (stand-in for the test)"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, ml_env: Path, model_cache: Path, detected) -> dict:  # noqa: F811
    root = tmp_path_factory.mktemp("ws")
    (root / ".venv-ml").symlink_to(ml_env)
    write_cache(root / "out" / "hardware_cache.json", claims_a_gpu(detected), fingerprint())
    env = {k: v for k, v in os.environ.items() if k != "INFRA_FILE"}
    env["INFRA_CACHE"] = str(model_cache)

    def infra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "infra", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)

    return {"root": root, "infra": infra}


def job_of(ws: dict, output: str) -> tuple[str, Path]:
    job_id = re.search(r"^job (\d{8}-\d{4}):", output, re.M).group(1)
    return job_id, ws["root"] / (ws["root"] / "jobs" / job_id).read_text().strip()


def records(job_dir: Path) -> dict[str, tuple[dict, dict]]:
    """Each stage's (result record's device_used, job.json entry)."""
    entries = {s["name"]: s for s in json.loads((job_dir / "job.json").read_text())["stages"]}
    return {name: (json.loads((job_dir / "results" / f"{name}.json").read_text())["device_used"], entry)
            for name, entry in entries.items() if (job_dir / "results" / f"{name}.json").is_file()}


def test_a_cuda_job_fails_with_the_reason_then_falls_back_when_allowed(ws: dict) -> None:
    args = ("run", "--sample", "--mode", "native", "--model", "tiny.en", "--language", "en", "--sequential")
    first = ws["infra"](*args)
    assert first.returncode == 2, first.stdout + first.stderr
    job_id, job_dir = job_of(ws, first.stdout + first.stderr)
    data = json.loads((job_dir / "job.json").read_text())
    assert data["config"]["allow_cpu_fallback"] is False
    assert {s["name"]: s["device"] for s in data["stages"]} == {
        "demux": "cpu", "vad": "cuda", "asr": "cuda", "diarize": "cuda", "subtitles": "cpu", "mux": "cpu"}
    line = f"error: stage asr failed: cannot run on cuda: {ASR_WHY}; {FALLBACK_HINT}"
    assert line in first.stderr.splitlines(), first.stderr
    done = records(job_dir)
    assert done["asr"][0] == done["asr"][1]["device_used"] == {"device": None, "requested": "cuda", "reason": ASR_WHY,
                                                               "fallback": False}
    assert done["vad"][0] == {"device": "cpu", "requested": "cuda", "fallback": False, "reason":
                              "Silero VAD runs in onnxruntime on the CPU (its CPU provider, as faster-whisper runs it)"}

    torch_stage = ws["infra"]("job", "run", job_id, "--stages", "diarize")
    assert torch_stage.returncode == 2
    [error] = [ln for ln in torch_stage.stderr.splitlines() if ln.startswith("error: ")]
    assert re.fullmatch(rf"error: stage diarize failed: cannot run on cuda: {TORCH_WHY.pattern}; "
                        rf"{re.escape(FALLBACK_HINT)}", error), error

    again = ws["infra"](*args, "--allow-cpu-fallback")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"job {job_id}: resumed" in again.stdout                 # the same job, now allowed the CPU
    assert json.loads((job_dir / "job.json").read_text())["config"]["allow_cpu_fallback"] is True
    assert f"warning: asr: ran on the CPU, not cuda: {ASR_WHY}" in again.stderr.splitlines()
    done = records(job_dir)
    assert set(done) == {"demux", "vad", "asr", "diarize", "subtitles", "mux"}
    for name, (record, entry) in done.items():
        assert record == entry["device_used"] and entry["status"] == "done", name
    assert done["asr"][0] == {"device": "cpu", "requested": "cuda", "reason": ASR_WHY, "fallback": True}
    assert done["diarize"][0]["device"] == "cpu" and done["diarize"][0]["fallback"] is True
    assert TORCH_WHY.fullmatch(done["diarize"][0]["reason"])
    assert done["mux"][0] == {"device": "cpu", "requested": "cpu", "fallback": False,
                              "reason": "stage mux has no GPU work: it runs on the CPU"}
    asr = json.loads((job_dir / "results" / "asr.json").read_text())["details"]
    assert (asr["device"], asr["compute_type"], asr["compute_type_requested"]) == ("cpu", "int8", "float16")
    assert asr["words"] > 30 and (job_dir / "subtitles.srt").stat().st_size > 0

    shown = ws["infra"]("job", "show", job_id)
    assert shown.returncode == 0
    assert re.search(r"^asr\s+done\s+cpu \(fallback from cuda\)", shown.stdout, re.M), shown.stdout
    assert re.search(r"^vad\s+done\s+cpu \(asked cuda\)", shown.stdout, re.M), shown.stdout


def test_job_prepare_records_the_permission(ws: dict, tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", str(tone)],
                   check=True)
    for flags, allowed in (((), False), (("--allow-cpu-fallback",), True)):
        prepared = ws["infra"]("job", "prepare", str(tone), "--model", "tiny.en", "--json", *flags)
        assert prepared.returncode == 0, prepared.stderr
        assert json.loads(prepared.stdout)["config"]["allow_cpu_fallback"] is allowed
