"""The device a stage really runs on (stages/_device.py): the one asked for, one line saying why not, or the CPU
recorded as a fallback when the job allows it. torch and CTranslate2 are stand-ins here (modules in sys.modules that
answer as a CPU build, a CUDA build without a driver, or a machine with one GPU): this machine has no GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import stages.asr
from stages._device import (DeviceUnavailable, choose, cpu_only, ctranslate2_problem, cuda_failure, torch_device,
                            torch_problem, torch_works_on)
from stages._jobio import StageContext, run_stage

LIBCUBLAS = "Library libcublas.so.12 is not found or cannot be loaded"


def fake_torch(cuda: str | None = None, available: bool = False, init_error: str | None = None,
               mps: bool = False) -> Any:
    """torch as a CPU build (cuda None), or a CUDA build whose cuda.init() fails with ``init_error``."""
    def init() -> None:
        if init_error:
            raise RuntimeError(init_error)

    return SimpleNamespace(
        __version__=f"2.13.0+{'cu' + cuda.replace('.', '') if cuda else 'cpu'}",
        version=SimpleNamespace(cuda=cuda),
        cuda=SimpleNamespace(is_available=lambda: available, init=init, device_count=lambda: int(available),
                             get_device_name=lambda i: "NVIDIA H200"),
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
        device=lambda name: f"device({name})")


def fake_ctranslate2(count: int | Exception = 0) -> Any:
    def get_cuda_device_count() -> int:
        if isinstance(count, Exception):
            raise count
        return count

    return SimpleNamespace(__version__="4.8.5", get_cuda_device_count=get_cuda_device_count,
                           get_supported_compute_types=lambda device: {"int8", "int8_float32", "float32", "int16"})


def context(device: str = "cuda", fallback: bool = False, name: str = "diarize") -> StageContext:
    return StageContext(name, Path("/nonexistent"), {"config": {"allow_cpu_fallback": fallback},
                                                     "stages": [{"name": name, "device": device}]})


def test_a_cpu_build_of_torch_cannot_run_a_cuda_stage_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    ctx = context()
    with pytest.raises(DeviceUnavailable) as caught:
        choose(ctx, torch_problem, torch_works_on)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert str(caught.value) == ("cannot run on cuda: torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU "
                                 "build (torch.version.cuda is None); run the job with --allow-cpu-fallback "
                                 "(infra run, infra job prepare) to let it use the CPU instead")
    assert ctx.device_used == {"device": None, "requested": "cuda", "fallback": False,
                               "reason": "torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU build "
                                         "(torch.version.cuda is None)"}


def test_a_cuda_build_without_a_driver_says_what_torch_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch("12.8", init_error="Found no NVIDIA driver on your system."))
    assert torch_problem("cuda") == ("torch.cuda.is_available() is False: torch 2.13.0+cu128 is built for CUDA 12.8, "
                                     "but RuntimeError: Found no NVIDIA driver on your system.")


def test_the_job_may_allow_the_cpu_and_then_the_record_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    ctx = context(fallback=True)
    assert torch_device(ctx) == "device(cpu)"
    assert ctx.device_used is not None
    assert (ctx.device_used["device"], ctx.device_used["requested"], ctx.device_used["fallback"]) == \
        ("cpu", "cuda", True)
    assert ctx.device_used["reason"].startswith("torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU build")


def test_a_usable_gpu_is_used_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch("13.0", available=True))
    ctx = context(fallback=True)                            # allowed, but not needed
    assert torch_device(ctx) == "device(cuda)"
    assert ctx.device_used == {"device": "cuda", "requested": "cuda", "fallback": False,
                               "reason": "torch 2.13.0+cu130 (CUDA 13.0) sees NVIDIA H200"}


def test_the_cpu_asked_for_is_the_cpu_and_mps_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    ctx = context("cpu")
    assert torch_device(ctx) == "device(cpu)"
    assert ctx.device_used == {"device": "cpu", "requested": "cpu", "fallback": False,
                               "reason": "the job asks for the CPU"}
    with pytest.raises(DeviceUnavailable, match=r"cannot run on mps: torch.backends.mps.is_available\(\) is False"):
        torch_device(context("mps"))


@pytest.mark.parametrize(("count", "why"), [
    (0, "ctranslate2 4.8.5 sees no CUDA device (get_cuda_device_count() is 0)"),
    (RuntimeError("CUDA failed with error CUDA driver version is insufficient for CUDA runtime version"),
     "ctranslate2 4.8.5 cannot ask CUDA for devices (RuntimeError: CUDA failed with error CUDA driver version is "
     "insufficient for CUDA runtime version)"),
    (1, None),
])
def test_ctranslate2_without_a_cuda_device(monkeypatch: pytest.MonkeyPatch, count: Any, why: str | None) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", fake_ctranslate2(count))
    assert ctranslate2_problem("cuda") == why
    assert ctranslate2_problem("mps") == "ctranslate2 4.8.5 has no mps backend (only cuda and cpu)"


def test_cuda_failures_are_told_from_other_failures() -> None:
    assert cuda_failure(RuntimeError(LIBCUBLAS))
    assert cuda_failure(RuntimeError("CUDA failed with error out of memory"))
    assert cuda_failure(OSError("libcudnn_ops.so.9: cannot open shared object file: No such file or directory"))
    assert not cuda_failure(RuntimeError("Unable to open file 'model.bin' in model '/cache/whisper/tiny.en'"))
    assert not cuda_failure(KeyError("libcublas.so.12"))


def encoder_without_cublas(model: Any) -> None:
    """The warm-up where CTranslate2 cannot load cuBLAS: the model loads, and its first matrix product fails."""
    raise RuntimeError(LIBCUBLAS)


@pytest.mark.parametrize("fallback", [False, True])
def test_asr_finds_a_missing_cuda_library_before_any_span(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", fake_ctranslate2(1))
    monkeypatch.setattr(stages.asr, "open_model", lambda folder, device, compute_type: object())
    monkeypatch.setattr(stages.asr, "warm_up", encoder_without_cublas)
    ctx = context(fallback=fallback, name="asr")
    chosen = choose(ctx, ctranslate2_problem, stages.asr.ctranslate2_works)
    assert chosen.device == "cuda" and chosen.reason == "ctranslate2 4.8.5 sees 1 CUDA device(s)"
    if not fallback:
        with pytest.raises(DeviceUnavailable, match=r"^cannot run on cuda: ctranslate2 .* failed on cuda "
                                                     r"\(RuntimeError: Library libcublas\.so\.12 is not found"):
            stages.asr.cuda_model(ctx, Path("/m"), "float16", chosen)
        return
    model, used = stages.asr.cuda_model(ctx, Path("/m"), "float16", chosen)
    assert model is None and (used.device, used.fallback) == ("cpu", True) and LIBCUBLAS in used.reason
    assert ctx.device_used == used.as_dict()
    assert stages.asr.cpu_compute_type("float16") == "int8"          # no float16 kernels on the CPU
    assert stages.asr.cpu_compute_type("int8_float32") == "int8_float32"


def test_a_model_that_does_not_load_is_not_a_device_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(folder: Path, device: str, compute_type: str) -> Any:
        raise RuntimeError("Unable to open file 'model.bin' in model '/m'")

    monkeypatch.setitem(sys.modules, "ctranslate2", fake_ctranslate2(1))
    monkeypatch.setattr(stages.asr, "open_model", broken)
    ctx = context(fallback=True, name="asr")
    chosen = choose(ctx, ctranslate2_problem, stages.asr.ctranslate2_works)
    with pytest.raises(stages.asr.StageError) as caught:
        stages.asr.cuda_model(ctx, Path("/m"), "float16", chosen)
    assert caught.value.exit_code == 1 and "cannot load the Whisper model from /m on cuda" in str(caught.value)


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    stages_ = [{"name": n, "device": d, "status": "pending"}
               for n, d in (("x", "cpu"), ("gpu", "cuda"), ("vad", "cuda"))]
    (tmp_path / "job.json").write_text(json.dumps({"id": "j1", "config": {}, "stages": stages_}))
    return tmp_path


def records(job_dir: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    entry = next(s for s in json.loads((job_dir / "job.json").read_text())["stages"] if s["name"] == name)
    return json.loads((job_dir / "results" / f"{name}.json").read_text()), entry


def test_every_result_record_says_the_device_used(job_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run_stage("x", lambda ctx: None, [str(job_dir)]) == 0          # no GPU work: the CPU, said so
    record, entry = records(job_dir, "x")
    assert record["device_used"] == entry["device_used"] == {
        "device": "cpu", "requested": "cpu", "reason": "stage x has no GPU work: it runs on the CPU", "fallback": False}

    assert run_stage("vad", lambda ctx: cpu_only(ctx, "Silero runs on the CPU"), [str(job_dir)]) == 0
    assert records(job_dir, "vad")[0]["device_used"] == {"device": "cpu", "requested": "cuda",
                                                         "reason": "Silero runs on the CPU", "fallback": False}

    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    capsys.readouterr()
    assert run_stage("gpu", torch_device, [str(job_dir)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == ["gpu: cannot run on cuda: torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU build "
                   "(torch.version.cuda is None); run the job with --allow-cpu-fallback (infra run, infra job "
                   "prepare) to let it use the CPU instead"]
    record, entry = records(job_dir, "gpu")
    assert record["status"] == entry["status"] == "failed"
    assert record["device_used"] == entry["device_used"] and entry["device_used"]["device"] is None

    data = json.loads((job_dir / "job.json").read_text())
    data["config"]["allow_cpu_fallback"] = True
    (job_dir / "job.json").write_text(json.dumps(data))
    assert run_stage("gpu", torch_device, [str(job_dir)]) == 0
    record, entry = records(job_dir, "gpu")
    assert record["device_used"] == entry["device_used"]
    assert (entry["device_used"]["device"], entry["device_used"]["fallback"]) == ("cpu", True)


def test_the_job_options_carry_the_permission() -> None:
    from infra.cli.options import job_request

    args = (Path("film.mkv"), None, None, "subtitles", None, None, None, "transcribe", None, "someone")
    assert job_request(*args).request.allow_cpu_fallback is False
    assert job_request(*args, allow_cpu_fallback=True).request.allow_cpu_fallback is True
