"""The device a stage really runs on, and why: a stage never falls back to the CPU without saying so.

A stage's entry in job.json names the device asked for (``device``: cuda, mps or
cpu, from the recommendation when the job was prepared). A stage that cannot use
it (torch.cuda is not available, CTranslate2 sees no CUDA device, a CUDA library
fails to load) fails with one line saying why, exit 2: this machine cannot do what
the job asks. Only when the job allows it (job.json ``config.allow_cpu_fallback``,
from ``--allow-cpu-fallback``) does it run on the CPU instead.

Either way the stage's result record (results/<stage>.json) and its job.json entry
carry ``device_used``::

    {"device": "cpu", "requested": "cuda", "fallback": true,
     "reason": "torch.cuda.is_available() is False: torch 2.13.0+cpu is a CPU build (torch.version.cuda is None)"}

``device`` is null when the stage failed because it could not use the device asked for.
A stage with no GPU work (demux, subtitles, mux) records the CPU with that reason.

Standard library only at import: torch and ctranslate2 are imported by the checks that need them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from stages._jobio import StageContext, StageInputError

FALLBACK_KEY = "allow_cpu_fallback"       # job.json config
FALLBACK_HINT = "run the job with --allow-cpu-fallback (infra run, infra job prepare) to let it use the CPU instead"
CPU_COMPUTE_TYPE = "int8"                 # CTranslate2 on the CPU when the job's type has no CPU kernels (float16)
# What CTranslate2 says when CUDA itself fails, as opposed to the model or the input.
CUDA_FAILURE = re.compile(r"lib[\w+-]+\.so|\bCUDA\b|cuBLAS|cuDNN|CUBLAS|CUDNN|no kernel image", re.IGNORECASE)


@dataclass(frozen=True)
class DeviceUsed:
    device: str | None        # None: the stage could not run on the device asked for
    requested: str
    reason: str
    fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DeviceUnavailable(StageInputError):
    """The job asks for a device this machine cannot give the stage, and does not allow the CPU instead."""

    def __init__(self, requested: str, why: str) -> None:
        super().__init__(f"cannot run on {requested}: {why}; {FALLBACK_HINT}")
        self.used = DeviceUsed(None, requested, why)


def allows_fallback(ctx: StageContext) -> bool:
    return bool(ctx.config.get(FALLBACK_KEY))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


def torch_problem(device: str) -> str | None:
    """Why torch cannot run on ``device`` (cuda or mps), or None when it can."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a torch that cannot load (a CUDA library missing) is the reason
        return f"torch cannot be imported ({first_line(exc)})"
    if device == "cuda":
        if torch.cuda.is_available():
            return None
        if torch.version.cuda is None:
            why = f"torch {torch.__version__} is a CPU build (torch.version.cuda is None)"
        else:
            why = f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but {cuda_init_error(torch)}"
        return f"torch.cuda.is_available() is False: {why}"
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return None
        return f"torch.backends.mps.is_available() is False (torch {torch.__version__})"
    return f"torch has no device {device!r}"


def cuda_init_error(torch: Any) -> str:
    """What torch says when it starts CUDA (no driver, no device, a driver too old), in a few words."""
    try:
        torch.cuda.init()
    except Exception as exc:  # noqa: BLE001 - its message is the reason
        return first_line(exc)
    return f"it sees {torch.cuda.device_count()} CUDA devices"


def torch_works_on(device: str) -> str:
    """Why a torch stage can use ``device`` (it can), for the record."""
    import torch

    if device == "cuda":
        return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees "
                f"{torch.cuda.get_device_name(0)}")
    return f"torch {torch.__version__} with {device}"


def ctranslate2_problem(device: str) -> str | None:
    """Why CTranslate2 cannot run on ``device``, or None when it can (its CUDA libraries load only at first use:
    see ``cuda_failure``)."""
    try:
        import ctranslate2
    except Exception as exc:  # noqa: BLE001
        return f"ctranslate2 cannot be imported ({first_line(exc)})"
    if device != "cuda":
        return f"ctranslate2 {ctranslate2.__version__} has no {device} backend (only cuda and cpu)"
    try:
        count = ctranslate2.get_cuda_device_count()
    except Exception as exc:  # noqa: BLE001
        return f"ctranslate2 {ctranslate2.__version__} cannot ask CUDA for devices ({first_line(exc)})"
    if count < 1:
        return f"ctranslate2 {ctranslate2.__version__} sees no CUDA device (get_cuda_device_count() is 0)"
    return None


def cuda_failure(exc: BaseException) -> bool:
    """Whether an error raised on cuda is CUDA's own (a library that does not load, a driver error)."""
    return isinstance(exc, (RuntimeError, OSError, ValueError)) and bool(CUDA_FAILURE.search(str(exc)))


def choose(ctx: StageContext, problem: Callable[[str], str | None], works: Callable[[str], str]) -> DeviceUsed:
    """The device for this stage: the one asked for when ``problem`` finds none, else the CPU when the job
    allows it, else DeviceUnavailable. Recorded in ``ctx.device_used``."""
    requested = ctx.device
    if requested == "cpu":
        used = DeviceUsed("cpu", "cpu", "the job asks for the CPU")
    else:
        why = problem(requested)
        if why is None:
            used = DeviceUsed(requested, requested, works(requested))
        else:
            used = fall_back(ctx, requested, why)
    ctx.device_used = used.as_dict()
    return used


def fall_back(ctx: StageContext, requested: str, why: str) -> DeviceUsed:
    """The CPU, recorded as a fallback, when the job allows it; else DeviceUnavailable (recorded too)."""
    if not allows_fallback(ctx):
        error = DeviceUnavailable(requested, why)
        ctx.device_used = error.used.as_dict()
        raise error
    used = DeviceUsed("cpu", requested, why, fallback=True)
    ctx.device_used = used.as_dict()
    return used


def cpu_only(ctx: StageContext, why: str) -> DeviceUsed:
    """A backend that runs on the CPU whatever the job asks (Silero in onnxruntime): recorded, not a fallback."""
    used = DeviceUsed("cpu", ctx.device, why)
    ctx.device_used = used.as_dict()
    return used


def torch_device(ctx: StageContext) -> Any:
    """The torch device for this stage (see ``choose``)."""
    import torch

    return torch.device(choose(ctx, torch_problem, torch_works_on).device)
