"""Stage asr: faster-whisper over the speech that vad found, with word timestamps, as asr.json.

The model, compute type, batch size, chunk length, language (null: detect) and
task (transcribe, or translate into English) come from job.json's config; the
device from the stage's entry (stages/_device.py: on cuda the model is loaded
and its encoder run once before any span, so that a CUDA library that does not
load ends the stage at once, or moves it to the CPU where the job allows it).
The weights come from the shared model cache only: a model that is not there
fails with the command that fetches it, and nothing is downloaded.
Neighbouring speech segments are joined into windows of at most one chunk,
which Whisper decodes one by one (batch size 1) or in batches (faster-whisper's
batched pipeline).

A film is worked through span by span (config ``span_s``, default 300 s of
media): the windows are grouped into spans cut in the silence between two
windows, and each span's audio alone is read and given to faster-whisper (which
computes the features of all the audio it is given, so memory follows the span,
not the film). Each span's segments (times in the film) go to a checkpoint,
``asr.parts/NNNN.json``, whose key covers audio.wav, vad.json, the settings, the
model and this code: a rerun after a crash takes the spans whose checkpoint has
the same key and transcribes only the rest, and asr.json, assembled from the
spans, is the same bytes as an uninterrupted run's. With no language set, it is
detected once, on the first span (at its first window, as faster-whisper
would), and every later span is decoded in that language. With ``auto``, the
language of each speech segment is detected within its span and each segment
is decoded in its own language (stages/_languages.py); every segment of asr.json
names the language it was decoded in. Progress (seconds of media out of
audio.wav's length) goes to progress/asr.json as segments come.

numpy's BLAS runs on one thread (``pin_blas_threads``): the same audio then
gives the same asr.json natively and in a container, whatever CPUs the process
sees and whatever OMP_NUM_THREADS or OPENBLAS_NUM_THREADS the shell sets.
CTranslate2's own thread count (``cpu_threads``: $INFRA_THREADS when set, else
the CPUs the process may use) changes the speed, not the result; both are in
the stage's result record. faster-whisper's temperature fallback samples:
CTranslate2's generator is seeded before the model loads (docs/LANGUAGES.md says
what that holds across a resume).
Usage: python3 -m stages.asr [JOB_DIR]
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages import _languages
from stages._audio import AUDIO_FILE, SAMPLE_RATE, read_wav_span, wav_duration_s
from stages._checkpoints import Checkpoints, digest_of, file_digest, file_identity
from stages._device import (CPU_COMPUTE_TYPE, DeviceUsed, choose, ctranslate2_problem, cuda_failure, fall_back,
                            first_line)
from stages._jobio import StageContext, StageError, StageInputError, StageMeter, main_of
from stages._models import model_source, package_version, whisper_dir

NAME = "asr"
OUTPUT = "asr.json"
VAD_FILE = "vad.json"
BEAM_SIZE = 5
DEFAULT_CHUNK_S = 30
TASKS = ("transcribe", "translate")
BLAS_THREADS = 1
BLAS_ENV = "OPENBLAS_NUM_THREADS"      # read by numpy's OpenBLAS once, when numpy loads
THREADS_ENV = "INFRA_THREADS"          # the CPU threads the pipeline gives this stage
DEFAULT_SPAN_S = 300
PARTS_DIR = "asr.parts"
SAMPLING_SEED = 1                      # CTranslate2's random generator, for the temperature fallback's sampling
FRAME_MS = 10                          # spans start on a Whisper feature frame (160 samples)


@dataclass(frozen=True)
class Span:
    """A stretch of the film, ``start`` to ``end`` seconds, and the speech windows in it (film times)."""

    index: int
    start: float
    end: float
    windows: list[dict[str, float]]

    @property
    def length(self) -> float:
        return self.end - self.start

    def local_windows(self) -> list[dict[str, float]]:
        """The windows in seconds from the span's start, as faster-whisper gets them with the span's audio."""
        return [{"start": round(w["start"] - self.start, 3), "end": round(w["end"] - self.start, 3)}
                for w in self.windows]


def speech_windows(segments: list[dict[str, float]], max_s: float) -> list[dict[str, float]]:
    """Join neighbouring speech segments into windows that span at most ``max_s`` seconds each."""
    windows: list[dict[str, float]] = []
    for seg in sorted(segments, key=lambda s: s["start"]):
        if windows and seg["end"] - windows[-1]["start"] <= max_s:
            windows[-1]["end"] = max(windows[-1]["end"], seg["end"])
        else:
            windows.append({"start": seg["start"], "end": seg["end"]})
    return windows


def cut_between(end: float, start: float) -> float:
    """Where to cut between a window that ends at ``end`` and the next that starts at ``start``: the middle of
    the silence, down to a 10 ms frame."""
    middle_ms = (round(end * 1000) + round(start * 1000)) // 2
    return middle_ms // FRAME_MS * FRAME_MS / 1000


def group_spans(windows: list[dict[str, float]], span_s: float, duration: float) -> list[Span]:
    """The windows in spans of about ``span_s`` seconds (a window is never split; each span has one at least).

    The spans tile the film: the first starts at 0, each next one where the last ended, the last ends at
    ``duration``; so a film shorter than one span is one span, its whole audio."""
    groups: list[list[dict[str, float]]] = []
    for window in windows:
        if groups and window["end"] - groups[-1][0]["start"] <= span_s:
            groups[-1].append(window)
        else:
            groups.append([window])
    cuts = [0.0] + [cut_between(a[-1]["end"], b[0]["start"]) for a, b in itertools.pairwise(groups)]
    ends = cuts[1:] + [max(duration, cuts[-1])]
    return [Span(i, start, end, group) for i, (start, end, group) in enumerate(zip(cuts, ends, groups))]


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
    """CTranslate2's threads: $INFRA_THREADS when it is a positive number, else the CPUs this process may use."""
    given = os.environ.get(THREADS_ENV, "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def open_model(folder: Any, device: str, compute_type: str) -> Any:
    import ctranslate2
    from faster_whisper import WhisperModel

    ctranslate2.set_random_seed(SAMPLING_SEED)          # before the model's thread first samples
    return WhisperModel(str(folder), device=device, compute_type=compute_type, cpu_threads=cpu_threads(),
                        local_files_only=True)


def load_failure(folder: Any, device: str, compute_type: str, exc: BaseException) -> StageError:
    return StageError(f"cannot load the Whisper model from {folder} on {device} with {compute_type}: "
                      f"{(str(exc).splitlines() or [exc.__class__.__name__])[0]}")


def load_model(folder: Any, device: str, compute_type: str) -> Any:
    try:
        return open_model(folder, device, compute_type)
    except (RuntimeError, ValueError) as exc:
        raise load_failure(folder, device, compute_type, exc) from None


def ctranslate2_works(device: str) -> str:
    import ctranslate2

    return f"ctranslate2 {ctranslate2.__version__} sees {ctranslate2.get_cuda_device_count()} CUDA device(s)"


def cpu_compute_type(wanted: str) -> str:
    """The job's compute type when CTranslate2 has CPU kernels for it, else int8 (the CPU rows' type)."""
    import ctranslate2

    if wanted in ("default", "auto") or wanted in ctranslate2.get_supported_compute_types("cpu"):
        return wanted
    return CPU_COMPUTE_TYPE


def warm_up(model: Any) -> None:
    """The model's encoder once, on 30 s of silence (its first matrix products)."""
    import numpy as np

    extractor = model.feature_extractor
    model.encode(extractor(np.zeros(extractor.n_samples, dtype=np.float32))[..., :extractor.nb_max_frames])


def cuda_model(ctx: StageContext, folder: Path, compute_type: str, chosen: DeviceUsed) -> tuple[Any, DeviceUsed]:
    """The model on cuda, its encoder run once on 30 s of silence: CTranslate2 opens cuBLAS at its first matrix
    product, so a CUDA library that does not load is found here, before any span, and not in the middle of the
    film. On such a failure: (None, the CPU) when the job allows falling back, else DeviceUnavailable."""
    try:
        model = open_model(folder, "cuda", compute_type)
        warm_up(model)
    except Exception as exc:  # noqa: BLE001 - CUDA's own failures are sorted from the rest just below
        if not cuda_failure(exc):
            raise load_failure(folder, "cuda", compute_type, exc) from None
        return None, fall_back(ctx, "cuda", f"ctranslate2 {package_version('ctranslate2')} failed on cuda "
                                            f"({first_line(exc)})")
    used = DeviceUsed("cuda", "cuda", f"{chosen.reason}; the model loaded in {compute_type} and its encoder ran")
    ctx.device_used = used.as_dict()
    return model, used


def transcribe(model: Any, samples: Any, windows: list[dict[str, float]], options: dict[str, Any],
               batch_size: int) -> tuple[Iterator[Any], Any]:
    """faster-whisper over ``windows`` (seconds into ``samples``): its segments, as they come, and its info."""
    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        return BatchedInferencePipeline(model).transcribe(
            samples, clip_timestamps=windows, batch_size=batch_size, vad_filter=False, **options)
    clips = [t for w in windows for t in (w["start"], w["end"])]
    return model.transcribe(samples, clip_timestamps=clips, vad_filter=False, condition_on_previous_text=False,
                            **options)


def segment_record(seg: Any, offset: float, language: str) -> dict[str, Any]:
    """A segment and its words, with times moved by ``offset`` seconds (the span's start in the film)."""
    return {"start": round(seg.start + offset, 3), "end": round(seg.end + offset, 3), "text": seg.text.strip(),
            "language": language,
            "avg_logprob": round(seg.avg_logprob, 4), "no_speech_prob": round(seg.no_speech_prob, 4),
            "words": [{"start": round(w.start + offset, 3), "end": round(w.end + offset, 3), "word": w.word.strip(),
                       "probability": round(w.probability, 4)} for w in (seg.words or []) if w.word.strip()]}


def transcribe_span(model: Any, audio: Path, span: Span, last: bool, options: dict[str, Any], batch_size: int,
                    meter: StageMeter, before_s: float) -> dict[str, Any]:
    """One span: its audio alone, read and transcribed; the checkpoint's data (segments in film times)."""
    samples = read_wav_span(audio, span.start, span.end + 1 if last else span.end)   # the last: to the file's end
    segments, info = transcribe(model, samples, span.local_windows(), options, batch_size)
    records = []
    for seg in segments:
        if seg.text.strip():
            records.append(segment_record(seg, span.start, info.language))
        meter.update(before_s + min(seg.end, span.length))
    return {"start": span.start, "end": span.end, "language": info.language,
            "language_probability": round(info.language_probability, 4), "segments": records}


def spoken_language(model: Any, samples: Any, start: float, end: float) -> tuple[str, float]:
    """Whisper's likeliest language for ``samples`` from ``start`` to ``end`` seconds, and its probability."""
    clip = samples[round(start * SAMPLE_RATE):round(end * SAMPLE_RATE)]
    language, probability, _ = model.detect_language(audio=clip)
    return language, float(probability)


def transcribe_span_auto(model: Any, audio: Path, span: Span, last: bool, speech: list[dict[str, float]],
                         options: dict[str, Any], batch_size: int, meter: StageMeter,
                         before_s: float) -> dict[str, Any]:
    """One span with ``language: auto``: the language of each speech segment in it (stages/_languages.py), then
    each run of windows of one language decoded in that language."""
    samples = read_wav_span(audio, span.start, span.end + 1 if last else span.end)
    local = [{"start": round(s["start"] - span.start, 3), "end": round(s["end"] - span.start, 3)}
             for s in _languages.segments_in(speech, span.start, span.end)]
    detected = {i: spoken_language(model, samples, s["start"], s["end"]) for i, s in enumerate(local)
                if s["end"] - s["start"] >= _languages.MIN_DETECT_S}
    first = span.local_windows()[0]
    fallback = None if detected or not local else spoken_language(model, samples, first["start"], first["end"])
    labelled = _languages.label(local, detected, fallback)
    records = []
    for language, windows in _languages.runs(_languages.language_windows(labelled, options["chunk_length"])):
        clips = [{"start": w["start"], "end": w["end"]} for w in windows]
        segments, _ = transcribe(model, samples, clips, {**options, "language": language}, batch_size)
        for seg in segments:
            if seg.text.strip():
                records.append(segment_record(seg, span.start, language))
            meter.update(before_s + min(seg.end, span.length))
    shares = _languages.speech_by_language(labelled)
    for row in labelled:
        row["start"], row["end"] = round(row["start"] + span.start, 3), round(row["end"] + span.start, 3)
    return {"start": span.start, "end": span.end, "language": next(iter(shares), None), "language_probability": None,
            "languages": shares, "detections": labelled, "segments": records}


def resumable(parts: Checkpoints, spans: list[Span], keys: list[str], detect: bool) -> dict[int, dict[str, Any]]:
    """The spans whose checkpoint holds (same key): index -> data. With the language detected, a later span counts
    only when the first span's checkpoint counts and gives the same language."""
    found: dict[int, dict[str, Any]] = {}
    for span, key in zip(spans, keys):
        data = parts.load(span.index, key)
        if data is None or not isinstance(data.get("segments"), list):
            continue
        if detect and span.index > 0 and (0 not in found or data.get("language") != found[0].get("language")):
            continue
        found[span.index] = data
    return found


def span_length_s(cfg: dict[str, Any]) -> float:
    value = cfg.get("span_s")
    try:
        span_s = float(value) if value is not None else float(DEFAULT_SPAN_S)
    except (TypeError, ValueError):
        span_s = 0.0
    if span_s <= 0:
        raise StageInputError(f"config.span_s {value!r} is not a positive number of seconds")
    return span_s


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
    language = cfg.get("language") or None
    problem = _languages.language_problem(language, task, name)
    if problem:
        raise StageInputError(problem)
    wanted_type = str(cfg.get("compute_type") or "default")
    batch_size = max(1, int(cfg.get("batch_size") or 1))
    chunk_s = float(cfg.get("chunk_length_s") or DEFAULT_CHUNK_S)
    span_s = span_length_s(cfg)
    audio, vad_file = ctx.require(AUDIO_FILE, made_by="demux")[0], ctx.require(VAD_FILE, made_by="vad")[0]
    duration = wav_duration_s(audio)
    speech = ctx.read_json(VAD_FILE, made_by="vad").get("segments", [])
    windows = speech_windows(speech, chunk_s)
    ctx.versions.update({"faster-whisper": package_version("faster-whisper"),
                         "ctranslate2": package_version("ctranslate2")})
    used, model = choose(ctx, ctranslate2_problem, ctranslate2_works), None
    if used.device == "cuda":
        model, used = cuda_model(ctx, folder, wanted_type, used)
    device = str(used.device)
    compute_type = cpu_compute_type(wanted_type) if used.fallback else wanted_type
    spans = group_spans(windows, span_s, duration)
    settings = {"model": name, "task": task, "language": language, "compute_type": compute_type,
                "batch_size": batch_size, "chunk_s": chunk_s, "beam_size": BEAM_SIZE, "device": device,
                "blas_threads": blas_threads, "versions": ctx.versions}
    inputs = {"audio": file_identity(audio), "vad": file_digest(vad_file), "code": file_digest(Path(__file__)),
              "languages_code": file_digest(Path(_languages.__file__)),
              "weights": file_identity(folder / "model.bin"), "config": file_digest(folder / "config.json")}
    keys = [digest_of(settings, inputs, span.start, span.end) for span in spans]
    parts = Checkpoints(ctx, PARTS_DIR)
    found = resumable(parts, spans, keys, detect=language is None)
    resumed_s = round(sum(spans[i].length for i in found), 3)
    meter = ctx.progress(duration, resumed_s)
    covered_s, records, first, detections = resumed_s, [], None, []
    for span in spans:
        data = found.get(span.index)
        if data is None:
            if model is None:
                model = load_model(folder, device, compute_type)
            options = {"language": language, "task": task, "beam_size": BEAM_SIZE, "word_timestamps": True,
                       "chunk_length": int(chunk_s)}
            if language == _languages.AUTO:
                data = transcribe_span_auto(model, audio, span, span is spans[-1], speech, options, batch_size,
                                            meter, covered_s)
            else:
                data = transcribe_span(model, audio, span, span is spans[-1], options, batch_size, meter, covered_s)
            parts.save(span.index, keys[span.index], data)
            covered_s += span.length
            meter.update(covered_s, force=True)             # a checkpoint is progress that stays: say it now
        first = data if first is None else first
        language = language or data["language"]           # detected on the first span, kept for the others
        records += data["segments"]
        detections += data.get("detections", [])
    meter.finish()
    detected = first["language"] if first else language
    per_language: dict[str, Any] = {}
    if language == _languages.AUTO:                         # the language with the most speech, and all of them
        shares = _languages.speech_by_language(detections)
        detected, per_language = next(iter(shares), None), {"languages": shares, "detections": detections}
    ctx.write_json(OUTPUT, {
        "model": name, "model_source": model_source(folder), "device": device, "compute_type": compute_type,
        "batch_size": batch_size, "task": task, "language": detected,
        "language_probability": first["language_probability"] if first else None, **per_language,
        "duration_s": duration, "span_s": span_s, "spans": [{"start": s.start, "end": s.end} for s in spans],
        "windows": windows, "segments": records})
    parts.clear()
    if compute_type != wanted_type:
        ctx.details["compute_type_requested"] = wanted_type
    ctx.details.update({"model": name, "device": device, "compute_type": compute_type, "batch_size": batch_size,
                        "language": detected, "languages": per_language.get("languages"),
                        "windows": len(windows), "segments": len(records),
                        "words": sum(len(r["words"]) for r in records), "audio_s": duration,
                        "span_s": span_s, "spans_total": len(spans), "spans_resumed": len(found),
                        "spans_transcribed": len(spans) - len(found), "resumed_s": resumed_s,
                        "cpu_threads": cpu_threads() if model is not None else None, "blas_threads": blas_threads})


if __name__ == "__main__":
    main_of(NAME, asr)
