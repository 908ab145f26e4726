"""The checks behind scripts/gpu-check.sh, for a machine with an NVIDIA GPU and no Docker (docs/HARDWARE.md).

In the Python whose torch and faster-whisper the stages would use, with infra and the stages importable from the
tree (PYTHONPATH, which the shell script sets):

1. nvml: infra's own detection (infra/hardware/detect.py) through real NVML (nvidia-ml-py): driver, the CUDA
   version the driver supports, each GPU's memory and compute capability;
2. recommendation: what infra recommends for that GPU (infra/hardware/recommend.py), this Python's environment
   standing for the native environment: mode, Whisper model, compute type, batch size, a device per stage;
3. torch: torch's CUDA from the environment: its build, the device, cuDNN, a float16 matrix product timed;
4. faster-whisper: a CTranslate2 Whisper model (--model DIR) loaded in float16 on cuda by the asr stage's own code
   (stages/asr.py open_model and warm_up, so a CUDA library that does not load is named as the stage would name
   it), then a short clip made here without network (espeak-ng's speech when it is installed, else synthetic
   vowels) transcribed, timed.

Checks 3 and 4 run in child processes of the same Python, each with a time limit, with the NVIDIA library folders
of the environment (site-packages/nvidia/*/lib) on LD_LIBRARY_PATH, derived from what is installed.

Output: a line per check as it ends, then a summary; the report as JSON with --json FILE (--json - prints the JSON
on stdout and the lines on stderr).
Exit: 0 every check passed; 1 a check failed; 2 something the checks need is missing (a package, infra, the
model) and nothing failed; 3 no NVIDIA GPU here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
SENTENCE = ("The pipeline turns films into subtitles. It finds the speech, writes down what people say, "
            "and says who speaks when.")
MATMUL_N = 4096
MATMUL_RUNS = 10
TRANSCRIBE_RUNS = 3
EXIT = {"ok": 0, "failed": 1, "missing": 2, "no-gpu": 3}


def check(name: str, status: str, detail: str, **figures: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "detail": detail, "figures": figures}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


# -- in this process: NVML and the recommendation -------------------------------------------------------------------

def nvml_check(nvml: Any = None) -> tuple[dict[str, Any], Any]:
    """infra's NVML detection (``nvml``: pynvml, or a stand-in); (the check, NvidiaInfo or None). 'no-gpu' when
    NVML finds none (or cannot start)."""
    try:
        pynvml = nvml or __import__("pynvml")
    except ImportError:
        return check("nvml", "missing", f"nvidia-ml-py is not installed for {sys.executable} "
                                        "(pip install nvidia-ml-py, or --wheels DIR)"), None
    try:
        from infra.hardware.detect import detect_nvidia
    except ImportError as exc:
        return check("nvml", "missing", f"infra's detection cannot be imported ({first_line(exc)}): infra needs "
                                        "pydantic and psutil (pip install pydantic psutil, or --wheels DIR)"), None
    nvidia = detect_nvidia(pynvml)
    if not nvidia.gpus:
        why = nvml_start_error(pynvml) or nvidia.error or "NVML sees none"
        return check("nvml", "no-gpu", f"no NVIDIA GPU ({why})", source=nvidia.source), nvidia
    gpus = [{"index": g.index, "name": g.name, "memory_gb": round(g.memory_total_bytes / 1e9, 1),
             "free_gb": round(g.memory_free_bytes / 1e9, 1), "compute_capability": g.compute_capability,
             "torch_support": g.torch_support} for g in nvidia.gpus]
    shown = "; ".join(f"{g['name']}, {g['memory_gb']} GB, compute {g['compute_capability']}" for g in gpus)
    figures = {"source": nvidia.source, "driver": nvidia.driver_version, "cuda": nvidia.cuda_version, "gpus": gpus}
    if nvidia.source != "nvml":
        return check("nvml", "failed", f"NVML did not answer, {nvidia.source} did: {shown}", **figures), nvidia
    return check("nvml", "ok", f"{shown}; driver {nvidia.driver_version}, CUDA {nvidia.cuda_version}",
                 **figures), nvidia


def nvml_start_error(pynvml: Any) -> str | None:
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVML's own error family: its text is the reason
        return f"NVML cannot start: {first_line(exc)}"
    pynvml.nvmlShutdown()
    return None


def this_environment() -> Any:
    """This Python's environment as infra's native-environment facts (its files, torch never imported)."""
    import importlib.util

    from infra.hardware.detect import detect_native_env
    from infra.hardware.snapshot import NativeEnvInfo
    from infra.stack.nativeenv import NativeEnv

    found = detect_native_env(Path(sys.prefix))
    if found.present:
        return found
    spec = importlib.util.find_spec("torch")                 # not a virtualenv: torch's own folder says it
    if spec is None or not spec.submodule_search_locations:
        return NativeEnvInfo(path=sys.prefix, present=True, python=platform.python_version())
    env = NativeEnv(Path(sys.prefix), platform.python_version(), Path(list(spec.submodule_search_locations)[0]).parent)
    return NativeEnvInfo(path=sys.prefix, present=True, python=env.python, torch=env.torch,
                         torch_cuda=env.torch_cuda if env.torch else None)


def recommendation_check(workdir: Path, nvml: Any = None) -> dict[str, Any]:
    from infra.hardware.detect import classify, detect_hardware
    from infra.hardware.recommend import recommend

    found = detect_hardware(workdir, Path(sys.prefix), nvml=nvml)
    env = this_environment()
    gpu_class, reason = classify(found.nvidia, found.mps, env)
    snapshot = found.model_copy(update={"native_env": env, "gpu_class": gpu_class, "gpu_class_reason": reason})
    rec = recommend(snapshot)
    devices = {stage: rec.stage_device(stage, gpu) for stage, gpu in
               (("demux", False), ("vad", True), ("asr", True), ("diarize", True), ("subtitles", False),
                ("mux", False))}
    figures = {"gpu_class": gpu_class, "mode": rec.mode, "whisper_model": rec.whisper_model,
               "compute_type": rec.compute_type, "batch_size": rec.batch_size, "chunk_length_s": rec.chunk_length_s,
               "devices": devices, "reasons": rec.reasons, "warnings": rec.warnings,
               "torch": env.torch, "torch_cuda": env.torch_cuda,
               "docker": snapshot.docker.engine or snapshot.docker.error}
    detail = (f"{rec.mode}, {rec.whisper_model} {rec.compute_type}, batch {rec.batch_size}, "
              f"asr on {rec.asr_device}, vad and diarize on {rec.torch_device}")
    if gpu_class != "cuda":
        return check("recommendation", "failed", f"GPU class {gpu_class}: {reason}; {detail}", **figures)
    return check("recommendation", "ok", detail, **figures)


# -- child processes: torch and faster-whisper ------------------------------------------------------------------------

def nvidia_library_dirs() -> list[str]:
    """The folders of the NVIDIA wheels' shared libraries in this Python's environment (site-packages/nvidia/*/lib)."""
    found: list[str] = []
    for entry in sys.path:
        for lib in sorted(Path(entry or ".").glob("nvidia/*/lib")):
            if lib.is_dir() and any(lib.glob("*.so*")) and str(lib) not in found:
                found.append(str(lib))
    return found


def in_child(step: str, args: list[str], timeout: float, libraries: list[str]) -> dict[str, Any]:
    """``step`` of this script in a child process of this Python: its JSON result, or why there is none."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libraries, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--step", step, *args], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return check(step, "failed", f"did not finish within {timeout:.0f} s")
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return check(step, "failed", f"the check ended with exit code {proc.returncode} and no result ({tail})")
    result["figures"]["wall_s"] = round(time.perf_counter() - started, 2)
    return result


def torch_step() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return check("torch", "missing", f"torch is not installed for {sys.executable}")
    except Exception as exc:  # noqa: BLE001 - a CUDA library torch links that does not load
        return check("torch", "failed", f"torch cannot be imported ({first_line(exc)})")
    from stages._device import torch_problem

    figures: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda}
    why = torch_problem("cuda")
    if why is not None:
        return check("torch", "failed", why, **figures)
    props = torch.cuda.get_device_properties(0)
    figures.update(device=props.name, memory_gb=round(props.total_memory / 1e9, 1),
                   compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                   cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.float16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(MATMUL_RUNS):
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    figures.update(matmul_n=MATMUL_N, matmul_median_ms=round(median * 1000, 3),
                   float16_tflops=round(2 * MATMUL_N ** 3 / median / 1e12, 1))
    return check("torch", "ok", f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {props.name}, "
                                f"cuDNN {figures['cudnn']}; float16 {MATMUL_N}x{MATMUL_N} matmul "
                                f"{figures['matmul_median_ms']} ms ({figures['float16_tflops']} TFLOP/s)", **figures)


def whisper_step(model: str, clip: str, compute_type: str, device: str = "cuda") -> dict[str, Any]:
    try:
        import ctranslate2
        import faster_whisper
    except ImportError as exc:
        return check("faster-whisper", "missing", f"faster-whisper cannot be imported ({first_line(exc)}): "
                                                  "pip install faster-whisper, or --wheels DIR")
    from stages._device import ctranslate2_problem, cuda_failure
    from stages.asr import open_model, warm_up

    figures: dict[str, Any] = {"faster_whisper": faster_whisper.__version__, "ctranslate2": ctranslate2.__version__,
                               "model": model, "compute_type": compute_type, "device": device}
    why = ctranslate2_problem(device) if device != "cpu" else None
    if why is not None:
        return check("faster-whisper", "failed", why, **figures)
    try:
        started = time.perf_counter()
        whisper = open_model(model, device, compute_type)
        figures["load_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        warm_up(whisper)
        figures["warm_up_s"] = round(time.perf_counter() - started, 3)
    except Exception as exc:  # noqa: BLE001 - said as the asr stage would say it
        kind = "a CUDA failure" if cuda_failure(exc) else "not a CUDA failure"
        return check("faster-whisper", "failed", f"ctranslate2 {ctranslate2.__version__} cannot run the model on "
                                                 f"{device} in {compute_type} ({first_line(exc)}; {kind})", **figures)
    audio = faster_whisper.decode_audio(clip, sampling_rate=SAMPLE_RATE)
    runs, text, info = [], "", None
    for _ in range(TRANSCRIBE_RUNS):
        started = time.perf_counter()
        segments, info = whisper.transcribe(audio, language="en", beam_size=5, word_timestamps=True,
                                            vad_filter=False, condition_on_previous_text=False)
        text = " ".join(s.text.strip() for s in segments)
        runs.append(time.perf_counter() - started)
    audio_s = len(audio) / SAMPLE_RATE
    median = sorted(runs)[len(runs) // 2]
    figures.update(audio_s=round(audio_s, 2), transcribe_s=[round(r, 3) for r in runs],
                   transcribe_median_s=round(median, 3), rtf=round(median / audio_s, 4), text=text,
                   language=getattr(info, "language", None))
    return check("faster-whisper", "ok", f"{Path(model).name} in {compute_type} on {device}: {audio_s:.1f} s of "
                                         f"audio in {median:.3f} s (median of {TRANSCRIBE_RUNS}, RTF "
                                         f"{median / audio_s:.4f})", **figures)


# -- the clip ---------------------------------------------------------------------------------------------------------

def make_clip(folder: Path) -> tuple[Path, str, str | None]:
    """A short clip, without network: (its path, what it is, the words it says or None)."""
    clip = folder / "clip.wav"
    espeak = next((p for p in (Path(d) / "espeak-ng" for d in os.environ.get("PATH", "").split(os.pathsep))
                   if p.is_file()), None)
    if espeak is not None:
        done = subprocess.run([str(espeak), "-v", "en-us", "-s", "150", "-w", str(clip), SENTENCE],
                              capture_output=True, text=True)
        if done.returncode == 0 and clip.is_file():
            return clip, "espeak-ng speech", SENTENCE
    write_vowels(clip)
    return clip, "synthetic vowels (espeak-ng is not installed)", None


def write_vowels(path: Path, seconds: float = 8.0) -> None:
    """Syllables of a vowel-like sound (harmonics of 120 Hz shaped around two formants), 16 kHz mono 16-bit."""
    weights = [(k, (math.exp(-((120 * k - 700) / 200) ** 2) + math.exp(-((120 * k - 1200) / 250) ** 2)) / k)
               for k in range(1, 16)]
    frames = bytearray()
    for n in range(int(seconds * SAMPLE_RATE)):
        t = n / SAMPLE_RATE
        phase = t % 0.35                                       # a syllable of 0.25 s, then 0.1 s of silence
        envelope = math.sin(math.pi * phase / 0.25) if phase < 0.25 else 0.0
        value = sum(w * math.sin(2 * math.pi * 120 * k * t) for k, w in weights)
        frames += struct.pack("<h", int(max(-1.0, min(1.0, 0.5 * envelope * value)) * 32767))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(bytes(frames))


# -- the report -------------------------------------------------------------------------------------------------------

def default_model() -> Path:
    cache = os.environ.get("INFRA_CACHE", "").strip()
    return (Path(cache) if cache else ROOT / "shared-model-and-cache") / "whisper" / "tiny.en"


def run_checks(args: argparse.Namespace, say: Any, nvml: Any = None) -> dict[str, Any]:
    report: dict[str, Any] = {"kind": "infra.gpu-check", "host": platform.node(), "python": sys.executable,
                              "python_version": platform.python_version(), "checks": []}

    def add(result: dict[str, Any]) -> None:
        report["checks"].append(result)
        say(f"{result['name']:15} {result['status']:8} {result['detail']}")

    result, _ = nvml_check(nvml)
    add(result)
    if result["status"] in ("missing", "no-gpu"):
        return report
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        try:
            add(recommendation_check(Path(tmp), nvml))
        except Exception as exc:  # noqa: BLE001 - the report goes on with the other checks
            add(check("recommendation", "failed", f"infra could not recommend ({first_line(exc)})"))
        libraries = nvidia_library_dirs()
        report["library_path"] = libraries
        add(in_child("torch", [], args.timeout, libraries))
        model = Path(args.model) if args.model else default_model()
        if not (model / "model.bin").is_file():
            add(check("faster-whisper", "missing", f"no CTranslate2 Whisper model in {model}: pass --model DIR "
                                                   "(a folder with model.bin, e.g. what `infra bootstrap --model "
                                                   "whisper/tiny.en` puts in shared-model-and-cache/whisper/)"))
            return report
        clip, what, words = (Path(args.clip), "given with --clip", None) if args.clip else make_clip(Path(tmp))
        result = in_child("faster-whisper", [str(model), str(clip), args.compute_type, args.device], args.timeout,
                          libraries)
        result["figures"]["clip"] = what
        if words and result["status"] == "ok":
            from infra.quality.scoring import word_errors

            result["figures"]["wer"] = round(word_errors(words, result["figures"]["text"]).wer, 3)
            result["detail"] += f", WER {result['figures']['wer']:.3f} on {what}"
        add(result)
    return report


def exit_code(report: dict[str, Any]) -> int:
    statuses = {c["status"] for c in report["checks"]}
    for status in ("no-gpu", "failed", "missing"):
        if status in statuses:
            return EXIT[status]
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a CTranslate2 Whisper model folder (default: the workspace's tiny.en)")
    parser.add_argument("--clip", help="an audio file to transcribe instead of the clip made here")
    parser.add_argument("--compute-type", default="float16", help="CTranslate2's compute type (default: float16)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="where faster-whisper runs (cpu: the same check without a GPU, with --compute-type int8)")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE (- for stdout)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each child check may take")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("step_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))                    # infra and the stages from this tree
    if args.step_args and not args.step:
        parser.error(f"unexpected arguments: {' '.join(args.step_args)}")
    if args.step:                                        # a child: one JSON line
        result = torch_step() if args.step == "torch" else whisper_step(*args.step_args)
        print(json.dumps(result))
        return 0
    out = sys.stderr if args.json == "-" else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    report = run_checks(args, say)
    report["exit_code"] = code = exit_code(report)
    counts = {s: sum(c["status"] == s for c in report["checks"]) for s in EXIT}
    say("gpu-check: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; exit {code}")
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
