"""Stage asr: faster-whisper over the speech that vad found, with word timestamps, as asr.json.

The model, compute type, batch size, chunk length, language (null: detect) and
task (transcribe, or translate into English) come from job.json's config; the
device from the stage's entry. The weights come from the shared model cache
only: a model that is not there fails with the command that fetches it, and
nothing is downloaded. Neighbouring speech segments are joined into windows of
at most one chunk, which Whisper decodes one by one (batch size 1) or in
batches (faster-whisper's batched pipeline).

numpy's BLAS runs on one thread (``pin_blas_threads``): the same audio then
gives the same asr.json natively and in a container, whatever CPUs the process
sees and whatever OMP_NUM_THREADS or OPENBLAS_NUM_THREADS the shell sets.
CTranslate2's own thread count (``cpu_threads``) changes the speed, not the
result; both are in the stage's result record.
Usage: python3 -m stages.asr [JOB_DIR]
"""

from __future__ import annotations

import os
import sys
from typing import Any

from stages._audio import AUDIO_FILE, duration_s, read_wav
from stages._jobio import StageContext, StageError, StageInputError, main_of
from stages._models import model_source, package_version, whisper_dir

NAME = "asr"
OUTPUT = "asr.json"
VAD_FILE = "vad.json"
BEAM_SIZE = 5
DEFAULT_CHUNK_S = 30
TASKS = ("transcribe", "translate")
BLAS_THREADS = 1
BLAS_ENV = "OPENBLAS_NUM_THREADS"      # read by numpy's OpenBLAS once, when numpy loads


def speech_windows(segments: list[dict[str, float]], max_s: float) -> list[dict[str, float]]:
    """Join neighbouring speech segments into windows that span at most ``max_s`` seconds each."""
    windows: list[dict[str, float]] = []
    for seg in sorted(segments, key=lambda s: s["start"]):
        if windows and seg["end"] - windows[-1]["start"] <= max_s:
            windows[-1]["end"] = max(windows[-1]["end"], seg["end"])
        else:
            windows.append({"start": seg["start"], "end": seg["end"]})
    return windows


def pin_blas_threads() -> int | None:
    """Give numpy's BLAS one thread before numpy loads; the thread count, or None when numpy was loaded first.

    faster-whisper's log-mel features are a float32 matrix product that OpenBLAS splits by its thread
    count (by default, the CPUs the process may use); another split rounds some features one unit in the
    last place apart, and that changes words and word times downstream."""
    if "numpy" in sys.modules:
        return None
    os.environ[BLAS_ENV] = str(BLAS_THREADS)
    return BLAS_THREADS


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_model(folder: Any, device: str, compute_type: str) -> Any:
    from faster_whisper import WhisperModel

    try:
        return WhisperModel(str(folder), device=device, compute_type=compute_type, cpu_threads=cpu_threads(),
                            local_files_only=True)
    except (RuntimeError, ValueError) as exc:
        raise StageError(f"cannot load the Whisper model from {folder} on {device} with {compute_type}: "
                         f"{str(exc).splitlines()[0]}") from None


def transcribe(model: Any, samples: Any, windows: list[dict[str, float]], options: dict[str, Any],
               batch_size: int) -> tuple[list[Any], Any]:
    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        segments, info = BatchedInferencePipeline(model).transcribe(
            samples, clip_timestamps=windows, batch_size=batch_size, vad_filter=False, **options)
    else:
        clips = [t for w in windows for t in (w["start"], w["end"])]
        segments, info = model.transcribe(samples, clip_timestamps=clips, vad_filter=False,
                                          condition_on_previous_text=False, **options)
    return list(segments), info


def segment_record(seg: Any) -> dict[str, Any]:
    return {"start": round(seg.start, 3), "end": round(seg.end, 3), "text": seg.text.strip(),
            "avg_logprob": round(seg.avg_logprob, 4), "no_speech_prob": round(seg.no_speech_prob, 4),
            "words": [{"start": round(w.start, 3), "end": round(w.end, 3), "word": w.word.strip(),
                       "probability": round(w.probability, 4)} for w in (seg.words or []) if w.word.strip()]}


def asr(ctx: StageContext) -> None:
    blas_threads = pin_blas_threads()
    if blas_threads is None:
        print(f"asr: numpy was loaded before {BLAS_ENV} could be set: the result may depend on the CPU count",
              file=sys.stderr)
    cfg = ctx.config
    name = str(cfg.get("whisper_model") or "")
    folder = whisper_dir(ctx.model_cache(), name)
    task = str(cfg.get("task") or "transcribe")
    if task not in TASKS:
        raise StageInputError(f"config.task {task!r} is not a task ({', '.join(TASKS)})")
    compute_type = str(cfg.get("compute_type") or "default")
    batch_size = max(1, int(cfg.get("batch_size") or 1))
    chunk_s = float(cfg.get("chunk_length_s") or DEFAULT_CHUNK_S)
    samples = read_wav(ctx.require(AUDIO_FILE, made_by="demux")[0])
    windows = speech_windows(ctx.read_json(VAD_FILE, made_by="vad").get("segments", []), chunk_s)
    device = "cuda" if ctx.device == "cuda" else "cpu"
    ctx.versions.update({"faster-whisper": package_version("faster-whisper"),
                         "ctranslate2": package_version("ctranslate2")})
    language = cfg.get("language") or None
    segments: list[Any] = []
    info = None
    if windows:
        model = load_model(folder, device, compute_type)
        options = {"language": language, "task": task, "beam_size": BEAM_SIZE, "word_timestamps": True,
                   "chunk_length": int(chunk_s)}
        segments, info = transcribe(model, samples, windows, options, batch_size)
    records = [segment_record(s) for s in segments if s.text.strip()]
    detected = info.language if info is not None else language
    ctx.write_json(OUTPUT, {
        "model": name, "model_source": model_source(folder), "device": device, "compute_type": compute_type,
        "batch_size": batch_size, "task": task, "language": detected,
        "language_probability": round(info.language_probability, 4) if info is not None else None,
        "duration_s": duration_s(samples), "windows": windows, "segments": records})
    ctx.details.update({"model": name, "device": device, "compute_type": compute_type, "batch_size": batch_size,
                        "language": detected, "windows": len(windows), "segments": len(records),
                        "words": sum(len(r["words"]) for r in records), "audio_s": duration_s(samples),
                        "cpu_threads": cpu_threads() if windows else None, "blas_threads": blas_threads})


if __name__ == "__main__":
    main_of(NAME, asr)
